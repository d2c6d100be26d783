"""Building a prompt reads no pixels: the fps it states comes from the annotation (and a video's
header), and equals the rate the clip is then sampled at (`Clip.fps`)."""
from __future__ import annotations

import pytest

import egoadapt.data.frames as frames
import egoadapt.inputs.video as video_module
from egoadapt.data.frames import load_clip
from egoadapt.data.schema import FrameSource, Sample
from egoadapt.inputs.video import VideoInputs
from tests.data.egodata_helpers import write_frames, write_mp4


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def no_pixels(monkeypatch):
    """Every way to a pixel fails: decoding a video frame, reading an image, processing a clip."""
    def refuse(*_a, **_k):
        raise AssertionError("building a prompt decoded or processed a frame")

    monkeypatch.setattr(frames, "_decode", refuse)
    monkeypatch.setattr(frames, "read_image", refuse)
    monkeypatch.setattr(frames, "frame_size", refuse)
    monkeypatch.setattr(video_module, "vision_inputs", refuse)


def samples(tmp_path) -> list[Sample]:
    listed = write_frames(tmp_path / "list", 9)
    mp4 = str(write_mp4(tmp_path / "v.mp4", seconds=6.0, fps=10))
    return [
        Sample(id="list", question="?", frame_source=FrameSource(frames=tuple(listed), fps=2.0)),
        Sample(id="span", question="?", frame_source=FrameSource(video=mp4, fps=2.0, start=1.0, end=4.0)),
        Sample(id="whole", question="?", frame_source=FrameSource(video=mp4, fps=4.0)),
    ]


@pytest.mark.parametrize("frames_cfg", [{}, {"max_frames": 4}, {"fps": 1.0}], ids=["own", "capped", "rate"])
def test_the_prompts_fps_is_the_clips_without_decoding(processor, tmp_path, monkeypatch, frames_cfg):
    data = samples(tmp_path)
    expected = {s.id: load_clip(s, frames_cfg).fps for s in data}  # what decoding gives
    assert len(set(expected.values())) > 1 or frames_cfg.get("fps")  # the cases differ
    no_pixels(monkeypatch)
    video = VideoInputs(data, processor, frames_cfg)
    for s in data:
        assert video.sampling_fps(s.id) == pytest.approx(expected[s.id], rel=1e-9)
        text = video.messages(s.id, "openqa")[-1]["content"][-1]["text"]
        assert f"sampled at {format(expected[s.id], 'g')} fps" in text
    with pytest.raises(AssertionError, match="decoded or processed"):  # the guard does guard
        video.prompt_ids(video.messages("list", "openqa"), "list")
