"""`egoadapt data export split=FILE format=hf|swift|llamafactory out=DIR`: a split manifest's two
sides in a form other trainers load, worded as egoadapt trains (`conf/prompt`, the JSON answer).
`split=FILE` is `split.manifest=FILE`; a support-protocol manifest also reads `split.support`.

- `hf`: a `datasets.DatasetDict` (train, test) written with `save_to_disk`: one row per question
  and QA form, with the prompt, the target, the answer fields and the frames or video;
- `swift`: ms-swift's standard JSONL, `{"messages": [...], "videos": [mp4]}` per line, the user
  turn opening with `<video>` (`swift sft --dataset out/train.jsonl --val_dataset out/test.jsonl`);
- `llamafactory`: LLaMA-Factory's sharegpt JSONL (OpenAI-style role/content tags) and the
  `dataset_info.json` entries `<name>_train`, `<name>_test` (`dataset_dir: out`).

Media (`media=`): `frames` keeps a frame list as its list of files (LLaMA-Factory reads a
video given as frames; `hf` rows carry them), `mp4` encodes each clip as the frames config
samples it into `out/videos/<id>.mp4` at its sampling rate. ms-swift's Qwen2.5-VL template
opens a video with `os.path.isdir(video)`, which a list fails, and a folder of frames is read
in directory order, so `swift` always gets mp4 (`media=auto`: frames for hf and llamafactory,
mp4 for swift). The folder is written aside and moved into place whole.
"""
from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.load import load_samples
from egoadapt.data.prompts import build_messages, target_text
from egoadapt.data.schema import CLOSE, OPEN, PROMPT_KEYS, QA_MODES, Sample
from egoadapt.data.split import load_split

FORMATS = ("hf", "swift", "llamafactory")
SIDES = ("train", "test")
VIDEO_TAG = "<video>"  # the placeholder both ms-swift and LLaMA-Factory read in a user turn


def qa_forms(sample: Sample, qa: str) -> list[str]:
    """The QA forms a sample is asked in: CloseQA needs options, OpenQA a question without them too."""
    return [PROMPT_KEYS[q] for q in QA_MODES.get(qa, ()) if q == OPEN or sample.options]


def media_mode(fmt: str, media: str) -> str:
    if media == "auto":
        return "mp4" if fmt == "swift" else "frames"
    if fmt == "swift" and media == "frames":
        raise DataError(Problem("<config>", "", "media", "format=swift needs media=mp4 (or auto): ms-swift reads a "
                                                         "video as one file, not as a list of frames"))
    return media


class MediaWriter:
    """Each sample's video as the target tool will read it: its frame files, its video file, or
    an mp4 of the clip the frames config samples (written into the staging folder)."""

    def __init__(self, mode: str, frames_cfg: Any, staging: Path, final: Path):
        self.mode, self.frames_cfg, self.staging, self.final = mode, frames_cfg, staging, final
        self.skipped: Counter = Counter()
        self.done: dict[str, dict | None] = {}

    def __call__(self, sample: Sample) -> dict | None:
        """{media: frame files or a video path, fps, start, end (of a source video's span)}, or None
        for a sample skipped by frames.on_error=skip."""
        if sample.id not in self.done:
            self.done[sample.id] = self._media(sample)
        return self.done[sample.id]

    def _media(self, sample: Sample):
        src = sample.frame_source
        if self.mode == "frames":
            if src.video and (src.start is not None or src.end is not None):
                raise DataError(Problem(sample.meta.get("file", ""), sample.id, "video",
                                        "a span of a video cannot be passed as a file: use media=mp4"))
            if src.video:
                return {"media": src.video, "fps": src.fps, "start": src.start, "end": src.end}
            return {"media": list(src.frames), "fps": src.fps, "start": None, "end": None}
        from egoadapt.data.frames import try_load_clip
        from egoadapt.data.mp4 import write_mp4

        clip = try_load_clip(sample, self.frames_cfg, self.skipped)
        if clip is None:
            return None
        name = f"videos/{re.sub(r'[^A-Za-z0-9_.-]', '_', sample.id)}.mp4"
        write_mp4(self.staging / name, clip.frames[: clip.num_frames - clip.padded], clip.fps)
        return {"media": str(self.final / name), "fps": clip.fps, "start": None, "end": None}


def rows(samples: list[Sample], cfg: Any, side: str, media: MediaWriter) -> list[dict]:
    """One record per question and QA form: the prompt and target egoadapt trains on."""
    out = []
    for s in samples:
        m = media(s)
        if m is None:
            continue
        for qa in qa_forms(s, cfg.qa):
            messages = build_messages(s, qa, cfg.prompt, sampling_fps=m["fps"])
            system = next((b["content"][0]["text"] for b in messages if b["role"] == "system"), None)
            prompt = messages[-1]["content"][-1]["text"]
            answered = s.answer_letter if qa == PROMPT_KEYS[CLOSE] else s.answer_text
            if side == "train" or answered not in (None, ""):  # training needs it: target_text names a missing one
                target = target_text(s, qa, cfg.prompt)
            else:
                target = None
            out.append({"sample": s, "qa": qa, "system": system, "prompt": prompt, "target": target, **m})
    return out


