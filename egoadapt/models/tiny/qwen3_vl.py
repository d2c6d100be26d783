"""A tiny, randomly initialised Qwen3-VL (dense) built locally (no download), for tests and the demo.

Small in width and depth, real in geometry: what decides shapes, positions and the prompt is
Qwen3-VL-8B-Instruct's (`REAL`, from its config.json and preprocessor configs): 262144 positions,
interleaved mRoPE with sections 24:20:20 of head_dim 128 (scaled to the tiny head_dim 32: 6:5:5),
rope theta 5e6, q/k RMS norms (Qwen3's), vision patch 16, temporal patch 2, spatial merge 2 (a
frame side is a multiple of 32), 2304 learned vision position embeddings (a 48x48 grid,
interpolated), deepstack features from the tower's blocks 8, 16, 24 of 27 (scaled to the tiny
depth) added to the first language layers, the video processor's rules (2 fps, frame groups of 2
each preceded by a `<t seconds>` timestamp in text, the total-video pixel budget 4096..25165824
and the per-frame cap of qwen-vl-utils), Qwen3-VL's chat template (TRL's copy, so TRL finds its
training template) and Qwen3's special tokens (the video chat's, plus the tool and think tags).
Tiny: widths and depths (`common.SIZES`), the trained-here vocabulary, and the per-frame token cap
(16 merged tokens: frames of 64x64..128x128, where the real cap is 768 tokens).

`egoadapt model tiny family=qwen3_vl size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

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

# What decides shapes in the real model (Qwen3-VL-8B-Instruct's config.json and processor configs)
REAL = {
    "max_position_embeddings": 262144, "head_dim": 128, "mrope_section": (24, 20, 20), "mrope_interleaved": True,
    "rope_theta": 5e6, "rms_norm_eps": 1e-6, "patch_size": 16, "temporal_patch_size": 2, "spatial_merge_size": 2,
    "vision_depth": 27, "deepstack_visual_indexes": (8, 16, 24), "num_position_embeddings": 2304,
    "vision_act": "gelu_pytorch_tanh", "video_min_pixels": 4096, "video_max_pixels": 25165824,
    "image_min_pixels": 65536, "image_max_pixels": 16777216, "fps": 2,
    "pixel_mean": (0.5, 0.5, 0.5), "pixel_std": (0.5, 0.5, 0.5),
}
# Qwen3's added tokens beyond Qwen2.5's video chat set: tool calls and thinking
QWEN3_SPECIAL_TOKENS = QWEN_SPECIAL_TOKENS + (
    "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>",
)
# per-frame cap in merged tokens (the real one is 768): 16 -> at most 128x128 frames
TINY_FRAME_TOKENS = 16


def mrope_section(head_dim: int) -> list[int]:
    """The real interleaved mRoPE sections (time, height, width) scaled to `head_dim`: [6, 5, 5] for 32."""
    return scaled_sections(REAL["mrope_section"], REAL["head_dim"], head_dim)


def deepstack_blocks(depth: int) -> list[int]:
    """The real tower's deepstack blocks (8, 16, 24 of 27) at the same fractions of a `depth`-block tower
    (distinct blocks; [0, 1] for 2)."""
    real = REAL["vision_depth"]
    return sorted({min(depth - 1, i * depth // real) for i in REAL["deepstack_visual_indexes"]})


def tokenizer(size: TinySize):
    from trl.chat_template_utils import qwen3_vl_chat_template

    return train_tokenizer(size.vocab, QWEN3_SPECIAL_TOKENS, qwen3_vl_chat_template)


def build_processor(tok):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    geometry = dict(patch_size=REAL["patch_size"], temporal_patch_size=REAL["temporal_patch_size"],
                    merge_size=REAL["spatial_merge_size"])
    return Qwen3VLProcessor(
        # Qwen3-VL normalises images as its videos (mean = std = 0.5, not Qwen2-VL's CLIP values); vLLM
        # normalises video pixels on the device with the image processor's values
        image_processor=Qwen2VLImageProcessor(
            **geometry, size={"shortest_edge": REAL["image_min_pixels"], "longest_edge": REAL["image_max_pixels"]},
            image_mean=REAL["pixel_mean"], image_std=REAL["pixel_std"]),
        # the real total-video budget; the per-frame cap (qwen-vl-utils', transformers' default from v5.22) keeps
        # tiny frames at 64x64..128x128
        video_processor=Qwen3VLVideoProcessor(
            **geometry, image_mean=REAL["pixel_mean"], image_std=REAL["pixel_std"], size={"shortest_edge": REAL["video_min_pixels"], "longest_edge": REAL["video_max_pixels"]},
            fps=REAL["fps"], cap_pixels_per_frame=True, max_video_tokens=TINY_FRAME_TOKENS),
        tokenizer=tok,
        chat_template=tok.chat_template,
    )


def text_config(tok, size: TinySize) -> dict:
    """The language model's config (dense: Qwen3-VL-8B's layout at the tiny width)."""
    ids = special_ids(tok, QWEN_SPECIAL_TOKENS)
    head_dim = size.hidden // size.heads
    return dict(
        vocab_size=len(tok), hidden_size=size.hidden, intermediate_size=size.ffn, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, num_key_value_heads=size.kv_heads, head_dim=head_dim,
        max_position_embeddings=REAL["max_position_embeddings"], rms_norm_eps=REAL["rms_norm_eps"],
        hidden_act="silu", initializer_range=INIT_STD,
        rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"],
                         "mrope_section": mrope_section(head_dim), "mrope_interleaved": REAL["mrope_interleaved"]},
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )


def vision_config(size: TinySize) -> dict:
    return dict(
        depth=size.vision_depth, hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 4,
        num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=REAL["patch_size"],
        spatial_merge_size=REAL["spatial_merge_size"], temporal_patch_size=REAL["temporal_patch_size"],
        num_position_embeddings=REAL["num_position_embeddings"],
        deepstack_visual_indexes=deepstack_blocks(size.vision_depth), hidden_act=REAL["vision_act"],
        initializer_range=INIT_STD,
    )


def finish(model_cls, config, tok, seed: int):
    """The model of `config`, seeded, with the chat's end of turn as its generation stop."""

    ids = special_ids(tok, QWEN_SPECIAL_TOKENS)
    return init_model(model_cls, config, seed, ids["<|im_end|>"], ids["<|endoftext|>"])


def top_config(config_cls, tok, text: dict, vision: dict):
    ids = special_ids(tok, QWEN_SPECIAL_TOKENS)
    return config_cls(
        text_config=text, vision_config=vision,
        **qwen_vision_tokens(ids),
        tie_word_embeddings=False,
    )


def build_model(tok, size: TinySize, seed: int):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    config = top_config(Qwen3VLConfig, tok, text_config(tok, size), vision_config(size))
    return finish(Qwen3VLForConditionalGeneration, config, tok, seed)


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen3-VL."""
    tok = tokenizer(size)
    return build_model(tok, size, seed), build_processor(tok)
