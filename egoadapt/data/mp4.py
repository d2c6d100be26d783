"""Encode frames as H.264 mp4 (PyAV's bundled FFmpeg): synthetic videos and vLLM-server rollouts."""
from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np

from egoadapt.files import atomic_path


def _encode(target, frames: np.ndarray | list[np.ndarray], fps: float, crf: int) -> None:
    import av

    with av.open(target, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv444p"  # no chroma subsampling: small frames keep their colours
        stream.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def encode_mp4(frames, fps: float, crf: int = 4) -> bytes:
    buf = io.BytesIO()
    _encode(buf, frames, fps, crf)
    return buf.getvalue()


def write_mp4(path: Path, frames, fps: float, crf: int = 12) -> None:
    """Atomic: a reader never sees a half-written video."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        _encode(str(tmp), frames, fps, crf)
