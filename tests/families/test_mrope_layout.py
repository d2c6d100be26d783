"""Qwen2-VL's and Qwen2.5-VL's mRoPE layout after a video: the text starts one past the video's largest
position on any axis (Qwen's and vLLM's rule), not at transformers 5.19's start + max(h, w) / merge."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from egoadapt.data.frames import Clip
from egoadapt.inputs.families.mrope_layout import restart_blocks


# 8 temporal patches at 2 fps: Qwen2-VL steps 1 per patch; Qwen2.5-VL 2 (tokens_per_second 2 x 1 s per patch)
@pytest.mark.parametrize("family_name,span", [("qwen2_vl", 7), ("qwen2_5_vl", 14)])
def test_text_after_a_video_starts_past_its_temporal_positions(family_dirs, family_name, span):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from egoadapt.inputs.families import for_checkpoint

    folder = family_dirs[family_name]
    family = for_checkpoint(str(folder), AutoProcessor.from_pretrained(folder))  # binds the layout
    model = AutoModelForImageTextToText.from_pretrained(folder)
    frames = np.zeros((16, 56, 56, 3), dtype=np.uint8)  # 8 temporal patches of 2x2 merged: T > H, W
    vision = family.process(Clip(frames, 2.0, [i / 2 for i in range(16)], list(range(16)), (0.0, 8.0)))
    ids = family.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What is seen?"}]}],
        add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids  # a BatchEncoding (transformers 5)
    expanded = torch.tensor([family.expand(ids, vision)[0]])
    types = family.token_inputs(expanded)["mm_token_type_ids"]
    # left padding: positions are laid on the kept tokens only
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), expanded], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(expanded)], 1)
    pad_types = torch.cat([torch.zeros(1, 3, dtype=torch.long), types], 1)
    positions, deltas = model.model.get_rope_index(padded, pad_types, video_grid_thw=vision["video_grid_thw"],
                                                   attention_mask=mask)
    positions = positions[:, 0, 3:]
    video = (types[0] == 2).nonzero()[:, 0]
    first, last = int(video[0]), int(video[-1])
    assert positions[0, first:last + 1].max() - positions[0, first] == span
    assert (positions[:, last + 1] == positions[:, first:last + 1].max() + 1).all()
    assert (positions[:, :first] == torch.arange(first)).all()  # the text before is untouched
    assert int(deltas[0]) == int(positions.max()) + 1 - expanded.shape[1]


def test_restart_blocks_lays_each_run_past_the_previous_one():
    # a text run of 2, a vision run laid from 2 reaching 5 on its first axis, text restarted at 4 by transformers
    positions = torch.tensor([[0, 1, 2, 2, 5, 5, 4, 5], [0, 1, 2, 3, 2, 3, 4, 5], [0, 1, 2, 3, 2, 3, 4, 5]])[:, None]
    types = torch.tensor([[0, 0, 2, 2, 2, 2, 0, 0]])
    out, deltas = restart_blocks(positions, types, None)
    assert out[:, 0, 6:].tolist() == [[6, 7]] * 3
    assert torch.equal(out[:, 0, :6], positions[:, 0, :6])
    assert deltas.tolist() == [[0]]
