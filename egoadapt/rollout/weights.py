"""The trainer's current weights as (HF checkpoint name, tensor) pairs, for a rollout engine.

Handles the wrappers a training model can sit in: DDP (unwrap), DeepSpeed ZeRO-3 (gather
one parameter at a time; a LoRA layer's base weight with its adapters, merged into the copy),
PEFT (merge the adapters for the duration, emit base names). `save_weights` writes them as
they come, so a sync never holds the whole model.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import torch

from egoadapt.files import atomic_path


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


def _zero3(accelerator) -> bool:
    return accelerator is not None and getattr(accelerator.state, "deepspeed_plugin", None) is not None \
        and accelerator.state.deepspeed_plugin.zero_stage == 3


def weight_specs(model, accelerator) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(name, full shape, dtype) of what `iter_weights` yields, in its order, without gathering
    anything (ZeRO-3 keeps each full shape in `ds_shape`). Merging LoRA changes no shape."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    specs = []
    for name, param in unwrapped.named_parameters():
        hf = _hf_name(name)
        if hf is not None:
            specs.append((hf, tuple(getattr(param, "ds_shape", None) or param.shape), param.dtype))
    return specs


def _lora_layer(model, name: str):
    """The PEFT LoRA layer whose base weight is the parameter `name`, else None."""
    if not name.endswith(".base_layer.weight"):
        return None
    layer = model.get_submodule(name[: -len(".base_layer.weight")])
    return layer if hasattr(layer, "get_delta_weight") and hasattr(layer, "scaling") else None


def iter_weights(model, accelerator) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield full (gathered, merged) weights one at a time; every rank must iterate (ZeRO-3
    gathers are collective). Under ZeRO-3 only the parameter being yielded is whole (with a
    LoRA layer's own adapter weights, to merge them into it: W + delta, the stored weights
    untouched)."""
    unwrapped = accelerator.unwrap_model(model) if accelerator is not None else model
    if not _zero3(accelerator):
        with _merged(unwrapped):
            for name, param in unwrapped.named_parameters():
                hf = _hf_name(name)
                if hf is not None:
                    yield hf, param.detach()
        return
    import deepspeed

    for name, param in unwrapped.named_parameters():
        hf = _hf_name(name)
        if hf is None:
            continue
        layer = _lora_layer(unwrapped, name)
        adapters = [] if layer is None or layer.merged or getattr(layer, "disable_adapters", False) else \
            [a for a in layer.active_adapters if a in layer.scaling]
        if any(getattr(layer, "use_dora", {}).get(a) for a in adapters):
            raise NotImplementedError(f"{name}: syncing DoRA adapters under ZeRO-3 is not supported")
        own = [p for p in layer.parameters() if p is not param] if adapters else []
        with deepspeed.zero.GatheredParameters([param, *own], modifier_rank=None):
            weight = param.detach().clone()
            for a in adapters:
                weight += layer.get_delta_weight(a).to(weight.dtype)
            yield hf, weight


_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
              torch.bool: "BOOL"}
for _name, _code in (("float8_e4m3fn", "F8_E4M3"), ("float8_e5m2", "F8_E5M2")):
    if hasattr(torch, _name):
        _ST_DTYPES[getattr(torch, _name)] = _code


def save_weights(weights: Iterator[tuple[str, torch.Tensor]], folder: Path,
                 specs: list[tuple[str, tuple[int, ...], torch.dtype]] | None = None) -> Path:
    """Write `folder/model.safetensors`, streaming: the header comes from `specs` (names,
    shapes, dtypes in `weights`' order; see `weight_specs`), then each tensor's bytes as it
    arrives, so no more than one tensor is ever held on the CPU. The file is written under a
    temporary name and renamed, so a reader never sees half of it. Without `specs` the
    weights are collected first (small models, tests)."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    if specs is None:
        held = [(n, t.detach().cpu()) for n, t in weights]
        specs, weights = [(n, tuple(t.shape), t.dtype) for n, t in held], iter(held)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, dtype in specs:
        if dtype not in _ST_DTYPES:
            raise TypeError(f"{name}: dtype {dtype} has no safetensors code")
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)  # the data starts 8-byte aligned
    with atomic_path(folder / "model.safetensors") as tmp, open(tmp, "wb") as f:
        f.write(len(head).to_bytes(8, "little"))
        f.write(head)
        got, expected = 0, iter(specs)
        for name, t in weights:  # (not zip: it would keep the previous pair alive while the next is made)
            want, shape, dtype = next(expected, (None, None, None))
            if name != want or tuple(t.shape) != tuple(shape or ()) or t.dtype != dtype:
                raise ValueError(f"weights out of step with their header: got {name} {tuple(t.shape)} {t.dtype}, "
                                 f"expected {want} {shape} {dtype}")
            data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)  # one tensor on the CPU
            f.write(memoryview(data.numpy()))
            got += data.numel()
            del data, t  # before the next one is gathered
        if got != offset:
            raise ValueError(f"weights out of step with their header: wrote {got} bytes, the header says {offset}")
    return folder
