"""What a model family must say about video: the one seam between egoadapt and a family's processor and model.

A family is one subclass of `VideoFamily` in its own module, bound to the checkpoint's processor.
Everything else (`VideoInputs`, the input cache, prompt-length planning, the SFT collator, GRPO's
log-prob passes, the rollout engines, evaluation) goes through these methods and knows nothing
family-specific of its own. Adding a family: one module here (found by `FAMILIES`, keyed by its
`model_types`), its tiny build (`egoadapt/models/tiny/<model_type>.py`) and its row in the test
matrix (`tests/families/`).
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import torch

from egoadapt.data.frames import Clip


class VideoFamily:
    """A family's video rules, bound to a processor. `model_type`: the checkpoint config's
    `model_type` this family serves (how it is chosen: never a user flag)."""

    model_type: ClassVar[str]
    # every checkpoint `model_type` it serves (dense and MoE variants of one family); () means (model_type,)
    model_types: ClassVar[tuple[str, ...]] = ()
    # the tensors a clip's processor output is kept as (in the input cache) and collated from
    vision_keys: ClassVar[tuple[str, ...]]
    # parameter-name prefixes of the vision tower (model.freeze_vision, the tests' gradient checks)
    vision_prefixes: ClassVar[tuple[str, ...]] = ("model.visual.", "visual.")
    # whether its video processor reads the per-frame model.min_pixels / model.max_pixels (Qwen2/2.5-VL's
    # do; a processor that budgets the whole clip would ignore them, so setting them is refused in preflight)
    reads_pixel_limits: ClassVar[bool] = True
    # the tokens only a processor may place (`vision_token_ids`)
    vision_special_tokens: ClassVar[tuple[str, ...]] = ()
    # whether the model takes precomputed clip features (`encoder_outputs`): GRPO's one tower pass per
    # clip (`train.vision_dedupe`); False runs the tower per row, in the model's own forward
    precomputed_features: ClassVar[bool] = True
    # `frames.odd_frames` as this family reads clips: None keeps the run's setting (padding an odd clip
    # is for a temporal patch of 2, Qwen2.5-VL's pairs of frames); "keep" where the model has none
    odd_frames: ClassVar[str | None] = None
    # what a prompt's chat template is rendered with (Qwen3.5: enable_thinking False, the answer at once)
    chat_template_kwargs: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.video_processor = getattr(processor, "video_processor", processor)

    def frames_config(self, frames_cfg: Any) -> Any:
        """The frames settings this family's clips are read with: the run's, its `odd_frames` over them."""
        if self.odd_frames is None:
            return frames_cfg
        from omegaconf import OmegaConf

        from egoadapt.configs import complete

        return OmegaConf.merge(complete("frames", frames_cfg), {"odd_frames": self.odd_frames})

    # ------------------------------------------------------------------ clip -> processor inputs
    def process(self, clip: Clip, **kwargs: Any) -> Mapping[str, Any]:
        """The processor's output for one clip at its real rate (`clip.metadata()`), frames as given."""
        raise NotImplementedError

    def video_token_count(self, num_frames: int, width: int, height: int, fps: float | None = None) -> int:
        """The video tokens of a `num_frames` clip of `width` x `height` frames, without running the processor.
        `fps`: the rate the processor is told (`Clip.metadata`), for a family whose prompt carries frame times."""
        raise NotImplementedError

    def pixel_limits(self) -> tuple[int | None, int | None]:
        """(min, max) pixels per frame the video processor resizes within (None where it has none)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ prompt
    def num_video_tokens(self, vision: Mapping[str, Any]) -> int:
        """Video tokens of a clip from its processor output (`vision`: the cached entry)."""
        raise NotImplementedError

    # The defaults below are the common rule: one placeholder token (`self.video_token_id`, set by the
    # family) repeated once per video token, turns ended by `<|im_end|>`.
    def expand(self, ids: Sequence[int], vision: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        """The chat-templated prompt `ids` with its video placeholder expanded for this clip, and for each
        new token the index in `ids` it stands for (the SFT collator carries labels and masks by it)."""
        n = self.num_video_tokens(vision)
        out, origin = [], []
        for i, t in enumerate(ids):
            reps = n if t == self.video_token_id else 1
            out += [t] * reps
            origin += [i] * reps
        return out, origin

    def prompt_length(self, ids: Sequence[int], video_tokens: int) -> int:
        """Tokens of the chat-templated prompt `ids` once its placeholder is expanded to `video_tokens`
        (`video_token_count`), without the clip."""
        return sum(video_tokens if t == self.video_token_id else 1 for t in ids)

    def stop_token_ids(self) -> list[int]:
        """Tokens that end a completion (the chat template's end of turn, the tokenizer's EOS)."""
        return [self.tokenizer.convert_tokens_to_ids("<|im_end|>"), self.tokenizer.eos_token_id]

    def vision_token_ids(self) -> list[int]:
        """Token ids that only a processor may place (`vision_special_tokens`): suppressed in sampling and
        cut from completions (a sampled placeholder would not match the video features in the next pass)."""
        tok = self.tokenizer
        ids = [tok.convert_tokens_to_ids(t) for t in self.vision_special_tokens]
        return [i for i in ids if i is not None and i != tok.unk_token_id]

    # ------------------------------------------------------------------ model forward
    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """The model's video keyword arguments for a batch of clips (`rows`: their cached entries,
        all of one `batch_key`)."""
        raise NotImplementedError

    def batch_key(self, vision: Mapping[str, Any]) -> Hashable:
        """Which clips can share one `forward_inputs` (`vision`: a clip's cached entry): clips of one key
        collate into one model call. A batch of several keys (LLaVA-OneVision's clips of different frame
        counts: one (B, T, C, H, W) tensor) reaches the model as the tower's outputs per clip instead
        (`encoder_outputs`), the tower run once per key (`VideoInputs.groups`). The default, one key
        for all: a model whose forward takes any mix of clips (Qwen's flattened patches)."""
        return None

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's keyword arguments derived from the token ids (what its position ids need)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ vision tower (one pass per clip)
    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module:
        """The vision tower of the unwrapped transformers model."""
        return model.base_model.visual

    def video_features(self, model: torch.nn.Module, vision: dict[str, torch.Tensor]) -> list[Any]:
        """The tower's output for each clip of a collated batch (`forward_inputs` of one row per clip),
        in the form `encoder_outputs` hands back to the model."""
        grids = vision["video_grid_thw"]
        out = model.get_video_features(vision["pixel_values_videos"], grids, return_dict=True).pooler_output
        return list(out)

    def encoder_outputs(self, features: Sequence[Any]) -> dict[str, Any]:
        """The model keyword arguments that hand it each row's precomputed clip features
        (transformers' `mm_encoder_outputs` seam) instead of pixels."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=tuple(features))}}

    # ------------------------------------------------------------------ vLLM
    def vllm_video(self, clip: Clip) -> dict[str, Any]:
        """`multi_modal_data` of an offline vLLM request for the clip."""
        raise NotImplementedError

    def mm_processor_kwargs(self) -> dict[str, Any]:
        """What a vLLM request (or server start) must carry for vLLM's processor to read the clip
        into the trainer's video tokens."""
        raise NotImplementedError

    def served_video(self, clip: Clip) -> dict[str, Any]:
        """The clip as a chat content block for a served model (OpenAI-compatible API)."""
        raise NotImplementedError
