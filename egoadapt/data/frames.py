"""Pixels for a sample: a frame list read with PIL, or a raw video sampled at a target fps
within [start, end] with decord (or PyAV), as uint8 (T, H, W, 3) plus the metadata the
Qwen2.5-VL processor needs to know the real frame rate.

Why the metadata matters (stack trap 4): without `video_metadata` the transformers processor
assumes 24 fps and `second_per_grid_ts` (the time step of mRoPE's temporal axis) comes out
0.083 instead of 2.0 at 1 fps. `Clip.metadata()` describes the *sampled clip* (fps = sampling
fps, frames_indices = 0..T-1), so `VideoMetadata.sampled_fps` equals the sampling fps and
`second_per_grid_ts = temporal_patch_size / fps`; pass it with `do_sample_frames=False`.

Odd frame counts: Qwen2.5-VL merges frames in pairs (temporal_patch_size 2). By default
(`odd_frames: pad`) an odd clip gets its last frame repeated, which is exactly what the
transformers processor would do itself, made explicit here so every consumer (HF, vLLM,
the cache) sees the same T; the padded frame repeats the last frame index, so timestamps stay
true. `drop` removes the last frame instead (a 1-frame clip is still padded); `keep` leaves T.

Sampling rate (`frames.fps`, the sampling-rate ablation): a raw video is sampled at any rate up
to its own frame rate; a frame list, already sampled at F fps, gives F/k fps for a whole k (every
k-th frame). A rate either cannot give is refused for the run, naming the record and the rates its
source offers (`RateUnavailable`; never skipped by `frames.on_error`: a run at a mix of rates
would be mislabelled). Unset, frame lists keep their own rate and videos take the data config's.

Frame caps: `max_frames` lowers the rate uniformly (frame lists: every k-th frame, fps/k;
videos: fps = max_frames / span), so the reported fps stays exact. `max_pixels` shrinks
frames at decode time (aspect kept); the processor's own min/max_pixels still decide the
final size. `resize: qwen_vl_utils` instead resizes every frame as qwen-vl-utils' `fetch_image`
does before the processor sees it (sides rounded to multiples of 28, between 4*28*28 pixels and
`max_pixels`): the official EgoCross scripts' first resize (`protocol=official`). Frames of
one list that differ in size all take the list's most common size.

Bad inputs: every frame's header is read before anything is decoded, and a frame the
processor would refuse (aspect ratio over 200:1), a decompression bomb (over PIL's
`Image.MAX_IMAGE_PIXELS`) or a degenerate frame (a side under `MIN_SIDE`) raises a
`FrameError` naming file, record and field, as do missing, truncated or undecodable files.
`check_source` is that header pass alone (cheap: for `data validate` and before a run).
With `frames.on_error: skip` callers leave such a sample out (`on_skip`), list and log it.
"""
from __future__ import annotations

import logging
import math
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from egoadapt.configs import complete
from egoadapt.data.errors import DataError, Problem
from egoadapt.data.schema import FrameSource, Sample

log = logging.getLogger(__name__)


# Sizes refused from the header, before decoding (see the module docstring)
MAX_ASPECT = 200  # transformers' Qwen2-VL smart_resize raises for max(h, w) / min(h, w) > 200
MIN_SIDE = 14  # one vision patch: a smaller frame (a 1x1 say) carries nothing but would be upscaled


class FrameError(DataError):
    """A frame or video that cannot be read or processed, or a span it does not have."""


class RateUnavailable(FrameError):
    """`frames.fps` asks a rate a sample's source cannot give: a setting the data cannot honour,
    not a broken sample, so `on_skip` re-raises it whatever `frames.on_error` says."""


