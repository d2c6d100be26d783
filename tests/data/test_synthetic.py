"""Synthetic EgoCross: format, balance, determinism, and answers that live in the pixels."""
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from egoadapt.cli import main as cli
from egoadapt.data.synthetic import COLORS, REGIONS

TESTBED_FIELDS = {"id", "dataset", "primary_category", "question_type", "question_text", "options",
                  "original_video_fps", "video_path"}


def load(d):
    recs = json.loads((d / "annotations.json").read_text())
    answers = {a["id"]: a for a in json.loads((d / "answers.json").read_text())}
    return recs, answers


def frames_of(d, rec):
    return np.stack([np.array(Image.open(d / p.lstrip("/"))).astype(int) for p in rec["video_path"]])


def test_testbed_format_and_files(synth_dir):
    recs, answers = load(synth_dir)
    assert len(recs) == 4 * 2 * 6 and len(answers) == len(recs)
    assert [r["id"] for r in recs] == list(range(1, len(recs) + 1))
    for r in recs:
        assert TESTBED_FIELDS <= set(r)
        assert len(r["options"]) == 4 and [o[:3] for o in r["options"]] == ["A: ", "B: ", "C: ", "D: "]
        assert all((synth_dir / p.lstrip("/")).is_file() for p in r["video_path"])
        a = answers[r["id"]]
        assert a["question_id"].split("_")[0] == r["dataset"]
        assert r["options"]["ABCD".index(a["correct_option_letter"])] == f"{a['correct_option_letter']}: {a['answer_text']}"
    assert {r["primary_category"] for r in recs} == {"Identification", "Localization", "Counting", "Prediction"}
    assert len({r["domain"] for r in recs}) == 4


def test_videos_jsonl_matches_frames(synth_dir):
    import av

    recs, answers = load(synth_dir)
    rows = [json.loads(line) for line in (synth_dir / "videos.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in recs]
    row, rec = rows[3], recs[3]
    assert row["answer"] == answers[rec["id"]]["correct_option_letter"]
    with av.open(str(synth_dir / row["video"])) as c:
        decoded = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    fps = rec["original_video_fps"]
    picked = [decoded[round((row["start"] + i / row["fps"]) * fps)] for i in range(len(rec["video_path"]))]
    # the mp4 at the span's sampling times shows the same pictures as the JPEG frames
    assert np.abs(np.stack(picked) - frames_of(synth_dir, rec)).mean() < 6


def test_option_letters_are_balanced(tmp_path):
    from egoadapt.data.synthetic import SynthConfig, generate

    out = generate(SynthConfig(out=str(tmp_path), seed=1, videos_per_domain=8, questions_per_video=6,
                               write_videos=False), progress=False)
    recs, answers = load(out)
    letters = Counter(a["correct_option_letter"] for a in answers.values())
    assert set(letters) == set("ABCD")
    assert max(letters.values()) - min(letters.values()) <= 4 * 6  # at most one open block per domain x family
    per_family = Counter((r["question_type"], answers[r["id"]]["correct_option_letter"]) for r in recs)
    for qtype in {r["question_type"] for r in recs}:
        counts = [per_family[(qtype, x)] for x in "ABCD"]
        assert max(counts) - min(counts) <= 4, (qtype, counts)


def test_question_text_does_not_leak_the_answer(tmp_path):
    """Guessing from the question text alone (an option named in it, or the text itself) is at chance."""
    from egoadapt.data.synthetic import SynthConfig, generate

    out = generate(SynthConfig(out=str(tmp_path), seed=4, videos_per_domain=8, write_videos=False), progress=False)
    recs, answers = load(out)
    named_hits, by_text = 0, {}
    for r in recs:
        options = [o[3:] for o in r["options"]]
        named = [o for o in options if o.lower() in r["question_text"].lower()]
        named_hits += (named[0] if named else options[0]) == answers[r["id"]]["answer_text"]
        by_text.setdefault(r["question_text"], Counter())[answers[r["id"]]["correct_option_letter"]] += 1
    assert named_hits / len(recs) < 0.4
    # the best per-text majority vote is also near chance on texts that repeat
    repeated = [c for c in by_text.values() if sum(c.values()) >= 8]
    assert repeated
    assert sum(max(c.values()) for c in repeated) / sum(sum(c.values()) for c in repeated) < 0.4


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        cli(["data", "synth", f"out={tmp_path / name}", f"seed={seed}", "videos_per_domain=1", "write_videos=false"])
    for f in ("annotations.json", "answers.json", "videos.jsonl"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a/answers.json").read_bytes() != (tmp_path / "c/answers.json").read_bytes()
    jpg = "egocross_synth/SynthSurgery/V000/frames/q2/frame_00003.jpg"
    assert (tmp_path / "a" / jpg).read_bytes() == (tmp_path / "b" / jpg).read_bytes()


@pytest.mark.parametrize("qtype", ["object spatial localization", "next state prediction"])
def test_answers_are_in_the_pixels(tmp_path, qtype):
    """Check two families against the frames themselves, with no knowledge of the renderer."""
    from egoadapt.data.synthetic import SynthConfig, generate

    out = generate(SynthConfig(out=str(tmp_path), seed=2, videos_per_domain=4, write_videos=False), progress=False)
    recs, answers = load(out)
    checked, directions = 0, set()
    for r in recs:
        if r["question_type"] != qtype:
            continue
        frames = frames_of(out, r)
        answer = answers[r["id"]]["answer_text"]
        if qtype == "next state prediction":
            size = frames.shape[1]
            order = list(COLORS)
            seen = [order.index(min(COLORS, key=lambda c: np.abs(f[int(size * 0.12), size // 2] - COLORS[c]).sum()))
                    for f in frames]
            a, b = [(a, b) for a, b in zip(seen, seen[1:]) if b != a][-1]  # the last color change
            step = (b - a) % 4  # 1 forwards, 3 backwards
            assert step in (1, 3)  # the light steps one color at a time, forwards or backwards
            directions.add(step)
            assert order[(seen[-1] + step) % 4] == answer  # the order seen, not the last color alone
        else:
            # every clip of a domain shares its background (same camera path), so the median
            # first frame over all of the domain's clips is the empty scene; the object is what differs
            same_domain = [frames_of(out, o)[0] for o in recs if o["dataset"] == r["dataset"]]
            residual = np.abs(frames[0] - np.median(np.stack(same_domain), axis=0)).sum(-1)
            ys, xs = np.nonzero(residual > 50)
            assert len(ys) > 10
            size = frames.shape[1]
            seen = REGIONS[2 * int(ys.mean() >= size / 2) + int(xs.mean() >= size / 2)]
            assert seen == answer, (r["id"], seen, answer)
        checked += 1
    assert checked >= 4
    assert qtype != "next state prediction" or directions == {1, 3}  # both directions occur
