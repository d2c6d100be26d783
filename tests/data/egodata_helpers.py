"""Helpers shared by the data-layer tests (a uniquely named module, not a conftest)."""
from __future__ import annotations

import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

EGOCROSS = Path(os.environ.get("EGOCROSS_DIR", Path(__file__).resolve().parents[1] / "fixtures" / "egocross"))
TESTBED = EGOCROSS / "egocross_testbed_imgs.json"
TEMPLATE = EGOCROSS / "submission_template.json"
FPS = {"default": 0.5, "CholecTrack20_png": 1.0, "EgoSurgery": 1.0}


def need_real():
    # the files ship with the tests (tests/fixtures/egocross): missing is a failure, never a skip
    assert TESTBED.exists() and TEMPLATE.exists(), f"real EgoCross files not found under {EGOCROSS}"


def real_cfg(**kw) -> dict:
    need_real()
    return {"format": "egocross", "annotations": str(TESTBED), "answers": str(TEMPLATE), "fps": dict(FPS), **kw}


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def frame_image(k: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A frame whose mean brightness encodes k (to check which frames were picked)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (10 + 20 * k) % 250
    return img


def write_frames(folder: Path, n: int, ext: str = "jpg", w: int = 64, h: int = 48) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        p = folder / f"frame_{k:05d}.{ext}"
        Image.fromarray(frame_image(k, w, h)).save(p, quality=95) if ext == "jpg" else \
            Image.fromarray(frame_image(k, w, h)).save(p)
        paths.append(str(p))
    return paths


def write_mp4(path: Path, seconds: float = 10.0, fps: int = 10, w: int = 64, h: int = 48) -> Path:
    """An x264 clip written with PyAV; frame i is uniformly gray at level 2*i (i < 125)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": "10", "preset": "ultrafast", "threads": "1"}
        for i in range(int(seconds * fps)):
            img = np.full((h, w, 3), (2 * i) % 256, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def bed_record(**kw) -> dict:
    rec = {"id": 1, "dataset": "CholecTrack20", "primary_category": "Counting", "question_type": "object counting",
           "question_text": "How many tools from 0.00s to 10.00s?", "options": ["A: 4", "B: 3", "C: 1", "D: 2"],
           "original_video_fps": 25.0,
           "video_path": [f"/egocross_testbed/CholecTrack20/generated/VID01/frames/oc_q1/frame_{i:05d}.jpg"
                          for i in range(5)]}
    rec.update(kw)
    return {k: v for k, v in rec.items() if v is not ...}