@dataclass
class Clip:
    frames: np.ndarray  # uint8 (T, H, W, 3)
    fps: float  # rate of `frames` (after any max_frames thinning)
    timestamps: list[float]  # seconds: from the video start (videos) or from the clip start (frame lists)
    indices: list[int]  # source frame index (videos) or position in the frame list, per frame
    span: tuple[float, float]  # the [start, end] seconds the frames cover
    padded: int = 0  # frames appended to make T even
    backend: str = "pil"
    source_fps: float | None = None  # native fps of the video file
    meta: dict[str, Any] = field(default_factory=dict)
    processor_fps: float | None = None  # the rate the processor is told (frames.processor_fps); None: `fps`

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    def metadata(self) -> dict[str, Any]:
        """`video_metadata` for the transformers processor / vLLM (fields of transformers' VideoMetadata)."""
        t, h, w = self.frames.shape[:3]
        real = t - self.padded
        fps = float(self.processor_fps or self.fps)
        return {"total_num_frames": t, "fps": fps, "frames_indices": list(range(real)) + [real - 1] * self.padded,
                "duration": t / fps, "width": int(w), "height": int(h), "video_backend": self.backend}


def frame_setting(frames_cfg: Any, key: str) -> Any:
    """A frames setting: `frames_cfg` (None, or part of it as a mapping: conf/frames/default.yaml's values under it)."""
    return complete("frames", frames_cfg)[key]


def _err(file: str, record: str, field_: str, message: str, kind: str) -> FrameError:
    return FrameError(Problem(file, record, field_, message, kind))


def load_clip(source: Sample | FrameSource, frames_cfg: Any = None, record: str = "") -> Clip:
    """The frames of a sample (or a bare FrameSource) per `frames_cfg`; raises FrameError."""
    if isinstance(source, Sample):
        record = record or source.id
        source = source.frame_source
    if source.kind == "video":
        return load_video(source, frames_cfg, record)
    return load_frame_list(source, frames_cfg, record)


def told_rate(clip: Clip, frames_cfg: Any) -> Clip:
    """`frames.processor_fps`: the rate the processor is told for a frame list, which sets mRoPE's
    temporal step (second_per_grid_ts), when it is not the list's (the official scripts tell every
    list 0.5, their --fps). Not with frames.fps: the clip is then at that rate and is told it (as
    --fps does); videos are always told the rate they are sampled at."""
    if not frame_setting(frames_cfg, "fps"):
        clip.processor_fps = frame_setting(frames_cfg, "processor_fps")
    return clip


def check_source(source: Sample | FrameSource, frames_cfg: Any = None, record: str = "") -> None:
    """The cheap pass of `load_clip`: the headers of the frames it would read (or a video's header,
    span and first frame); raises what they alone show as a FrameError."""
    if isinstance(source, Sample):
        record = record or source.id
        source = source.frame_source
    if source.kind == "video":
        path, _, _, read, indices, _, _ = _open_video(source, frames_cfg, record)
        first = _decode(read, indices[:1], path, record)
        check_size(first.shape[2], first.shape[1], path, record, "video")
    else:
        _frame_sizes(source, frames_cfg, record)


def clip_fps(source: Sample | FrameSource, frames_cfg: Any = None, record: str = "") -> float:
    """The rate `load_clip` samples at (`Clip.fps`, the prompt's), with nothing decoded: a frame list's
    from its annotated rate and frame count, a video's from its annotated span and its header (its
    frame count and rate, for a span that runs to the end). Raises what those show as a FrameError."""
    if isinstance(source, Sample):
        record = record or source.id
        source = source.frame_source
    if source.kind == "video":
        return float(_open_video(source, frames_cfg, record)[6][0])
    return source.fps / _stride(source, frames_cfg, record)


@dataclass(frozen=True)
class ClipGeometry:
    """What `load_clip` would return, in shape only: frame count (after caps and the odd-frame
    rule), frame size (after `frames.max_pixels`), sampling fps, and the clip's first file."""

    num_frames: int
    width: int
    height: int
    fps: float
    file: str


