"""Judge faults as a user meets them: a judge that trickles its headers or its body, one
that is down, one that answers 500, a config that cannot work, text that UTF-8 refuses.

Asserted by outcome, never by tight timing: a call that must not hang runs in a thread
joined with a limit far above its configured deadline, and the breaker is judged by how
few requests reached the server."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from egoadapt import cli
from egoadapt.rewards.judge import (
    CircuitBreaker,
    Judge,
    JudgeConfigError,
    JudgeRequest,
    JudgeSettings,
    check_judge_config,
    clean_text,
)
from tests.reliability.judge_fault_server import FaultServer, dead_url
from tests.rewards.judge_stub_server import StubJudgeServer

HANG_LIMIT_S = 60  # "did not hang": generous against deadlines of 1 s on a loaded 2-core machine
TESTBED = Path(os.environ.get("EGOCROSS_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "egocross")) \
    / "egocross_testbed_imgs.json"


def requests(n: int, tag: str = "q") -> list[JudgeRequest]:
    return [JudgeRequest(f"{tag} question {i}?", f"ref {i}", "", f"pred {i}") for i in range(n)]


def make_judge(url: str, **kw) -> Judge:
    settings = {"base_url": url, "model": "m", "timeout_s": 1.0, "connect_timeout_s": 1.0, "retries": 1,
                "backoff_s": 0.01, "backoff_max_s": 0.05, "concurrency": 4, "breaker_cooldown_s": 600}
    settings.update(kw)
    return Judge(JudgeSettings(**settings))


def manual_clock(judge: Judge, threshold: int) -> list[float]:
    """Give the judge a breaker whose clock the test moves (now[0] += seconds): cooldowns
    pass when the test says so, however slow the machine."""
    now = [0.0]
    judge._breaker = CircuitBreaker(threshold, cooldown_s=10, probe_wait_s=30, clock=lambda: now[0])
    return now


def bounded(fn, limit_s: float = HANG_LIMIT_S):
    """fn() in a thread; fails the test (instead of hanging it) when fn is not done in limit_s."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"still waiting after {limit_s} s: a network wait without a deadline"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --------------------------------------------------------------------------- deadlines

@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body"])
def test_a_trickling_judge_meets_the_deadline(mode):
    """httpx's read timeout restarts with every byte: only a wall-clock deadline ends these."""
    with FaultServer(mode) as server, make_judge(server.base_url, retries=1, breaker_failures=0) as judge:
        verdicts = bounded(lambda: judge.judge_many(requests(2)))
        assert [v.status for v in verdicts] == ["failed", "failed"]
        assert judge.counters["failures"] == 2 and judge.counters["calls"] == 4
        assert server.requests <= 4


def test_many_questions_to_a_trickling_judge_cost_a_few_deadlines():
    with FaultServer("trickle_headers") as server, \
            make_judge(server.base_url, concurrency=2, retries=3, breaker_failures=2) as judge:
        verdicts = bounded(lambda: judge.judge_many(requests(30)))
        assert all(v.status == "failed" and v.mark == 0 for v in verdicts)
        c = judge.counters
        assert c["breaker_opens"] == 1 and c["breaker_skips"] >= 26 and c["failures"] == 30
        assert server.requests <= 4  # the attempts in flight when it opened, nothing after


