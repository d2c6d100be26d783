"""The released answers file, `egocross_testbed_answers.json`, alone as `data.annotations` (the
official scripts read it alone) and with `data.answers` as before.

The real file is gated, so the fixture here is built in its documented layout: the 957 real
test-bed records (tests/fixtures/egocross) each with the four fields the release adds,
`question_id` (the real one, from the submission template), `correct_option_letter`,
`answer_text` and `detailed_answer` (EgoCross-Benchmark/EgoCrossCodes README, "Answers & Offline
Evaluation": the same 957 questions matched 1:1 by id, plus those fields). The answers are made
up; counts are written as JSON numbers, as the official open-set scorer allows
(`isinstance(standard_answer, int)`, MyUniverse0726/EgoCross eval_gpt_openset.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from egoadapt.data.errors import DataError
from egoadapt.data.load import load_samples, load_with_report
from tests.data.egodata_helpers import FPS, TEMPLATE, TESTBED, need_real, write_json

LETTERS = "ABCD"


def letter_of(rid: int) -> str:
    return LETTERS[(rid * 7) % 4]


def released_records(n: int | None = None) -> list[dict]:
    """Records of egocross_testbed_answers.json: a test-bed record plus the release's four fields."""
    need_real()
    qids = {r["id"]: r["question_id"] for r in json.loads(TEMPLATE.read_text())}
    out = []
    for r in json.loads(TESTBED.read_text())[:n]:
        letter = letter_of(r["id"])
        text = r["options"][LETTERS.index(letter)].split(": ", 1)[1]
        answer = int(text) if r["primary_category"] == "Counting" and text.isdigit() else text
        out.append({**r, "question_id": qids[r["id"]], "correct_option_letter": letter, "answer_text": answer,
                    "detailed_answer": f"The answer is {text}, as the clip shows."})
    return out


@pytest.fixture(scope="module")
def answers_file(tmp_path_factory) -> Path:
    return write_json(tmp_path_factory.mktemp("release") / "egocross_testbed_answers.json", released_records())


def cfg(annotations, **kw) -> dict:
    return {"format": "egocross", "annotations": str(annotations), "fps": dict(FPS), **kw}


def plain(samples) -> list[dict]:
    return [{k: v for k, v in s.to_dict().items() if k != "meta"} for s in samples]


def clear(e: DataError, *parts: str) -> None:
    msg = str(e)
    for p in parts:
        assert p in msg, (p, msg)
    assert "Traceback" not in msg and len(msg) < 800


def test_the_answers_file_alone_carries_questions_and_answers(answers_file):
    samples, report = load_with_report(cfg(answers_file))
    assert report.problems == [] and len(samples) == 957
    records = {str(r["id"]): r for r in json.loads(answers_file.read_text())}
    numbers = 0
    for s in samples:
        r = records[s.id]
        assert s.answer_letter == r["correct_option_letter"] == letter_of(int(s.id))
        assert s.answer_text == r["answer_text"] and type(s.answer_text) is type(r["answer_text"])  # 3 stays 3
        assert s.detailed_answer == r["detailed_answer"] and s.question_id == r["question_id"]
        assert s.group == f"{s.dataset}/{s.question_id.split('_')[1]}"
        numbers += isinstance(r["answer_text"], int)
    assert numbers > 50  # the fixture does exercise numeric answers
    # what it loads equals the questions file joined with the same answers, and the template's question_ids
    joined = load_samples(cfg(TESTBED, answers=str(answers_file)))
    assert plain(joined) == plain(samples)
    bare = load_samples(cfg(TESTBED, answers=str(TEMPLATE)))
    assert [(s.id, s.group, s.question_id) for s in bare] == [(s.id, s.group, s.question_id) for s in samples]


def test_the_answers_file_also_works_as_data_answers(answers_file):
    both, report = load_with_report(cfg(answers_file, answers=str(answers_file)))
    assert report.problems == []
    assert plain(both) == plain(load_samples(cfg(answers_file)))