def clip_geometry(source: Sample | FrameSource, frames_cfg: Any = None, record: str = "") -> ClipGeometry:
    """The shape `load_clip` gives, from headers (a video's header and first frame), as cheap as
    `check_source`; raises what they show as a FrameError. For token counts before any pixel
    is processed (`egoadapt.inputs.context`)."""
    if isinstance(source, Sample):
        record = record or source.id
        source = source.frame_source
    if source.kind == "video":
        path, _, _, read, indices, _, (fps, _) = _open_video(source, frames_cfg, record)
        first = _decode(read, indices[:1], path, record)
        check_size(first.shape[2], first.shape[1], path, record, "video")
        (w, h), n, file = decode_size(first.shape[2], first.shape[1], frames_cfg), len(indices), path
    else:
        stride, chosen, sizes = _frame_sizes(source, frames_cfg, record)
        w, h = decode_size(*Counter(sizes).most_common(1)[0][0], frames_cfg)
        n, fps, file = len(chosen), source.fps / stride, source.frames[0]
    mode = frame_setting(frames_cfg, "odd_frames")
    if n % 2 and mode != "keep":  # as fix_odd: pad, or drop (a single frame is still padded)
        n += -1 if mode == "drop" and n > 1 else 1
    return ClipGeometry(n, w, h, float(fps), file)


def skip_mode(frames_cfg: Any) -> bool:
    mode = frame_setting(frames_cfg, "on_error")
    if mode not in ("raise", "skip"):
        raise DataError(Problem("<config>", "", "frames.on_error", f"must be raise or skip, got {mode!r}"))
    return mode == "skip"


def on_skip(e: DataError, frames_cfg: Any) -> Problem:
    """In an `except DataError` around one sample's inputs: re-raise it, or with frames.on_error=skip
    log the sample as skipped and return its problem (file, record, field, reason) for the caller's list."""
    if not skip_mode(frames_cfg) or isinstance(e, RateUnavailable):
        raise e
    log.warning("skipping sample (frames.on_error=skip): %s", e)
    return e.problems[0]


def skipped_row(problem: Problem) -> dict[str, str]:
    """A skipped sample as one JSON line: id, kind, file, field and the full reason."""
    return {"id": problem.record, "kind": problem.kind, "file": problem.file, "field": problem.field,
            "reason": str(problem)}


def try_load_clip(sample: Sample, frames_cfg: Any, skipped: Counter | None = None) -> Clip | None:
    """`load_clip`, or None (counted in `skipped[kind]` and logged) when frames.on_error is skip."""
    try:
        return load_clip(sample, frames_cfg)
    except DataError as e:
        problem = on_skip(e, frames_cfg)
        if skipped is not None:
            skipped[problem.kind] += 1
        return None


def refused(sample: Sample, e: BaseException) -> FrameError:
    """A processor error on a sample's clip, as a FrameError naming its first file."""
    fs = sample.frame_source
    file, field_ = (fs.video or "", "video") if fs.kind == "video" else ((fs.frames or ("<frames>",))[0], "video_path")
    return _err(file, sample.id, field_, f"the processor refused the clip ({_first_line(e)})", "processor")


def check_size(w: int, h: int, file: str, record: str, field_: str) -> None:
    """Refuse a frame size the processor would refuse, a decompression bomb, or a degenerate frame."""
    if w * h > Image.MAX_IMAGE_PIXELS:
        raise _err(file, record, field_, f"{w}x{h} frame ({w * h / 1e6:.0f} megapixels) is over the "
                   f"decompression-bomb limit (PIL Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})", "too_large")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise _err(file, record, field_, f"{w}x{h} frame: aspect ratio {max(w, h) / max(1, min(w, h)):.0f}:1 is "
                   f"over the processor's limit of {MAX_ASPECT}:1", "bad_aspect")
    if min(w, h) < MIN_SIDE:
        raise _err(file, record, field_, f"{w}x{h} frame is under {MIN_SIDE} pixels on a side", "too_small")


# ---------------------------------------------------------------- frame lists

