"""`egoadapt score` end to end on the real EgoCross test-bed file (answers made up here),
through `egoadapt.cli.main`, with and without a judge."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from egoadapt import cli
from tests.rewards.judge_stub_server import StubJudgeServer

TESTBED = Path(os.environ.get("EGOCROSS_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "egocross")) / "egocross_testbed_imgs.json"
SCORE_ROW = ("egoadapt.eval.score:main", "score", "score a predictions JSONL (official or training rules)")
REQUIRED = {"id", "qa", "prediction", "format_ok", "correct", "reward", "domain", "category", "mark"}
N = 40



@pytest.fixture(autouse=True)
def score_command(monkeypatch):
    """Until cli.COMMANDS has the row, add it for the test."""
    if ("score",) not in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, ("score",), SCORE_ROW)


@pytest.fixture
def bed(tmp_path):
    """The first N real test-bed records, answers (letter = ABCD by id), and their paths."""
    records = json.loads(TESTBED.read_text())[:N]
    answers = []
    for r in records:
        letter = "ABCD"[r["id"] % 4]
        text = r["options"]["ABCD".index(letter)].split(": ", 1)[1]
        answers.append({"id": r["id"], "question_id": f"{r['dataset']}_VID{r['id'] % 3}_q{r['id']}_x",
                        "correct_option_letter": letter, "answer_text": text,
                        "detailed_answer": f"The answer is {text}."})
    ann, ans = tmp_path / "testbed.json", tmp_path / "answers.json"
    ann.write_text(json.dumps(records))
    ans.write_text(json.dumps(answers))
    return {"records": records, "answers": {a["id"]: a for a in answers}, "ann": ann, "ans": ans}


def write_preds(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run(*args: str) -> int:
    return cli.main(["score", *args])


def standard_preds(bed) -> list[dict]:
    """CloseQA right unless id % 3 == 0; OpenQA exact unless id % 2 == 0 ("no idea")."""
    preds = []
    for rid, a in bed["answers"].items():
        wrong = "ABCD"[(rid + 1) % 4]
        preds.append({"id": rid, "output": json.dumps({"prediction": wrong if rid % 3 == 0 else
                                                       a["correct_option_letter"], "reason": "r"})})
        preds.append({"id": rid, "qa": "open", "output": json.dumps({"prediction": "no idea" if rid % 2 == 0 else
                                                                     a["answer_text"], "reason": "r"})})
    return preds


def test_official_scores_and_summary(bed, tmp_path, capsys):
    preds = write_preds(tmp_path / "preds.jsonl", standard_preds(bed))
    out = tmp_path / "out"
    rc = run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}", f"out={out}")
    assert rc == 0
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * N and all(REQUIRED <= set(r) for r in rows)
    ids = list(bed["answers"])
    want_close = sum(rid % 3 != 0 for rid in ids)
    want_open = sum(rid % 2 != 0 for rid in ids)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["close"]["correct"] == want_close and summary["open"]["correct"] == want_open
    assert summary["accuracy"] == pytest.approx((want_close + want_open) / (2 * N))
    assert summary["counts"] == {"close": N, "open": N, "samples_without_prediction": 0}
    assert summary["format_violation_rate"] == 0.0
    assert summary["judge"]["unjudged"] == N - want_open  # "no idea" needs a judge; none configured
    assert set(summary["close"]["by_domain"]) == {r["domain"] for r in rows}
    assert sum(v["n"] for v in summary["close"]["by_category"].values()) == N
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert "closeQA" in capsys.readouterr().out
    assert "api_key_env: EGOADAPT_JUDGE_API_KEY" not in (out / "score_config.yaml").read_text()  # judge: none


def test_training_mode_refuses_listing_candidates(bed, tmp_path):
    rid = next(iter(bed["answers"]))
    rec = next(r for r in bed["records"] if r["id"] == rid)
    all_options = ", ".join(o.split(": ", 1)[1] for o in rec["options"])
    preds = write_preds(tmp_path / "p.jsonl", [{"id": rid, "qa": "open",
                                                "output": json.dumps({"prediction": all_options})}])
    results = {}
    for mode in ("official", "training"):
        out = tmp_path / mode
        assert run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
                   f"out={out}", f"mode={mode}") == 0
        results[mode] = json.loads((out / "scores.jsonl").read_text())
    assert results["official"]["correct"] is True and results["official"]["mark"] == 5.0
    assert results["training"]["correct"] is False and results["training"]["issue"] == "hedge"


@pytest.mark.parametrize("line,message", [
    ('{"id": 1, "output": "B"', "invalid JSON"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"output": "B"}', "missing field 'id'"),
    ('{"id": 1}', "missing field 'output'"),
    ('{"id": 1, "output": 3}', "field 'output' must be a string"),
    ('{"id": 1, "output": "B", "qa": "multiple"}', "field 'qa' must be 'close' or 'open'"),
    ('{"id": 99999, "output": "B"}', "field 'id': '99999' is not in the annotations"),
    ('{"id": 2, "output": "A"}', "duplicate prediction"),
])
def test_bad_prediction_lines_are_named_counted_and_skipped(bed, tmp_path, capsys, line, message):
    """One bad line never costs the run: it is named (file, line, field), counted, and the rest scored."""
    preds = write_preds(tmp_path / "bad.jsonl", ['{"id": 2, "output": "B"}', "", line])
    out = tmp_path / "out"
    rc = run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}", f"out={out}")
    err = capsys.readouterr().err
    assert rc == 0
    assert f"{preds}:3" in err and message in err, err
    rows = (out / "scores.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in rows] == ["2"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bad_lines"]["count"] == 1 and message in summary["bad_lines"]["first"][0]


def test_nothing_scorable_is_an_error(bed, tmp_path, capsys):
    preds = write_preds(tmp_path / "bad.jsonl", ['{"id": 99999, "output": "B"}', "not json"])
    rc = run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
             f"out={tmp_path / 'out'}")
    assert rc == 2 and "no prediction could be scored" in capsys.readouterr().err
    assert not (tmp_path / "out" / "scores.jsonl").exists()


@pytest.mark.parametrize("mode", ["official", "training"])
def test_any_model_text_is_scored_and_written(bed, tmp_path, mode):
    """Lone surrogates, NULs, a 1 MB output and bytes that are not UTF-8: scored, written as valid
    UTF-8 JSON (surrogates as U+FFFD), never fatal."""
    rid = next(iter(bed["answers"]))
    letter = bed["answers"][rid]["correct_option_letter"]
    rows = [{"id": rid, "output": json.dumps({"prediction": letter + "\ud800"})},  # a lone surrogate escape
            {"id": rid, "qa": "open", "output": "\ud800\x00" + "x" * 1_000_000},
            {"id": 2, "output": json.dumps({"prediction": "\x00"})}]
    preds = tmp_path / "odd.jsonl"
    preds.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in rows)
                      + b'{"id": 3, "output": "caf\xe9 \xff"}\n')  # not UTF-8
    out = tmp_path / "out"
    assert run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
               f"out={out}", f"mode={mode}") == 0
    raw = (out / "scores.jsonl").read_bytes()
    raw.decode("utf-8")  # strict: no lone surrogate reached the file
    scored = [json.loads(line) for line in raw.splitlines()]
    assert [r["id"] for r in scored] == [str(rid), str(rid), "2", "3"]
    assert not any(r["correct"] for r in scored)
    json.loads((out / "summary.json").read_text(encoding="utf-8"))


def test_missing_answers_and_files_are_clear_errors(bed, tmp_path, capsys):
    preds = write_preds(tmp_path / "p.jsonl", [{"id": 1, "output": "B"}])
    assert run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"out={tmp_path / 'o'}") == 2
    assert "data.answers" in capsys.readouterr().err
    assert run(f"predictions={tmp_path / 'nope.jsonl'}", f"data.annotations={bed['ann']}", f"out={tmp_path}") == 2
    assert "predictions file not found" in capsys.readouterr().err
    assert run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"out={tmp_path}", "mode=lenient") == 2
    assert "mode must be one of" in capsys.readouterr().err


def test_rescoring_replaces_outputs_atomically(bed, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("stale " * 10_000)
    preds = write_preds(tmp_path / "p.jsonl", standard_preds(bed)[:4])
    assert run(f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
               f"out={out}") == 0
    assert json.loads((out / "summary.json").read_text())["n"] == 4
    assert sorted(p.name for p in out.iterdir()) == ["score_config.yaml", "scores.jsonl", "summary.json"]


def judge_args(url: str, cache: Path, model: str = "stub") -> list[str]:
    return ["judge=openai", f"judge.base_url={url}", f"judge.model={model}", f"judge.cache_path={cache}",
            "judge.backoff_s=0.01", "judge.retries=1", "judge.timeout_s=30"]


def test_judge_marks_and_cache_on_rescore(bed, tmp_path):
    preds = write_preds(tmp_path / "p.jsonl", standard_preds(bed))
    questions = {r["id"]: r["question_text"] for r in bed["records"]}
    # the "no idea" answers; identical (question, reference, prediction) triples share one call
    n_judged = len({(questions[rid], a["answer_text"]) for rid, a in bed["answers"].items() if rid % 2 == 0})
    cache = tmp_path / "cache" / "verdicts.jsonl"
    with StubJudgeServer() as stub:
        base = [f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
                *judge_args(stub.base_url, cache)]
        assert run(*base, f"out={tmp_path / 'first'}") == 0
        assert stub.requests == n_judged
        assert run(*base, f"out={tmp_path / 'second'}") == 0
        assert stub.requests == n_judged  # zero new calls
    first = json.loads((tmp_path / "first/summary.json").read_text())
    second = json.loads((tmp_path / "second/summary.json").read_text())
    assert first["judge"]["counters"]["calls"] == n_judged and first["judge"]["unjudged"] == 0
    assert second["judge"]["counters"]["calls"] == 0 and second["judge"]["counters"]["cache_hits"] >= n_judged
    assert first["accuracy"] == second["accuracy"]
    judged = [json.loads(line) for line in (tmp_path / "first/scores.jsonl").read_text().splitlines()
              if json.loads(line)["judge_status"]]
    assert {(r["mark"], r["reward"], r["correct"]) for r in judged} == {(1.0, 0.2, False)}


def _scan_for(secret: bytes, *folders: Path) -> list[str]:
    hits = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and secret in path.read_bytes():
                hits.append(str(path))
    return hits


def test_api_key_never_reaches_files_or_logs(bed, tmp_path, monkeypatch, caplog, capsys):
    secret = "sk-egoadapt-test-5f2e9c1d7b"
    monkeypatch.setenv("EGOADAPT_JUDGE_API_KEY", secret)
    preds = write_preds(tmp_path / "p.jsonl", standard_preds(bed))
    cache = tmp_path / "cache" / "verdicts.jsonl"
    caplog.set_level(logging.DEBUG)
    with StubJudgeServer() as stub:
        base = [f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}",
                *judge_args(stub.base_url, cache)]
        assert run(*base, f"out={tmp_path / 'ok'}") == 0
        stub.mode = "http_401_echo"  # the server echoes the key in its error body
        # every judgment fails (401): the files are written and the exit status says so
        assert run(*base[:-4], f"judge.cache_path={tmp_path / 'cache' / 'other.jsonl'}", "judge.backoff_s=0.01",
                   "judge.retries=1", f"out={tmp_path / 'rejected'}") == 3
        assert stub.auth_headers and all(h == f"Bearer {secret}" for h in stub.auth_headers)  # it was sent
    rejected = json.loads((tmp_path / "rejected/summary.json").read_text())
    assert rejected["judge"]["counters"]["failures"] > 0  # the 401s were seen, counted, and logged
    assert any("HTTP 401" in r.getMessage() for r in caplog.records)
    assert cache.exists() and (tmp_path / "ok/score_config.yaml").read_text().count("EGOADAPT_JUDGE_API_KEY") == 1
    assert _scan_for(secret.encode(), tmp_path) == []
    logs = "\n".join(r.getMessage() for r in caplog.records)
    captured = capsys.readouterr()
    assert secret not in logs + captured.out + captured.err


@pytest.mark.server
def test_score_with_a_real_vllm_judge(bed, tmp_path, monkeypatch, vllm_server):
    secret = "sk-egoadapt-vllm-0d9a3e"
    monkeypatch.setenv("EGOADAPT_JUDGE_API_KEY", secret)
    preds = write_preds(tmp_path / "p.jsonl", standard_preds(bed))
    out = tmp_path / "out"
    args = [f"predictions={preds}", f"data.annotations={bed['ann']}", f"data.answers={bed['ans']}", f"out={out}",
            *judge_args(vllm_server.base_url, tmp_path / "cache.jsonl", vllm_server.served_model_name),
            "judge.max_tokens=32", "mode=training"]
    rc = run(*args)
    rows = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    judged = [r for r in rows if r["judge_status"]]
    assert len(rows) == 2 * N and judged
    assert all(r["judge_status"] in ("ok", "unparsable", "failed") for r in judged)  # scored or counted
    summary = json.loads((out / "summary.json").read_text())
    # the random model's verdicts are mostly unparsable: over judge.max_failure_rate, rc 3
    assert rc == (3 if summary["judge"]["unmeasured"] else 0)
    c = summary["judge"]["counters"]
    questions = {str(r["id"]): r["question_text"] for r in bed["records"]}
    unique_requests = {(questions[r["id"]], r["answer"], r["prediction"]) for r in judged}
    assert c["judged"] + c["unparsable"] + c["failures"] == len(unique_requests)
    assert _scan_for(secret.encode(), tmp_path) == []
