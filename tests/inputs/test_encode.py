"""A clip's vision inputs through the input cache (egoadapt.inputs.encode, VideoInputs): misses
when any key part changes (the storage format too); entries are compact (uint8 pixels that read
back as the processor's float32), the RAM store keeps to its byte budget, and the warm-up splits
clips between ranks."""
from __future__ import annotations

import os

import pytest
import torch

from egoadapt.data.cache import InputCache, make_key
from egoadapt.data.schema import FrameSource, Sample
from egoadapt.inputs.encode import vision_inputs
from tests.data.egodata_helpers import write_frames, write_mp4


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def test_sample_inputs_cached_and_invalidated(processor, tmp_path):
    paths = write_frames(tmp_path / "q", 4)
    sample = Sample(id="1", question="?", frame_source=FrameSource(frames=tuple(paths), fps=1.0))
    cache = InputCache(tmp_path / "cache")
    first = vision_inputs(sample, {}, processor, cache)
    again = vision_inputs(sample, {}, processor, cache)
    assert (cache.hits, cache.misses) == (1, 1)
    for k in ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts"):
        assert torch.equal(first[k], again[k])
    assert again["second_per_grid_ts"].tolist() == [2.0] and again["fps"] == 1.0 and again["num_frames"] == 4

    # each key part changes the key: sampling fps, frame limits, a frame file, the processor
    vision_inputs(Sample(id="1", question="?", frame_source=FrameSource(frames=tuple(paths), fps=0.5)),
                  {}, processor, cache)
    assert cache.misses == 2
    vision_inputs(sample, {"max_pixels": 1000}, processor, cache)
    assert cache.misses == 3
    st = os.stat(paths[2])
    os.utime(paths[2], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    vision_inputs(sample, {}, processor, cache)
    assert cache.misses == 4
    old = processor.video_processor.size["longest_edge"]
    processor.video_processor.size["longest_edge"] = old // 2
    try:
        vision_inputs(sample, {}, processor, cache)
        assert cache.misses == 5
    finally:
        processor.video_processor.size["longest_edge"] = old
    vision_inputs(sample, {}, processor, cache)
    assert (cache.hits, cache.misses) == (2, 5)


def test_video_inputs_cached(processor, tmp_path):
    mp4 = write_mp4(tmp_path / "v.mp4", seconds=4)
    sample = Sample(id="v", question="?", frame_source=FrameSource(video=str(mp4), start=0, end=4, fps=0.5))
    cache = InputCache(tmp_path / "cache")
    a = vision_inputs(sample, {"backend": "decord"}, processor, cache)
    b = vision_inputs(sample, {"backend": "decord"}, processor, cache)
    assert cache.hits == 1 and a["second_per_grid_ts"].tolist() == b["second_per_grid_ts"].tolist() == [4.0]
    vision_inputs(sample, {"backend": "pyav"}, processor, cache)
    assert cache.misses == 2


def noise_frames(folder, n: int, w: int = 120, h: int = 90, seed: int = 0) -> list[str]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(n):
        paths.append(str(folder / f"frame_{k:05d}.png"))
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def frames_sample(paths, sid: str = "1") -> Sample:
    return Sample(id=sid, question="?", frame_source=FrameSource(frames=tuple(paths), fps=1.0))


def test_entries_are_compact_and_give_the_processors_pixels(processor, tmp_path):
    """Stored: uint8 pixels (a quarter of float32 on disk); read: the float32 values the full
    processor gives, bit for bit (training sees the same numbers as before)."""
    from egoadapt.data.frames import load_clip
    from egoadapt.inputs.encode import STORAGE, encode_clip, vision_key_parts
    from egoadapt.inputs.patches import pixels

    sample = frames_sample(noise_frames(tmp_path / "q", 5))  # odd: the processor pads time
    cache = InputCache(tmp_path / "cache")
    entry = vision_inputs(sample, {}, processor, cache)
    assert STORAGE == "uint8-patches" and entry["pixel_values_videos"].dtype == torch.uint8
    clip = load_clip(sample, {})
    full = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[clip.frames],
                     video_metadata=[clip.metadata()], do_sample_frames=False, return_tensors="pt")
    expected = full["pixel_values_videos"]
    assert expected.dtype == torch.float32 and torch.equal(entry["video_grid_thw"], full["video_grid_thw"])
    got = pixels(entry)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    assert torch.equal(got, expected)
    on_disk = cache.path(make_key(vision_key_parts(sample, {}, processor))).stat().st_size
    assert on_disk <= 0.3 * expected.numel() * 4  # float32 entries were 4 bytes a value
    assert torch.equal(pixels(encode_clip(processor, clip)), got)  # a miss and a hit agree


def test_key_changes_with_the_storage_format(monkeypatch, processor):
    import egoadapt.inputs.encode as c

    sample = Sample(id="1", question="?", frame_source=FrameSource(frames=("/nonexistent/0.jpg",), fps=1.0))
    now = make_key(c.vision_key_parts(sample, {}, processor))
    monkeypatch.setattr(c, "STORAGE", "float32-patches")
    assert make_key(c.vision_key_parts(sample, {}, processor)) != now
    monkeypatch.undo()
    monkeypatch.setattr(c, "KEY_VERSION", c.KEY_VERSION - 1)
    assert make_key(c.vision_key_parts(sample, {}, processor)) != now


def test_ram_store_never_exceeds_its_byte_budget(processor, tmp_path):
    from egoadapt.data.cache import entry_bytes
    from egoadapt.inputs.video import VideoInputs

    samples = [frames_sample(noise_frames(tmp_path / f"q{i}", 2 + i % 3, seed=i), str(i)) for i in range(8)]
    sizes = {s.id: entry_bytes(vision_inputs(s, {}, processor)) for s in samples}
    budget = int(2.5 * max(sizes.values()))
    video = VideoInputs(samples, processor, {}, cache=InputCache(tmp_path / "cache"), ram_bytes=budget)
    for sid in [s.id for s in samples] * 2 + ["0", "0", "7", "1"]:
        video.vision(sid)
        held = sum(sizes[k] for k in video._memory)
        assert video.memory_bytes == held <= budget
    assert 1 < len(video._memory) < len(samples)
    small = VideoInputs(samples, processor, {}, ram_bytes=min(sizes.values()) - 1)  # every entry over budget
    small.vision("0")
    assert small.memory_bytes == 0 and not small._memory


def test_warm_up_splits_the_clips_between_ranks(processor, tmp_path):
    """Rank r processes clips r::world_size into the disk cache; afterwards every clip is a hit."""
    from egoadapt.inputs.video import VideoInputs

    samples = [frames_sample(noise_frames(tmp_path / f"q{i}", 2, seed=i), str(i)) for i in range(5)]
    done = {}
    for rank in (1, 0):  # any order: each takes only its share
        video = VideoInputs(samples, processor, {}, cache=InputCache(tmp_path / "cache"))
        done[rank] = video.warm(samples, rank=rank, world_size=2, progress=False)
        assert video.cache.misses == done[rank] and video.cache.hits == 0
    assert done == {0: 3, 1: 2}
    reader = VideoInputs(samples, processor, {}, cache=InputCache(tmp_path / "cache"))
    kept, skipped = reader.usable(samples)
    assert len(kept) == 5 and not skipped and (reader.cache.hits, reader.cache.misses) == (5, 0)
    assert VideoInputs(samples, processor, {}).warm(samples, 0, 2) == 0  # no disk cache: nothing to share