def load_frame_list(source: FrameSource, frames_cfg: Any = None, record: str = "") -> Clip:
    stride, chosen, sizes = _frame_sizes(source, frames_cfg, record)  # headers first: nothing decoded before all pass
    max_pixels = frame_setting(frames_cfg, "max_pixels")
    # one size for the clip: the most common (the first on a tie), never one odd frame's
    size = decode_size(*Counter(sizes).most_common(1)[0][0], frames_cfg)
    images = []
    for i in chosen:
        img = read_image(source.frames[i], record, f"video_path[{i}]", max_pixels)
        images.append(img if img.size == size else img.resize(size, Image.BICUBIC))
    fps = source.fps / stride
    frames = np.stack([np.asarray(im, dtype=np.uint8) for im in images])
    times = [k / fps for k in range(len(chosen))]
    clip = Clip(frames, fps, times, chosen, (0.0, len(chosen) / fps), backend="pil")
    return told_rate(fix_odd(clip, frame_setting(frames_cfg, "odd_frames")), frames_cfg)


def _frame_sizes(source: FrameSource, frames_cfg: Any, record: str) -> tuple[int, list[int], list[tuple[int, int]]]:
    """(stride, indices of the frames a clip takes, their (w, h) from the headers); raises FrameError."""
    paths = list(source.frames)
    stride = _stride(source, frames_cfg, record)
    chosen = list(range(0, len(paths), stride))
    return stride, chosen, [frame_size(paths[i], record, f"video_path[{i}]") for i in chosen]


def _stride(source: FrameSource, frames_cfg: Any, record: str) -> int:
    """k such that a frame list clip takes every k-th frame (`frames.fps`, then `max_frames`); from the count alone."""
    if not source.frames:
        raise _err("<frames>", record, "video_path", "empty frame list", "empty_frames")
    step = rate_step(source, frames_cfg, record)
    return step * math.ceil(math.ceil(len(source.frames) / step) / _even_cap(frames_cfg))


def rate_step(source: FrameSource, frames_cfg: Any, record: str = "") -> int:
    """k such that every k-th frame of the list gives `frames.fps` (1 when unset); raises
    RateUnavailable when no whole k does."""
    want = frame_setting(frames_cfg, "fps")
    if not want:
        return 1
    k = source.fps / float(want)
    if k < 1 - 1e-6 or abs(k - round(k)) > 1e-6 * k:
        offers = ", ".join(f"{source.fps / j:.3g}" for j in range(1, 5))
        raise RateUnavailable(Problem(
            source.frames[0], record, "frames.fps",
            f"frames.fps={float(want):g} cannot be taken from this frame list: its frames were sampled at "
            f"{source.fps:g} fps, so it gives {offers}, ... fps (every k-th frame); pick one of those, or use "
            "the raw videos (data.format=jsonl) for other rates", "rate_unavailable"))
    return round(k)


def frame_size(path: str, record: str = "", field_: str = "video_path") -> tuple[int, int]:
    """(w, h) from an image's header, checked by `check_size`; nothing is decoded."""
    if not os.path.isfile(path):
        raise _err(path, record, field_, "frame file not found", "missing_frame")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_size says it better
            with Image.open(path) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:
        raise _err(path, record, field_, f"decompression bomb ({_first_line(e)})", "too_large") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _err(path, record, field_, f"unreadable image ({_first_line(e)})", "bad_frame") from None
    check_size(w, h, path, record, field_)
    return w, h


def read_image(path: str, record: str = "", field_: str = "video_path", max_pixels: int | None = None) -> Image.Image:
    w, h = frame_size(path, record, field_)
    try:
        with Image.open(path) as im:
            if max_pixels and im.format == "JPEG" and w * h >= 4 * max_pixels:
                # decode a large JPEG at 1/2, 1/4 or 1/8 scale (never below the cap): much faster
                s = math.sqrt(max_pixels / (w * h))
                im.draft("RGB", (math.ceil(w * s), math.ceil(h * s)))
            im.load()  # decode now: a truncated file fails here, not deep inside the processor
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise _err(path, record, field_, f"unreadable image ({_first_line(e)})", "bad_frame") from None


def capped_size(w: int, h: int, max_pixels: int | None) -> tuple[int, int]:
    if not max_pixels or w * h <= max_pixels:
        return w, h
    scale = math.sqrt(max_pixels / (w * h))
    return max(1, int(w * scale)), max(1, int(h * scale))


