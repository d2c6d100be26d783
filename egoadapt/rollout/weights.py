"""The trainer's current weights as (HF checkpoint name, tensor) pairs, for a rollout engine.

Handles the wrappers a training model can sit in: DDP (unwrap), DeepSpeed ZeRO-3 (gather
each parameter), PEFT (merge the adapters for the duration, emit base names).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch


@contextlib.contextmanager
def _merged(model):
    merge = getattr(model, "merge_adapter", None)
    if merge is None:
        yield
        return
    merge()
    try:
        yield
    finally:
        model.unmerge_adapter()


def _hf_name(name: str) -> str | None:
    if "lora_" in name or ".modules_to_save." in name and "original_module" in name:
        return None
    name = name.replace("base_model.model.", "", 1).replace(".base_layer.", ".")
    return name.replace(".modules_to_save.default.", ".")


def iter_weights(model, accelerator) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield full (gathered, merged) weights; every rank must iterate (ZeRO-3 gathers are collective)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    zero3 = accelerator is not None and getattr(accelerator.state, "deepspeed_plugin", None) is not None \
        and accelerator.state.deepspeed_plugin.zero_stage == 3
    with _merged(unwrapped):
        for name, param in unwrapped.named_parameters():
            hf = _hf_name(name)
            if hf is None:
                continue
            if zero3:
                import deepspeed

                with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                    yield hf, param.detach().clone()
            else:
                yield hf, param.detach()


def save_weights(weights: Iterator[tuple[str, torch.Tensor]], folder: Path) -> Path:
    """Write one safetensors file atomically (a reader never sees half a file)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.contiguous().cpu() for name, t in weights}
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / "model.safetensors")
    return folder
