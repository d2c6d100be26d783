"""Context length from the data: the longest prompt of a run, in tokens, before any pixel is processed.

A prompt is its text plus the clip's video tokens, counted by the model family's own rule
from the frame count and size (`VideoFamily.video_token_count`; Qwen2.5-VL: `grid_t * grid_h *
grid_w / merge^2`, T frames padded to the temporal patch, each resized by the video processor's
`smart_resize`). `clip_geometry` gives T and the frame size from file headers, so the count is
exact and costs what `check_source` costs (tests compare it with the processor's own grids).

`plan_context` is the preflight of `train` and `eval` (before the model loads): a prompt the
model's positions (`max_position_embeddings`) cannot hold fails the run, naming the clip
(sample id, first file), its token count and the knobs that shrink it. The plan also sizes the
vLLM engines (`egoadapt.rollout.context`).
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.frames import clip_geometry, frame_setting
from egoadapt.data.prompts import build_messages
from egoadapt.data.schema import QA_TYPES, Sample
from egoadapt.inputs.families import as_family
from egoadapt.inputs.qa import prompt_qa

log = logging.getLogger(__name__)

SHRINK_HINT = "lower frames.max_frames or model.max_pixels, or leave the clip out"


@dataclass(frozen=True)
class PromptLength:
    sample_id: str
    qa: str  # close | open
    tokens: int  # the whole prompt (chat template, text and video tokens)
    video_tokens: int
    frames: int
    file: str  # the clip's first frame or its video

    def where(self) -> str:
        return f"sample {self.sample_id} ({self.file}, {self.frames} frames, {self.qa}QA)"


@dataclass(frozen=True)
class ContextPlan:
    longest: PromptLength | None  # None: no sample could be measured
    completion: int  # tokens generated after the prompt (max_completion_length / max_new_tokens)
    positions: int | None  # the model's max_position_embeddings (None: unknown)
    prompts: int  # how many prompts were measured

    @property
    def needed(self) -> int:
        return (self.longest.tokens if self.longest else 0) + self.completion

    @property
    def max_model_len(self) -> int:
        """What a vLLM engine needs: the longest prompt plus the completion, within the model's positions."""
        return min(self.needed, self.positions) if self.positions else self.needed

    def describe(self) -> str:
        if self.longest is None:
            return "no prompt measured"
        return (f"longest prompt {self.longest.tokens} tokens ({self.longest.video_tokens} video) of {self.prompts}: "
                f"{self.longest.where()}; + {self.completion} completion -> context {self.max_model_len}"
                + (f" of the model's {self.positions} positions" if self.positions else ""))


def context_error(p: PromptLength, message: str) -> DataError:
    return DataError(Problem(p.file, p.sample_id, "video_path", message, "too_long"))


# ------------------------------------------------------------------ token counts

def video_token_count(family: Any, num_frames: int, width: int, height: int) -> int:
    """Video tokens of a `num_frames` clip of `width` x `height` frames without running the processor
    (`VideoFamily.video_token_count`; `family`: a family, or a processor loaded from a checkpoint)."""
    return as_family(family).video_token_count(num_frames, width, height)


def told_fps(sample: Sample, fps: float, frames_cfg: Any) -> float:
    """The rate the processor is told for a clip sampled at `fps` (`Clip.metadata`, by `frames.told_rate`'s rule)."""
    if sample.frame_source.kind != "video" and not frame_setting(frames_cfg, "fps"):
        return float(frame_setting(frames_cfg, "processor_fps") or fps)
    return fps


def prompt_lengths(samples: Iterable[Sample], family: Any, frames_cfg: Any, prompt_cfg: Any,
                   qa: Sequence[str] = QA_TYPES) -> list[PromptLength]:
    """Token counts of every (sample, QA type) prompt as `VideoInputs.prompt_ids` would build it
    (CloseQA only for samples with options). A sample whose headers fail is left out: the
    frames checks of the run report it (or skip it, frames.on_error=skip). `family`: the
    checkpoint's `VideoFamily`, or a processor loaded from the checkpoint."""
    family = as_family(family)
    frames_cfg = family.frames_config(frames_cfg)
    processor, tokenizer = family.processor, family.tokenizer
    out = []
    for s in samples:
        try:
            g = clip_geometry(s, frames_cfg)
        except DataError:
            continue
        n_video = family.video_token_count(g.num_frames, g.width, g.height, fps=told_fps(s, g.fps, frames_cfg))
        for q in qa:
            if q == "close" and not s.options:
                continue
            messages = build_messages(s, prompt_qa(q), prompt_cfg, sampling_fps=g.fps)
            text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                 **family.chat_template_kwargs)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.append(PromptLength(s.id, q, family.prompt_length(ids, n_video), n_video, g.num_frames, g.file))
    return out


def model_positions(model_path: str | None) -> int | None:
    """The model's `max_position_embeddings` from its config.json (None if it cannot be read)."""
    if not model_path:
        return None
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(model_path))
    except Exception as e:  # noqa: BLE001 - offline hub id, no config: the model load will say more
        log.warning("context: cannot read %s's config (%s: %s); prompt lengths are not checked against its "
                    "positions", model_path, type(e).__name__, e)
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "max_position_embeddings", None)
    return int(n) if n else None


def plan_context(samples: Iterable[Sample], family: Any, frames_cfg: Any, prompt_cfg: Any, qa: Sequence[str],
                 completion: int, model_path: str | None = None, positions: int | None = None) -> ContextPlan:
    """The longest prompt against the model's positions; raises DataError naming the clip when
    the positions cannot hold it (and at least one completion token)."""
    lengths = prompt_lengths(samples, family, frames_cfg, prompt_cfg, qa)
    positions = positions or model_positions(model_path)
    longest = max(lengths, key=lambda p: p.tokens, default=None)
    plan = ContextPlan(longest, int(completion), positions, len(lengths))
    if longest is not None and positions and longest.tokens >= positions:
        raise context_error(longest, f"the prompt is {longest.tokens} tokens ({longest.video_tokens} of them video, "
                                     f"{longest.frames} frames) and the model holds {positions} positions "
                                     f"(max_position_embeddings), answer included: {SHRINK_HINT}")
    if longest is not None and positions and plan.needed > positions:
        log.warning("context: %s; completions are cut at the model's %d positions", plan.describe(), positions)
    return plan


def plan_for_video(video: Any, completion: int, model_path: str | None) -> ContextPlan:
    """The plan of a `VideoInputs` (its samples, processor, frames and prompt settings; both QA types)."""
    return plan_context(video.samples.values(), video.family, video.frames_cfg, video.prompt_cfg,
                        QA_TYPES, completion, model_path)