def decode_size(w: int, h: int, frames_cfg: Any) -> tuple[int, int]:
    """(w, h) of a w x h frame after `frames.max_pixels`, by the `frames.resize` rule."""
    max_pixels = frame_setting(frames_cfg, "max_pixels")
    rule = frame_setting(frames_cfg, "resize")
    if rule == "cap":
        return capped_size(w, h, max_pixels)
    if rule == "qwen_vl_utils":  # fetch_image: smart_resize(factor 28, min 4*28*28, max max_pixels)
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        rh, rw = smart_resize(h, w, factor=28, min_pixels=4 * 28 * 28, max_pixels=max_pixels or 16384 * 28 * 28)
        return rw, rh
    raise ValueError(f"frames.resize must be cap or qwen_vl_utils, got {rule!r}")


# ---------------------------------------------------------------- videos

def plan(start: float | None, end: float | None, duration: float, fps: float, max_frames: int,
         tolerance: float = 0.5) -> tuple[list[float], float, tuple[float, float]]:
    """Sampling times t_k = start + k / fps, t_k < end; thinned to `max_frames` by lowering fps.

    Raises ValueError for a span outside the video (end may overshoot by `tolerance` seconds,
    clamped: annotation times are often rounded up).
    """
    start = 0.0 if start is None else float(start)
    end = duration if end is None else float(end)
    if fps <= 0:
        raise ValueError(f"sampling fps must be positive, got {fps}")
    if start >= duration:
        raise ValueError(f"span starts at {start:g}s, at or past the end of the video ({duration:.2f}s)")
    if end > duration + tolerance:
        raise ValueError(f"span ends at {end:g}s, past the end of the video ({duration:.2f}s)")
    if end <= start:
        raise ValueError(f"span end {end:g}s is not after its start {start:g}s")
    end = min(end, duration)
    span = end - start
    count = max(1, math.ceil(span * fps - 1e-6))
    if count > max_frames:
        fps, count = max_frames / span, max_frames
    return [start + k / fps for k in range(count)], fps, (start, end)


def load_video(source: FrameSource, frames_cfg: Any = None, record: str = "") -> Clip:
    path, backend, native, read, indices, times, (fps, span) = _open_video(source, frames_cfg, record)
    frames = _decode(read, indices, path, record)
    check_size(frames.shape[2], frames.shape[1], path, record, "video")
    size = decode_size(frames.shape[2], frames.shape[1], frames_cfg)
    if size != (frames.shape[2], frames.shape[1]):
        frames = np.stack([np.asarray(Image.fromarray(f).resize(size, Image.BICUBIC)) for f in frames])
    clip = Clip(np.ascontiguousarray(frames, dtype=np.uint8), fps, times, indices, span, backend=backend,
                source_fps=native)
    return fix_odd(clip, frame_setting(frames_cfg, "odd_frames"))


def _open_video(source: FrameSource, frames_cfg: Any, record: str):
    """(path, backend, native fps, reader, frame indices, times, (fps, span)) of a video's sampling
    plan, from its header; raises FrameError."""
    path = source.video or ""
    if not os.path.isfile(path):
        raise _err(path, record, "video", "video file not found", "missing_video")
    backend = frame_setting(frames_cfg, "backend")
    reader = {"decord": _decord_reader, "pyav": _pyav_reader}.get(backend)
    if reader is None:
        raise _err(path, record, "frames.backend", f"unknown backend {backend!r} (decord | pyav)", "bad_config")
    fps = float(frame_setting(frames_cfg, "fps") or source.fps)
    try:
        native, n, read = reader(path, int(frame_setting(frames_cfg, "threads")))
    except FrameError:
        raise
    except Exception as e:  # noqa: BLE001 - decoder errors carry C++ traces; keep their first line
        raise _err(path, record, "video", f"unreadable video ({_first_line(e)})", "bad_video") from None
    if not native or native <= 0 or n <= 0:
        raise _err(path, record, "video", f"no decodable frames (fps={native}, frames={n})", "bad_video")
    if fps > native * 1.001:  # every frame of the file would not be enough: frames would repeat
        where = "frames.fps" if frame_setting(frames_cfg, "fps") else "fps"
        raise RateUnavailable(Problem(path, record, where, f"sampling at {fps:g} fps is above the video's own "
                                      f"{native:g} fps: it gives at most {native:g} fps", "rate_unavailable"))
    try:
        times, fps, span = plan(source.start, source.end, n / native, fps, _even_cap(frames_cfg),
                                float(frame_setting(frames_cfg, "span_tolerance_s")))
    except ValueError as e:
        raise _err(path, record, "start/end", str(e), "bad_span") from None
    indices = [min(n - 1, math.floor(t * native + 0.5)) for t in times]
    return path, backend, native, read, indices, times, (fps, span)


