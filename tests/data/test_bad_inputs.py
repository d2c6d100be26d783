"""Bad inputs give one clear message naming file, record and field (or a counted skip),
never a traceback from deep inside a library."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from egodata_helpers import bed_record, write_frames, write_json, write_mp4

from egoadapt.data.frames import FrameError, load_clip, try_load_clip
from egoadapt.data.load import DataError, load_samples, load_with_report
from egoadapt.data.schema import FrameSource, Sample


def load(tmp_path, records, **kw):
    path = write_json(tmp_path / "ann.json", records)
    return load_samples({"format": "egocross", "annotations": str(path), **kw})


def clear(e: DataError, *parts: str) -> None:
    """A clean, short message with every part in it; the library exception is not chained."""
    msg = str(e)
    for p in parts:
        assert p in msg, (p, msg)
    assert "Traceback" not in msg and len(msg) < 600
    assert e.__cause__ is None and (e.__context__ is None or e.__suppress_context__)


@pytest.mark.parametrize("field", ["question_text", "options", "video_path", "dataset", "primary_category", "id"])
def test_missing_fields(tmp_path, field):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(**{field: ...})])
    clear(e.value, "ann.json", f"field '{field}'", "missing")


@pytest.mark.parametrize("field, value, expect", [
    ("id", [1], "expected int or str, got list"),
    ("options", "A: 4", "expected list, got str"),
    ("original_video_fps", "25", "expected int or float, got str"),
    ("original_video_fps", True, "expected int or float, got bool"),
    ("video_path", "frame.jpg", "expected list, got str"),
    ("question_text", 7, "expected str, got int"),
])
def test_wrong_types(tmp_path, field, value, expect):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(**{field: value})])
    clear(e.value, "ann.json", f"field '{field}'", expect)


@pytest.mark.parametrize("options, field, expect", [
    (["4", "3", "1", "2"], "options[0]", "is not 'LETTER: text'"),
    (["A: 4", "B 3", "C: 1", "D: 2"], "options[1]", "is not 'LETTER: text'"),
    (["B: 4", "A: 3"], "options[0]", "should start with letter A"),
    (["A: 4", "B:"], "options[1]", "has no text"),
    ([], "options", "empty option list"),
    (["A: 1", 2], "options", "expected a list of 'LETTER: text' strings"),
])
def test_options_must_be_lettered(tmp_path, options, field, expect):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(options=options)])
    clear(e.value, "record 1", f"field '{field}'", expect)


def test_duplicate_ids_raise_or_are_skipped(tmp_path):
    recs = [bed_record(), bed_record(question_text="other"), bed_record(id=2)]
    with pytest.raises(DataError) as e:
        load(tmp_path, recs)
    clear(e.value, "record 1", "field 'id'", "duplicate id (first seen at record #0)")
    samples, report = load_with_report({"format": "egocross", "annotations": str(tmp_path / "ann.json"),
                                        "on_error": "skip"})
    assert [s.id for s in samples] == ["1", "2"] and samples[0].question.startswith("How many")
    assert report.skipped == 1 and report.counts()["duplicate_id"] == 1


def test_empty_frame_list_and_bad_paths(tmp_path):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(video_path=[])])
    clear(e.value, "record 1", "field 'video_path'", "empty frame list")
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(video_path=["a.jpg", 3])])
    clear(e.value, "field 'video_path[1]'", "non-empty strings")


def test_unknown_dataset_needs_a_domain(tmp_path):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(dataset="MyKitchen")])
    clear(e.value, "field 'dataset'", "unknown dataset 'MyKitchen'", "data.domains")
    assert load(tmp_path, [bed_record(dataset="MyKitchen", domain="kitchen")])[0].domain == "kitchen"
    assert load(tmp_path, [bed_record(dataset="MyKitchen")], domains={"MyKitchen": "kitchen"})[0].domain == \
        "kitchen"


def test_skip_mode_reports_every_problem_of_every_record(tmp_path):
    recs = [bed_record(id=1, options=["4"], question_text=None), bed_record(id=2),
            bed_record(id=3, video_path=[])]
    samples, report = load_with_report({"format": "egocross", "annotations": str(write_json(tmp_path / "a.json",
                                                                                            recs)),
                                        "on_error": "skip"})
    assert [s.id for s in samples] == ["2"] and report.skipped == 2
    assert sorted((p.record, p.field) for p in report.problems) == [("1", "options[0]"), ("1", "question_text"),
                                                                     ("3", "video_path")]


def test_bad_answers(tmp_path):
    answers = write_json(tmp_path / "ans.json", [{"id": 1, "correct_option_letter": "E"}, {"id": 99,
                                                                                             "answer": "A"}])
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record()], answers=str(answers))
    clear(e.value, "ans.json", "record 1", "correct_option_letter", "not one of the options ABCD")
    answers = write_json(tmp_path / "ans.json", [{"id": 1, "correct_option_letter": "B", "answer_text": "4"},
                                                 {"id": 99, "answer": "A"}])
    samples, report = load_with_report({"format": "egocross", "answers": str(answers),
                                        "annotations": str(write_json(tmp_path / "a.json", [bed_record()]))})
    assert samples[0].answer_letter == "B"  # loads; the mismatch and the orphan are reported
    assert Counter(p.kind for p in report.problems) == {"answer_mismatch": 1, "orphan_answer": 1}


def test_unreadable_files(tmp_path):
    (tmp_path / "bad.json").write_text('[{"id": 1,}]')
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(tmp_path / "bad.json")})
    clear(e.value, "bad.json", "invalid JSON at line 1 column")
    (tmp_path / "obj.json").write_text('{"id": 1}')
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(tmp_path / "obj.json")})
    clear(e.value, "obj.json", "expected a JSON list")
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(tmp_path / "none.json")})
    clear(e.value, "none.json", "not found")
    with pytest.raises(DataError) as e:
        load_samples({"format": "xml", "annotations": "x"})
    clear(e.value, "data.format", "unknown format 'xml'")
    (tmp_path / "rec.json").write_text("[1, 2]")
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(tmp_path / "rec.json")})
    clear(e.value, "record #0", "expected a JSON object, got int")


# ---------------------------------------------------------------- frames and videos

def frames_sample(paths, sid="q7"):
    return Sample(id=sid, question="?", frame_source=FrameSource(frames=tuple(paths), fps=1.0))


def test_missing_jpeg(tmp_path):
    paths = write_frames(tmp_path / "f", 3)
    paths[1] = str(tmp_path / "f" / "gone.jpg")
    with pytest.raises(FrameError) as e:
        load_clip(frames_sample(paths))
    clear(e.value, "gone.jpg", "record q7", "field 'video_path[1]'", "frame file not found")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_truncated_or_corrupt_jpeg(tmp_path, damage):
    paths = write_frames(tmp_path / "f", 3, w=256, h=192)
    data = Path(paths[2]).read_bytes()
    bad = {"truncate": data[: len(data) // 2], "garbage": b"not a jpeg at all", "empty": b""}[damage]
    Path(paths[2]).write_bytes(bad)
    with pytest.raises(FrameError) as e:
        load_clip(frames_sample(paths))
    clear(e.value, "frame_00002.jpg", "record q7", "field 'video_path[2]'", "unreadable image")


def test_empty_frame_source(tmp_path):
    with pytest.raises(FrameError) as e:
        load_clip(frames_sample([]))
    clear(e.value, "record q7", "empty frame list")


def test_skip_mode_counts_bad_frames(tmp_path):
    paths = write_frames(tmp_path / "f", 2)
    good = frames_sample(paths, "ok")
    bad = frames_sample([str(tmp_path / "nope.jpg")], "bad")
    skipped = Counter()
    clips = [try_load_clip(s, {"on_error": "skip"}, skipped) for s in (good, bad, bad)]
    assert clips[0] is not None and clips[1] is None and clips[2] is None
    assert skipped == {"missing_frame": 2}
    with pytest.raises(FrameError):
        try_load_clip(bad, {"on_error": "raise"}, skipped)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("content", [b"\x00\x01garbage" * 100, b""])
def test_unreadable_video(tmp_path, backend, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    s = Sample(id="v3", question="?", frame_source=FrameSource(video=str(path), fps=1.0))
    with pytest.raises(FrameError) as e:
        load_clip(s, {"backend": backend})
    clear(e.value, "broken.mp4", "record v3", "field 'video'")
    assert "unreadable video" in str(e.value) or "no decodable frames" in str(e.value)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_truncated_video_is_an_error_not_a_crash(tmp_path, backend):
    path = write_mp4(tmp_path / "t.mp4", seconds=4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    s = Sample(id="v4", question="?", frame_source=FrameSource(video=str(path), fps=1.0))
    try:
        load_clip(s, {"backend": backend})  # a readable prefix may decode; it must not crash
    except FrameError as e:
        clear(e, "t.mp4", "record v4")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_span_past_the_end(tmp_path, backend):
    path = write_mp4(tmp_path / "v.mp4", seconds=4)
    for start, end, expect in ((2.0, 9.0, "span ends at 9s, past the end of the video (4.00s)"),
                               (5.0, 6.0, "span starts at 5s, at or past the end")):
        s = Sample(id="v5", question="?", frame_source=FrameSource(video=str(path), start=start, end=end, fps=1.0))
        with pytest.raises(FrameError) as e:
            load_clip(s, {"backend": backend})
        clear(e.value, "v.mp4", "record v5", "field 'start/end'", expect)
    s = Sample(id="v6", question="?", frame_source=FrameSource(video=str(tmp_path / "no.mp4"), fps=1.0))
    with pytest.raises(FrameError) as e:
        load_clip(s, {"backend": backend})
    clear(e.value, "no.mp4", "record v6", "video file not found")


# ---------------------------------------------------------------- support and JSONL formats

def test_support_format_problems(tmp_path):
    def rec(user, reply="B", images=("a.png", "b.png")):
        return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
                "images": list(images), "domain": "surgery"}

    cases = [
        (rec("<image>Q?\nA: x\nB: y"), "messages[0].content", "1 <image> markers but 2 images"),
        (rec("<image><image>Q?\nA: x\nB: y", reply="maybe"), "messages[1].content", "neither an option letter"),
        (rec("<image><image>Q?\nA: x\nC: y"), "options[1]", "should start with letter B"),
        (rec("<image><image>Q?\nA: x\nB: y", images=()), "images", "empty frame list"),
        ({"images": ["a.png"], "domain": "surgery"}, "messages", "missing"),
        ({"messages": [{"role": "user", "content": "Q"}], "images": ["a.png"], "domain": "x"}, "messages",
         "need a user and an assistant message"),
    ]
    for record, field, expect in cases:
        path = write_json(tmp_path / "support.json", [record])
        with pytest.raises(DataError) as e:
            load_samples({"format": "support", "annotations": str(path)})
        clear(e.value, "support.json", "record support-0", f"field '{field}'", expect)


def test_jsonl_problems(tmp_path):
    good = {"video": "a.mp4", "question": "Q?", "domain": "kitchen", "start": 0, "end": 5}
    cases = [
        ('{"video": "a.mp4", "question": "Q?"', "line 1", "invalid JSON"),
        (json.dumps({**good, "end": 0}), "field 'end'", "must be after start"),
        (json.dumps({**good, "start": -1}), "field 'start'", "must be >= 0"),
        (json.dumps({k: v for k, v in good.items() if k != "domain"}), "field 'domain'", "missing"),
        (json.dumps({k: v for k, v in good.items() if k != "video"}), "field 'video'", "missing"),
        (json.dumps({**good, "options": ["A: x", "y"]}), "field 'options[1]'", "is not 'LETTER: text'"),
        (json.dumps({**good, "options": ["x", "y"], "answer": "C"}), "field 'answer'", "not one of the options AB"),
        (json.dumps({**good, "fps": 0}), "field 'fps'", "must be positive"),
    ]
    for line, *parts in cases:
        (tmp_path / "u.jsonl").write_text(json.dumps(good) + "\n" + line + "\n")
        with pytest.raises(DataError) as e:
            load_samples({"format": "jsonl", "annotations": str(tmp_path / "u.jsonl")})
        clear(e.value, "u.jsonl", *[p.replace("line 1", "line 2") for p in parts])
        samples, report = load_with_report({"format": "jsonl", "annotations": str(tmp_path / "u.jsonl"),
                                            "on_error": "skip"})
        assert len(samples) == 1 and report.skipped == 1


# ---------------------------------------------------------------- commands

def test_validate_lists_problems_and_fails(tmp_path, capsys):
    from egoadapt.cli import main

    root = tmp_path / "root"
    for f in bed_record()["video_path"][:4]:  # one of five frames missing
        (root / f.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / f.lstrip("/")).touch()
    recs = [bed_record(), bed_record(id=2, options=["1", "2"]), bed_record(id=1)]
    path = write_json(tmp_path / "ann.json", recs)
    assert main(["data", "validate", f"data.annotations={path}", f"data.root={root}"]) == 1
    out = capsys.readouterr().out
    assert "1 samples loaded, 2 records skipped" in out
    assert "record 2: field 'options[0]'" in out and "record 1: field 'id': duplicate id" in out
    assert "record 1: field 'video_path': not found:" in out and "frame_00004.jpg (1 of 5 files missing)" in out
    assert main(["data", "validate", f"data.annotations={tmp_path / 'missing.json'}"]) == 2


def test_split_command_reports_bad_data(tmp_path, capsys):
    from egoadapt.cli import main

    path = write_json(tmp_path / "ann.json", [bed_record(options="A: 1")])
    assert main(["data", "split", f"data.annotations={path}", f"out={tmp_path / 'm.json'}"]) == 2
    err = capsys.readouterr().err
    assert "record 1: field 'options'" in err and "Traceback" not in err
    assert main(["data", "split", f"data.annotations={path}"]) == 2
    assert "out=FILE" in capsys.readouterr().err
