"""Qwen2.5-VL-7B-Instruct's `config.json`, as published, so full-size runs need no download.

Source: https://huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct/blob/main/config.json (the file
written with transformers 4.41.2, in the flat layout that transformers still reads: text
fields at the top, `vision_config` nested, mRoPE under `rope_scaling`). Copied value for
value; `Qwen2_5_VLConfig.from_dict(CONFIG)` builds what `from_pretrained` builds from the hub
file (8.29 B parameters). Nothing else of the checkpoint is used: weights are random, and
the token ids are remapped to the local tokenizer's (`config_for`).
"""
from __future__ import annotations

import copy
from typing import Any

CONFIG: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 128000,
    "max_window_layers": 28,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "use_cache": True,
    "use_sliding_window": False,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "vocab_size": 152064,
}

# The dry run's model: the same config with small widths and depths. What decides shapes stays
# (positions, mRoPE proportions, patch / temporal patch / merge sizes, window, tokens per
# second); head_dim 32 (vLLM's CPU attention takes no smaller), full attention on the last
# block of each half of the vision tower; a vocabulary still larger than the tokenizer's.
TINY = {
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_window_layers": 2, "vocab_size": 8192,
    "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
    "vision_config": {"depth": 4, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
                      "out_hidden_size": 128, "fullatt_block_indexes": [1, 3]},
}


def config_for(tokenizer, tiny: bool = False):
    """The `Qwen2_5_VLConfig` (7B, or its tiny twin), special-token ids taken from `tokenizer`."""
    from transformers import Qwen2_5_VLConfig

    raw = copy.deepcopy(CONFIG)
    if tiny:
        vision = {**raw["vision_config"], **TINY["vision_config"]}
        raw.update({k: v for k, v in TINY.items() if k != "vision_config"}, vision_config=vision)
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("bos_token_id", "<|endoftext|>"), ("eos_token_id", "<|im_end|>"), ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"), ("vision_token_id", "<|vision_pad|>"),
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"))}
    raw.update(ids, pad_token_id=ids["bos_token_id"])
    config = Qwen2_5_VLConfig.from_dict(raw)
    config.text_config.pad_token_id = ids["bos_token_id"]
    return config