# ------------------------------------------------------------------ the three layouts

def chat(r: dict, empty_answer: bool) -> list[dict]:
    msgs = [{"role": "system", "content": r["system"]}] if r["system"] else []
    msgs.append({"role": "user", "content": VIDEO_TAG + r["prompt"]})
    if r["target"] is not None or empty_answer:
        msgs.append({"role": "assistant", "content": r["target"] or ""})
    return msgs


def write_jsonl(path: Path, records: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_swift(by_side: dict[str, list[dict]], staging: Path, name: str) -> None:
    for side, rs in by_side.items():
        # an unanswered test question ends with the user turn: ms-swift infers it, with no label
        write_jsonl(staging / f"{side}.jsonl", [{"messages": chat(r, empty_answer=False), "videos": [r["media"]],
                                                 "id": r["sample"].id, "qa": r["qa"]} for r in rs])


def write_llamafactory(by_side: dict[str, list[dict]], staging: Path, name: str) -> None:
    info = {}
    for side, rs in by_side.items():
        # LLaMA-Factory drops a conversation without an assistant turn: an unanswered one gets ""
        write_jsonl(staging / f"{side}.jsonl", [{"messages": chat(r, empty_answer=True), "videos": [r["media"]]}
                                                for r in rs])
        info[f"{name}_{side}"] = {
            "file_name": f"{side}.jsonl", "formatting": "sharegpt",
            "columns": {"messages": "messages", "videos": "videos"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }
    (staging / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n")


def hf_features():
    from datasets import Features, List, Value

    text = Value("string")
    return Features({
        "id": text, "question_id": text, "dataset": text, "domain": text, "category": text, "question_type": text,
        "qa": text, "question": text, "options": List(text), "answer_letter": text, "answer_text": text,
        "detailed_answer": text, "system": text, "prompt": text, "target": text, "frames": List(text),
        "video": text, "start": Value("float64"), "end": Value("float64"), "fps": Value("float64"),
        "original_fps": Value("float64"),
    })


def write_hf(by_side: dict[str, list[dict]], staging: Path, name: str) -> None:
    from datasets import Dataset, DatasetDict

    def row(r: dict) -> dict:
        s, media = r["sample"], r["media"]
        return {"id": s.id, "question_id": s.question_id, "dataset": s.dataset, "domain": s.domain,
                "category": s.category, "question_type": s.question_type, "qa": r["qa"], "question": s.question,
                "options": list(s.options), "answer_letter": s.answer_letter,
                "answer_text": None if s.answer_text is None else str(s.answer_text),
                "detailed_answer": s.detailed_answer, "system": r["system"], "prompt": r["prompt"],
                "target": r["target"], "frames": media if isinstance(media, list) else [],
                "video": media if isinstance(media, str) else None, "start": r["start"], "end": r["end"],
                "fps": r["fps"],
                "original_fps": s.original_fps}

    features = hf_features()
    DatasetDict({side: Dataset.from_list([row(r) for r in rs], features=features)
                 for side, rs in by_side.items()}).save_to_disk(str(staging))


WRITERS = {"hf": write_hf, "swift": write_swift, "llamafactory": write_llamafactory}


# ------------------------------------------------------------------ command

def export(cfg: Any) -> dict[str, int]:
    """Write the export; returns the rows per side."""
    from egoadapt.files import publish_atomically

    fmt, out = cfg.format, Path(cfg.out).expanduser().absolute()
    if fmt not in FORMATS:
        raise DataError(Problem("<config>", "", "format", f"{fmt!r}: one of {', '.join(FORMATS)}"))
    mode = media_mode(fmt, cfg.media)
    manifest = cfg.split.manifest
    if not manifest:
        raise DataError(Problem("<config>", "", "split", "not set: pass split=FILE (a manifest of egoadapt data split)"))
    pool = load_samples(cfg.data)
    if cfg.split.support.annotations:
        pool = load_samples(cfg.split.support) + pool
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    staging.mkdir()
    try:
        media = MediaWriter(mode, cfg.frames, staging, out)
        by_side = {side: rows(load_split(manifest, pool, side), cfg, side, media) for side in SIDES}
        WRITERS[fmt](by_side, staging, cfg.name)
        publish_atomically(staging, out)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    counts = {side: len(rs) for side, rs in by_side.items()}
    if media.skipped:
        counts["skipped"] = sum(media.skipped.values())
    return counts


def main(cfg: Any) -> int:
    try:
        counts = export(cfg)
    except DataError as e:
        print(f"egoadapt data export: error: {e}", file=sys.stderr)
        return 2
    skipped = f", {counts['skipped']} samples skipped (frames.on_error=skip)" if counts.get("skipped") else ""
    print(f"{cfg.format}: train {counts['train']} / test {counts['test']} rows{skipped} -> {cfg.out}")
    return 0
