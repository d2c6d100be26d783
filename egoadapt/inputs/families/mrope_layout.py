"""Qwen's mRoPE layout across blocks, where transformers 5.19 departs from it.

Qwen's own code (transformers 4.x, the Qwen2.5-VL PR's documented example) and vLLM
(`get_mrope_input_positions`) start the text after a video one past the video's largest position on
any axis. transformers 5.19's `get_rope_index` (Qwen2-VL, Qwen2.5-VL) starts it at the video's start +
max(h, w) / merge, which overlaps the video's temporal positions whenever a clip has more (time-scaled)
temporal steps than merged rows or columns: every EgoCross clip. The trainer's HF passes and the vLLM
rollouts and evaluation then place every token after the clip differently (0.1 nats per token apart on
a tiny Qwen2-VL; 0.001 with this layout). `qwen_block_positions` wraps the model class's own
`get_rope_index` once per process and re-lays its output run by run; the layout inside each run is
transformers' own. Families bind it through `rope_model` (`Qwen2_5_VL.__init__`).
"""
from __future__ import annotations

import functools
import importlib
import itertools

import torch


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


def bind(path: str) -> None:
    """`qwen_block_positions` on the class at "module:Class"."""
    module, name = path.split(":")
    qwen_block_positions(getattr(importlib.import_module(module), name))
