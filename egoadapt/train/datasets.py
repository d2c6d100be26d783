"""Rows handed to TRL: ids, QA type, a text view of the prompt, and the columns rewards read.

The multimodal chat messages are not stored in the dataset: Arrow would unify the content
blocks (a text block would gain `video: None`, which Qwen's template counts as a second
video). They are built per row from `sample_id` and `qa` by `VideoInputs`, in the SFT
collator and in the GRPO rollout. `prompt` here is the same prompt as text with a
`<video>` marker, which is what TRL logs and passes to reward functions.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.frames import skipped_row
from egoadapt.data.prompts import LOAD_ANSWERS, target_text
from egoadapt.data.schema import Sample, answer_as_text, answer_to_column, has_answer_text
from egoadapt.files import write_atomic
from egoadapt.inputs.qa import prompt_qa, qa_modes
from egoadapt.inputs.video import VideoInputs

log = logging.getLogger(__name__)


def messages_as_text(messages: list[dict]) -> str:
    parts = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            content = "".join("<video>" if b.get("type") == "video" else b.get("text", "") for b in content)
        parts.append(content if m["role"] == "user" else f"[{m['role']}] {content}")
    return "\n".join(parts)


def reward_columns(sample: Sample, qa: str) -> dict[str, Any]:
    return {
        "sample_id": sample.id, "qa": qa, "answer_letter": sample.answer_letter,
        "answer_text": answer_as_text(sample.answer_text), "answer_json": answer_to_column(sample.answer_text),
        "options": list(sample.options), "question": sample.question, "detailed_answer": sample.detailed_answer,
        "category": sample.category, "question_type": sample.question_type, "domain": sample.domain,
    }


def usable_samples(samples: Sequence[Sample], video: VideoInputs, out: Path) -> list[Sample]:
    """The samples whose clips load and process (`VideoInputs.usable`): the dataset never holds a
    bad one. Those skipped (frames.on_error=skip) are listed in out/skipped_samples.jsonl.
    Each rank first processes its share of the clips into the disk cache (`VideoInputs.warm`),
    then, after a barrier, every rank reads them all from there."""
    from accelerate import PartialState

    state = PartialState()
    video.warm(samples, state.process_index, state.num_processes)
    state.wait_for_everyone()
    kept, skipped = video.usable(samples)
    if skipped and not kept:
        raise DataError(skipped)  # nothing to train on: say why
    path = out / "skipped_samples.jsonl"
    if skipped:
        log.warning("frames.on_error=skip: left out %d of %d training samples (%s); listed in %s", len(skipped),
                    len(samples), ", ".join(f"{k}: {v}" for k, v in sorted(Counter(p.kind for p in skipped).items())),
                    path)
    if PartialState().is_main_process:
        if skipped:
            write_atomic(path, "".join(json.dumps(skipped_row(p)) + "\n" for p in skipped))
        else:
            path.unlink(missing_ok=True)  # a resumed run whose inputs were fixed since
    return kept


def build_dataset(samples: Sequence[Sample], video: VideoInputs, qa: str = "close",
                  with_target: bool = False) -> Dataset:
    """One row per (sample, QA type); `with_target` adds the SFT `completion` (the JSON answer)."""
    rows = []
    for sample in samples:
        for q in qa_modes(qa):
            if q == "close" and not sample.options:
                continue
            if not with_target:  # GRPO: a row without its answer would be rewarded 0 forever, silently
                missing = ("correct_option_letter" if q == "close" and not sample.answer_letter else
                           "answer_text" if q == "open" and not has_answer_text(sample.answer_text) else None)
                if missing:
                    raise DataError(Problem(sample.meta.get("file", ""), sample.id, missing,
                                            f"no answer to reward: {LOAD_ANSWERS}", "missing_field"))
            row = {**reward_columns(sample, q), "prompt": messages_as_text(video.messages(sample.id, prompt_qa(q)))}
            if with_target:
                row["completion"] = target_text(sample, prompt_qa(q), video.prompt_cfg)
            rows.append(row)
    if not rows:
        raise ValueError("no training rows: the split's train side is empty, or has no options for CloseQA")
    return Dataset.from_list(rows)