def _decode(read, indices: list[int], path: str, record: str) -> np.ndarray:
    try:
        return read(indices)
    except FrameError:
        raise
    except Exception as e:  # noqa: BLE001 - same: any decoder failure becomes one clear line
        raise _err(path, record, "video", f"decoding failed ({_first_line(e)})", "bad_video") from None


def _decord_reader(path: str, threads: int):
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    return float(vr.get_avg_fps()), len(vr), lambda idx: vr.get_batch(idx).asnumpy()


def _pyav_reader(path: str, threads: int):
    import av

    container = av.open(path)
    stream = container.streams.video[0]
    stream.codec_context.thread_count = threads  # 0 = FFmpeg's choice, as decord's num_threads
    stream.thread_type = "AUTO"
    native = float(stream.average_rate or stream.guessed_rate or 0)
    base = stream.time_base
    t0 = stream.start_time or 0
    if stream.frames:
        n = stream.frames
    else:
        dur = float(stream.duration * base) if stream.duration else (container.duration or 0) / 1e6
        n = round(dur * native)

    def read(indices: list[int]) -> np.ndarray:
        wanted = sorted(set(indices))
        got: dict[int, np.ndarray] = {}
        last = None
        try:
            # seek to the key frame before the first wanted frame, then decode forward
            container.seek(t0 + int(wanted[0] / native / base), stream=stream, backward=True, any_frame=False)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                idx = math.floor(float((frame.pts - t0) * base) * native + 0.5)
                if idx in wanted:
                    got[idx] = frame.to_ndarray(format="rgb24")
                last = (idx, frame)
                if idx >= wanted[-1]:
                    break
        finally:
            container.close()
        for i in wanted:  # a frame count from the header can overshoot by one: reuse the last frame
            if i not in got and last is not None and i > last[0]:
                got[i] = last[1].to_ndarray(format="rgb24")
        missing = [i for i in wanted if i not in got]
        if missing:
            raise RuntimeError(f"frames {missing[:5]} not found while decoding")
        return np.stack([got[i] for i in indices])

    return native, n, read


# ---------------------------------------------------------------- shared

def _even_cap(frames_cfg: Any) -> int:
    cap = int(frame_setting(frames_cfg, "max_frames"))
    if cap < 1:
        raise ValueError(f"frames.max_frames must be >= 1, got {cap}")
    # padding an odd count must not exceed the cap
    return max(1, cap - cap % 2) if frame_setting(frames_cfg, "odd_frames") == "pad" and cap > 1 else cap


def fix_odd(clip: Clip, mode: str) -> Clip:
    t = clip.num_frames
    if t % 2 == 0 or mode == "keep":
        return clip
    if mode == "drop" and t > 1:
        clip.frames, clip.timestamps, clip.indices = clip.frames[:-1], clip.timestamps[:-1], clip.indices[:-1]
        return clip
    if mode not in ("pad", "drop"):
        raise ValueError(f"frames.odd_frames must be pad, drop or keep, got {mode!r}")
    clip.frames = np.concatenate([clip.frames, clip.frames[-1:]])
    clip.timestamps = clip.timestamps + clip.timestamps[-1:]
    clip.indices = clip.indices + clip.indices[-1:]
    clip.padded = 1
    return clip


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__
