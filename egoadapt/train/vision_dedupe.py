"""One vision-tower forward per clip in a GRPO log-prob pass (issue 12 item 3).

The G completions of a clip share its pixels, so the per-row call (`pixel_values_videos` for
every row) runs the tower G times on the same input in the old-policy, reference and policy
passes. `ClipFeatures` runs the tower once on the unique clips of a pass, through the model
family's `video_features` (the model's own `get_video_features`), and hands each row its clip's
output through the family's `encoder_outputs` (transformers' `mm_encoder_outputs` seam for
precomputed encoder outputs): the placeholder check, the scatter into the embeddings, the
positions (from each row's grid and time step) and the LM are the model's own code, as in the
per-row call. A family whose model takes no precomputed features says so
(`precomputed_features = False`) and GRPO runs the tower per row. When the tower trains, the gradient
of a shared output is the sum over the rows that use it, which is what the per-row
computation gives. The tower is a submodule called by its own `__call__`, so LoRA layers in it
and DeepSpeed's ZeRO-3 parameter-gathering hooks (registered on every submodule) run as in the
model's forward.

With a frozen tower (no parameter of it trains: `model.freeze_vision=true`) its output never
changes, so one `ClipFeatures(detached=True)` per generation batch keeps each clip's output,
computed once under no_grad, for every pass on that batch's rows (old policy, reference,
policy, each of num_iterations), and is freed with the batch. The reference tower is then the
policy's: the same checkpoint, never updated (PEFT puts no adapter on a frozen tower).

It is also how a batch whose clips cannot be stacked into one model call (the family's
`batch_key`: LLaVA-OneVision's frame count) reaches the model in training: the tower runs
once per group of stackable clips (`VideoInputs.groups`) and the rows get their clips' outputs
through `encoder_outputs`, which takes any mix. SFT (`train.sft`) and GRPO's per-row path
(`vision_dedupe=false`) take this way for such a batch only; a stackable one goes as pixels.
(HF generation, below `train`, runs one `generate` per group instead: `rollout.engines`.)
"""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch

from egoadapt.inputs.video import VideoInputs


def unwrap(model) -> torch.nn.Module:
    """The transformers model under DDP / DeepSpeed / PEFT wrappers."""
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def tower_trains(model, video: VideoInputs) -> bool:
    """Whether any parameter of the vision tower (LoRA's included) gets a gradient."""
    return any(p.requires_grad for p in video.family.vision_tower(unwrap(model)).parameters())


class ClipFeatures:
    """Vision-tower outputs by clip, each clip encoded once; `detached`: computed under no_grad
    (a frozen tower, shared by every pass on a batch), else in the pass's autograd graph (one
    per pass, shared by its chunks)."""

    def __init__(self, video: VideoInputs, detached: bool):
        if not video.family.precomputed_features:
            raise ValueError(f"{type(video.family).__name__} takes no precomputed clip features, so its batch_key "
                             "must stack every batch (one key for all clips)")
        self.video, self.detached = video, detached
        self._features: dict[str, torch.Tensor] = {}  # clip -> the tower's output for it
        self._per_clip: dict[str, dict[str, torch.Tensor]] = {}  # clip -> its other video inputs (grid, time step)
        self.encoded = 0  # clips run through the tower so far

    def __contains__(self, clip: str) -> bool:
        return clip in self._features

    def model_inputs(self, model, sample_ids: Sequence[str], device: torch.device) -> dict[str, Any]:
        """The video inputs of rows `sample_ids` for the model's forward, without pixels: each
        row's own grid and time step (mRoPE) and its clip's tower output."""
        self._encode(model, [c for c in dict.fromkeys(sample_ids) if c not in self._features], device)
        out: dict[str, Any] = {k: torch.cat([self._per_clip[c][k] for c in sample_ids])
                               for k in self._per_clip[sample_ids[0]]}
        return {**out, **self.video.family.encoder_outputs([self._features[c] for c in sample_ids])}

    def _encode(self, model, clips: list[str], device: torch.device) -> None:
        """Run the tower on `clips`: one call per group of clips that stack (`VideoInputs.groups`)."""
        for group in self.video.groups(clips):
            self._encode_stackable(model, [clips[i] for i in group], device)

    def _encode_stackable(self, model, clips: list[str], device: torch.device) -> None:
        vision = {k: v.to(device) for k, v in self.video.collate(clips).items()}
        with torch.no_grad() if self.detached else contextlib.nullcontext():
            features = self.video.family.video_features(unwrap(model), vision)
        if len(features) != len(clips):
            raise RuntimeError(f"vision dedupe expects one video per sample; clips {clips} gave {len(features)}")
        pixel_keys = {k for k in vision if k.startswith("pixel_values")}
        vision = {k: v for k, v in vision.items() if k not in pixel_keys}
        for i, clip in enumerate(clips):
            self._features[clip] = features[i]
            self._per_clip[clip] = {k: v[i:i + 1] for k, v in vision.items()}  # one row per video
        self.encoded += len(clips)
