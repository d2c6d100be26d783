"""On-disk cache of processed vision inputs (pixel_values_videos, video_grid_thw, second_per_grid_ts).

What is stored is compact: the processor's resized frames as uint8, already in its patch layout
(the processor runs with rescale and normalise off), plus the per-channel mean and std of those
two steps; `pixels(value)` runs them on read, as transformers does, so the model gets the very
float32 values the full processor gives. 4x fewer bytes than float32 patches (a 12-frame 854x480
clip at the 7B recipes' 200704-pixel budget: 6.5 MB, was 26 MB), and a read costs a subtract and
a divide per value (benchmarks/bench_cache.py).

Entries are keyed by a SHA-256 of everything that changes the pixels: the sample's frame
source, each input file's size and mtime, the sampling fps and frame/pixel limits, and the
processor's class and video config. A changed key part gives a new key (a miss); stale
entries are simply never read again (delete the folder to reclaim space).

Writes go to a unique temporary file in the entry's folder and are renamed into place with
os.replace, which is atomic on POSIX: concurrent writers of one key (several ranks, GRPO
workers) each leave a complete file, the last rename wins, and readers never see a partial
entry. An unreadable entry counts as a miss and is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from egoadapt.data.frames import Clip, frame_setting, load_clip, refused
from egoadapt.data.schema import FrameSource, Sample

log = logging.getLogger(__name__)

VISION_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
PIXELS = "pixel_values_videos"
# bump when the layout or the pixel pipeline changes (2: mixed frame sizes take the common one;
# 3: pixels stored as uint8 patches, normalised on read)
KEY_VERSION = 3
STORAGE = "uint8-patches"  # how pixels are stored: part of every key


def make_key(key_parts: Mapping[str, Any]) -> str:
    blob = json.dumps({"v": KEY_VERSION, "storage": STORAGE, **key_parts}, sort_keys=True, default=str,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_bytes(value: Mapping[str, Any]) -> int:
    """Bytes of an entry's tensors (what it costs in RAM; on disk add a small header)."""
    return sum(v.nbytes for v in value.values() if isinstance(v, torch.Tensor))


def pixels(value: Mapping[str, Any]) -> torch.Tensor:
    """`pixel_values_videos` as the model takes them (float32): stored uint8 patches rescaled and
    normalised per channel, the processor's last step (a patch holds channel, time, row, column)."""
    x = value[PIXELS]
    if x.dtype != torch.uint8:  # stored as the processor gave it
        return x.float()
    n = x.shape[0]
    mean, std = value["pixel_mean"].view(1, -1, 1), value["pixel_std"].view(1, -1, 1)
    return x.view(n, mean.shape[1], -1).float().sub_(mean).div_(std).view(n, -1)


class InputCache:
    """`get_or_compute(key_parts, fn)`: fn() -> {name: tensor | json-able} computed once per key."""

    def __init__(self, root: str | os.PathLike | None, enabled: bool = True):
        self.root = Path(root) if root else None
        self.enabled = enabled and self.root is not None
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            # one read of the bytes: a reopen by path could meet a newer entry renamed in between
            data = p.read_bytes()
            header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
            extra = json.loads((header.get("__metadata__") or {}).get("extra", "{}"))
            return {**load(data), **extra}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            log.warning("input cache: unreadable entry %s (%s); recomputing", p, e)
            return None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in value.items() if isinstance(v, torch.Tensor)}
        extra = {k: v for k, v in value.items() if not isinstance(v, torch.Tensor)}
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=p.parent)
        os.close(fd)
        try:
            save_file(tensors, tmp, metadata={"extra": json.dumps(extra)})
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_or_compute(self, key_parts: Mapping[str, Any], fn: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        if not self.enabled:
            return dict(fn())
        key = make_key(key_parts)
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        value = dict(fn())
        self.put(key, value)
        return value


# ---------------------------------------------------------------- vision inputs of a sample

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
    return {"source": sample.frame_source.key(), "files": file_stamps(sample.frame_source), "frames": knobs,
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


def encode_clip(processor: Any, clip: Clip, processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the processor on one clip with its real fps; keep the vision tensors, pixels compact.

    Goes through the full processor (with a one-video placeholder text) so second_per_grid_ts
    is computed by the processor's own rule from the metadata. Rescale and normalise are left
    out (the resized uint8 pixels in patch layout are kept, with the mean and std that `pixels`
    applies on read); a processor that does not give uint8 that way is run in full.
    """
    text = getattr(processor, "video_token", "<|video_pad|>")
    kwargs = dict(processor_kwargs or {})

    def run(**extra: Any):
        return processor(text=[f"<|vision_start|>{text}<|vision_end|>"], videos=[clip.frames],
                         video_metadata=[clip.metadata()], do_sample_frames=False, return_tensors="pt",
                         **{**kwargs, **extra})

    out = run(do_rescale=False, do_normalize=False)
    value = {k: out[k] for k in VISION_KEYS if k in out}
    if value[PIXELS].dtype == torch.uint8:
        value["pixel_mean"], value["pixel_std"] = normalisation(processor, kwargs)
    else:
        value = {k: v for k, v in run().items() if k in VISION_KEYS}
    sec = value.get("second_per_grid_ts")
    if sec is not None and not isinstance(sec, torch.Tensor):
        value["second_per_grid_ts"] = torch.tensor(sec, dtype=torch.float32)
    return value


def vision_inputs(sample: Sample, frames_cfg: Any, processor: Any, cache: InputCache | None = None,
                  processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Cached processor vision inputs of a sample (frames read and encoded only on a miss).

    Besides the tensors the value holds `fps` and `num_frames` of the clip (for the prompt).
    Raises FrameError (naming file, record and field) for frames that cannot be read or processed.
    """
    def compute() -> dict[str, Any]:
        clip = load_clip(sample, frames_cfg)
        try:
            encoded = encode_clip(processor, clip, processor_kwargs)
        except (ValueError, RuntimeError) as e:  # what only the processor finds, as a sample's error
            raise refused(sample, e) from None
        return {**encoded, "fps": clip.fps, "num_frames": clip.num_frames}

    if cache is None:
        return compute()
    return cache.get_or_compute(vision_key_parts(sample, frames_cfg, processor, processor_kwargs), compute)
