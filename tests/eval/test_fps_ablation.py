"""The sampling-rate ablation (issue 17 item 3): `frames.fps` on raw videos at any rate up to the
file's own, frame lists at their rate divided by a whole number, every other rate refused for
the run naming the record and what its source gives; `egoadapt compare` tabulates evaluations
at different rates per task, each run labelled by its rate. Run as a user would on synthetic
data (`egoadapt data synth`: the same clips as JPEG frame lists at 2 fps and as 8 fps mp4s)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from egoadapt import cli
from egoadapt.data.frames import RateUnavailable, clip_geometry, load_clip, on_skip
from egoadapt.data.load import load_samples


@pytest.fixture(scope="module")
def samples(synth_dir):
    lists = load_samples({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                          "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})
    videos = load_samples({"format": "jsonl", "annotations": str(synth_dir / "videos.jsonl")})
    return lists[0], videos[0]


def test_frame_lists_give_their_rate_divided_by_a_whole_number(samples):
    frames, _ = samples
    assert frames.frame_source.fps == 2.0 and len(frames.frame_source.frames) == 8  # a 4 s clip at 2 fps
    for fps, count, indices in ((None, 8, list(range(8))), (2, 8, list(range(8))), (1, 4, [0, 2, 4, 6]),
                                (0.5, 2, [0, 4])):
        clip = load_clip(frames, {"fps": fps})
        assert (clip.num_frames, clip.fps, clip.indices) == (count, fps or 2.0, indices)
        assert clip_geometry(frames, {"fps": fps}).num_frames == count  # token counts before loading agree


@pytest.mark.parametrize("fps", [1.5, 4, 3])
def test_a_rate_a_frame_list_cannot_give_is_refused_naming_record_and_rates(samples, fps):
    frames, _ = samples
    with pytest.raises(RateUnavailable) as err:
        load_clip(frames, {"fps": fps})
    msg = str(err.value)
    assert f"record {frames.id}" in msg and "field 'frames.fps'" in msg and frames.frame_source.frames[0] in msg
    assert f"frames.fps={fps:g} cannot be taken" in msg and "sampled at 2 fps, so it gives 2, 1, 0.667, 0.5" in msg
    with pytest.raises(RateUnavailable):  # a setting the data cannot honour: never skipped as a bad sample
        on_skip(err.value, {"on_error": "skip"})


def test_raw_videos_at_any_rate_up_to_their_own(samples):
    _, video = samples
    for fps in (0.5, 2, 3, 8):
        clip = load_clip(video, {"fps": fps})
        assert clip.fps == fps and clip.num_frames == 4 * fps  # a 4 s span
        assert clip.source_fps == 8.0 and clip.timestamps[1] == pytest.approx(1 / fps)
    with pytest.raises(RateUnavailable, match="sampling at 16 fps is above the video's own 8 fps"):
        load_clip(video, {"fps": 16})


def test_eval_refuses_the_rate_before_a_model_loads(tiny_model_dir, synth_dir, tmp_path, capsys):
    args = ["eval", f"checkpoint={tiny_model_dir}", "data=synthetic", f"data.root={synth_dir}", f"out={tmp_path / 'e'}",
            "frames.fps=1.5", "frames.on_error=skip", "progress=false"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "record 1: field 'frames.fps': frames.fps=1.5 cannot be taken from this frame list" in err
    preds = tmp_path / "e" / "predictions.jsonl"
    assert not preds.exists() or not preds.read_text()  # nothing asked, nothing written as skipped


@pytest.mark.integration
def test_compare_tabulates_rates_per_task(tiny_model_dir, synth_dir, tmp_path, capsys):
    runs = {}
    for fps in ("0.5", "2"):
        out = runs[fps] = tmp_path / f"fps{fps}"
        assert cli.main(["eval", f"checkpoint={tiny_model_dir}", "data=jsonl",
                         f"data.annotations={synth_dir / 'videos.jsonl'}", f"frames.fps={fps}", f"out={out}",
                         "qa=close", "limit=12", "generation.max_new_tokens=8", "progress=false",
                         f"cache_dir={tmp_path / 'cache'}", "bootstrap.resamples=50"]) == 0
        preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
        assert len(preds) == 12 and all(f"sampled at {fps} fps" in p["prompt"] for p in preds)  # the clips' rate
        assert json.loads((out / "results.json").read_text())["config"]["sampling"]["frames.fps"] == float(fps)
    capsys.readouterr()
    assert cli.main(["compare", str(runs["0.5"]), str(runs["2"]), f"out={tmp_path / 'cmp'}", "plots=false",
                     "bootstrap.resamples=50"]) == 0
    printed = capsys.readouterr().out
    cmp = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [(r["label"], r["sampling_rate"]) for r in cmp["runs"]] == [("fps0.5 @ 0.5 fps", "0.5 fps"),
                                                                        ("fps2 @ 2 fps", "2 fps")]
    assert "Frame sampling: `fps0.5 @ 0.5 fps` 0.5 fps; `fps2 @ 2 fps` 2 fps." in printed
    tasks = {r["category"] for r in cmp["table"] if r["category"] != "all"}
    assert len(tasks) >= 2 and all(f"| task: {t} |" in printed for t in tasks)  # one row per task, both rates
    row = next(r for r in cmp["table"] if (r["qa"], r["domain"], r["category"], r["stat"]) == ("close", "all", "all",
                                                                                                "micro"))
    assert set(row["runs"]) == {"fps0.5 @ 0.5 fps", "fps2 @ 2 fps"} and row["deltas"]["fps2 @ 2 fps"]["n_paired"] == 12


def test_runs_at_one_rate_keep_their_plain_labels(tmp_path):
    from egoadapt.eval.compare import label_by_rate, sampling_rate
    from egoadapt.eval.report import Evaluation

    def run(label, fps):
        return Evaluation(label, Path(label), {"config": {"sampling": {"frames.fps": fps, "data.fps": {"default": 1}}}})

    same = [run("a", None), run("b", None)]
    label_by_rate(same)
    assert [e.label for e in same] == ["a", "b"] and sampling_rate(same[0].results) == "the data's own fps"
    assert sampling_rate({"config": {}}) == "rate not recorded"
