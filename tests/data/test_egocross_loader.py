"""Loaders: the real 957-record test bed, answers joined by id, support chat format, JSONL, synthetic."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from egoadapt.data.errors import LoadReport
from egoadapt.data.load import load_samples, load_with_report
from egoadapt.data.records import group_from_path, sampling_fps
from egoadapt.data.schema import DATASET_DOMAINS, FrameSource, Sample
from tests.data.egodata_helpers import (
    EGOCROSS,
    TEMPLATE,
    TESTBED,
    real_cfg,
    write_frames,
    write_json,
)


@pytest.fixture(scope="module")
def real():
    return load_samples(real_cfg())


def test_all_957_records_load_with_paper_counts(real):
    assert len(real) == 957
    assert Counter(s.domain for s in real) == {"surgery": 283, "industry": 245, "extreme_sports": 246, "animal": 183}
    assert set(Counter(s.domain for s in real)) == set(DATASET_DOMAINS.values())
    assert Counter(s.category for s in real) == {"Identification": 398, "Localization": 284, "Prediction": 161,
                                                 "Counting": 114}
    assert len({s.question_type for s in real}) == 15
    assert Counter(s.dataset for s in real)["EgoSurgery"] == 100
    assert all(len(s.options) == 4 and s.frame_source.kind == "frames" and s.frame_source.frames for s in real)
    assert [s.id for s in real] == [str(i) for i in range(1, 958)]


def test_per_dataset_sampling_fps(real):
    fps = Counter((s.dataset, s.frame_source.frames[0].rsplit(".", 1)[1], s.frame_source.fps) for s in real)
    assert fps[("CholecTrack20", "png", 1.0)] == 22
    assert fps[("CholecTrack20", "jpg", 0.5)] == 161
    assert fps[("EgoSurgery", "jpg", 1.0)] == 100
    assert {f for (d, _, f) in fps if d in ("ENIGMA", "EgoPet", "ExtrameSportFPV")} == {0.5}
    # overridable by config: per dataset, per domain, and the default
    assert sampling_fps({"default": 0.5, "EgoPet": 2}, "EgoPet") == 2
    assert sampling_fps({"default": 0.5, "animal": 0.25}, "EgoPet", "animal") == 0.25
    assert sampling_fps({"default": 1}, "ENIGMA", record_fps=3.0) == 3.0
    assert sampling_fps(0.75, "ENIGMA") == 0.75


def test_answers_join_gives_question_id_and_source_video(real):
    template = {str(r["id"]): r["question_id"] for r in json.loads(TEMPLATE.read_text())}
    for s in real:
        assert s.question_id == template[s.id]
        assert s.group == f"{s.dataset}/{s.question_id.split('_')[1]}"
        # the frame folder names the same source video
        assert group_from_path(s.frame_source.frames[0], s.dataset) == s.question_id.split("_")[1]
        assert s.answer_letter is None and not s.has_answer  # the template carries no answers
    assert len({s.group for s in real}) == 132


def test_groups_fall_back_to_frame_paths_without_answers(real):
    bare = load_samples(real_cfg(answers=None))
    assert [s.group for s in bare] == [s.group for s in real]
    assert all(s.question_id == "" for s in bare)


def test_answers_file_fills_letters_and_texts(tmp_path):
    ans = [{"id": 1, "question_id": "CholecTrack20_VID01_q1_x", "correct_option_letter": "D", "answer_text": "2",
            "detailed_answer": "Two tools."}]
    cfg = real_cfg(answers=str(write_json(tmp_path / "answers.json", ans)))
    samples, report = load_with_report(cfg)
    s = samples[0]
    assert (s.answer_letter, s.answer_text, s.detailed_answer) == ("D", "2", "Two tools.")
    assert samples[1].answer_letter is None
    # the other 956 questions load without answers, and the report names each one
    assert {(p.kind, p.field) for p in report.problems} == {("missing_answer", "id")}
    assert sorted(int(p.record) for p in report.problems) == list(range(2, 958))


def test_every_frame_path_resolves_under_a_release_shaped_root(tmp_path):
    records = json.loads(TESTBED.read_text())
    paths = {p for r in records for p in r["video_path"]}
    frame = Path(write_frames(tmp_path / "one", 1)[0]).read_bytes()  # validate reads every frame's header
    for p in paths:  # a small frame where the release puts each one
        f = tmp_path / p.lstrip("/")
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(frame)
    samples, report = load_with_report(real_cfg(root=str(tmp_path), check_files=True, on_error="skip"))
    assert len(samples) == 957 and report.skipped == 0 and report.problems == []
    assert all(Path(f).is_file() and str(f).startswith(str(tmp_path))
               for s in samples for f in s.frame_source.frames)
    assert sum(len(s.frame_source.frames) for s in samples) == len(paths)
    # and the validate command agrees
    from egoadapt.cli import main

    assert main(["data", "validate", f"data.annotations={TESTBED}", f"data.answers={TEMPLATE}",
                 f"data.root={tmp_path}"]) == 0


def test_validate_counts_and_reports_missing_frames(capsys):
    from egoadapt.cli import main

    rc = main(["data", "validate", f"data.annotations={TESTBED}"])
    out = capsys.readouterr().out
    assert rc == 1  # no root: every frame is missing, and validate says so
    for line in ("| surgery | 283 |", "| industry | 245 |", "| extreme_sports | 246 |", "| animal | 183 |",
                 "| Identification | 398 |", "| Localization | 284 |", "| Prediction | 161 |", "| Counting | 114 |"):
        assert line in out
    assert "957 problems (missing_frames: 957)" in out and "record 1: field 'video_path'" in out
    assert "data.root" in out  # the hint


def test_synthetic_set_loads_both_as_frames_and_as_videos(synth_dir):
    frames, report = load_with_report({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                                       "answers": str(synth_dir / "answers.json"), "root": str(synth_dir),
                                       "check_files": True})
    videos = load_samples({"format": "jsonl", "annotations": str(synth_dir / "videos.jsonl"), "check_files": True})
    assert report.problems == [] and len(frames) == len(videos) == 48
    assert {s.domain for s in frames} == {"surgery", "industry", "extreme_sports", "animal"}
    for f, v in zip(frames, videos):
        assert (f.id, f.group, f.answer_letter, f.options, f.domain) == (v.id, v.group, v.answer_letter, v.options,
                                                                          v.domain)
        assert f.frame_source.fps == 2.0 and v.frame_source.kind == "video" and v.frame_source.end > v.frame_source.start
        assert f.category == v.category and f.answer_text == v.answer_text


def test_support_chat_format(tmp_path):
    frames = write_frames(tmp_path / "frames" / "CholecTrack20" / "VID110" / "oc_q3", 3, ext="png")
    rel = [str(Path(p).relative_to(tmp_path)) for p in frames]
    records = [
        {"messages": [{"role": "user", "content": "<image><image><image>How many tools?\nA: 4\nB: 3\nC: 1\nD: 2"},
                      {"role": "assistant", "content": "B"}], "images": rel, "domain": "surgery"},
        {"messages": [{"role": "user", "content": "<image>What happens next?"},
                      {"role": "assistant", "content": "the surgeon clips the duct"}], "images": rel[:1],
         "domain": "surgery"},
    ]
    path = write_json(tmp_path / "support.json", records)
    samples = load_samples({"format": "support", "annotations": str(path), "fps": {"default": 0.5,
                                                                                  "CholecTrack20_png": 1.0},
                            "check_files": True})
    closeqa, openqa = samples
    assert closeqa.question == "How many tools?" and closeqa.options == ("4", "3", "1", "2")
    assert (closeqa.answer_letter, closeqa.answer_text, closeqa.domain) == ("B", "3", "surgery")
    assert closeqa.frame_source.frames == tuple(frames) and closeqa.frame_source.fps == 1.0  # png in CholecTrack20
    assert closeqa.dataset == "CholecTrack20" and closeqa.group == "CholecTrack20/VID110"
    assert closeqa.id == "support-0" and openqa.id == "support-1"
    assert openqa.options == () and openqa.answer_letter is None and openqa.answer_text == "the surgeon clips the duct"
    # JSONL works the same
    jl = tmp_path / "support.jsonl"
    jl.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert [s.question for s in load_samples({"format": "support", "annotations": str(jl)})] == \
        [s.question for s in samples]


def test_jsonl_user_domain(tmp_path):
    rows = [
        {"id": "k1", "video": "clips/a.mp4", "start": 1.5, "end": 9, "question": "What is cut?",
         "options": ["A: onion", "B: bread"], "answer": "b", "domain": "kitchen", "task": "Identification"},
        {"video": "clips/a.mp4", "question": "What is cut?", "options": ["onion", "bread"], "answer": "onion",
         "domain": "kitchen", "fps": 2},
        {"video": "/abs/b.mp4", "start": 0, "end": 4, "question": "When does the cut start?", "answer": "2.5",
         "domain": "kitchen", "task": "Localization", "question_type": "action temporal localization",
         "group": "b"},
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    a, b, c = load_samples(OmegaConf.create({"format": "jsonl", "annotations": str(path), "fps": {"default": 1.0}}))
    assert a.id == "k1" and a.frame_source == FrameSource(video=str(tmp_path / "clips/a.mp4"), start=1.5, end=9.0,
                                                           fps=1.0)
    assert (a.answer_letter, a.answer_text, a.category, a.dataset) == ("B", "bread", "Identification", "kitchen")
    assert b.id == "mine-2" and b.options == ("onion", "bread") and b.answer_letter == "A"
    assert b.frame_source.fps == 2.0 and b.frame_source.start is None  # whole video
    assert a.group == b.group == "kitchen/clips/a.mp4" and c.group == "kitchen/b"
    assert c.options == () and c.answer_text == "2.5" and c.frame_source.video == "/abs/b.mp4"


def test_hydra_data_configs_compose():
    from egoadapt.cli import compose

    cfg = compose("data_split", [f"data.annotations={TESTBED}", "data.fps.default=1"])
    assert cfg.data.format == "egocross" and cfg.split.protocol == "paper_70_30" and cfg.data.fps.default == 1
    assert cfg.split.support.fps.EgoSurgery == 1.0  # interpolated from data.fps
    for group, option, key, value in (("data", "support", "format", "support"), ("data", "jsonl", "format", "jsonl"),
                                      ("split", "lodo", "protocol", "lodo"), ("split", "support", "protocol",
                                                                              "support")):
        cfg = compose("data_split", [f"{group}={option}"])
        assert cfg[group][key] == value
    cfg = compose("data_validate", ["data=synthetic", "data.root=/x"])
    assert cfg.data.annotations == "/x/annotations.json" and cfg.frames.odd_frames == "pad"
    assert compose("data_validate", ["frames=pyav"]).frames.backend == "pyav"


def test_samples_round_trip_through_dicts(real):
    s = real[0]
    assert Sample.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_load_report_counts_skips(tmp_path):
    recs = json.loads(TESTBED.read_text())[:3]
    recs[1]["options"] = "A: 1"
    report = LoadReport()
    samples = load_samples({"format": "egocross", "annotations": str(write_json(tmp_path / "a.json", recs)),
                            "on_error": "skip"}, report)
    assert [s.id for s in samples] == ["1", "3"] and report.skipped == 1 and report.loaded == 2
    assert report.counts() == {"loaded": 2, "skipped": 1, "bad_field": 1}
    assert EGOCROSS.exists()
