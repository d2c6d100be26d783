"""A numeric `answer_text` (the released answers file may write counts as JSON numbers) loads as the
number it is, from every reader, through a GRPO dataset row, to the scorer; the SFT target and the
prompt see its text."""
from __future__ import annotations

import json

from datasets import Dataset

from egoadapt.data.load import load_samples
from egoadapt.data.prompts import target_text
from egoadapt.rewards.scoring import Target
from egoadapt.train.datasets import reward_columns
from tests.data.egodata_helpers import FPS, TESTBED, need_real, write_json


def test_every_reader_keeps_the_number(tmp_path):
    need_real()
    records = json.loads(TESTBED.read_text())[:4]
    values = [3, 2.5, "3", 0]
    answers = [{"id": r["id"], "correct_option_letter": "A", "answer_text": v} for r, v in zip(records, values)]
    samples = load_samples({"format": "egocross", "annotations": str(write_json(tmp_path / "t.json", records)),
                            "answers": str(write_json(tmp_path / "a.json", answers)), "fps": dict(FPS)})
    assert [s.answer_text for s in samples] == values
    assert [type(s.answer_text) for s in samples] == [int, float, str, int]
    lines = [{"id": "q1", "video": "v.mp4", "question": "How many cups?", "domain": "kitchen", "answer": 3},
             {"id": "q2", "video": "v.mp4", "question": "How long?", "domain": "kitchen", "answer_text": 2.5},
             {"id": "q3", "video": "v.mp4", "question": "Which?", "domain": "kitchen", "answer": "cup"}]
    (tmp_path / "own.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    own = load_samples({"format": "jsonl", "annotations": str(tmp_path / "own.jsonl")})
    assert [s.answer_text for s in own] == [3, 2.5, "cup"] and isinstance(own[0].answer_text, int)


def test_a_dataset_row_carries_the_number_to_the_scorer(tmp_path):
    need_real()
    records = json.loads(TESTBED.read_text())[:3]
    answers = [{"id": r["id"], "correct_option_letter": "A", "answer_text": v} for r, v in zip(records, [3, "hook", 0])]
    samples = load_samples({"format": "egocross", "annotations": str(write_json(tmp_path / "t.json", records)),
                            "answers": str(write_json(tmp_path / "a.json", answers)), "fps": dict(FPS)})
    rows = [reward_columns(s, "open") for s in samples]
    table = Dataset.from_list(rows)  # Arrow refuses a column mixing int and str: the text and the JSON travel apart
    got = [Target.from_row(table[i]).answer_text for i in range(len(rows))]
    assert got == [3, "hook", 0] and type(got[0]) is int
    assert json.loads(target_text(samples[0], "openqa"))["prediction"] == "3"
    assert json.loads(target_text(samples[2], "openqa"))["prediction"] == "0"  # a zero count is an answer