def test_split_and_score_from_the_answers_file_alone(answers_file, tmp_path, capsys):
    from egoadapt.cli import main

    alone, joined = tmp_path / "alone.json", tmp_path / "joined.json"
    assert main(["data", "split", f"data.annotations={answers_file}", f"out={alone}"]) == 0
    assert main(["data", "split", f"data.annotations={TESTBED}", f"data.answers={answers_file}",
                 f"out={joined}"]) == 0
    a, b = json.loads(alone.read_text()), json.loads(joined.read_text())
    assert (a["train"], a["test"]) == (b["train"], b["test"]) and len(a["test"]) > 250
    # scoring needs nothing else: letters for CloseQA, numeric answer_text for OpenQA's substring rule
    records = released_records(40)
    preds = []
    for r in records:
        preds.append({"id": r["id"], "output": json.dumps({"prediction": r["correct_option_letter"]})})
        preds.append({"id": r["id"], "qa": "open", "output": json.dumps({"prediction": f"it is {r['answer_text']}"})})
    pfile = tmp_path / "preds.jsonl"
    pfile.write_text("".join(json.dumps(p) + "\n" for p in preds))
    capsys.readouterr()
    assert main(["score", f"predictions={pfile}", f"data.annotations={answers_file}", f"out={tmp_path / 's'}"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s" / "scores.jsonl").read_text().splitlines()]
    assert len(rows) == 80 and all(r["correct"] for r in rows)


def test_validate_counts_the_answers(answers_file, capsys):
    from egoadapt.cli import main

    assert main(["data", "validate", f"data.annotations={answers_file}"]) == 1  # no data.root: frames missing
    out = capsys.readouterr().out
    assert "with answers: 957 of 957; with question_id: 957; source videos: 132" in out
    assert "957 problems (missing_frames: 957)" in out


def test_a_record_without_its_answer_names_file_record_and_field(tmp_path):
    records = released_records(3)
    del records[1]["correct_option_letter"]
    path = write_json(tmp_path / "egocross_testbed_answers.json", records)
    with pytest.raises(DataError) as e:
        load_samples(cfg(path))
    clear(e.value, "egocross_testbed_answers.json: record 2: field 'correct_option_letter': missing",
          "2 of the 3 records of this file have one")
    samples, report = load_with_report(cfg(path, on_error="skip"))
    assert [s.id for s in samples] == ["1", "3"] and report.skipped == 1
    assert [(p.record, p.field, p.kind) for p in report.problems] == [("2", "correct_option_letter",
                                                                        "missing_field")]
    # the letter may come from data.answers instead
    extra = write_json(tmp_path / "more.json", [{"id": 2, "correct_option_letter": letter_of(2)}])
    samples, report = load_with_report(cfg(path, answers=str(extra)))
    assert [s.answer_letter for s in samples] == [letter_of(i) for i in (1, 2, 3)]
    assert {p.kind for p in report.problems} == {"missing_answer"}  # more.json covers only record 2
    # missing from both: both files are named
    other = write_json(tmp_path / "other.json", [{"id": 2, "detailed_answer": "x"}])
    with pytest.raises(DataError) as e:
        load_samples(cfg(path, answers=str(other)))
    clear(e.value, f"record 2: field 'correct_option_letter': missing (nor in {other})")


def test_answers_in_both_files_must_agree(tmp_path):
    path = write_json(tmp_path / "egocross_testbed_answers.json", released_records(2))
    wrong = "B" if letter_of(1) != "B" else "C"
    other = write_json(tmp_path / "answers.json", [{"id": 1, "correct_option_letter": wrong},
                                                  {"id": 2, "correct_option_letter": letter_of(2).lower()}])
    with pytest.raises(DataError) as e:
        load_samples(cfg(path, answers=str(other)))
    clear(e.value, "record 1: field 'correct_option_letter'", f"'{letter_of(1)}' in {path}",
          f"'{wrong}' in {other}")
    samples, report = load_with_report(cfg(path, answers=str(other), on_error="skip"))
    assert [s.id for s in samples] == ["2"] and [p.kind for p in report.problems] == ["answer_conflict"]


@pytest.mark.parametrize("field, value, expect", [
    ("correct_option_letter", "E", "is not one of the options ABCD"),
    ("correct_option_letter", 2, "expected an option letter, got 2"),
    ("answer_text", ["4"], "expected str or int or float, got list"),
    ("answer_text", float("nan"), "must be text or a finite number"),
    ("detailed_answer", 5, "expected str, got int"),
    ("question_id", 7, "expected str, got int"),
])
def test_bad_answer_fields_name_file_record_and_field(tmp_path, field, value, expect):
    records = released_records(2)
    records[1][field] = value
    path = tmp_path / "egocross_testbed_answers.json"
    path.write_text(json.dumps(records))  # allow_nan: NaN as the JSON readers accept it
    with pytest.raises(DataError) as e:
        load_samples(cfg(path))
    clear(e.value, f"egocross_testbed_answers.json: record 2: field '{field}'", expect)


def test_grpo_rows_need_their_answers():
    """GRPO rows carry no target text: a row without its answer would be rewarded 0 forever."""
    from egoadapt.train.datasets import build_dataset

    bare = load_samples(cfg(TESTBED, limit=2))
    with pytest.raises(DataError) as e:
        build_dataset(bare, None, qa="close")
    clear(e.value, "egocross_testbed_imgs.json: record 1: field 'correct_option_letter': no answer to reward",
          "egocross_testbed_answers.json as data.annotations")
    with pytest.raises(DataError) as e:
        build_dataset(bare, None, qa="open")
    clear(e.value, "record 1: field 'answer_text'")


def readme_data_commands() -> list[str]:
    """The `egoadapt data ...` lines of the README's Data section."""
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("\n## Data\n"):]
    section = section[:section.index("\n## ", 1)]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line for b in blocks for line in b.splitlines() if line.startswith("egoadapt ")]


