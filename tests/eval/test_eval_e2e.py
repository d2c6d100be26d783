"""`egoadapt eval` end to end on the tiny model and a synthetic set: split manifest, both QA
types, scoring, results files, submission; vLLM and a real SIGKILL as integration tests."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egoadapt import cli
from egoadapt.eval import generate
from egoadapt.eval.report import find_row
from egoadapt.eval.submission import predicted_letter


def eval_args(model, data, out, *extra):
    return ["eval", f"checkpoint={model}", "data=synthetic", f"data.root={data}", f"out={out}",
            "generation.max_new_tokens=8", "progress=false", f"cache_dir={out.parent / 'cache'}",
            "bootstrap.resamples=200", *extra]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def manifest(synth_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "split.json"
    assert cli.main(["data", "split", "data=synthetic", f"data.root={synth_dir}", f"out={path}"]) == 0
    return path


def test_eval_end_to_end_hf(tiny_model_dir, synth_dir, manifest, tmp_path, capsys):
    answers = {str(a["id"]): a for a in json.loads((synth_dir / "answers.json").read_text())}
    template = tmp_path / "template.json"
    template.write_text(json.dumps([{"id": int(i), "question_id": a["question_id"], "dataset": "synth", "answer": ""}
                                    for i, a in answers.items()]))
    test_ids = [str(i) for i in json.loads(manifest.read_text())["test"]]
    out, sub = tmp_path / "ev", tmp_path / "submission.json"
    args = eval_args(tiny_model_dir, synth_dir, out, f"split.manifest={manifest}", "backend=hf", "batch_size=8",
                     f"submission.template={template}", f"submission.out={sub}")
    assert cli.main(args) == 0
    assert "| overall (micro) |" in capsys.readouterr().out

    preds = jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in preds if p["qa"] == "close"] == test_ids  # the test side, in manifest order
    assert [p["id"] for p in preds if p["qa"] == "open"] == test_ids
    assert all(0 < p["completion_tokens"] <= 8 and p["backend"] == "hf" for p in preds)
    res = json.loads((out / "results.json").read_text())
    assert res["split"]["hash"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert res["split"]["side"] == "test" and res["split"]["protocol"] == "paper_70_30"
    assert res["config"]["backend"] == "hf" and res["config"]["mode"] == "official"
    assert res["config"]["checkpoint"] == str(Path(tiny_model_dir).resolve())
    assert res["counts"] == {"samples": len(test_ids), "items": 2 * len(test_ids), "predictions": 2 * len(test_ids),
                             "scored": 2 * len(test_ids), "unscored": 0, "close": len(test_ids),
                             "open": len(test_ids)}
    domains = {r["domain"] for r in res["table"]} - {"all"}
    assert domains == {"surgery", "industry", "extreme_sports", "animal"}
    assert {"results.csv", "results.md", "scores.jsonl", "eval_config.yaml"} <= {p.name for p in out.iterdir()}
    # the submission: template order, letters exactly as read from the CloseQA outputs, "" off the test side
    rows = json.loads(sub.read_text())
    assert [str(r["id"]) for r in rows] == list(answers)
    want = {p["id"]: predicted_letter(p["output"]) for p in preds if p["qa"] == "close"}
    assert {str(r["id"]): r["answer"] for r in rows} == {i: want.get(i, "") for i in answers}
    assert res["submission"]["no_prediction"] == len(answers) - len(test_ids)

    # rescoring from the file: plant known answers, rerun (nothing left to generate), check the counts
    planted = []
    for p in preds:
        a, k = answers[p["id"]], int(p["id"])
        if p["qa"] == "close":
            letter = a["correct_option_letter"] if k % 2 == 0 else "ABCD"[("ABCD".index(a["correct_option_letter"]) + 1) % 4]
            p["output"] = json.dumps({"prediction": letter, "reason": "r"})
        else:
            p["output"] = json.dumps({"prediction": a["answer_text"] if k % 3 == 0 else "", "reason": "r"})
        planted.append(p)
    (out / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in planted))
    assert cli.main(args) == 0
    res = json.loads((out / "results.json").read_text())
    want_close = sum(int(i) % 2 == 0 for i in test_ids) / len(test_ids)
    want_open = sum(int(i) % 3 == 0 for i in test_ids) / len(test_ids)
    assert res["summary"]["close_accuracy"] == pytest.approx(want_close)
    assert res["summary"]["open_accuracy"] == pytest.approx(want_open)
    assert res["summary"]["close_format_violation_rate"] == 0.0
    surgery = [i for i in test_ids if answers[i]["question_id"].startswith("SynthSurgery")]
    assert find_row(res["table"], ("close", "surgery", "all", "micro"))["accuracy"] == pytest.approx(
        sum(int(i) % 2 == 0 for i in surgery) / len(surgery))
    # the same numbers as `egoadapt score` on the same file (one scoring core)
    assert cli.main(["score", f"predictions={out / 'predictions.jsonl'}", "data=synthetic", f"data.root={synth_dir}",
                     f"out={tmp_path / 'score'}"]) == 0
    summary = json.loads((tmp_path / "score" / "summary.json").read_text())
    assert summary["close"]["accuracy"] == pytest.approx(want_close)
    assert summary["accuracy"] == pytest.approx(res["summary"]["accuracy"])


def test_batched_generation_equals_one_at_a_time(tiny_model_dir, synth_dir, tmp_path):
    """Left padding in a batch must not change greedy outputs."""
    outs = {}
    for bs in (1, 4):
        out = tmp_path / f"bs{bs}"
        assert cli.main(eval_args(tiny_model_dir, synth_dir, out, "backend=hf", f"batch_size={bs}", "limit=4",
                                  "qa=close", "generation.max_new_tokens=12")) == 0
        outs[bs] = [p["output"] for p in jsonl(out / "predictions.jsonl")]
    assert len(outs[1]) == 4 and outs[1] == outs[4]


@pytest.mark.integration
def test_eval_end_to_end_vllm(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "ev"
    assert cli.main(eval_args(tiny_model_dir, synth_dir, out, "backend=vllm", "batch_size=4", "limit=4",
                              "qa=both")) == 0
    preds = jsonl(out / "predictions.jsonl")
    assert [(p["id"], p["qa"]) for p in preds] == [(str(i), q) for q in ("close", "open") for i in range(1, 5)]
    assert all(p["backend"] == "vllm" and 0 < p["completion_tokens"] <= 8 for p in preds)
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["backend"] == "vllm" and res["counts"]["scored"] == 8


@pytest.mark.integration
def test_eval_resumes_after_sigkill(tiny_model_dir, synth_dir, tmp_path, monkeypatch):
    out = tmp_path / "ev"
    args = eval_args(tiny_model_dir, synth_dir, out, "backend=hf", "batch_size=1", "limit=12", "qa=close")
    proc = subprocess.Popen([sys.executable, "-m", "egoadapt.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    preds = out / "predictions.jsonl"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            if preds.exists() and preds.read_bytes().count(b"\n") >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = preds.read_bytes()
    before = before[: before.rfind(b"\n") + 1]  # complete lines; a torn last one is regenerated
    done = {json.loads(x)["id"] for x in before.splitlines()}
    assert 3 <= len(done) < 12, "the run finished before it could be killed"
    asked = []
    real = generate.HFBackend.generate
    monkeypatch.setattr(generate.HFBackend, "generate", lambda self, items: asked.extend(items) or real(self, items))
    assert cli.main(args) == 0
    assert {i.id for i in asked} == {str(k) for k in range(1, 13)} - done
    lines = jsonl(preds)
    assert len(lines) == len({p["id"] for p in lines}) == 12
    assert preds.read_bytes().startswith(before)  # finished lines kept byte for byte
