"""Frames: the real sampling fps reaches the Qwen2.5-VL processor (second_per_grid_ts =
temporal_patch_size / fps) for frame lists and for decord/PyAV-sampled videos; caps; odd T."""
from __future__ import annotations

import numpy as np
import pytest

from egoadapt.data.frames import fix_odd, load_clip, plan
from egoadapt.data.schema import FrameSource, Sample
from egoadapt.inputs.encode import encode_clip
from tests.data.egodata_helpers import write_frames, write_mp4


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return str(write_mp4(tmp_path_factory.mktemp("vid") / "clip.mp4", seconds=10, fps=10))


def run_processor(processor, clip):
    """The full processor call a collator makes: chat text + video + its metadata."""
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[text], videos=[clip.frames], video_metadata=[clip.metadata()], do_sample_frames=False,
                     return_tensors="pt")


@pytest.mark.parametrize("fps, spgt", [(1.0, 2.0), (0.5, 4.0), (2.0, 1.0)])
def test_frame_list_fps_reaches_processor(processor, tmp_path, fps, spgt):
    paths = write_frames(tmp_path / "q1", 6)
    clip = load_clip(Sample(id="1", question="?", frame_source=FrameSource(frames=tuple(paths), fps=fps)))
    assert clip.frames.shape == (6, 48, 64, 3) and clip.frames.dtype == np.uint8
    assert clip.timestamps == [k / fps for k in range(6)] and clip.metadata()["fps"] == fps
    out = run_processor(processor, clip)
    assert out["second_per_grid_ts"].tolist() == [spgt]  # not 2/24: trap 4
    assert out["video_grid_thw"][0, 0].item() == 3
    assert encode_clip(processor, clip)["second_per_grid_ts"].tolist() == [spgt]


def test_without_metadata_the_processor_assumes_24_fps(processor, tmp_path):
    """The trap this module exists for: no video_metadata -> 24 fps, silently."""
    paths = write_frames(tmp_path / "q", 4)
    clip = load_clip(FrameSource(frames=tuple(paths), fps=1.0))
    out = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[clip.frames], return_tensors="pt")
    assert out["second_per_grid_ts"].tolist() == [pytest.approx(2 / 24)]


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("fps, spgt", [(1.0, 2.0), (0.5, 4.0)])
def test_video_sampled_at_target_fps_reaches_processor(processor, mp4, backend, fps, spgt):
    sample = Sample(id="v1", question="?", frame_source=FrameSource(video=mp4, start=2.0, end=8.0, fps=fps))
    clip = load_clip(sample, {"backend": backend})
    n = int(6 * fps)  # 6 s span
    assert clip.timestamps[:n] == [2.0 + k / fps for k in range(n)]
    assert clip.indices[:n] == [round(10 * t) for t in clip.timestamps[:n]]  # 10 fps source
    assert clip.source_fps == pytest.approx(10) and clip.span == (2.0, 8.0) and clip.backend == backend
    assert clip.num_frames == n + n % 2 and clip.padded == n % 2  # 3 frames at 0.5 fps -> padded to 4
    # the right frames: frame i is gray level 2*i
    assert np.allclose(clip.frames.reshape(clip.num_frames, -1).mean(1), [2 * i for i in clip.indices], atol=3)
    out = run_processor(processor, clip)
    assert out["second_per_grid_ts"].tolist() == [spgt]
    assert out["video_grid_thw"][0, 0].item() == clip.num_frames // 2


def test_decord_and_pyav_pick_the_same_frames(mp4):
    src = FrameSource(video=mp4, start=0.3, end=9.9, fps=1.0)
    a, b = load_clip(src, {"backend": "decord"}), load_clip(src, {"backend": "pyav"})
    assert a.indices == b.indices and a.timestamps == b.timestamps
    assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2


def test_whole_video_when_no_span(mp4):
    clip = load_clip(FrameSource(video=mp4, fps=0.5))
    assert clip.timestamps == [0, 2, 4, 6, 8] + [8] and clip.padded == 1 and clip.span == (0.0, 10.0)
    meta = clip.metadata()
    assert meta["frames_indices"] == [0, 1, 2, 3, 4, 4] and meta["total_num_frames"] == 6


def test_max_frames_lowers_the_rate_and_reports_it(processor, mp4, tmp_path):
    clip = load_clip(FrameSource(video=mp4, start=0, end=10, fps=1.0), {"max_frames": 4})
    assert clip.num_frames == 4 and clip.fps == pytest.approx(0.4) and clip.timestamps == [0, 2.5, 5.0, 7.5]
    assert run_processor(processor, clip)["second_per_grid_ts"].tolist() == [pytest.approx(5.0)]
    paths = write_frames(tmp_path / "q", 9)
    clip = load_clip(FrameSource(frames=tuple(paths), fps=1.0), {"max_frames": 4})
    assert clip.indices == [0, 3, 6] + [6] and clip.fps == pytest.approx(1 / 3)  # every 3rd frame, padded
    # an odd cap never gives more frames than asked for after padding
    assert load_clip(FrameSource(frames=tuple(paths), fps=1.0), {"max_frames": 5}).num_frames <= 5


def test_max_pixels_shrinks_frames_keeping_aspect(tmp_path, mp4):
    paths = write_frames(tmp_path / "q", 2, w=200, h=100)
    clip = load_clip(FrameSource(frames=tuple(paths), fps=1.0), {"max_pixels": 5000})
    h, w = clip.frames.shape[1:3]
    assert h * w <= 5000 and abs(w / h - 2) < 0.1
    clip = load_clip(FrameSource(video=mp4, fps=1.0), {"max_pixels": 1000})
    assert clip.frames.shape[1] * clip.frames.shape[2] <= 1000


def test_mixed_frame_sizes_are_unified(tmp_path):
    a = write_frames(tmp_path / "a", 1, w=64, h=48)
    b = write_frames(tmp_path / "b", 1, w=32, h=24)
    assert load_clip(FrameSource(frames=(a[0], b[0]), fps=1.0)).frames.shape == (2, 48, 64, 3)


def test_odd_frame_policies():
    from egoadapt.data.frames import Clip

    def clip(t):
        return Clip(np.zeros((t, 2, 2, 3), np.uint8), 1.0, [float(i) for i in range(t)], list(range(t)), (0, t))

    assert fix_odd(clip(3), "pad").num_frames == 4
    assert fix_odd(clip(3), "drop").num_frames == 2
    assert fix_odd(clip(3), "keep").num_frames == 3
    assert fix_odd(clip(1), "drop").num_frames == 2  # never drop to nothing
    assert fix_odd(clip(4), "pad").num_frames == 4
    with pytest.raises(ValueError, match="odd_frames"):
        fix_odd(clip(3), "repeat")


def test_plan_spans():
    assert plan(0, 10, 30, 0.5, 100)[0] == [0, 2, 4, 6, 8]  # EgoCross: 10 s at 0.5 fps -> 5 frames
    assert plan(0, 10.3, 10, 1, 100)[2] == (0, 10)  # small overshoot is clamped
    assert plan(5, 5.2, 10, 1, 100)[0] == [5]  # a span shorter than a frame still gives one
    with pytest.raises(ValueError, match="past the end"):
        plan(0, 12, 10, 1, 100)
    with pytest.raises(ValueError, match="past the end"):
        plan(10, 12, 10, 1, 100)
