"""A tiny, randomly initialised Qwen3.5 MoE built locally (no download), for tests and the demo.

The dense build's tokenizer, chat template, processor, vision tower, hybrid layer pattern and rotary
layout (`qwen3_5`), with Qwen3.5-35B-A3B's feed-forward layout: every layer's MLP a sparse MoE block
of 256 experts, 8 routed per token, plus one gated shared expert. Tiny: the expert and shared-expert
widths (a quarter of the tiny hidden size, as the real 512 of 2048) and the shared widths and depths
of `common.SIZES`.

`egoadapt model tiny family=qwen3_5_moe size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

from egoadapt.models.tiny.common import TinySize
from egoadapt.models.tiny.qwen3_5 import (
    VLLM_DTYPE,
    build_processor,
    build_tokenizer,
    finish,
    text_config,
    token_ids,
    vision_config,
)

VLLM_CPU = True
__all__ = ["VLLM_CPU", "VLLM_DTYPE", "build", "build_model"]

# What decides the MoE layout in the real model (Qwen3.5-35B-A3B's config.json)
REAL_MOE = {"num_experts": 256, "num_experts_per_tok": 8, "expert_fraction": 4}  # expert width = hidden / 4


def build_model(tokenizer, size: TinySize, seed: int):
    import torch
    from transformers import Qwen3_5MoeConfig, Qwen3_5MoeForConditionalGeneration

    width = size.hidden // REAL_MOE["expert_fraction"]
    text = text_config(tokenizer, size, num_experts=REAL_MOE["num_experts"],
                       num_experts_per_tok=REAL_MOE["num_experts_per_tok"], moe_intermediate_size=width,
                       shared_expert_intermediate_size=width)
    text.pop("intermediate_size")  # no dense MLP in any layer
    config = Qwen3_5MoeConfig(text_config=text, vision_config=vision_config(size), **token_ids(tokenizer),
                              tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(Qwen3_5MoeForConditionalGeneration(config), tokenizer)


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny Qwen3.5 MoE."""
    tokenizer = build_tokenizer(size.vocab)
    return build_model(tokenizer, size, seed), build_processor(tokenizer)
