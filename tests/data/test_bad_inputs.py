"""Bad inputs give one clear message naming file, record and field (or a counted skip),
never a traceback from deep inside a library."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from egoadapt.data.errors import DataError
from egoadapt.data.frames import FrameError, check_source, load_clip, try_load_clip
from egoadapt.data.load import load_samples, load_with_report
from egoadapt.data.schema import FrameSource, Sample
from tests.data.egodata_helpers import bed_record, write_frames, write_json, write_mp4


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


# ---------------------------------------------------------------- text and numbers (issue 18)

def test_non_utf8_jsonl_names_the_line_and_field(tmp_path):
    good = json.dumps({"id": "q1", "video": "a.mp4", "question": "Q?", "domain": "kitchen"}).encode()
    bad = good.replace(b'"q1"', b'"q2"').replace(b"Q?", b"Q\xff\xfe?")
    (tmp_path / "u.jsonl").write_bytes(good + b"\n" + bad + b"\n")
    cfg = {"format": "jsonl", "annotations": str(tmp_path / "u.jsonl")}
    with pytest.raises(DataError) as e:
        load_samples(cfg)
    clear(e.value, "u.jsonl", "record q2 (line 2)", "field 'question'", "undecodable byte 0xff", "not UTF-8")
    samples, report = load_with_report({**cfg, "on_error": "skip"})
    assert [s.id for s in samples] == ["q1"] and report.skipped == 1 and report.problems[0].kind == "bad_text"
    # a bad byte outside any string: the line is named as invalid JSON
    (tmp_path / "u.jsonl").write_bytes(good + b"\n" + b"\xff" + good + b"\n")
    with pytest.raises(DataError) as e:
        load_samples(cfg)
    clear(e.value, "u.jsonl", "line 2", "invalid JSON")


def test_non_utf8_json_file_names_record_field_and_line(tmp_path):
    path = tmp_path / "ann.json"
    text = json.dumps([bed_record(), bed_record(id=2)], indent=1)
    path.write_bytes(text.encode().replace(b"How many", b"How\xe9many", 1))
    line = text[: text.index("How many")].count("\n") + 1
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(path)})
    clear(e.value, "ann.json", "record 1", "field 'question_text'", "undecodable byte 0xe9")
    samples, report = load_with_report({"format": "egocross", "annotations": str(path), "on_error": "skip"})
    assert [s.id for s in samples] == ["2"]
    note = next(p for p in report.problems if p.kind == "bad_encoding")
    assert f"not UTF-8: byte 0xe9 at line {line} column" in str(note)


@pytest.mark.parametrize("field, value, where", [
    ("question_text", "How many\ud800 tools?", "question_text"),
    ("options", ["A: 4", "B: \udc80", "C: 1", "D: 2"], "options[1]"),
    ("dataset", "\udfff", "dataset"),
])
def test_lone_surrogates_are_refused_at_load(tmp_path, field, value, where):
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record(**{field: value})])  # json.dumps writes them as \ud800 escapes
    clear(e.value, "ann.json", "record 1", f"field '{where}'", "not text the tokenizer can encode")
    str(e.value).encode("utf-8")  # the message itself prints


def test_lone_surrogate_in_an_answer(tmp_path):
    answers = write_json(tmp_path / "ans.json", [{"id": 1, "correct_option_letter": "B", "answer_text": "3\ud83d"}])
    with pytest.raises(DataError) as e:
        load(tmp_path, [bed_record()], answers=str(answers))
    clear(e.value, "ans.json", "record 1", "field 'answer_text'", "lone surrogate U+D83D")


@pytest.mark.parametrize("text, field", [('"end": NaN', "end"), ('"start": Infinity', "start"),
                                         ('"fps": -Infinity', "fps"), ('"end": 1e999', "end")])
def test_non_finite_numbers_are_refused_at_load(tmp_path, text, field):
    line = '{"id": "q1", "video": "a.mp4", "question": "Q?", "domain": "kitchen", ' + text + "}"
    (tmp_path / "u.jsonl").write_text(line + "\n")
    with pytest.raises(DataError) as e:
        load_samples({"format": "jsonl", "annotations": str(tmp_path / "u.jsonl")})
    clear(e.value, "u.jsonl", "record q1 (line 1)", f"field '{field}'", "must be a finite number")


def test_non_finite_fps_in_the_test_bed(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps([bed_record(original_video_fps=float("nan"))]))  # json writes NaN
    with pytest.raises(DataError) as e:
        load_samples({"format": "egocross", "annotations": str(path)})
    clear(e.value, "record 1", "field 'original_video_fps'", "must be a finite number, got nan")


def test_non_utf8_split_manifest(tmp_path):
    from egoadapt.data.split import load_split

    (tmp_path / "m.json").write_bytes(b'{"train": ["\xff"]}')
    with pytest.raises(DataError) as e:
        load_split(tmp_path / "m.json", [], "train")
    clear(e.value, "m.json", "not a split manifest (UnicodeDecodeError")


# ---------------------------------------------------------------- sizes the processor refuses (issue 18)

def jpeg_claiming(path: Path, w: int, h: int) -> Path:
    """A small JPEG whose header claims w x h (the size a decoder would allocate)."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 7], data[sof + 7:sof + 9] = h.to_bytes(2, "big"), w.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("w, h, expect", [(14000, 14000, "decompression bomb"),  # 196 MP: PIL refuses to open
                                          (10000, 10000, "over the decompression-bomb limit")])  # 100 MP
