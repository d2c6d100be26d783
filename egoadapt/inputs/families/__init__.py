"""Model families: the checkpoint's config `model_type` picks one (never a user flag).

`FAMILIES` maps a `model_type` to its `VideoFamily` subclass, found in this package's modules (one
per family; a family serving several model types, dense and MoE, lists them). `for_checkpoint`
reads the model type from the checkpoint's config and refuses one the seam does not know,
naming the known ones; train and eval call it in preflight (`check_family`), before any data
or model loads.
"""
from __future__ import annotations

import importlib
import json
import logging
import pkgutil
from pathlib import Path
from typing import Any

from egoadapt.inputs.families.base import VideoFamily

log = logging.getLogger(__name__)


def _discover() -> dict[str, type[VideoFamily]]:
    found: dict[str, type[VideoFamily]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, VideoFamily) and cls.__module__ == module.__name__:
                for kind in cls.model_types or (cls.model_type,):
                    if kind in found:
                        raise RuntimeError(f"model_type {kind!r} has two families: {found[kind]} and {cls}")
                    found[kind] = cls
    return dict(sorted(found.items()))


FAMILIES: dict[str, type[VideoFamily]] = _discover()


class UnknownFamily(ValueError):
    """A checkpoint whose model type egoadapt has no family module for (or cannot read)."""


def known() -> str:
    return ", ".join(sorted(FAMILIES))


def model_type(path: str) -> str:
    """The `model_type` of a checkpoint (a local folder's config.json, or a hub id through transformers)."""
    local = Path(str(path)).expanduser() / "config.json"
    try:
        if local.is_file():
            return str(json.loads(local.read_text()).get("model_type") or "")
        from transformers import AutoConfig

        return str(AutoConfig.from_pretrained(str(path)).model_type or "")
    except Exception as e:  # noqa: BLE001 - offline hub id, unreadable config: say which and why
        raise UnknownFamily(f"{path}: cannot read the checkpoint's config to choose its model family "
                            f"({type(e).__name__}: {e}); known families: {known()}") from None


def family_class(path: str) -> type[VideoFamily]:
    """The family of the checkpoint at `path`; UnknownFamily naming the known ones otherwise."""
    kind = model_type(path)
    if kind not in FAMILIES:
        raise UnknownFamily(f"{path}: model_type {kind or '(none)'!r} has no model family in egoadapt; "
                            f"known families: {known()} (a family is one module in egoadapt/inputs/families/)")
    return FAMILIES[kind]


def for_checkpoint(path: str, processor: Any) -> VideoFamily:
    """The checkpoint's family bound to its processor."""
    return family_class(path)(processor)


def as_family(family_or_processor: Any) -> VideoFamily:
    """A family as given, or the family of the checkpoint a processor was loaded from."""
    if isinstance(family_or_processor, VideoFamily):
        return family_or_processor
    return for_processor(family_or_processor)


def for_processor(processor: Any) -> VideoFamily:
    """The family of the checkpoint a processor was loaded from (`from_pretrained` records its path)."""
    tok = getattr(processor, "tokenizer", processor)
    path = getattr(tok, "name_or_path", None) or getattr(processor, "name_or_path", None)
    if not path:
        raise UnknownFamily("this processor does not say which checkpoint it came from: pass "
                            "family=egoadapt.inputs.families.for_checkpoint(PATH, processor)")
    return for_checkpoint(path, processor)


def check_family(path: str | None) -> str | None:
    """Preflight: the checkpoint's family name; UnknownFamily for a model type the seam does not know.
    None when there is nothing to read yet: no path, or a hub id whose config is not reachable here
    (offline, not cached: the run resolves it when it loads the processor, before any clip)."""
    if not path:
        return None
    try:
        return family_class(path).model_type
    except UnknownFamily as e:
        if (Path(str(path)).expanduser() / "config.json").is_file() or "has no model family" in str(e):
            raise
        log.warning("model family: %s; checked again when the processor loads", e)
        return None


def check_pixel_limits(path: str | None, model_cfg: Any) -> None:
    """Preflight: model.min_pixels / model.max_pixels set for a family whose video processor ignores them
    (it budgets the whole clip) is a ModelConfigError naming the setting that works (frames.max_pixels)."""
    from egoadapt.models.loading import ModelConfigError

    name = check_family(path)
    set_ = [k for k in ("min_pixels", "max_pixels") if model_cfg is not None and model_cfg.get(k) is not None]
    if name and set_ and not FAMILIES[name].reads_pixel_limits:
        raise ModelConfigError(f"model.{'/'.join(set_)}: {name}'s video processor budgets the whole clip and "
                               f"ignores per-frame limits; cap each frame with frames.max_pixels instead")
