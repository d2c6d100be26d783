"""The EgoCross support set (few-shot adaptation) in its chat format, one record per question:

    {"messages": [{"role": "user", "content": "<image>...<image>QUESTION\\nA: ...\\nB: ..."},
                  {"role": "assistant", "content": "B"}],
     "images": ["frames/.../frame_17876.png", ...], "domain": "surgery"}

One `<image>` marker per frame; image paths are relative to the file (or to `data.root`).
A JSON list or JSONL. Without option lines the record is OpenQA and the assistant content is
the reference answer text.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from egoadapt.data.errors import DataError, LoadReport, Problem
from egoadapt.data.records import (
    OPTION_RE,
    RecordCheck,
    accept,
    answer_letter,
    group_from_path,
    parse_options,
    read_json,
    read_jsonl,
    resolve_path,
    sampling_fps,
)
from egoadapt.data.schema import DATASET_DOMAINS, LETTERS, FrameSource, Sample

IMAGE_MARK = "<image>"


def load(data_cfg: Any, report: LoadReport, on_error: str) -> list[Sample]:
    path = os.fspath(data_cfg["annotations"])
    if path.endswith(".jsonl"):
        rows = read_jsonl(path, report, on_error)
    else:
        data = read_json(path, report=report)
        if not isinstance(data, list):
            raise DataError(Problem(path, "", "", f"expected a JSON list of chat records, got {type(data).__name__}",
                                    "bad_file"))
        rows = list(enumerate(data))
    root, fps_cfg = data_cfg["root"], data_cfg["fps"]
    base, stem = os.path.dirname(os.path.abspath(path)), Path(path).stem.split(".")[0]
    samples = []
    for i, raw in rows:
        rid = str(raw["id"]) if isinstance(raw, dict) and raw.get("id") is not None else f"{stem}-{i}"
        chk = RecordCheck(raw, path, rid)
        sample = _record(chk, i, root, base, fps_cfg)
        if accept(report, on_error, chk, sample):
            samples.append(sample)
    return samples


def _user_text(chk: RecordCheck, content: Any) -> tuple[str, int]:
    """(text, number of image markers) from a string or a list of content blocks."""
    if isinstance(content, str):
        return content.replace(IMAGE_MARK, "\n"), content.count(IMAGE_MARK)
    if isinstance(content, list) and all(isinstance(b, dict) for b in content):
        n_img = sum(1 for b in content if b.get("type") == "image")
        text = "\n".join(b.get("text") or "" for b in content if b.get("type") == "text")
        return text.replace(IMAGE_MARK, "\n"), n_img + text.count(IMAGE_MARK)
    chk.fail("messages[0].content", "expected a string or a list of content blocks")
    return "", 0


def split_question(text: str) -> tuple[str, list[str], str]:
    """Question, the run of 'A: ...' lines starting at the first 'A:' line, and any text after it."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    start = next((j for j, ln in enumerate(lines) if (m := OPTION_RE.match(ln)) and m.group(1) == "A"), None)
    if start is None:
        return "\n".join(ln for ln in lines if ln).strip(), [], ""
    end = start
    while end < len(lines) and OPTION_RE.match(lines[end]):
        end += 1
    question = "\n".join(ln for ln in lines[:start] if ln).strip()
    return question, lines[start:end], "\n".join(ln for ln in lines[end:] if ln).strip()


def _record(chk: RecordCheck, index: int, root: Any, base: str, fps_cfg: Any) -> Sample | None:
    messages = chk.get("messages", list, default=[])
    images = chk.get("images", list, default=[])
    domain = chk.get("domain", str, default="")
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if messages and ("user" not in roles or "assistant" not in roles):
        chk.fail("messages", f"need a user and an assistant message, got roles {roles}")
    if chk.raw.get("images") is not None and not images:
        chk.fail("images", "empty frame list")
    if any(not isinstance(p, str) or not p.strip() for p in images):
        chk.fail("images", "image paths must be non-empty strings")
    if not chk.ok:
        return None

    user = messages[roles.index("user")]
    reply = messages[roles.index("assistant")].get("content")
    if isinstance(reply, list):  # content blocks
        reply = "".join(b.get("text") or "" for b in reply if isinstance(b, dict))
    text, n_marks = _user_text(chk, user.get("content"))
    if n_marks and n_marks != len(images):
        chk.fail("messages[0].content", f"{n_marks} <image> markers but {len(images)} images")
    question, option_lines, tail = split_question(text)
    if not question:
        chk.fail("messages[0].content", "no question text")
    options = parse_options(chk, option_lines, "options") if option_lines else ()
    if not isinstance(reply, str):
        chk.fail("messages[1].content", f"expected the answer as a string, got {type(reply).__name__}")
        reply = None
    letter = answer_letter(chk, reply, options, "messages[1].content") if options and reply else None
    if options and reply is not None and letter is None and chk.ok:
        chk.fail("messages[1].content", "empty answer")
    if not chk.ok:
        return None

    dataset = chk.raw.get("dataset") or _dataset_in_path(images[0]) or domain
    frames = [resolve_path(p, root, base) for p in images]
    fps = sampling_fps(fps_cfg, dataset, domain, images[0], chk.number(("sampling_fps", "fps"), required=False))
    if fps <= 0:
        chk.fail("sampling_fps", f"sampling fps must be positive, got {fps:g} (record or data.fps)")
        return None
    return Sample(
        id=chk.record, question=question, options=options, question_id=str(chk.raw.get("question_id") or ""),
        dataset=dataset, domain=domain, category=str(chk.raw.get("primary_category") or chk.raw.get("category") or ""),
        question_type=str(chk.raw.get("question_type") or ""), answer_letter=letter,
        answer_text=options[LETTERS.index(letter)] if letter else (reply.strip() if reply else None),
        detailed_answer=chk.raw.get("detailed_answer"), original_fps=chk.number("original_fps", required=False),
        group=f"{dataset}/{chk.raw.get('group') or group_from_path(images[0], dataset)}",
        frame_source=FrameSource(frames=tuple(frames), fps=fps),
        meta={"file": chk.file, "index": index, **({"instruction": tail} if tail else {})},
    )


def _dataset_in_path(path: str) -> str | None:
    return next((p for p in Path(path).parts if p in DATASET_DOMAINS), None)
