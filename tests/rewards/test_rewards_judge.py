"""The judge client against a real local HTTP server speaking the OpenAI chat API
(tests/rewards/judge_stub_server.py), with faults injected by the test."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from egoadapt.configs import CONF_DIR
from egoadapt.rewards.judge import (
    Judge,
    JudgeRequest,
    JudgeSettings,
    VerdictCache,
    default_prompt,
    parse_verdict,
    render_prompt,
)
from tests.rewards.judge_stub_server import StubJudgeServer

REPO = Path(__file__).resolve().parents[2]


def requests(n: int, prefix: str = "p") -> list[JudgeRequest]:
    # even i: the prediction equals the reference (stub gives 5), odd: it does not (stub gives 1)
    return [JudgeRequest(f"question {i}?", f"ref {i}", f"detail {i}", f"ref {i}" if i % 2 == 0 else f"{prefix} {i}")
            for i in range(n)]


def make_judge(server: StubJudgeServer, tmp_path: Path | None = None, **kw) -> Judge:
    defaults = {"base_url": server.base_url, "model": "stub", "timeout_s": 2.0, "connect_timeout_s": 1.0,
                "retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.05, "concurrency": 4,
                "cache_path": str(tmp_path / "cache.jsonl") if tmp_path else None}
    defaults.update(kw)
    return Judge(JudgeSettings(**defaults))


def assert_all_accounted(verdicts, judge: Judge, n_unique: int):
    """Every request ends judged or counted as failed, with a finite mark in [0, 5]."""
    assert all(math.isfinite(v.mark) and 0 <= v.mark <= 5 for v in verdicts)
    c = judge.counters
    assert c["judged"] + c["failures"] + c["unparsable"] + c["budget_exhausted"] + c["cache_hits"] == n_unique, c


@pytest.fixture
def stub():
    with StubJudgeServer() as server:
        yield server


# --------------------------------------------------------------------------- happy path

def test_marks_and_counters(stub, tmp_path):
    with make_judge(stub, tmp_path) as judge:
        verdicts = judge.judge_many(requests(6))
    assert [v.mark for v in verdicts] == [5, 1, 5, 1, 5, 1]
    assert all(v.status == "ok" for v in verdicts)
    assert judge.counters["calls"] == 6 == stub.requests


def test_concurrency_is_bounded(stub):
    stub.latency_s = 0.15
    with make_judge(stub, concurrency=4) as judge:
        verdicts = judge.judge_many(requests(16))
    assert all(v.status == "ok" for v in verdicts)
    assert stub.max_in_flight == 4  # reached the bound, never past it (speed: benchmarks/bench_judge.py)


def test_cache_hits_on_repeat_zero_new_calls(stub, tmp_path):
    with make_judge(stub, tmp_path) as judge:
        first = judge.judge_many(requests(8))
    calls = stub.requests
    with make_judge(stub, tmp_path) as judge:  # a new Judge: the cache is on disk
        again = judge.judge_many(requests(8))
        assert judge.counters["calls"] == 0 and judge.counters["cache_hits"] == 8
    assert stub.requests == calls
    assert [v.mark for v in again] == [v.mark for v in first]
    assert all(v.status == "cached" for v in again)


def test_cache_key_covers_model_prompt_version_and_texts(stub, tmp_path):
    req = requests(1)[0]
    with make_judge(stub, tmp_path) as judge:
        base = judge.key(req)
        assert judge.key(JudgeRequest(req.question, req.reference, req.detailed_reference, "other")) != base
        assert judge.key(JudgeRequest(req.question, "other", req.detailed_reference, req.prediction)) != base
    assert make_judge(stub, tmp_path, model="other").key(req) != base
    assert make_judge(stub, tmp_path, prompt_version="v2").key(req) != base
    assert make_judge(stub, tmp_path, prompt=default_prompt() + "\nBe strict.").key(req) != base


def test_identical_requests_in_a_batch_cost_one_call(stub):
    with make_judge(stub) as judge:
        verdicts = judge.judge_many([requests(2)[1]] * 10)
    assert stub.requests == 1 and judge.counters["deduped"] == 9
    assert {v.mark for v in verdicts} == {1.0}


def test_retries_with_backoff_then_success(stub):
    stub.fail_first = 2  # two 503s
    with make_judge(stub, concurrency=1, retries=3) as judge:
        v = judge.judge(requests(1)[0])
    assert v.status == "ok" and v.mark == 5
    assert judge.counters["retries"] == 2 and stub.requests == 3


# --------------------------------------------------------------------------- faults

def test_server_stopped_mid_run(stub, tmp_path):
    stub.latency_s = 0.05
    reqs = requests(40)
    with make_judge(stub, tmp_path, concurrency=2, retries=1) as judge:
        killer = threading.Timer(0.3, stub.kill)
        killer.start()
        verdicts = judge.judge_many(reqs)
        killer.join()
    statuses = {v.status for v in verdicts}
    assert statuses <= {"ok", "failed"} and {"ok", "failed"} <= statuses
    assert_all_accounted(verdicts, judge, 40)
    # only real verdicts were cached
    cached = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert len(cached) == sum(v.status == "ok" for v in verdicts)


def test_slow_responses_past_the_timeout(stub):
    stub.latency_s = 3.0
    # breaker off: this test is about each attempt's deadline (tests/reliability: the breaker)
    with make_judge(stub, timeout_s=0.2, retries=1, concurrency=4, breaker_failures=0) as judge:
        verdicts = judge.judge_many(requests(8))
    # every reply would have come (3 s, ok); each attempt was abandoned at its deadline instead
    assert all(v.status == "failed" and v.mark == 0.0 for v in verdicts)
    assert judge.counters["failures"] == 8 and judge.counters["calls"] == 16


def test_garbage_verdicts_get_fallback_and_are_not_cached(stub, tmp_path):
    stub.mode = "garbage"
    with make_judge(stub, tmp_path, fallback_mark=1.0) as judge:
        verdicts = judge.judge_many(requests(5))
        assert judge.counters["unparsable"] == 5
    assert all(v.status == "unparsable" and v.mark == 1.0 and not v.judged for v in verdicts)
    stub.mode = "ok"
    with make_judge(stub, tmp_path) as judge:  # asked again, now answered
        assert all(v.status == "ok" for v in judge.judge_many(requests(5)))


@pytest.mark.parametrize("mode,calls", [("http_500", 3), ("bad_body", 3), ("drop", 3), ("http_401_echo", 1)])
def test_http_faults_end_as_failures(stub, mode, calls):
    stub.mode = mode
    with make_judge(stub, retries=2, concurrency=1) as judge:
        v = judge.judge(requests(1)[0])
    assert v.status == "failed" and v.mark == 0.0
    assert stub.requests == calls  # 5xx/garbage/drops retried, 401 not


def test_unreachable_server(tmp_path):
    with StubJudgeServer() as server:
        url = server.base_url
    judge = Judge(JudgeSettings(base_url=url, model="m", retries=1, backoff_s=0.01, timeout_s=1))
    verdicts = judge.judge_many(requests(3))
    assert [v.status for v in verdicts] == ["failed"] * 3
    assert judge.counters["failures"] == 3
    judge.close()


def test_call_budget(stub):
    with make_judge(stub, max_calls=3, concurrency=1) as judge:
        verdicts = judge.judge_many(requests(10))
    assert [v.status for v in verdicts].count("ok") == 3
    assert [v.status for v in verdicts].count("budget_exhausted") == 7
    assert stub.requests == 3 and judge.counters["budget_exhausted"] == 7


# --------------------------------------------------------------------------- cache across processes

_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from egoadapt.rewards.judge import Judge, JudgeRequest, JudgeSettings
judge = Judge(JudgeSettings(base_url={url!r}, model="stub", cache_path={cache!r}, concurrency=4))
reqs = [JudgeRequest(f"q{{i}}", "ref", "", "ref" if i % 2 else "nope") for i in range({start}, {start} + 60)]
v = judge.judge_many(reqs)
print(sum(x.status in ("ok", "cached") for x in v), judge.counters["calls"], judge.counters["cache_hits"])
"""


