"""Qwen2-VL: Qwen2.5-VL's video rules (the same `<|vision_start|><|video_pad|><|vision_end|>` placeholder,
one `<|video_pad|>` per merged patch after the same `smart_resize`, 3-D mRoPE only with
`mm_token_type_ids`, the same stop and vision tokens, the same vLLM request) except time: Qwen2-VL's
temporal mRoPE position is the temporal patch's index (one step per `temporal_patch_size` frames, whatever
the fps), so its processor gives no `second_per_grid_ts` and its model forward takes none (transformers'
`Qwen2VLModel.get_rope_index`; vLLM's `Qwen2VLForConditionalGeneration` steps 1.0 without it). Its
vision tower (`model.visual`, full attention in every block) takes precomputed clip features through
the same `mm_encoder_outputs` seam.

Positions after a video: Qwen's own layout (transformers 4.x, vLLM's `get_mrope_input_positions`) starts
the text after a video one past the video's largest position on any axis; transformers 5.19 starts it at
the video's start + max(h, w) / merge, which overlaps the video's temporal positions whenever a clip has
more temporal patches than merged rows or columns (every EgoCross clip). The trainer's HF passes and the
vLLM rollouts then disagree on every position after the clip. Binding this family re-lays transformers'
positions block by block (`mrope_layout.qwen_block_positions`, as for Qwen2.5-VL).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL


class Qwen2_VL(Qwen2_5_VL):
    model_type = "qwen2_vl"
    vision_keys = ("pixel_values_videos", "video_grid_thw")

    rope_model = "transformers.models.qwen2_vl.modeling_qwen2_vl:Qwen2VLModel"

    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        # a row may still carry a time step (a processor output kept whole): the forward has no such argument
        return {k: v for k, v in super().forward_inputs(rows).items() if k in self.vision_keys}
