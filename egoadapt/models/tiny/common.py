"""What every tiny family build shares: the sizes, a locally trained byte-level BPE tokenizer with
the family's special tokens, and the scaling of the real model's geometry to a tiny width."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass


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

# Random weights at init std 0.1 learn the synthetic tasks; the default 0.02 learned nothing in 30 epochs.
INIT_STD = 0.1

# Qwen's special tokens a video chat uses (its code-completion and tool-call tokens are left out:
# they decide no shape, and a larger vocabulary would only redraw the random weights).
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)
# Qwen2's pre-tokenizer split (contractions, words, single digits, punctuation, spaces).
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


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


def train_bpe(vocab_size: int, special_tokens: Sequence[str] = QWEN_SPECIAL_TOKENS):
    """(vocab, merges) of a byte-level BPE trained here on the synthetic tasks' words, with Qwen's
    pre-tokenizer; the special tokens first, in the order given."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(corpus(), trainer=trainer)
    bpe.decoder = decoders.ByteLevel()
    merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]
    return bpe.get_vocab(), merges


def train_tokenizer(vocab_size: int, special_tokens: Sequence[str] = QWEN_SPECIAL_TOKENS,
                    chat_template: str | None = None):
    """A Qwen2 tokenizer (Qwen's BPE rules) over a vocabulary trained here; `<|im_end|>` ends a turn.
    `chat_template`: the family's (Qwen2.5-VL's, TRL's copy, when None)."""
    from transformers import Qwen2Tokenizer

    if chat_template is None:
        from trl.chat_template_utils import qwen2_5_vl_chat_template as chat_template
    vocab, merges = train_bpe(vocab_size, special_tokens)
    tok = Qwen2Tokenizer(
        vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        unk_token=None, additional_special_tokens=[t for t in special_tokens if t != "<|endoftext|>"],
    )
    tok.chat_template = chat_template
    return tok


def special_ids(tokenizer, tokens: Sequence[str]) -> dict[str, int]:
    return {t: tokenizer.convert_tokens_to_ids(t) for t in tokens}


def qwen_vision_tokens(ids: dict[str, int]) -> dict[str, int]:
    """A Qwen VL config's image, video and vision start/end token ids (`ids`: `special_ids` of Qwen's tokens)."""
    return dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])


def scaled_sections(real: Sequence[int], real_head_dim: int, head_dim: int) -> list[int]:
    """A real model's rotary sections (e.g. mRoPE's time/height/width) scaled to `head_dim` exactly."""
    scaled = [s * head_dim // real_head_dim for s in real]
    if [s * real_head_dim for s in scaled] != [s * head_dim for s in real]:
        raise ValueError(f"head_dim {head_dim} does not scale the sections {list(real)} exactly "
                         f"(use a multiple of {real_head_dim // min(real)})")
    return scaled


def last_of_each_quarter(depth: int) -> list[int]:
    """Blocks at the end of each quarter of a tower of `depth` (the real 32-block towers' 7, 15, 23, 31);
    a shallower tower alternates, ending on one."""
    step = max(2, depth // 4) if depth > 1 else 1
    return [i for i in range(depth) if (i + 1) % step == 0]


def init_model(model_class, config, seed: int, eos_id: int, pad_id: int):
    """`model_class(config)` with its random weights drawn for `seed`; generation ends at `eos_id`."""
    import torch

    torch.manual_seed(seed)
    model = model_class(config)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    return model
