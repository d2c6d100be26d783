"""A tiny, randomly initialised LLaVA-OneVision built locally (no download): the non-Qwen family.

What is real (llava-hf/llava-onevision-qwen2-7b-ov-hf's config.json and processor, `REAL`): a SigLIP
tower (patch 14, image 384: 27x27 patches per frame, no CLS, vision_use_head false, the last
layer's features: vision_feature_layer -1, select strategy "full"), the 2-layer GELU projector, the
video path's 2x2 bilinear pooling to ceil(27/2)^2 = 196 tokens per frame plus one `image_newline`
token per video, a Qwen2 LM with plain 1-D RoPE (theta 1e6, 32768 positions; no mRoPE, no temporal
patch, no timestamps: time is only the frames' order), the `<image>` / `<video>` placeholders after
Qwen2's `<|endoftext|>` / `<|im_start|>` / `<|im_end|>`, the converted checkpoint's chat template
(`<video>\\n` before the text of a turn) and the image/video processors with SigLIP's 0.5 mean/std.
Every frame is resized to 384x384 (the tower's position table is fixed), so the pixel budget cannot
shrink: 196 tokens per frame whatever the clip's size.
What is tiny: widths and depths (`common.SIZES`, head_dim 32) and the vocabulary, a byte-level BPE
trained here (`common.train_bpe`) with those five special tokens.

`egoadapt model tiny family=llava_onevision size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

from egoadapt.models.tiny.common import INIT_STD, TinySize, init_model, special_ids, train_tokenizer

VLLM_CPU = True

# What decides shapes in the real model (llava-onevision-qwen2-7b-ov-hf)
REAL = {
    "patch_size": 14, "image_size": 384, "num_image_tokens": (384 // 14) ** 2, "vision_feature_layer": -1,
    "vision_feature_select_strategy": "full", "max_position_embeddings": 32768, "rope_theta": 1e6,
    "rms_norm_eps": 1e-6, "vision_layer_norm_eps": 1e-6, "vision_aspect_ratio": "anyres_max_9",
    "image_mean": (0.5, 0.5, 0.5), "image_std": (0.5, 0.5, 0.5),
}
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>")
# the converted checkpoint's template (transformers' convert_llava_onevision_weights_to_hf.py)
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}"
    "{{ '<video>\\n' }}{% endfor %}"
    "{# Render all text next #}{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}"
    "{{'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_processor(tokenizer):
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    pixels = dict(size={"height": REAL["image_size"], "width": REAL["image_size"]},
                  image_mean=list(REAL["image_mean"]), image_std=list(REAL["image_std"]))
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(**pixels),
        video_processor=LlavaOnevisionVideoProcessor(**pixels),
        tokenizer=tokenizer, num_image_tokens=REAL["num_image_tokens"],
        vision_feature_select_strategy=REAL["vision_feature_select_strategy"],
        vision_aspect_ratio=REAL["vision_aspect_ratio"], chat_template=tokenizer.chat_template,
    )


def build_model(tokenizer, size: TinySize, seed: int):
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    ids = special_ids(tokenizer, SPECIAL_TOKENS)
    config = LlavaOnevisionConfig(
        text_config=dict(
            model_type="qwen2", vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.ffn,
            num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
            max_position_embeddings=REAL["max_position_embeddings"], max_window_layers=size.layers,
            use_sliding_window=False, rms_norm_eps=REAL["rms_norm_eps"], hidden_act="silu",
            initializer_range=INIT_STD, rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"]},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False,
        ),
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=size.vision_hidden,
            intermediate_size=size.vision_hidden * 4, num_hidden_layers=size.vision_depth,
            num_attention_heads=size.vision_heads, patch_size=REAL["patch_size"], image_size=REAL["image_size"],
            layer_norm_eps=REAL["vision_layer_norm_eps"], hidden_act="gelu_pytorch_tanh", vision_use_head=False,
        ),
        image_token_index=ids["<image>"], video_token_index=ids["<video>"],
        vision_feature_layer=REAL["vision_feature_layer"],
        vision_feature_select_strategy=REAL["vision_feature_select_strategy"],
        vision_aspect_ratio=REAL["vision_aspect_ratio"], projector_hidden_act="gelu", tie_word_embeddings=False,
        initializer_range=INIT_STD,
    )
    return init_model(LlavaOnevisionForConditionalGeneration, config, seed, ids["<|im_end|>"], ids["<|endoftext|>"])


def build(size: TinySize, seed: int):
    """(model, processor) of a tiny LLaVA-OneVision."""
    tokenizer = train_tokenizer(size.vocab, SPECIAL_TOKENS, CHAT_TEMPLATE)
    return build_model(tokenizer, size, seed), build_processor(tokenizer)
