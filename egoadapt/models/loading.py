"""Load a video MLLM checkpoint (hub id or local folder) for training or evaluation.

Config (`conf/model/*.yaml`): path, dtype (auto|bfloat16|float16|float32), attn_implementation
(auto|sdpa|eager|flash_attention_2), freeze_vision, lora {enabled, r, alpha, dropout,
target_modules}, processor limits (min_pixels/max_pixels) and gradient checkpointing.
"""
from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from egoadapt.configs import complete

log = logging.getLogger(__name__)

class ModelConfigError(ValueError):
    pass


def check_model_path(path: str | None) -> None:
    """Fail before anything heavy when the model cannot exist: no path, or a local path that is not there."""
    if not path:
        raise ModelConfigError("model.path is not set: give a hub id (Qwen/Qwen2.5-VL-7B-Instruct) or a local folder")
    looks_local = path.startswith((".", "/", "~")) or Path(path).exists()
    if looks_local and not (Path(path).expanduser() / "config.json").is_file():
        raise ModelConfigError(f"model.path={path!r}: no config.json there (not a save_pretrained folder)")


def resolve_dtype(name: str):
    import torch

    if name in (None, "auto"):
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
                "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}[name]
    except KeyError:
        raise ModelConfigError(f"model.dtype={name!r}: choose auto, bfloat16, float16 or float32") from None


def resolve_attention(name: str | None) -> str:
    """flash_attention_2 when asked for (or auto) and installed on a GPU, else PyTorch SDPA."""
    import torch

    has_flash = importlib.util.find_spec("flash_attn") is not None and torch.cuda.is_available()
    if name in (None, "auto"):
        return "flash_attention_2" if has_flash else "sdpa"
    if name == "flash_attention_2" and not has_flash:
        raise ModelConfigError("model.attn_implementation=flash_attention_2 needs flash-attn and a CUDA GPU "
                               "(pip install -e .[gpu,flash]); use sdpa")
    return name


def load_processor(model_cfg: Any):
    from transformers import AutoProcessor

    model_cfg = complete("model", model_cfg, "base")
    kwargs = {k: model_cfg[k] for k in ("min_pixels", "max_pixels") if model_cfg[k] is not None}
    processor = AutoProcessor.from_pretrained(model_cfg.path, **kwargs)
    processor.tokenizer.padding_side = "left"
    return processor


def load_model(model_cfg: Any, training: bool = True, vision_prefixes: Sequence[str] = ()):
    """The model, with vision tower frozen or not; LoRA is applied by TRL from `peft_config()`.
    `vision_prefixes`: the tower's parameter-name prefixes (the model family's), for freeze_vision."""
    from transformers import AutoModelForImageTextToText

    model_cfg = complete("model", model_cfg, "base")
    check_model_path(model_cfg.path)
    model = AutoModelForImageTextToText.from_pretrained(
        model_cfg.path, dtype=resolve_dtype(model_cfg.dtype),
        attn_implementation=resolve_attention(model_cfg.attn_implementation),
    )
    if training and model_cfg.freeze_vision:
        if not vision_prefixes:
            raise ModelConfigError("model.freeze_vision=true: the model family's vision_prefixes are needed")
        vision_prefixes, frozen = tuple(vision_prefixes), 0
        for name, param in model.named_parameters():
            if name.startswith(vision_prefixes):
                param.requires_grad_(False)
                frozen += getattr(param, "ds_numel", param.numel())  # ZeRO-3: the full size
        log.info("froze the vision tower (%.1f M parameters)", frozen / 1e6)
    return model


def peft_config(model_cfg: Any, vision_prefixes: Sequence[str] = ()):
    """LoRA's config, or None; a frozen vision tower (`vision_prefixes`: the family's) gets no adapters."""
    model_cfg = complete("model", model_cfg, "base")
    lora = model_cfg.lora
    if not lora.enabled:
        return None
    from peft import LoraConfig

    targets = lora.target_modules
    exclude = list(lora.exclude_modules)
    if model_cfg.freeze_vision:
        if not vision_prefixes:
            raise ModelConfigError("model.freeze_vision=true: the model family's vision_prefixes are needed")
        exclude = "(?:" + "|".join(map(re.escape, vision_prefixes)) + ").*"  # PEFT matches it with re.fullmatch
    return LoraConfig(
        r=int(lora.r), lora_alpha=int(lora.alpha), lora_dropout=float(lora.dropout), task_type="CAUSAL_LM",
        target_modules=targets if isinstance(targets, str) else list(targets),
        exclude_modules=exclude or None,
    )