def test_the_rollout_server_client_has_a_deadline_too(tmp_path):
    """GRPO's vllm_server engine: a server that trickles its reply fails each attempt at the
    engine's timeout (then the retries give up) instead of hanging training."""
    from types import SimpleNamespace

    from egoadapt.net import RetriesExhausted
    from egoadapt.rollout.engines import VLLMServerEngine

    tok = SimpleNamespace(convert_tokens_to_ids=lambda t: 7, eos_token_id=2, unk_token_id=0)
    family = SimpleNamespace(stop_token_ids=lambda: [2], vision_token_ids=lambda: [7],  # what the engine asks of it
                             mm_processor_kwargs=lambda: {}, chat_template_kwargs={})
    with FaultServer("trickle_headers") as server:
        engine = VLLMServerEngine(SimpleNamespace(tokenizer=tok, processor=None, family=family),
                                  {"max_tokens": 4, "temperature": 0.0},
                                  server.base_url, "policy", tmp_path / "w", timeout=1.0, retries=1, backoff_s=0.01)
        engine._video_block = lambda sid: {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,"}}
        messages = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
        try:
            with pytest.raises(RetriesExhausted, match="ReadTimeout"):
                bounded(lambda: engine._one(messages, "s1"))
        finally:
            engine.close()
    assert server.requests == 2 and engine.counters["retries"] == 1


# --------------------------------------------------------------------------- circuit breaker

def test_a_dead_judge_is_skipped_after_a_few_attempts():
    with make_judge(dead_url(), concurrency=4, retries=3, breaker_failures=3) as judge:
        verdicts = bounded(lambda: judge.judge_many(requests(50)))
    assert all(v.status == "failed" and v.mark == 0 for v in verdicts)
    c = judge.counters
    assert c["failures"] == 50 and c["breaker_opens"] == 1
    assert c["calls"] <= 3 + 4  # the threshold, plus attempts already in flight
    assert c["breaker_skips"] >= 50 - 7


def test_a_judge_answering_500_is_skipped_too():
    with FaultServer("http_500") as server, make_judge(server.base_url, concurrency=2, retries=3,
                                                       breaker_failures=4) as judge:
        verdicts = bounded(lambda: judge.judge_many(requests(40)))
        assert all(v.status == "failed" for v in verdicts)
        assert judge.counters["breaker_opens"] == 1
        assert server.requests <= 4 + 2


def test_breaker_probes_after_the_cooldown_and_resumes():
    with StubJudgeServer(mode="http_500") as stub, make_judge(stub.base_url, concurrency=4, retries=0) as judge:
        now = manual_clock(judge, threshold=2)
        first = judge.judge_many(requests(10, "a"))
        assert all(v.status == "failed" for v in first) and 2 <= stub.requests <= 2 + 3
        seen = stub.requests
        now[0] += 5  # within the cooldown: still skipped, nothing sent
        assert all(v.status == "failed" for v in judge.judge_many(requests(10, "b")))
        assert stub.requests == seen
        stub.mode = "ok"  # the judge comes back
        now[0] += 10  # past the cooldown: one probe, the others wait for its outcome
        again = judge.judge_many(requests(10, "c"))
        assert all(v.status == "ok" for v in again)
        assert judge.counters["breaker_opens"] == 1


def test_breaker_states():
    now = [0.0]
    b = CircuitBreaker(threshold=2, cooldown_s=10, clock=lambda: now[0])
    assert b.allow() and not b.record(False) and b.allow()
    assert b.record(False) and b.is_open and not b.allow()  # opened by the 2nd failure in a row
    now[0] = 10
    assert b.allow() and not b.allow()  # half-open: one probe at a time
    assert b.record(False) and not b.allow() and b.opens == 2  # the probe failed: open again
    now[0] = 20
    assert b.allow()
    b.release()  # a probe that never reached the server lets another one go
    assert b.allow()
    assert not b.record(True) and not b.is_open and b.allow() and b.opens == 0
    never = CircuitBreaker(threshold=0, cooldown_s=10)
    assert not any(never.record(False) for _ in range(100)) and never.allow()


# --------------------------------------------------------------------------- config preflight

GOOD = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}


