"""A sample's vision inputs as the processor gives them, compact, through the input cache.

`vision_inputs(sample, frames_cfg, family, cache)` reads the clip (`egoadapt.data.frames`),
runs the processor on it with its real fps (`encode_clip`, through the model family's
`process`) and keeps the family's vision tensors (Qwen2.5-VL: pixel_values_videos,
video_grid_thw, second_per_grid_ts) in `egoadapt.data.cache.InputCache`.

What is stored is compact: the processor's resized frames as uint8, already in its patch layout
(the processor runs with rescale and normalise off), plus the per-channel mean and std of those
two steps; `egoadapt.inputs.patches.pixels` runs them on read, as transformers does, so the model gets the very
float32 values the full processor gives. 4x fewer bytes than float32 patches (a 12-frame 854x480
clip at the 7B recipes' 200704-pixel budget: 6.5 MB, was 26 MB), and a read costs a subtract and
a divide per value (benchmarks/bench_cache.py).

Entries are keyed (`vision_key_parts`) by everything that changes the pixels: the sample's frame
source, each input file's size and mtime, the sampling fps and frame/pixel limits, the
processor's class and video config, and the storage layout (`KEY_VERSION`, `STORAGE`). A changed
key part gives a new key (a miss); stale entries are simply never read again.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from egoadapt.data.cache import InputCache
from egoadapt.data.frames import Clip, frame_setting, load_clip, refused
from egoadapt.data.schema import FrameSource, Sample
from egoadapt.inputs.families import as_family
from egoadapt.inputs.patches import PIXELS

# bump when the layout or the pixel pipeline changes (2: mixed frame sizes take the common one;
# 3: pixels stored as uint8 patches, normalised on read)
KEY_VERSION = 3
STORAGE = "uint8-patches"  # how pixels are stored: part of every key


def file_stamps(source: FrameSource) -> list[list]:
    """(path, size, mtime_ns) of every input file; a missing file stamps as -1 (fails later, clearly)."""
    out = []
    for p in source.frames if source.kind == "frames" else (source.video,):
        try:
            st = os.stat(p)
            out.append([p, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([p, -1, -1])
    return out


def processor_identity(processor: Any) -> dict[str, Any]:
    vp = getattr(processor, "video_processor", processor)
    try:
        config = vp.to_dict()
    except Exception:  # noqa: BLE001 - not a transformers processor: fall back to its attributes
        config = {k: v for k, v in vars(vp).items() if not k.startswith("_")}
    return {"class": f"{type(processor).__name__}/{type(vp).__name__}", "config": config}


def vision_key_parts(sample: Sample, frames_cfg: Any, processor: Any,
                     processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    # effective values (defaults filled in), and only those that change this kind of source's pixels
    names = ("max_frames", "max_pixels", "odd_frames")
    if sample.frame_source.kind == "video":
        names += ("backend", "fps", "span_tolerance_s")
    elif frame_setting(frames_cfg, "fps"):  # a frame list thinned to frames.fps (unset: keys as before)
        names += ("fps",)
    if frame_setting(frames_cfg, "resize") != "cap":  # (cap: keys as before)
        names += ("resize",)
    if frame_setting(frames_cfg, "processor_fps"):  # second_per_grid_ts (unset: keys as before)
        names += ("processor_fps",)
    knobs = {k: frame_setting(frames_cfg, k) for k in names}
    return {"v": KEY_VERSION, "storage": STORAGE, "source": sample.frame_source.key(), "files": file_stamps(sample.frame_source), "frames": knobs,
            "processor": processor_identity(processor), "processor_kwargs": dict(processor_kwargs or {})}


def normalisation(processor: Any, kwargs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) per channel in uint8 units: the video processor's rescale and normalise as one
    (x - mean) / std, fused as transformers fuses them (so `pixels` gives its values bit for bit);
    `kwargs` override the processor's settings as they would in a call."""
    vp = getattr(processor, "video_processor", processor)

    def get(name: str, default: Any) -> Any:
        return kwargs[name] if name in kwargs else getattr(vp, name, default)

    factor = float(get("rescale_factor", 1 / 255)) if get("do_rescale", True) else 1.0
    if get("do_normalize", True):
        mean, std = torch.tensor(get("image_mean", 0.0)), torch.tensor(get("image_std", 1.0))
    else:
        mean, std = torch.tensor(0.0), torch.tensor(1.0)
    mean, std = (t.float().reshape(-1).expand(3) * (1.0 / factor) for t in (mean, std))
    return mean.contiguous(), std.contiguous()


def encode_clip(family: Any, clip: Clip, processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the processor on one clip with its real fps (`family.process`: a `VideoFamily`, or a
    processor loaded from a checkpoint); keep the family's vision tensors, pixels compact.

    Goes through the full processor (with a one-video placeholder text) so the time axis
    (second_per_grid_ts) is computed by the processor's own rule from the metadata. Rescale and
    normalise are left out (the resized uint8 pixels in patch layout are kept, with the mean and
    std that `pixels` applies on read); a processor that does not give uint8 that way is run in full.
    """
    family = as_family(family)
    kwargs = dict(processor_kwargs or {})
    out = family.process(clip, **kwargs, do_rescale=False, do_normalize=False)
    value = {k: out[k] for k in family.vision_keys if k in out}
    if value[PIXELS].dtype == torch.uint8:
        value["pixel_mean"], value["pixel_std"] = normalisation(family.processor, kwargs)
    else:
        value = {k: v for k, v in family.process(clip, **kwargs).items() if k in family.vision_keys}
    sec = value.get("second_per_grid_ts")
    if sec is not None and not isinstance(sec, torch.Tensor):
        value["second_per_grid_ts"] = torch.tensor(sec, dtype=torch.float32)
    return value


def vision_inputs(sample: Sample, frames_cfg: Any, family: Any, cache: InputCache | None = None,
                  processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cached processor vision inputs of a sample (frames read and encoded only on a miss); `family`:
    a `VideoFamily`, or a processor loaded from a checkpoint.

    Besides the tensors the value holds `fps` and `num_frames` of the clip (for the prompt).
    Raises FrameError (naming file, record and field) for frames that cannot be read or processed.
    """
    family = as_family(family)
    frames_cfg = family.frames_config(frames_cfg)

    def compute() -> dict[str, Any]:
        clip = load_clip(sample, frames_cfg)
        try:
            encoded = encode_clip(family, clip, processor_kwargs)
        except (ValueError, RuntimeError) as e:  # what only the processor finds, as a sample's error
            raise refused(sample, e) from None
        return {**encoded, "fps": clip.fps, "num_frames": clip.num_frames}

    if cache is None:
        return compute()
    return cache.get_or_compute(vision_key_parts(sample, frames_cfg, family.processor, processor_kwargs), compute)
