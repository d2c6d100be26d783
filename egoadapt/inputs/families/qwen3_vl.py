"""Qwen3-VL, dense (`qwen3_vl`) and MoE (`qwen3_vl_moe`): a video is `<|vision_start|><|video_pad|>
<|vision_end|>` in the chat template, and the processor expands its `<|video_pad|>` into one group
per temporal patch (2 frames): the group's time as TEXT (`<1.2 seconds>`, the mean of its frames'
`frames_indices / fps`), then `<|vision_start|>`, `t*h*w / merge^2 / T` `<|video_pad|>`, `<|vision_end|>`.
So the expansion is not a repeat of one token: the processor's own ids for it are cached with the
clip (`video_ids`) and spliced in. Positions: mRoPE (interleaved) from `mm_token_type_ids` (2 marks
the video tokens; each frame group is its own grid of one time step, placed after the timestamp
text). The tower also gives deepstack features (its blocks' merged outputs, added to the first
language layers at the video tokens): `video_features` / `encoder_outputs` carry them through
transformers' `mm_encoder_outputs` seam.

The video processor's pixel budget is over the whole clip (frames x height x width, 4096..25165824 in
the 8B's config), with a per-frame cap (`cap_pixels_per_frame`); a clip needs at least a temporal
patch of frames (a 1-frame clip gets its frame repeated here, as egoadapt's odd-frame padding does).

Qwen3.5 (`qwen3_5`) shares this video input: its family subclasses `Qwen3_VL`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from egoadapt.data.frames import Clip
from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL


class Qwen3_VL(Qwen2_5_VL):
    model_type = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    # video_ids: the processor's expansion of the clip's `<|video_pad|>` (timestamps and frame groups)
    vision_keys = ("pixel_values_videos", "video_grid_thw", "video_ids")
    # one temporal step per frame group, each after its timestamp text: transformers' layout is Qwen's and vLLM's
    rope_model = None
    reads_pixel_limits = False  # its video processor's size is a whole-clip budget

    def __init__(self, processor: Any):
        super().__init__(processor)
        vp = self.video_processor
        self.temporal = int(getattr(vp, "temporal_patch_size", 2))
        self.start_id = self.tokenizer.convert_tokens_to_ids(getattr(processor, "vision_start_token", "<|vision_start|>"))
        self.end_id = self.tokenizer.convert_tokens_to_ids(getattr(processor, "vision_end_token", "<|vision_end|>"))
        self._timestamp_tokens = lru_cache(maxsize=4096)(self._timestamp_tokens)

    # ------------------------------------------------------------------ clip -> processor inputs
    def padded(self, clip: Clip) -> Clip:
        """The clip with its last frame repeated up to one temporal patch (the processor refuses fewer)."""
        short = self.temporal - clip.num_frames
        if short <= 0:
            return clip
        frames = np.concatenate([clip.frames, np.repeat(clip.frames[-1:], short, axis=0)])
        return dataclasses.replace(clip, frames=frames, padded=clip.padded + short,
                                   timestamps=list(clip.timestamps) + [clip.timestamps[-1]] * short,
                                   indices=list(clip.indices) + [clip.indices[-1]] * short)

    def process(self, clip: Clip, **kwargs: Any) -> Mapping[str, Any]:
        clip = self.padded(clip)
        out = self.processor(text=[f"<|vision_start|>{self.video_token}<|vision_end|>"], videos=[clip.frames],
                             video_metadata=[clip.metadata()], do_sample_frames=False, return_tensors="pt", **kwargs)
        return {**out, "video_ids": out["input_ids"][0, 1:-1].clone()}  # what `<|video_pad|>` became

    def _timestamp_tokens(self, seconds: str) -> int:
        return len(self.tokenizer.encode(seconds, add_special_tokens=False))

    def timestamps(self, num_frames: int, fps: float) -> list[float]:
        """Each frame group's time, by the processor's rule (frames 0..n-1, the last repeated to fill a group)."""
        idx = list(range(num_frames)) + [num_frames - 1] * (-num_frames % self.temporal)
        return [(idx[i] + idx[i + self.temporal - 1]) / 2 / fps for i in range(0, len(idx), self.temporal)]

    def video_token_count(self, num_frames: int, width: int, height: int, fps: float | None = None) -> int:
        """By Qwen3VLVideoProcessor's own count (its resize rule, per-frame cap included) and the processor's
        expansion: per frame group its timestamp's text tokens, vision start and end, and its merged patches.
        `fps`: the rate the processor is told (the video processor's sampling rate, 2, when not given). Exact
        for frames 0..n-1; a clip padded to an even count repeats its last index, whose group time can differ
        in one digit only where it crosses a power of ten."""
        vp = self.video_processor
        num_frames = max(num_frames, self.temporal)
        patches = vp.get_num_of_video_patches(num_frames, height, width)
        grid_t = (num_frames + -num_frames % self.temporal) // self.temporal
        per_group = patches // grid_t // self.merge
        stamps = self.timestamps(num_frames, float(fps or getattr(vp, "fps", None) or 2))
        return sum(self._timestamp_tokens(f"<{t:.1f} seconds>") + 2 + per_group for t in stamps)

    # ------------------------------------------------------------------ prompt
    def num_video_tokens(self, vision: Mapping[str, Any]) -> int:
        return int(torch.as_tensor(vision["video_ids"]).numel())

    def expand(self, ids: Sequence[int], vision: Mapping[str, Any]) -> tuple[list[int], list[int]]:
        video = torch.as_tensor(vision["video_ids"]).tolist()
        out, origin = [], []
        for i, t in enumerate(ids):
            new = video if t == self.video_token_id else [t]
            out += new
            origin += [i] * len(new)
        return out, origin

    # ------------------------------------------------------------------ model forward
    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        from egoadapt.inputs.patches import pixels

        return {"pixel_values_videos": torch.cat([pixels(r) for r in rows]),
                "video_grid_thw": torch.cat([r["video_grid_thw"] for r in rows])}

    # token_inputs (Qwen2.5-VL's): 2 marks the video tokens; each frame group, between its timestamp text
    # and vision end, is one run of them, which get_rope_index places as a one-step grid

    # ------------------------------------------------------------------ vision tower (one pass per clip)
    def video_features(self, model: torch.nn.Module, vision: dict[str, torch.Tensor]) -> list[Any]:
        """Per clip: (merged features, [its deepstack features, one per deepstack block])."""
        out = model.get_video_features(vision["pixel_values_videos"], vision["video_grid_thw"], return_dict=True)
        layers = out.deepstack_features or []
        return [(pooled, [layer[i] for layer in layers]) for i, pooled in enumerate(out.pooler_output)]

    def encoder_outputs(self, features: Sequence[Any]) -> dict[str, Any]:
        from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

        pooled = tuple(f[0] for f in features)
        deepstack = [tuple(f[1][k] for f in features) for k in range(len(features[0][1]))] if features else []
        return {"mm_encoder_outputs": {"video": BaseModelOutputWithDeepstackFeatures(
            pooler_output=pooled, deepstack_features=deepstack)}}

    # ------------------------------------------------------------------ vLLM
    def vllm_video(self, clip: Clip) -> dict[str, Any]:
        return super().vllm_video(self.padded(clip))

    def mm_processor_kwargs(self) -> dict[str, Any]:
        # vLLM reads the checkpoint's video processor (its size, per-frame cap); the frames are the clip's own
        # (their metadata's frames_indices give the timestamps): never resampled at the processor's 2 fps
        return {"do_sample_frames": False}

    def served_video(self, clip: Clip) -> dict[str, Any]:
        return super().served_video(self.padded(clip))