def test_decompression_bombs_are_refused_from_the_header(tmp_path, w, h, expect):
    paths = write_frames(tmp_path / "f", 3)
    paths[1] = str(jpeg_claiming(tmp_path / "f" / "bomb.jpg", w, h))
    with pytest.raises(FrameError) as e:
        load_clip(frames_sample(paths))
    clear(e.value, "bomb.jpg", "record q7", "field 'video_path[1]'", expect)
    assert e.value.problems[0].kind == "too_large"


@pytest.mark.parametrize("w, h, expect, kind", [(2000, 4, "aspect ratio 500:1 is over the processor's limit of 200:1",
                                                 "bad_aspect"),
                                                (4, 1000, "aspect ratio 250:1", "bad_aspect"),
                                                (1, 1, "1x1 frame is under 14 pixels on a side", "too_small")])
def test_frames_the_processor_refuses_or_that_are_degenerate(tmp_path, w, h, expect, kind):
    paths = write_frames(tmp_path / "f", 3)
    paths[0] = write_frames(tmp_path / "odd", 1, w=w, h=h)[0]
    with pytest.raises(FrameError) as e:
        load_clip(frames_sample(paths))
    clear(e.value, "odd/frame_00000.jpg", "record q7", "field 'video_path[0]'", expect)
    assert e.value.problems[0].kind == kind


def test_2000x4_frames_are_what_the_processor_refuses():
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize

    from egoadapt.data.frames import MAX_ASPECT

    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(4, 2000)
    smart_resize(4, 4 * MAX_ASPECT)  # exactly at the limit is fine, for both


def test_one_odd_frame_does_not_shrink_the_clip(tmp_path):
    paths = write_frames(tmp_path / "f", 4)  # 64x48
    paths[0] = write_frames(tmp_path / "small", 1, w=32, h=32)[0]  # a different first frame
    clip = load_clip(frames_sample(paths))
    assert clip.frames.shape == (4, 48, 64, 3)  # the clip's common size, not the first frame's


def test_video_frames_the_processor_refuses(tmp_path):
    path = write_mp4(tmp_path / "wide.mp4", seconds=2, w=1200, h=4)
    s = Sample(id="v9", question="?", frame_source=FrameSource(video=str(path), fps=1.0))
    for check in (load_clip, check_source):
        with pytest.raises(FrameError) as e:
            check(s)
        clear(e.value, "wide.mp4", "record v9", "field 'video'", "aspect ratio 300:1")


def test_check_source_reads_headers_only(tmp_path):
    paths = write_frames(tmp_path / "f", 4)
    data = Path(paths[2]).read_bytes()
    Path(paths[2]).write_bytes(data[:-50])  # the image data cut short: only decoding shows it
    check_source(frames_sample(paths))
    Path(paths[3]).unlink()
    with pytest.raises(FrameError) as e:
        check_source(frames_sample(paths))
    clear(e.value, "frame_00003.jpg", "record q7", "field 'video_path[3]'", "frame file not found")
    s = Sample(id="v5", question="?", frame_source=FrameSource(video=str(write_mp4(tmp_path / "v.mp4", seconds=4)),
                                                                start=5.0, end=6.0, fps=1.0))
    with pytest.raises(FrameError) as e:
        check_source(s)
    clear(e.value, "v.mp4", "record v5", "field 'start/end'", "at or past the end")


def test_a_processor_error_names_the_sample(tmp_path):
    from egoadapt.inputs.encode import vision_inputs
    from egoadapt.inputs.families.base import VideoFamily

    class Refusing(VideoFamily):  # a family whose processor refuses every clip
        model_type, vision_keys = "refusing", ()

        def process(self, clip, **kw):
            raise ValueError("absolute aspect ratio must be smaller than 200, got 300.0")

    with pytest.raises(FrameError) as e:
        vision_inputs(frames_sample(write_frames(tmp_path / "f", 2)), None, Refusing(None))
    clear(e.value, "frame_00000.jpg", "record q7", "field 'video_path'", "the processor refused the clip",
          "ValueError: absolute aspect ratio")
    assert e.value.problems[0].kind == "processor"


# ---------------------------------------------------------------- frames.on_error in eval (issue 18)

class FakeBackend:
    """Outputs "ok" for every item; a sample in `bad` fails as its frames would (a FrameError)."""

    name = "fake"

    def __init__(self, bad):
        self.bad, self.calls = bad, []

    def generate(self, items):
        self.calls.append([it.id for it in items])
        for it in items:
            if it.id in self.bad:
                load_clip(frames_sample(["/nonexistent/f.jpg"], it.id))
        return [("ok", 1) for _ in items]