@pytest.mark.parametrize("override,key", [
    ({"base_url": None}, "base_url"), ({"base_url": "???"}, "base_url"), ({"model": ""}, "model"),
    ({"base_url": "127.0.0.1:8001/v1"}, "base_url"), ({"base_url": "ftp://host/v1"}, "base_url"),
    ({"timeout_s": 0}, "timeout_s"), ({"timeout_s": -1}, "timeout_s"), ({"timeout_s": "abc"}, "timeout_s"),
    ({"timeout_s": float("nan")}, "timeout_s"), ({"connect_timeout_s": 0}, "connect_timeout_s"),
    ({"concurrency": 0}, "concurrency"), ({"concurrency": 1.5}, "concurrency"), ({"retries": -1}, "retries"),
    ({"retries": True}, "retries"), ({"backoff_s": -0.1}, "backoff_s"), ({"max_calls": -5}, "max_calls"),
    ({"max_tokens": 0}, "max_tokens"), ({"top_p": 0}, "top_p"), ({"fallback_mark": 7}, "fallback_mark"),
    ({"breaker_failures": -1}, "breaker_failures"), ({"breaker_cooldown_s": 0}, "breaker_cooldown_s"),
    ({"max_failure_rate": 1.5}, "max_failure_rate"), ({"enabled": "yes"}, "enabled"),
    ({"temprature": 0.1}, "temprature"), ({"api_key": "sk-1"}, "api_key_env"),
])
def test_judge_configs_that_cannot_work_fail_naming_the_key(override, key):
    with pytest.raises(JudgeConfigError, match=key):
        check_judge_config({**GOOD, **override})


def test_judge_openai_as_shipped_fails_on_its_placeholders():
    def compose(*overrides):
        return cli.compose("score", ["judge=openai", "predictions=p", "out=o", *overrides]).judge

    with pytest.raises(JudgeConfigError, match="judge.base_url is required"):  # not "???" as the URL
        check_judge_config(compose())
    with pytest.raises(JudgeConfigError, match="judge.model is required"):
        check_judge_config(compose("judge.base_url=http://127.0.0.1:1/v1"))
    with pytest.raises(JudgeConfigError, match="judge.retries must be >= 0"):
        check_judge_config(compose("judge.base_url=http://127.0.0.1:1/v1", "judge.model=m", "judge.retries=-1"))
    assert check_judge_config(compose("judge.base_url=http://127.0.0.1:1/v1", "judge.model=m")).model == "m"


def test_working_and_absent_judge_configs_pass():
    for name in ("vllm_local", "qwen_max"):
        settings = check_judge_config(cli.compose("score", [f"judge={name}", "predictions=p", "out=o"]).judge)
        assert settings.base_url.startswith(("http://", "https://")) and settings.max_failure_rate == 0.1
    assert check_judge_config(cli.compose("score", ["predictions=p", "out=o"]).judge) is None  # judge=none
    assert check_judge_config({"enabled": False, "base_url": "???"}) is None


def test_yaml_defaults_match_the_settings_defaults():
    """conf/judge/openai.yaml is where defaults live; code that builds JudgeSettings directly
    must get the same ones."""
    import dataclasses

    import yaml

    conf = yaml.safe_load((Path(cli.CONF_DIR) / "judge" / "openai.yaml").read_text())
    defaults = {f.name: f.default for f in dataclasses.fields(JudgeSettings)
                if f.default is not dataclasses.MISSING}
    differ = {k: (conf[k], v) for k, v in defaults.items()
              if k in conf and k not in ("cache_path", "prompt") and conf[k] != v}
    assert not differ


def test_eval_refuses_a_judge_without_url_before_writing(config_only_model, tmp_path, capsys):
    out = tmp_path / "ev"
    rc = cli.main(["eval", f"checkpoint={config_only_model}", "data=synthetic", f"data.root={tmp_path}",
                   f"out={out}", "judge=openai"])
    assert rc == 2 and "judge.base_url" in capsys.readouterr().err
    assert not out.exists()
    # CloseQA only: the judge is never asked, so its config does not matter
    cfg = cli.compose("eval", [f"checkpoint={config_only_model}", f"out={out}", "judge=openai", "qa=close"])
    from egoadapt.eval.run import preflight

    preflight(cfg)


