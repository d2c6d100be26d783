"""Prompt lengths from frame headers: the video token count by the processor's own rule, and every
prompt's length equal to the ids `VideoInputs` builds (frame lists and videos, caps, odd counts)."""
import json

import numpy as np
import pytest

from egoadapt.data.frames import clip_geometry
from egoadapt.data.load import load_samples
from egoadapt.data.schema import FrameSource
from egoadapt.inputs.context import prompt_lengths, video_token_count
from egoadapt.inputs.video import VideoInputs
from tests.data.egodata_helpers import write_frames, write_mp4

BUDGET = 280 * 280  # min = max pixels: every frame 10x10 merged patches, 100 tokens per 2 frames


def processor(model_dir, lo=None, hi=None):
    from egoadapt.models.loading import load_processor

    return load_processor({"path": str(model_dir), "min_pixels": lo, "max_pixels": hi})


def synth_samples(synth_dir, n=None):
    samples = load_samples({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                            "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})
    return samples[:n] if n else samples


@pytest.mark.parametrize("frames,w,h,lo,hi,cap_tokens", [
    (8, 56, 56, None, None, None),  # the tiny model's own budget
    (92, 56, 56, BUDGET, BUDGET, None),  # upscaled to the budget
    (91, 854, 480, 3136, 200704, None),  # the 7B recipes' budget, odd count (padded by the processor)
    (3, 300, 40, 3136, 200704, None),  # wide and short
    (40, 854, 480, 3136, 200704, 600),  # the per-frame share of a small total-video budget decides
])
def test_video_token_count_is_the_processors(tiny_model_dir, frames, w, h, lo, hi, cap_tokens):
    proc = processor(tiny_model_dir, lo, hi)
    if cap_tokens:
        proc.video_processor.max_video_tokens = cap_tokens
    video = np.zeros((frames, h, w, 3), np.uint8)
    meta = {"fps": 1.0, "total_num_frames": frames, "frames_indices": list(range(frames))}
    out = proc.video_processor(videos=[video], video_metadata=[meta], do_sample_frames=False, return_tensors="pt")
    assert video_token_count(proc, frames, w, h) == int(out["video_grid_thw"].prod()) // 4


def test_prompt_lengths_are_those_of_video_inputs(tiny_model_dir, synth_dir, tmp_path):
    """Headers only, and equal to the ids the trainer builds, for frame lists and videos, with
    frame caps and odd counts."""
    big = write_frames(tmp_path / "big", 5, w=854, h=480)
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(json.dumps({"id": "v1", "video": str(write_mp4(tmp_path / "v.mp4", seconds=3.0, w=96, h=64)),
                                 "question": "What happens?", "answer": "a thing", "fps": 3.0,
                                 "domain": "kitchen"}) + "\n")
    samples = synth_samples(synth_dir, 3) + load_samples({"format": "jsonl", "annotations": str(jsonl)})
    frames_cfgs = [None, {"max_frames": 3, "odd_frames": "drop"}, {"odd_frames": "keep", "max_pixels": 20000}]
    for lo, hi in ((None, None), (3136, 200704)):
        proc = processor(tiny_model_dir, lo, hi)
        for frames_cfg in frames_cfgs:
            video = VideoInputs(samples, proc, frames_cfg)
            lengths = prompt_lengths(samples, proc, frames_cfg, None)
            assert {(p.sample_id, p.qa) for p in lengths} == {(s.id, q) for s in samples for q in ("close", "open")
                                                             if q == "open" or s.options}
            for p in lengths:
                ids = video.prompt_ids(video.messages(p.sample_id, p.qa + "qa"), p.sample_id)
                assert p.tokens == len(ids), (p, lo, hi, frames_cfg)
                assert p.video_tokens == video.num_video_tokens(p.sample_id)
    g = clip_geometry(FrameSource(frames=tuple(big), fps=1.0), {"max_pixels": 200000})
    assert (g.num_frames, g.file) == (6, big[0]) and g.width * g.height <= 200000