def test_eval_skips_items_whose_frames_fail_and_records_them(tmp_path):
    from egoadapt.eval.generate import Item, PredictionsLog, generate_predictions

    items = [Item(str(i), "close") for i in range(6)]
    log_ = PredictionsLog(tmp_path / "predictions.jsonl")
    fake = FakeBackend({"2", "4"})
    stats = generate_predictions(items, lambda: fake, log_, batch_size=4, progress=False,
                                 frames_cfg={"on_error": "skip"})
    done = log_.load()
    assert set(done) == set(items) and stats.generated == 4 and stats.skipped == 2
    skipped = {it.id: r for it, r in done.items() if r.get("skipped")}
    assert set(skipped) == {"2", "4"} and all(r["output"] == "" and r["kind"] == "missing_frame" for r in
                                              skipped.values())
    assert "record 2: field 'video_path[0]': frame file not found" in skipped["2"]["reason"]
    assert done[items[0]]["output"] == "ok"
    # resuming asks for nothing: skipped items are records, not retried
    again = generate_predictions(items, lambda: FakeBackend(set()), log_, progress=False,
                                 frames_cfg={"on_error": "skip"})
    assert again.already_done == 6 and again.generated == 0


def test_eval_raises_on_a_bad_item_by_default(tmp_path):
    from egoadapt.eval.generate import Item, PredictionsLog, generate_predictions

    with pytest.raises(FrameError) as e:
        generate_predictions([Item("1", "close"), Item("2", "open")], lambda: FakeBackend({"2"}),
                             PredictionsLog(tmp_path / "p.jsonl"), progress=False, frames_cfg=None)
    clear(e.value, "f.jpg", "record 2", "field 'video_path[0]'", "frame file not found")


def test_eval_header_pass_skips_before_any_model_loads(tmp_path):
    from egoadapt.eval.generate import Item, PredictionsLog, skip_unusable

    good = frames_sample(write_frames(tmp_path / "f", 2), "good")
    wide = frames_sample([write_frames(tmp_path / "w", 1, w=2000, h=4)[0]], "wide")
    items = [Item("good", "close"), Item("wide", "close"), Item("wide", "open")]
    log_ = PredictionsLog(tmp_path / "p.jsonl")
    with pytest.raises(FrameError):
        skip_unusable(items, {"good": good, "wide": wide}, {"on_error": "raise"}, log_)
    assert skip_unusable(items, {"good": good, "wide": wide}, {"on_error": "skip"}, log_) == 2
    assert {(it.id, it.qa) for it in log_.load()} == {("wide", "close"), ("wide", "open")}
    with pytest.raises(DataError, match="frames.on_error"):
        skip_unusable(items, {"good": good, "wide": wide}, {"on_error": "ignore"}, log_)


# ---------------------------------------------------------------- validate (issue 18)

def test_validate_lists_frames_the_processor_refuses(tmp_path, capsys):
    from egoadapt.cli import main

    root = tmp_path / "root"
    recs = [bed_record(id=k, video_path=[f"/bed/q{k}/frame_{i:05d}.jpg" for i in range(2)]) for k in range(1, 5)]
    for k in range(1, 5):
        write_frames(root / "bed" / f"q{k}", 2)
    write_frames(root / "wide", 1, w=2000, h=4)
    (root / "bed/q2/frame_00001.jpg").write_bytes((root / "wide/frame_00000.jpg").read_bytes())
    jpeg_claiming(root / "bed/q3/frame_00000.jpg", 14000, 14000)
    data = (root / "bed/q4/frame_00001.jpg").read_bytes()
    (root / "bed/q4/frame_00001.jpg").write_bytes(data[:-50])  # the image data cut short
    path = write_json(tmp_path / "ann.json", recs)
    args = ["data", "validate", f"data.annotations={path}", f"data.root={root}"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "record 2: field 'video_path[1]': 2000x4 frame: aspect ratio 500:1" in out
    assert "record 3: field 'video_path[0]': decompression bomb" in out
    assert "record 4" not in out  # truncated: only decoding shows it
    assert "2 samples have unusable frames; train and eval skip them with frames.on_error=skip: 2, 3" in out
    assert main([*args, "validate.decode=true"]) == 1
    out = capsys.readouterr().out
    assert "record 4: field 'video_path[1]': unreadable image" in out and "3 samples have unusable frames" in out


def test_validate_lists_a_non_utf8_line_instead_of_a_traceback(tmp_path, capsys):
    from egoadapt.cli import main

    good = json.dumps({"id": "q1", "video": "a.mp4", "question": "Q?", "domain": "kitchen"}).encode()
    (tmp_path / "u.jsonl").write_bytes(good + b"\n" + good.replace(b"q1", b"q2").replace(b"Q?", b"\xc3(") + b"\n")
    rc = main(["data", "validate", "data=jsonl", f"data.annotations={tmp_path / 'u.jsonl'}",
               "validate.check_files=false"])
    out = capsys.readouterr().out
    assert rc == 1 and "1 samples loaded, 1 records skipped" in out
    assert "u.jsonl: record q2 (line 2): field 'question': undecodable byte 0xc3" in out