def test_train_grpo_refuses_a_judge_without_url_before_loading(config_only_model, tmp_path, monkeypatch):
    import egoadapt.models.loading as loading

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the judge config was checked")
    monkeypatch.setattr(loading, "load_model", boom)
    monkeypatch.setattr(loading, "load_processor", boom)
    with pytest.raises(SystemExit, match=r"judge\.model"):
        cli.main(["train", "recipe=demo/tiny_grpo", f"out={tmp_path / 'run'}", f"model.path={config_only_model}",
                  f"data.root={tmp_path}", "judge=openai", "judge.base_url=http://127.0.0.1:1/v1"])
    assert not (tmp_path / "run" / "config.yaml").exists()


# --------------------------------------------------------------------------- text UTF-8 refuses

def test_lone_surrogates_do_not_crash_the_judge(tmp_path):
    odd = JudgeRequest("which tool \ud800?", "scissors", "", "the \udcff scissors")
    odd2 = JudgeRequest("which tool \ud801?", "scissors", "", "the \udcff scissors")
    with StubJudgeServer() as stub, make_judge(stub.base_url, cache_path=str(tmp_path / "c.jsonl")) as judge:
        assert judge.key(odd) != judge.key(odd2)  # keys stay distinct (surrogatepass)
        verdicts = judge.judge_many([odd, odd2])
        assert [v.status for v in verdicts] == ["ok", "ok"] and stub.requests == 2
    with make_judge(stub.base_url, cache_path=str(tmp_path / "c.jsonl")) as judge:  # the cache reads back
        assert [v.status for v in judge.judge_many([odd, odd2])] == ["cached", "cached"]
    assert [json.loads(line)["mark"] for line in (tmp_path / "c.jsonl").read_text().splitlines()] == [1, 1]
    assert clean_text("a\ud800b") == "a?b" and clean_text("naïve ✓") == "naïve ✓"


# --------------------------------------------------------------------------- egoadapt score end to end

N = 12


@pytest.fixture
def bed(tmp_path):
    """N real test-bed records with made-up answers, predictions that all need the judge
    (OpenQA "no idea") plus CloseQA, and the score arguments."""
    records = json.loads(TESTBED.read_text())[:N]
    answers, preds = [], []
    for r in records:
        letter = "ABCD"[r["id"] % 4]
        text = r["options"]["ABCD".index(letter)].split(": ", 1)[1]
        answers.append({"id": r["id"], "question_id": f"q{r['id']}", "correct_option_letter": letter,
                        "answer_text": text, "detailed_answer": ""})
        preds.append({"id": r["id"], "output": json.dumps({"prediction": letter})})
        preds.append({"id": r["id"], "qa": "open", "output": json.dumps({"prediction": f"no idea {r['id']}"})})
    preds[-1]["output"] = json.dumps({"prediction": "no idea \ud800"})  # a lone surrogate too
    (tmp_path / "ann.json").write_text(json.dumps(records))
    (tmp_path / "ans.json").write_text(json.dumps(answers))
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    return [f"predictions={tmp_path / 'p.jsonl'}", f"data.annotations={tmp_path / 'ann.json'}",
            f"data.answers={tmp_path / 'ans.json'}"]


def judge_args(url: str, tmp_path: Path) -> list[str]:
    return ["judge=openai", f"judge.base_url={url}", "judge.model=m", f"judge.cache_path={tmp_path / 'c.jsonl'}",
            "judge.timeout_s=1", "judge.connect_timeout_s=1", "judge.backoff_s=0.01", "judge.retries=2",
            "judge.breaker_failures=3", "judge.breaker_cooldown_s=600", "judge.concurrency=2"]