def test_cache_shared_by_processes_writing_at_once(stub, tmp_path):
    cache = str(tmp_path / "shared.jsonl")
    tests_dir = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER.format(tests=tests_dir, url=stub.base_url, cache=cache,
                                                                    start=start)],
                              stdout=subprocess.PIPE, text=True, cwd=REPO)
             for start in (0, 30, 60)]  # overlapping ranges, written concurrently
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(int(o[0]) == 60 for o in outs)
    lines = Path(cache).read_text().splitlines()
    records = [json.loads(line) for line in lines]  # no torn or interleaved lines
    assert {r["key"] for r in records}.__len__() == 120
    # a fresh process re-reads everything: 120 unique requests, zero calls
    cache_obj = VerdictCache(cache)
    assert len(cache_obj) == 120
    before = stub.requests
    out = subprocess.run([sys.executable, "-c", _WRITER.format(tests=tests_dir, url=stub.base_url, cache=cache,
                                                               start=30)],
                         capture_output=True, text=True, cwd=REPO, timeout=120, check=True).stdout.split()
    assert out == ["60", "0", "60"] and stub.requests == before


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "mark": 4, "reason": ""}\n{"key": "b", "ma')
    cache = VerdictCache(path)
    assert cache.get("a") == (4.0, "") and cache.get("b") is None


# --------------------------------------------------------------------------- parsing and prompt

@pytest.mark.parametrize("reply,want", [
    ('{"mark": 4, "reason": "close"}', 4.0),
    ('```json\n{"mark": 5, "reason": "same"}\n```', 5.0),
    ('Sure. {"mark": "3", "reason": "partly"} Hope this helps', 3.0),
    ("{'mark': 2, 'reason': 'python dict'}", 2.0),
    ('{\n  "mark": 4,  # The score of the prediction\n  "reason": "copied the template"\n}', 4.0),
    ('{"mark": 4.5}', 4.5),
    ('{"mark": 7}', None), ('{"mark": -1}', None), ('{"mark": true}', None), ('{"mark": "high"}', None),
    ('{"score": 4}', None), ("", None), ("reason onj t asss tim", None), ('{"mark": NaN}', None),
])
def test_parse_verdict(reply, want):
    got = parse_verdict(reply)
    assert (got[0] if got else None) == want


def test_prompt_is_filled_in_one_pass():
    req = JudgeRequest("Which tool?", "scissors", "The surgeon holds scissors.", "my answer is {answer}")
    prompt = render_prompt(default_prompt(), req)
    assert "Predicted Answer: my answer is {answer}" in prompt  # not replaced by the reference
    assert "Correct ground truth: scissors" in prompt and "{question}" not in prompt


def test_settings_take_the_config_prompt_and_validate():
    cfg = yaml.safe_load((CONF_DIR / "judge" / "openai.yaml").read_text())
    settings = JudgeSettings(base_url="http://x", model="m")
    assert settings.prompt == cfg["prompt"] and settings.prompt_version == cfg["prompt_version"]
    assert cfg["api_key_env"] == "EGOADAPT_JUDGE_API_KEY"
    with pytest.raises(ValueError, match="environment variable"):
        JudgeSettings.from_mapping({"base_url": "http://x", "model": "m", "api_key": "sk-123"})
    with pytest.raises(ValueError, match="placeholder"):
        JudgeSettings(base_url="http://x", model="m", prompt="no placeholders")
    with pytest.raises(ValueError, match="unknown judge setting"):
        JudgeSettings.from_mapping({"base_url": "http://x", "model": "m", "temprature": 0.1})


def _words(text: str) -> list[str]:
    """Words of a text as any source spells it: Python line continuations and YAML's escaped
    line breaks joined, quotes and backslashes dropped, whitespace collapsed."""
    return text.replace("\\\n", " ").replace("\\n", " ").replace("\\", " ").replace('"', " ").split()


def test_the_judge_prompt_has_one_copy():
    """conf/judge/openai.yaml holds the default judge prompt; no other file of the package (code or
    config) repeats it. Phrases it shares with the official scripts' prompt (protocol=official's,
    verbatim) do not count."""
    n = 6
    grams = lambda words: {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}  # noqa: E731
    official = yaml.safe_load((CONF_DIR / "protocol" / "official.yaml").read_text())["judge"]["prompt"]
    own = grams(_words(default_prompt())) - grams(_words(official))
    assert len(own) > 50  # the check has something to find
    package = REPO / "egoadapt"
    copies = {}
    for path in sorted([*package.rglob("*.py"), *package.rglob("*.yaml")]):
        if path == CONF_DIR / "judge" / "openai.yaml":
            continue
        found = own & grams(_words(path.read_text(encoding="utf-8")))
        if found:
            copies[str(path.relative_to(REPO))] = " ".join(sorted(found)[0])
    assert not copies, f"the judge prompt is copied (keep it in conf/judge/openai.yaml only): {copies}"


def test_judge_none_config_gives_no_judge():
    assert Judge.from_config({"enabled": False}) is None
    assert Judge.from_config({}) is None
    assert Judge.from_config(None) is None
