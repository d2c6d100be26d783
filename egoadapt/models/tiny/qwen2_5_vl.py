"""A tiny, randomly initialised Qwen2.5-VL built locally (no download), for tests and the demo.

Everything a real checkpoint folder has: the Qwen2.5-VL model config and weights, a
byte-level BPE tokenizer trained here with Qwen's pre-tokenizer and special tokens,
Qwen2.5-VL's chat template (TRL's copy, so TRL finds its training template), and the
image and video processors. It loads with the transformers Auto classes and with vLLM.

Small in width and depth, real in geometry: what decides shapes and positions is
Qwen2.5-VL-7B-Instruct's (`REAL`): 128000 positions, mRoPE sections in the real proportions
(16:24:24 of head_dim 128, scaled to the tiny head_dim), vision patch 14, temporal patch 2,
spatial merge 2, window 112 with full attention on the last block of each quarter of the
tower (7, 15, 23, 31 of 32; scaled to the tiny depth), its chat template and the special
tokens a video chat uses (`common.QWEN_SPECIAL_TOKENS`).
Only the processor's pixel budget is small by default (56x56 to 112x112 frames, so unit
tests stay fast); `model.min_pixels` / `model.max_pixels` set another one at load time
(the 7B recipes' 200704 for a rehearsal at real token counts).

`egoadapt model tiny family=qwen2_5_vl size=micro|small out=DIR [seed=N]` (the default family)
"""
from __future__ import annotations

from egoadapt.models.tiny.common import (
    INIT_STD,
    QWEN_SPECIAL_TOKENS,
    TinySize,
    init_model,
    last_of_each_quarter,
    qwen_vision_tokens,
    scaled_sections,
    special_ids,
    train_tokenizer,
)

# What decides shapes in the real model (Qwen2.5-VL-7B-Instruct's config.json)
REAL = {
    "max_position_embeddings": 128000, "head_dim": 128, "mrope_section": (16, 24, 24), "rope_theta": 1e6,
    "rms_norm_eps": 1e-6, "sliding_window": 32768, "patch_size": 14, "temporal_patch_size": 2,
    "spatial_merge_size": 2, "window_size": 112, "tokens_per_second": 2, "vision_depth": 32,
    "fullatt_block_indexes": (7, 15, 23, 31),
}


def mrope_section(head_dim: int) -> list[int]:
    """The real model's mRoPE sections (time, height, width) scaled to `head_dim`: [4, 6, 6] for 32."""
    return scaled_sections(REAL["mrope_section"], REAL["head_dim"], head_dim)


def fullatt_blocks(depth: int) -> list[int]:
    """Full attention on the last block of each quarter of the tower, as the real 32-block tower (7, 15, 23, 31)."""
    return last_of_each_quarter(depth)


# Processor limits: 56x56 frames give 2x2 merged patches (4 tokens) per 2-frame time step.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112


def build_processor(tokenizer, processor_class: str = "Qwen2_5_VLProcessor",
                    max_video_tokens: int = REAL["max_position_embeddings"]):
    """The Qwen-VL image and video processors at the small pixel budget in `processor_class` (Qwen2-VL's
    build passes its own, with its context length as `max_video_tokens`)."""
    import transformers
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    limits = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=REAL["patch_size"],
                  temporal_patch_size=REAL["temporal_patch_size"], merge_size=REAL["spatial_merge_size"])
    return getattr(transformers, processor_class)(
        image_processor=Qwen2VLImageProcessor(**limits),
        # per-frame pixel cap as in Qwen's reference (qwen-vl-utils); transformers' default from v5.22. Its
        # total-video budget assumes the real context length (max_video_tokens)
        video_processor=Qwen2VLVideoProcessor(**limits, cap_pixels_per_frame=True, max_video_tokens=max_video_tokens),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def build_model(tokenizer, size: TinySize, seed: int):
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = special_ids(tokenizer, QWEN_SPECIAL_TOKENS)
    mrope = mrope_section(size.hidden // size.heads)  # sums to head_dim / 2
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.ffn,
            num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
            max_position_embeddings=REAL["max_position_embeddings"], max_window_layers=size.layers,
            sliding_window=REAL["sliding_window"], use_sliding_window=False, rms_norm_eps=REAL["rms_norm_eps"],
            hidden_act="silu", initializer_range=INIT_STD,
            rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"], "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False, torch_dtype="float32",
        ),
        vision_config=dict(
            depth=size.vision_depth, hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 2,
            num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=REAL["patch_size"],
            spatial_merge_size=REAL["spatial_merge_size"], temporal_patch_size=REAL["temporal_patch_size"],
            window_size=REAL["window_size"], fullatt_block_indexes=fullatt_blocks(size.vision_depth),
            tokens_per_second=REAL["tokens_per_second"], hidden_act="silu", initializer_range=INIT_STD,
        ),
        **qwen_vision_tokens(ids),
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    return init_model(Qwen2_5_VLForConditionalGeneration, config, seed, ids["<|im_end|>"], ids["<|endoftext|>"])


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen2.5-VL."""
    tokenizer = train_tokenizer(size.vocab)
    return build_model(tokenizer, size, seed), build_processor(tokenizer)
