"""The results table and files of one evaluation, checked against hand-counted numbers."""
from __future__ import annotations

import csv
import json

import pytest

from egoadapt.eval.report import find_row, read_results
from tests.eval.eval_helpers import rows, write_eval

# CloseQA: surgery 3/4 (Identification 2/2, Counting 1/2), animal 1/2 (Counting 1/2)
CLOSE = rows([1, 1, 1, 0, 1, 0], ["surgery"] * 4 + ["animal"] * 2,
             ["Identification", "Identification", "Counting", "Counting", "Counting", "Counting"],
             format_ok=[True, True, True, False, True, True])
# OpenQA: surgery 0/2, animal 1/1
OPEN = rows([0, 0, 1], ["surgery", "surgery", "animal"], ["Identification", "Counting", "Counting"], qa="open",
            format_ok=[False, False, True])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_eval(tmp_path_factory.mktemp("ev") / "base", CLOSE + OPEN, resamples=300)


def test_table_numbers(folder):
    res = read_results(folder)
    t = res["table"]

    def acc(*key):
        return find_row(t, key)["accuracy"]

    assert acc("close", "all", "all", "micro") == pytest.approx(4 / 6)
    assert acc("close", "all", "all", "macro") == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert acc("close", "surgery", "all", "micro") == pytest.approx(3 / 4)
    assert acc("close", "surgery", "Counting", "micro") == pytest.approx(1 / 2)
    assert acc("close", "all", "Counting", "micro") == pytest.approx(2 / 4)
    assert acc("close", "all", "Counting", "macro") == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert acc("open", "all", "all", "micro") == pytest.approx(1 / 3)
    assert acc("open", "all", "all", "macro") == pytest.approx((0 + 1) / 2)
    assert acc("all", "all", "all", "micro") == pytest.approx(5 / 9)
    assert acc("all", "animal", "all", "micro") == pytest.approx(2 / 3)
    assert find_row(t, ("close", "animal", "Identification", "micro")) is None  # no such questions
    row = find_row(t, ("close", "all", "all", "micro"))
    assert (row["n"], row["correct"]) == (6, 4)
    assert row["format_violation_rate"] == pytest.approx(1 / 6)
    assert find_row(t, ("all", "all", "all", "micro"))["format_violation_rate"] == pytest.approx(3 / 9)
    assert find_row(t, ("close", "all", "all", "macro"))["n_domains"] == 2
    for r in t:
        assert 0 <= r["ci_low"] <= r["accuracy"] + 1e-9 and r["accuracy"] - 1e-9 <= r["ci_high"] <= 1
    assert find_row(t, ("close", "surgery", "Identification", "micro"))["ci_low"] == 1.0  # 2/2: no spread


def test_results_json_schema_and_summary(folder):
    res = read_results(folder)
    assert res["schema"] == "egoadapt.eval.results/1"
    assert set(res) >= {"created", "config", "split", "counts", "summary", "table", "bootstrap", "judge", "timing"}
    assert res["split"]["hash"] == "h" * 64
    s = res["summary"]
    assert s["accuracy"] == pytest.approx(5 / 9) and s["close_accuracy"] == pytest.approx(4 / 6)
    assert s["open_macro_accuracy"] == pytest.approx(0.5) and s["close_n"] == 6
    assert len(s["close_accuracy_ci"]) == 2
    assert res["bootstrap"] == {"resamples": 300, "seed": 0, "confidence": 0.95,
                                "method": "percentile; macro rows resample within domains"}


def test_files_agree_and_are_deterministic(folder, tmp_path):
    res = read_results(folder)
    with open(folder / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == len(res["table"])
    assert [float(r["accuracy"]) for r in table] == pytest.approx([r["accuracy"] for r in res["table"]])
    md = (folder / "results.md").read_text()
    assert "| overall (micro) | 66.7 [" in md and "(n=6)" in md
    assert "## CloseQA: domain x task" in md and "## OpenQA: domain x task" in md
    scores = [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 9
    again = read_results(write_eval(tmp_path / "again", CLOSE + OPEN, resamples=300))
    assert again["table"] == res["table"]  # seeded: the same intervals every time
    assert not list(folder.glob("*.tmp"))  # atomic writes leave nothing behind
