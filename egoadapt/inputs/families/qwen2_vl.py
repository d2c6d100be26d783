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
positions block by block (`qwen_block_positions`): the layout inside each block is transformers' own.
"""
from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL


class Qwen2_VL(Qwen2_5_VL):
    model_type = "qwen2_vl"
    vision_keys = ("pixel_values_videos", "video_grid_thw")

    def __init__(self, processor: Any):
        super().__init__(processor)
        from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLModel

        qwen_block_positions(Qwen2VLModel)

    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        # a row may still carry a time step (a processor output kept whole): the forward has no such argument
        return {k: v for k, v in super().forward_inputs(rows).items() if k in self.vision_keys}


def restart_blocks(positions: torch.Tensor, token_types: torch.Tensor,
                   attention_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`positions` (3, batch, seq) with each run of one token type (text, image, video) shifted to start one
    past the previous run's largest position (Qwen's and vLLM's rule); the mRoPE deltas (batch, 1) to match."""
    positions = positions.clone()
    deltas = []
    for b in range(positions.shape[1]):
        keep = attention_mask[b].bool() if attention_mask is not None else torch.ones_like(token_types[b], dtype=torch.bool)
        row, types = positions[:, b, keep], token_types[b][keep].tolist()
        start = 0
        for _, run in itertools.groupby(range(len(types)), key=types.__getitem__):
            run = list(run)
            block = row[:, run[0]:run[-1] + 1]
            block += start - block.min()
            start = int(block.max()) + 1
        positions[:, b, keep] = row
        deltas.append(start - len(types))
    return positions, torch.tensor(deltas, device=positions.device).unsqueeze(1)


def qwen_block_positions(model_class: type) -> None:
    """Wrap `model_class.get_rope_index` (once) so that every run starts one past the previous run's
    largest position: transformers' generate, forward and training passes all go through it."""
    original = model_class.get_rope_index
    if getattr(original, "_egoadapt_block_positions", False):
        return

    @functools.wraps(original)
    def get_rope_index(self, input_ids, mm_token_type_ids, *args, **kwargs):
        positions, _ = original(self, input_ids, mm_token_type_ids, *args, **kwargs)
        mask = kwargs.get("attention_mask", args[2] if len(args) > 2 else None)
        return restart_blocks(positions, mm_token_type_ids, mask)

    get_rope_index._egoadapt_block_positions = True
    model_class.get_rope_index = get_rope_index