def assert_unmeasured_but_complete(out: Path, err: str):
    assert "judge.max_failure_rate" in err and f"failed on {N} of {N}" in err
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * N  # every prediction scored and written
    assert {r["judge_status"] for r in rows if r["qa"] == "open"} == {"failed"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"]["failed"] == summary["judge"]["asked"] == N
    assert summary["judge"]["unmeasured"] == f"judge failed: {N} of {N}"
    assert summary["open"]["accuracy"] is None and summary["accuracy"] is None
    assert summary["close"]["accuracy"] == 1.0  # CloseQA needs no judge: still measured


@pytest.mark.parametrize("fault", ["dead", "trickle_headers"])
def test_score_with_a_failing_judge_exits_3_and_says_unmeasured(fault, bed, tmp_path, capsys):
    out = tmp_path / "out"
    if fault == "dead":
        rc = bounded(lambda: cli.main(["score", *bed, *judge_args(dead_url(), tmp_path), f"out={out}"]))
    else:
        with FaultServer(fault) as server:
            rc = bounded(lambda: cli.main(["score", *bed, *judge_args(server.base_url, tmp_path), f"out={out}"]))
            assert server.requests <= 3 + 2  # the breaker stopped the calls
    captured = capsys.readouterr()
    assert rc == 3
    assert "n/a (judge failed: 12 of 12)" in captured.out
    assert_unmeasured_but_complete(out, captured.err)


def test_score_under_the_threshold_is_measured(bed, tmp_path):
    out = tmp_path / "out"
    with StubJudgeServer() as stub:
        assert cli.main(["score", *bed, *judge_args(stub.base_url, tmp_path), f"out={out}"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"]["failed"] == 0 and summary["judge"]["unmeasured"] is None
    assert summary["open"]["accuracy"] == 0.0  # measured: the stub marks "no idea" 1 of 5


# --------------------------------------------------------------------------- egoadapt eval end to end

def test_eval_with_a_dead_judge_keeps_everything_but_reports_openqa_unmeasured(tiny_model_dir, synth_dir,
                                                                              tmp_path, capsys):
    import csv

    out = tmp_path / "ev"
    args = ["eval", f"checkpoint={tiny_model_dir}", "data=synthetic", f"data.root={synth_dir}", f"out={out}",
            "generation.max_new_tokens=8", "progress=false", f"cache_dir={tmp_path / 'cache'}",
            "bootstrap.resamples=50", "limit=4", *judge_args(dead_url(), tmp_path)]
    rc = bounded(lambda: cli.main(args), limit_s=600)
    captured = capsys.readouterr()
    assert rc == 3 and "OpenQA accuracy is reported as unmeasured" in captured.err
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8  # 4 questions x (close, open): nothing lost
    res = json.loads((out / "results.json").read_text())
    judge = res["judge"]
    assert judge["failed"] == judge["asked"] > 0 and judge["counters"]["breaker_opens"] == 1
    open_cells = [r for r in res["table"] if r["qa"] in ("open", "all")]
    close_cells = [r for r in res["table"] if r["qa"] == "close"]
    assert open_cells and all(r["accuracy"] is None and r["unmeasured"].startswith("n/a (judge failed")
                              for r in open_cells)
    assert all(r["accuracy"] is not None and not r.get("unmeasured") for r in close_cells)
    assert res["summary"]["open_accuracy"] is None and res["summary"]["close_accuracy"] is not None
    with open(out / "results.csv") as f:
        csv_open = [r for r in csv.DictReader(f) if r["qa"] == "open"]
    assert csv_open and all(r["accuracy"] == "" and "judge failed" in r["unmeasured"] for r in csv_open)
    md = (out / "results.md").read_text()
    assert "**OpenQA accuracy is unmeasured**" in md and "n/a (judge failed:" in md


def test_compare_gives_no_openqa_delta_for_an_unmeasured_run(tmp_path):
    from egoadapt.eval.report import build_results, write_results
    from tests.eval.eval_helpers import rows

    domains, cats = ["d1"] * 4, ["Counting"] * 4
    scored = rows([1, 0, 1, 0], domains, cats) + rows([1, 1, 0, 0], domains, cats, qa="open", first_id=1)
    for name, judge in (("base", {}), ("down", {"unmeasured": "judge failed: 4 of 4"})):
        res = build_results(scored, config={"checkpoint": name, "backend": "hf", "mode": "official"},
                            split={"manifest": None, "hash": "h" * 64, "side": "test"}, judge=judge,
                            n_resamples=50)
        write_results(tmp_path / name, res, scored)
    out = tmp_path / "cmp"
    assert cli.main(["compare", str(tmp_path / "base"), str(tmp_path / "down"), f"out={out}",
                     "bootstrap.resamples=50"]) == 0
    table = json.loads((out / "compare.json").read_text())["table"]
    deltas = {(r["qa"], r["domain"], r["category"], r["stat"]): r["deltas"]["down"]["delta"] for r in table}
    assert deltas[("close", "all", "all", "micro")] == 0.0
    assert deltas[("open", "all", "all", "micro")] is None and deltas[("all", "all", "all", "micro")] is None


# --------------------------------------------------------------------------- GRPO rewards

def test_grpo_rewards_log_judge_failures_and_warn_without_stopping(caplog):
    """A judge outage during GRPO: fallback rewards, judge/* metrics, a loud warning when the
    failure rate goes over the limit and one when it recovers; nothing raises."""
    import logging

    from egoadapt.rewards.registry import build_reward_funcs

    reward = cli.compose("score", ["reward=default", "predictions=p", "out=o"]).reward
    n = 6
    cols = {"answer_letter": ["B"] * n, "answer_text": ["scissors"] * n, "options": [["hook", "scissors"]] * n,
            "qa": ["open"] * n, "category": ["Identification"] * n, "question_type": ["x"] * n,
            "question": ["Which tool?"] * n, "detailed_answer": [""] * n}
    metrics: list[tuple[str, float]] = []

    def call(acc, tag):
        completions = [[{"role": "assistant", "content": json.dumps({"prediction": f"a {tag} {i}"})}]
                       for i in range(n)]
        return acc(prompts=[[]] * n, completions=completions, completion_ids=[[1]] * n, **cols,
                   log_metric=lambda k, v: metrics.append((k, v)))

    caplog.set_level(logging.WARNING)
    with StubJudgeServer(mode="http_500") as stub, make_judge(stub.base_url, retries=0) as judge:
        now = manual_clock(judge, threshold=2)
        (_, acc), _ = build_reward_funcs(reward, judge=judge)
        assert call(acc, "down") == [0.0] * n  # fallback rewards, no exception
        m = dict(metrics)
        assert m["judge/failure_rate"] == 1.0 and m["judge/breaker_opens"] == 1 and m["judge/breaker_skips"] >= 1
        assert any("JUDGE FAILING" in r.getMessage() for r in caplog.records)
        assert any("circuit OPEN" in r.getMessage() for r in caplog.records)
        stub.mode = "ok"
        now[0] += 60  # past the cooldown
        metrics.clear()
        assert len(call(acc, "up")) == n
        assert dict(metrics)["judge/failure_rate"] == 0.0
        assert any("judge recovered" in r.getMessage() for r in caplog.records)


def test_a_generation_the_server_gave_up_on_is_asked_again_not_judged(caplog):
    """A stopping vLLM server answers in-flight requests 200 with their partial text and finish_reason
    "abort": that text is no verdict (it would count as unparsable, or worse, be cached): ask again."""
    with StubJudgeServer(abort_first=2) as stub, make_judge(stub.base_url, concurrency=1, retries=2) as judge:
        verdicts = judge.judge_many(requests(3))
        assert [v.status for v in verdicts] == ["ok"] * 3
        assert judge.counters["unparsable"] == 0 and judge.counters["retries"] == 2
        assert stub.requests == 5
    with StubJudgeServer(abort_first=10) as stub, make_judge(stub.base_url, concurrency=1, retries=1) as judge:
        verdict, = judge.judge_many(requests(1))
        assert verdict.status == "failed" and judge.counters["unparsable"] == 0 and stub.requests == 2
    assert "finish_reason 'abort'" in caplog.text  # the warning says why