def test_the_readme_data_commands_run_on_a_release_shaped_folder(tmp_path, monkeypatch, capsys):
    """Every `egoadapt data` command of the README's Data section, on the fixture laid out as the
    download is (answers file under egocross_testbed/, a frame where each path points); the `eval`
    lines there need a checkpoint and are checked for their file names only."""
    import shlex

    from egoadapt.cli import main
    from tests.data.egodata_helpers import write_frames

    commands = readme_data_commands()
    data = [c for c in commands if c.startswith("egoadapt data ")]
    assert len(data) >= 4 and any("paper_70_30" in c for c in data) and any("protocol=support" in c for c in data)
    assert all("egocross_testbed/egocross_testbed_answers.json" in c for c in commands)
    assert any("submission.template=submission_template.json" in c for c in commands)

    root = tmp_path / "egocross"
    write_json(root / "egocross_testbed" / "egocross_testbed_answers.json", released_records())
    frame = Path(write_frames(tmp_path / "one", 1)[0]).read_bytes()
    for r in json.loads(TESTBED.read_text()):
        for p in r["video_path"]:
            f = root / p.lstrip("/")
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(frame)
    support = []
    for d, domain in enumerate(("surgery", "industry", "extreme_sports", "animal")):
        images = [str(Path(p).relative_to(tmp_path)) for p in write_frames(tmp_path / "support" / f"S{d}", 2)]
        support.append({"messages": [{"role": "user", "content": "<image><image>What is it?\nA: a\nB: b"},
                                     {"role": "assistant", "content": "B"}], "images": images, "domain": domain})
    support_file = write_json(tmp_path / "support.json", support)
    monkeypatch.chdir(tmp_path)
    for line in (c for c in data if "hf://" not in c):  # the Hub's: tests/data/test_hub_data.py, on a cache
        line = line.replace("/data/egocross", str(root)).replace("SUPPORT_FILE", str(support_file))
        assert main(shlex.split(line)[1:]) == 0, (line, capsys.readouterr())
    pilot = json.loads((tmp_path / "split_70_30.json").read_text())
    assert pilot["protocol"] == "paper_70_30" and len(pilot["train"]) + len(pilot["test"]) == 957
    challenge = json.loads((tmp_path / "split_support.json").read_text())
    assert len(challenge["test"]) == 957 and len(challenge["train"]) == 4
    # the exports of the pilot split: every question once (CloseQA), in each layout
    from datasets import load_from_disk

    assert sum(len(side) for side in load_from_disk(str(tmp_path / "exports" / "hf")).values()) == 957
    for layout in ("swift", "lf"):
        assert sum(len((tmp_path / "exports" / layout / f"{side}.jsonl").read_text().splitlines())
                   for side in ("train", "test")) == 957
