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
tokens a video chat uses (Qwen's code-completion and tool-call tokens are left out: they
decide no shape, and a larger vocabulary would only redraw the random weights).
Only the processor's pixel budget is small by default (56x56 to 112x112 frames, so unit
tests stay fast); `model.min_pixels` / `model.max_pixels` set another one at load time
(the 7B recipes' 200704 for a rehearsal at real token counts).

`egoadapt model tiny size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# What decides shapes in the real model (Qwen2.5-VL-7B-Instruct's config.json)
REAL = {
    "max_position_embeddings": 128000, "head_dim": 128, "mrope_section": (16, 24, 24), "rope_theta": 1e6,
    "rms_norm_eps": 1e-6, "sliding_window": 32768, "patch_size": 14, "temporal_patch_size": 2,
    "spatial_merge_size": 2, "window_size": 112, "tokens_per_second": 2, "vision_depth": 32,
    "fullatt_block_indexes": (7, 15, 23, 31),
}
# Qwen2's pre-tokenizer split (contractions, words, single digits, punctuation, spaces).
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class TinySize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vocab: int


# head_dim is 32 in both: vLLM's CPU attention supports no smaller head size.
SIZES = {
    # ~0.3 M parameters: unit tests, and it learns the synthetic tasks (init std 0.1).
    "micro": TinySize(64, 2, 2, 1, 256, 32, 2, 2, 512),
    # ~1.4 M parameters: a deeper, wider model (the vLLM-vs-HF crossover in benchmarks/RESULTS.md).
    "small": TinySize(128, 4, 4, 2, 512, 64, 2, 4, 1024),
}


def mrope_section(head_dim: int) -> list[int]:
    """The real model's mRoPE sections (time, height, width) scaled to `head_dim`: [4, 6, 6] for 32."""
    real = REAL["mrope_section"]
    scaled = [s * head_dim // REAL["head_dim"] for s in real]
    if [s * REAL["head_dim"] for s in scaled] != [s * head_dim for s in real]:
        raise ValueError(f"head_dim {head_dim} does not scale the mRoPE sections {list(real)} exactly "
                         f"(use a multiple of {REAL['head_dim'] // min(real)})")
    return scaled


def fullatt_blocks(depth: int) -> list[int]:
    """Full attention on the last block of each quarter of the tower, as the real 32-block tower
    (7, 15, 23, 31); a shallower tower alternates window and full blocks, ending on a full one."""
    step = max(2, depth // 4) if depth > 1 else 1
    return [i for i in range(depth) if (i + 1) % step == 0]

# Processor limits: 56x56 frames give 2x2 merged patches (4 tokens) per 2-frame time step.
MIN_PIXELS = 56 * 56
MAX_PIXELS = 112 * 112


def corpus() -> list[str]:
    from egoadapt.data.synthetic import vocabulary_corpus

    words = [
        '{"prediction": "A", "reason": "The object is visible in the clip."}',
        '{"prediction": "3", "reason": "three distinct types appear"}',
        "Answer with a JSON object containing prediction and reason. Choose one of the options.",
        "The video was recorded at 8.0 fps and sampled at 2.0 fps. Give times in seconds.",
        "You are a helpful assistant watching a first-person video.",
        "0 1 2 3 4 5 6 7 8 9 10 0.5s 1.0s 2.00s 4.00s A: B: C: D: yes no",
    ]
    return vocabulary_corpus() * 4 + words * 200


def train_tokenizer(vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer=trainer)
    bpe.decoder = decoders.ByteLevel()
    state = bpe.model
    vocab = bpe.get_vocab()
    merges = [tuple(m) for m in __import__("json").loads(bpe.to_str())["model"]["merges"]]
    del state
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, additional_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    tok.chat_template = qwen2_5_vl_chat_template
    return tok


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    limits = dict(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, patch_size=REAL["patch_size"],
                  temporal_patch_size=REAL["temporal_patch_size"], merge_size=REAL["spatial_merge_size"])
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**limits),
        # per-frame pixel cap as in Qwen's reference (qwen-vl-utils); transformers' default from v5.22. Its
        # total-video budget assumes the real context length (max_video_tokens)
        video_processor=Qwen2VLVideoProcessor(**limits, cap_pixels_per_frame=True,
                                              max_video_tokens=REAL["max_position_embeddings"]),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )


def build_model(tokenizer, size: TinySize, seed: int):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    mrope = mrope_section(size.hidden // size.heads)  # sums to head_dim / 2
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=size.hidden, intermediate_size=size.ffn,
            num_hidden_layers=size.layers, num_attention_heads=size.heads, num_key_value_heads=size.kv_heads,
            max_position_embeddings=REAL["max_position_embeddings"], max_window_layers=size.layers,
            sliding_window=REAL["sliding_window"], use_sliding_window=False, rms_norm_eps=REAL["rms_norm_eps"],
            hidden_act="silu", initializer_range=0.1,
            rope_parameters={"rope_type": "default", "rope_theta": REAL["rope_theta"], "mrope_section": mrope},
            bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
            tie_word_embeddings=False, torch_dtype="float32",
        ),
        vision_config=dict(
            depth=size.vision_depth, hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 2,
            num_heads=size.vision_heads, out_hidden_size=size.hidden, patch_size=REAL["patch_size"],
            spatial_merge_size=REAL["spatial_merge_size"], temporal_patch_size=REAL["temporal_patch_size"],
            window_size=REAL["window_size"], fullatt_block_indexes=fullatt_blocks(size.vision_depth),
            tokens_per_second=REAL["tokens_per_second"], hidden_act="silu", initializer_range=0.1,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    return model


def build_tiny(out: str | Path, size: str = "micro", seed: int = 0) -> Path:
    """Build and save the tiny model folder; returns its path. Deterministic for a seed."""
    if size not in SIZES:
        raise ValueError(f"unknown tiny size {size!r}; choose one of {sorted(SIZES)}")
    out = Path(out)
    tokenizer = train_tokenizer(SIZES[size].vocab)
    processor = build_processor(tokenizer)
    model = build_model(tokenizer, SIZES[size], seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(cfg: DictConfig) -> int:
    out = build_tiny(cfg.out, cfg.size, cfg.seed)
    n = sum(p.numel() for p in __import__("safetensors.torch", fromlist=["load_file"]).load_file(
        str(out / "model.safetensors")).values())
    print(f"wrote tiny Qwen2.5-VL ({cfg.size}, {n / 1e6:.2f} M parameters) to {out}")
    return 0
