"""The challenge submission: the real 957-row template filled from a predictions file."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from egoadapt.eval.generate import PredictionsLog
from egoadapt.eval.submission import (
    SubmissionError,
    letters_from_predictions,
    predicted_letter,
    write_submission,
)

TEMPLATE = Path(os.environ.get("EGOCROSS_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "egocross")) / "submission_template.json"


def output_for(i: int) -> tuple[str, str]:
    """(raw model output, the letter the submission must hold) for question id i."""
    letter = "ABCD"[i % 4]
    kind = i % 7
    if kind == 0:
        return "no idea", ""
    if kind == 1:
        return json.dumps({"prediction": "E", "reason": "not an option"}), ""
    if kind == 2:
        return json.dumps({"prediction": letter.lower(), "reason": "lower case"}), letter
    if kind == 3:
        return f'Sure! {{"prediction": "{letter}", "reason": "json after text"}} thanks', letter
    if kind == 4:
        return json.dumps({"prediction": f"{letter}, {'ABCD'[(i + 1) % 4]}", "reason": "two"}), ""
    return json.dumps({"prediction": letter, "reason": "plain"}), letter


def test_submission_matches_the_template(tmp_path):
    template = json.loads(TEMPLATE.read_text())
    assert len(template) == 957
    skipped = {5, 500, 957}  # no CloseQA prediction for these: their answer stays empty
    expected, lines = {}, []
    for row in reversed(template):  # predictions in another order than the template's
        i = row["id"]
        out, want = output_for(i)
        expected[i] = "" if i in skipped else want
        if i not in skipped:
            lines.append({"id": str(i), "qa": "close", "output": out})
        lines.append({"id": str(i), "qa": "open", "output": json.dumps({"prediction": "A", "reason": "open"})})
    lines.append({"id": "99999", "qa": "close", "output": '{"prediction": "A"}'})  # not a template id
    log = PredictionsLog(tmp_path / "predictions.jsonl")
    log.append(lines)
    records = list(log.load().values())

    out = tmp_path / "sub" / "submission.json"
    report = write_submission(TEMPLATE, letters_from_predictions(records), out)
    sub = json.loads(out.read_text())
    assert len(sub) == 957
    assert [r["id"] for r in sub] == [r["id"] for r in template]
    assert [r["question_id"] for r in sub] == [r["question_id"] for r in template]
    assert [r["dataset"] for r in sub] == [r["dataset"] for r in template]
    assert all(set(r) == set(t) for r, t in zip(sub, template))
    assert {r["id"]: r["answer"] for r in sub} == expected
    assert report.rows == 957 and report.no_prediction == 3 and report.unknown_ids == 1
    assert report.answered == sum(bool(v) for v in expected.values())
    assert report.invalid == 957 - 3 - report.answered
    assert json.loads(TEMPLATE.read_text()) == template  # the template itself is untouched


def test_predicted_letter_rules():
    assert predicted_letter('{"prediction": "b", "reason": "x"}') == "B"
    assert predicted_letter('{"prediction": " C "}') == "C"
    assert predicted_letter('{"prediction": "D"}', n_options=3) == ""
    assert predicted_letter('{"prediction": 2}') == ""
    assert predicted_letter('{"prediction": "B: hook"}') == ""
    assert predicted_letter("B") == ""  # the official reader needs the JSON object


def test_bad_template(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('[{"id": 1}, {"id": 1}]')
    with pytest.raises(SubmissionError, match="duplicate id"):
        write_submission(bad, {}, tmp_path / "o.json")
    bad.write_text('{"id": 1}')
    with pytest.raises(SubmissionError, match="JSON list"):
        write_submission(bad, {}, tmp_path / "o.json")
    with pytest.raises(SubmissionError, match="not found"):
        write_submission(tmp_path / "missing.json", {}, tmp_path / "o.json")


def test_eval_command_writes_the_real_submission(tiny_model_dir, tmp_path, capsys):
    """`egoadapt eval ... submission.*` on the real test bed (no answers, no frames): every
    prediction is already in out/predictions.jsonl, so nothing is generated; nothing can be
    scored; the submission is written in template order."""
    from egoadapt import cli

    testbed = TEMPLATE.parent / "egocross_testbed_imgs.json"
    records = json.loads(testbed.read_text())
    out, sub = tmp_path / "ev", tmp_path / "submission.json"
    log = PredictionsLog(out / "predictions.jsonl")
    log.append({"id": str(r["id"]), "qa": "close", "output": output_for(r["id"])[0]} for r in records)
    rc = cli.main(["eval", f"checkpoint={tiny_model_dir}", f"data.annotations={testbed}", f"out={out}", "qa=close",
                   f"submission.template={TEMPLATE}", f"submission.out={sub}", "progress=false"])
    assert rc == 0
    assert "Nothing scored" in capsys.readouterr().out
    rows = json.loads(sub.read_text())
    template = json.loads(TEMPLATE.read_text())
    assert [(r["id"], r["question_id"]) for r in rows] == [(r["id"], r["question_id"]) for r in template]
    assert [r["answer"] for r in rows] == [output_for(r["id"])[1] for r in template]
    res = json.loads((out / "results.json").read_text())
    assert res["counts"]["unscored"] == 957 and res["counts"]["scored"] == 0
    assert res["submission"]["rows"] == 957 and res["submission"]["no_prediction"] == 0
