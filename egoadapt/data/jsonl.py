"""JSONL for users' own domains: one question per line over a span of a raw video.

    {"id": "q1", "video": "videos/clip.mp4", "start": 2.0, "end": 12.0,
     "question": "...", "options": ["A: ...", "B: ..."], "answer": "B",
     "domain": "kitchen", "task": "Identification", "question_type": "...", "fps": 1.0}

Required: video (or a `frames` list), question, domain. Video paths are relative to the file
(or to `data.root`). `options` may be "LETTER: text" strings, plain texts (lettered in order)
or {letter: text}; without options `answer` is the free-text reference (OpenQA). `task` (or
`category`) is the primary category; `group` (default: question_id's second `_` field, else
the video path) is what splits keep together; `fps` overrides the configured sampling fps; no start/end means the whole video.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from egoadapt.data.errors import LoadReport
from egoadapt.data.records import (
    RecordCheck,
    accept,
    answer_letter,
    answer_text_value,
    group_from_question_id,
    parse_options,
    read_jsonl,
    resolve_path,
    sampling_fps,
)
from egoadapt.data.schema import LETTERS, FrameSource, Sample


def load(data_cfg: Any, report: LoadReport, on_error: str) -> list[Sample]:
    path = os.fspath(data_cfg["annotations"])
    rows = read_jsonl(path, report, on_error)
    root, fps_cfg = data_cfg["root"], data_cfg["fps"]
    base, stem = os.path.dirname(os.path.abspath(path)), Path(path).stem
    samples = []
    for line, raw in rows:
        rid = str(raw["id"]) if isinstance(raw, dict) and raw.get("id") is not None else f"{stem}-{line}"
        has_id = isinstance(raw, dict) and raw.get("id") is not None
        chk = RecordCheck(raw, path, f"{rid} (line {line})" if has_id else f"line {line}")
        sample = _record(chk, rid, line, root, base, fps_cfg)
        if accept(report, on_error, chk, sample):
            samples.append(sample)
    return samples


def _record(chk: RecordCheck, rid: str, line: int, root: Any, base: str, fps_cfg: Any) -> Sample | None:
    chk.get("id", (int, str), required=False)
    question = chk.get("question", str, default="")
    domain = chk.get("domain", str, default="")
    category = chk.get(("task", "category", "primary_category"), str, required=False, default="")
    dataset = chk.get("dataset", str, required=False, default="") or domain
    video = chk.get("video", str, required="frames" not in chk.raw)
    frames = chk.get("frames", list, required=False, default=None)
    if frames is not None and (not frames or not all(isinstance(f, str) and f for f in frames)):
        chk.fail("frames", "expected a non-empty list of frame paths")
    start = chk.number("start", required=False)
    end = chk.number("end", required=False)
    if start is not None and start < 0:
        chk.fail("start", f"must be >= 0, got {start}")
    if start is not None and end is not None and end <= start:
        chk.fail("end", f"must be after start ({start}), got {end}")
    raw_opts = chk.raw.get("options")
    if isinstance(raw_opts, dict):
        raw_opts = [f"{k}: {v}" for k, v in sorted(raw_opts.items())]
    options = parse_options(chk, raw_opts, allow_plain=True)
    answer = chk.raw.get("answer")
    letter = answer_letter(chk, answer, options, "answer") if options else None
    text = answer_text_value(chk)
    if options and letter:
        text = options[LETTERS.index(letter)]
    elif not options and answer is not None:
        text = answer_text_value(chk, "answer")  # a free answer: text, or a number kept a number
    own_fps = chk.number(("fps", "sampling_fps"), required=False)
    if own_fps is not None and own_fps <= 0:
        chk.fail("fps", f"sampling fps must be positive, got {own_fps:g}")
    fps = sampling_fps(fps_cfg, dataset, domain, video or "", own_fps)
    if not chk.ok:
        return None

    if frames is not None:
        source = FrameSource(frames=tuple(resolve_path(f, root, base) for f in frames), fps=fps)
    else:
        source = FrameSource(video=resolve_path(video, root, base), start=start, end=end, fps=fps)
    return Sample(
        id=rid, question=question.strip(), options=options, question_id=str(chk.raw.get("question_id") or ""),
        dataset=dataset, domain=domain, category=category, question_type=str(chk.raw.get("question_type") or ""),
        answer_letter=letter, answer_text=text, detailed_answer=chk.raw.get("detailed_answer"),
        original_fps=chk.number(("original_fps", "original_video_fps"), required=False),
        group=f"{dataset}/{_group(chk.raw, dataset, video, frames)}",
        frame_source=source, meta={"file": chk.file, "index": line},
    )


def _group(raw: dict, dataset: str, video: str | None, frames: list | None) -> str:
    """Source video: explicit `group` > question_id's second field > the video path (or frame folder)."""
    return str(raw.get("group") or group_from_question_id(str(raw.get("question_id") or ""), dataset)
               or video or Path(frames[0]).parent.name)
