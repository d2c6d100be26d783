"""On-disk cache of processed vision inputs (pixel_values_videos, video_grid_thw, second_per_grid_ts).

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
KEY_VERSION = 2  # bump when the layout or the pixel pipeline changes (2: mixed frame sizes take the common one)


def make_key(key_parts: Mapping[str, Any]) -> str:
    blob = json.dumps({"v": KEY_VERSION, **key_parts}, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


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
    knobs = {k: frame_setting(frames_cfg, k) for k in names}
    return {"source": sample.frame_source.key(), "files": file_stamps(sample.frame_source), "frames": knobs,
            "processor": processor_identity(processor), "processor_kwargs": dict(processor_kwargs or {})}


def encode_clip(processor: Any, clip: Clip, processor_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run the processor on one clip with its real fps; keep the vision tensors.

    Goes through the full processor (with a one-video placeholder text) so second_per_grid_ts
    is computed by the processor's own rule from the metadata.
    """
    text = getattr(processor, "video_token", "<|video_pad|>")
    out = processor(text=[f"<|vision_start|>{text}<|vision_end|>"], videos=[clip.frames],
                    video_metadata=[clip.metadata()], do_sample_frames=False, return_tensors="pt",
                    **dict(processor_kwargs or {}))
    value = {k: out[k] for k in VISION_KEYS if k in out}
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
