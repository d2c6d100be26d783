"""CloseQA / OpenQA prompts and SFT targets, worded by `conf/prompt/*.yaml`.

Messages carry a bare `{"type": "video"}` block before the text; the frames travel separately
(processor `videos=` + `video_metadata=`). Blocks never carry None-valued keys: Qwen's chat
template treats any block with a `video` key as a video (stack trap 6).
"""
from __future__ import annotations

import json
import re
from typing import Any

from egoadapt.configs import complete
from egoadapt.data.errors import DataError, Problem
from egoadapt.data.schema import CLOSE, PROMPT_KEYS, Sample, answer_as_text, has_answer_text

QA = str  # a prompt key: one of PROMPT_KEYS' values
PLACEHOLDER = re.compile(r"\{(question|options|fps_line|time_hint|original_fps|sampling_fps|domain_context)\}")


def default_prompt_cfg() -> Any:
    return complete("prompt", None)


def _fill(template: str, values: dict[str, str]) -> str:
    lines = []
    for line in template.splitlines():
        filled = PLACEHOLDER.sub(lambda m: values[m.group(1)], line)
        if not filled.strip() and PLACEHOLDER.fullmatch(line.strip()):
            continue  # a placeholder line that came out empty
        lines.append(filled)
    text = "\n".join(lines).strip()
    return text + "\n" if template.endswith("\n") else text  # the official prompts end with a line break


def asks_for_time(sample: Sample, prompt_cfg: Any) -> bool:
    qtype = sample.question_type.lower()
    return any(t.lower() in qtype for t in complete("prompt", prompt_cfg).time_hint_types)


def prompt_text(sample: Sample, qa: QA, prompt_cfg: Any = None, sampling_fps: float | None = None) -> str:
    cfg = complete("prompt", prompt_cfg)
    if qa not in PROMPT_KEYS.values():
        raise ValueError(f"qa must be {' or '.join(PROMPT_KEYS.values())}, got {qa!r}")
    if qa == PROMPT_KEYS[CLOSE] and not sample.options:
        raise DataError(Problem(sample.meta.get("file", ""), sample.id, "options", "CloseQA needs options"))
    fps = sampling_fps if sampling_fps is not None else sample.frame_source.fps
    spec = str(cfg.fps_format)
    values = {"question": sample.question, "options": "\n".join(sample.lettered_options),
              "sampling_fps": format(float(fps), spec),
              "original_fps": format(float(sample.original_fps), spec) if sample.original_fps else "",
              "time_hint": cfg.time_hint if asks_for_time(sample, cfg) else "",
              "domain_context": str(cfg.domain_context.get(sample.domain) or "")}
    fps_tpl = cfg.fps_line if sample.original_fps else cfg.fps_line_no_original
    values["fps_line"] = PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), fps_tpl)
    return _fill(cfg[qa], values)


def build_messages(sample: Sample, qa: QA, prompt_cfg: Any = None, sampling_fps: float | None = None) -> list[dict]:
    """Chat messages: [system?], user [{"type": "video"}, {"type": "text", ...}].

    `sampling_fps`: the clip's real rate when frame caps lowered it (Clip.fps); default the sample's.
    """
    cfg = complete("prompt", prompt_cfg)
    messages = []
    system = cfg.system
    if system:
        messages.append({"role": "system", "content": [{"type": "text", "text": str(system)}]})
    messages.append({"role": "user", "content": [
        {"type": "video"},
        {"type": "text", "text": prompt_text(sample, qa, cfg, sampling_fps)},
    ]})
    return messages


def asked_text(messages: list[dict]) -> dict[str, str]:
    """The text a question was asked with, from its chat messages: {"prompt": the user message's
    text, "system": the system message's (only when there is one)}. predictions.jsonl records it:
    the same for every backend (the chat template around it is the checkpoint's own)."""
    out = {}
    for m in messages:
        text = "".join(b.get("text", "") for b in m["content"]) if isinstance(m["content"], list) else m["content"]
        out["prompt" if m["role"] == "user" else m["role"]] = text
    return out


def unknown_context_domains(prompt_cfg: Any, domains: set[str]) -> list[str]:
    """Domains given a context line (prompt.domain_context) that no sample has: a misspelt name
    would otherwise leave every prompt plain without a word."""
    contexts = complete("prompt", prompt_cfg).domain_context
    return sorted(d for d, text in contexts.items() if text and d not in domains)


# what to do about a question without its answer (SFT targets, GRPO rewards)
LOAD_ANSWERS = "load answers (data.answers=FILE, or the answers file egocross_testbed_answers.json as data.annotations)"


def target_text(sample: Sample, qa: QA, prompt_cfg: Any = None) -> str:
    """The JSON answer the model should emit (SFT target): {"prediction": ..., "reason": ...}."""
    cfg = complete("prompt", prompt_cfg)
    if qa == PROMPT_KEYS[CLOSE]:
        if not sample.answer_letter:
            raise DataError(Problem(sample.meta.get("file", ""), sample.id, "correct_option_letter",
                                    f"no answer letter: {LOAD_ANSWERS}"))
        prediction = sample.answer_letter
    else:
        if not has_answer_text(sample.answer_text):
            raise DataError(Problem(sample.meta.get("file", ""), sample.id, "answer_text",
                                    f"no answer text: {LOAD_ANSWERS}"))
        prediction = answer_as_text(sample.answer_text)  # the contract's prediction is text, a count too
    mode = cfg.target_reason
    answer = answer_as_text(sample.answer_text) or ""
    reason = {"detailed": sample.detailed_answer or answer, "answer": answer, "none": ""}.get(mode)
    if reason is None:
        raise ValueError(f"prompt.target_reason must be detailed, answer or none, got {mode!r}")
    return json.dumps({"prediction": prediction, "reason": reason}, ensure_ascii=False)
