"""A tiny, randomly initialised Qwen2-VL built locally (no download), for tests and the demo.

Small in width and depth, real in geometry. Real, from Qwen2-VL-7B-Instruct (`REAL`: its config.json,
which transformers' `configuration_qwen2_vl.py` documents; the vision defaults there are the 7B's):
32768 positions, rope_theta 1e6, rms_norm_eps 1e-6, mRoPE sections 16:24:24 of head_dim 128 (3584 / 28
heads) scaled to the tiny head_dim 32 ([4, 6, 6]), a vision tower of patch 14, temporal patch 2, spatial
merge 2, MLP ratio 4 and quick-GELU with full attention in every block (Qwen2-VL has no window attention,
unlike Qwen2.5-VL), the chat template (Qwen2-VL's is byte-identical to Qwen2.5-VL's: TRL's copy, which TRL
maps to its training template) and Qwen's special tokens (`common.QWEN_SPECIAL_TOKENS`), and the real
processor classes (`Qwen2VLProcessor` with Qwen2-VL's image and video processors). Not real: width and
depth (`TinySize`; the 7B has 28 layers of 3584, a 1280-wide tower 32 blocks deep), the vocabulary
(trained here) and the processor's pixel budget (56x56 to 112x112 frames, as the Qwen2.5-VL build; the
per-frame cap's total-video budget is the real 32768 positions).

`egoadapt model tiny family=qwen2_vl size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

from egoadapt.models.tiny import qwen2_5_vl
from egoadapt.models.tiny.common import (
    INIT_STD,
    QWEN_SPECIAL_TOKENS,
    TinySize,
    init_model,
    qwen_vision_tokens,
    scaled_sections,
    special_ids,
    train_tokenizer,
)

VLLM_CPU = True

# What decides shapes in the real model (Qwen2-VL-7B-Instruct's config.json)
REAL = {
    "max_position_embeddings": 32768, "head_dim": 128, "mrope_section": (16, 24, 24), "rope_theta": 1e6,
    "rms_norm_eps": 1e-6, "sliding_window": 32768, "patch_size": 14, "temporal_patch_size": 2,
    "spatial_merge_size": 2, "vision_mlp_ratio": 4, "vision_hidden_act": "quick_gelu",
}
# the processor builder is Qwen2.5-VL's: the same patch, temporal patch and merge
assert all(REAL[k] == qwen2_5_vl.REAL[k] for k in ("patch_size", "temporal_patch_size", "spatial_merge_size"))


def mrope_section(head_dim: int) -> list[int]:
    """The real model's mRoPE sections (time, height, width) scaled to `head_dim`: [4, 6, 6] for 32."""
    return scaled_sections(REAL["mrope_section"], REAL["head_dim"], head_dim)


def build_processor(tokenizer):
    return qwen2_5_vl.build_processor(tokenizer, processor_class="Qwen2VLProcessor",
                                      max_video_tokens=REAL["max_position_embeddings"])


def build_model(tokenizer, size: TinySize, seed: int):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    ids = special_ids(tokenizer, QWEN_SPECIAL_TOKENS)
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.ffn,
            num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
            max_position_embeddings=REAL["max_position_embeddings"], max_window_layers=size.layers,
            sliding_window=REAL["sliding_window"], use_sliding_window=False, rms_norm_eps=REAL["rms_norm_eps"],
            hidden_act="silu", initializer_range=INIT_STD,
            rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"],
                             "mrope_section": mrope_section(size.hidden // size.heads)},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False, torch_dtype="float32",
        ),
        vision_config=dict(
            depth=size.vision_depth, embed_dim=size.vision_hidden, hidden_size=size.hidden,
            num_heads=size.vision_heads, mlp_ratio=REAL["vision_mlp_ratio"], hidden_act=REAL["vision_hidden_act"],
            patch_size=REAL["patch_size"], spatial_merge_size=REAL["spatial_merge_size"],
            temporal_patch_size=REAL["temporal_patch_size"], initializer_range=INIT_STD,
        ),
        **qwen_vision_tokens(ids),
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    return init_model(Qwen2VLForConditionalGeneration, config, seed, ids["<|im_end|>"], ids["<|endoftext|>"])


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen2-VL."""
    tokenizer = train_tokenizer(size.vocab)
    return build_model(tokenizer, size, seed), build_processor(tokenizer)
