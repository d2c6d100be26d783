"""Checkpoints that really come back: finding the last complete one, loading its weights
verified, and writing `final/` atomically.

Why this exists: transformers 5 saves Qwen2.5-VL (and other VLMs) with the hub's legacy key
names (`visual.*`, `model.layers.*`) while the live model names them `model.visual.*`,
`model.language_model.*`. `Trainer._load_from_checkpoint` loads a full checkpoint with
`load_state_dict(strict=False)` and no renaming, so on resume almost every tensor silently
kept `model.path`'s weights. Here the keys go through the model's own conversion mapping
(the one `from_pretrained` uses), and every tensor of the checkpoint must land in the
model, or the resume fails loudly.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from egoadapt.files import publish_atomically  # noqa: F401  (callers import it from here)

log = logging.getLogger("egoadapt.train")

WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
ADAPTER = "adapter_model.safetensors"


class CheckpointError(RuntimeError):
    pass


def last_checkpoint(out: Path) -> str | None:
    """The newest *complete* checkpoint: a run killed while saving leaves a checkpoint folder
    without its trainer_state.json (written last), which transformers would pick and fail on."""
    steps = sorted((int(p.name.split("-")[1]), p) for p in Path(out).glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit())
    for _, folder in reversed(steps):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        log.warning("skipping %s: incomplete (the run was stopped while saving it)", folder)
    return None


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """A save_pretrained folder's tensors by their saved names (one file or an index of shards)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / WEIGHTS).is_file():
        return load_file(str(folder / WEIGHTS), device="cpu")
    if (folder / WEIGHTS_INDEX).is_file():
        shards = sorted(set(json.loads((folder / WEIGHTS_INDEX).read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard), device="cpu"))
        return state
    raise CheckpointError(f"{folder}: no {WEIGHTS} or {WEIGHTS_INDEX} (not a full-weights checkpoint)")


def to_live_names(model, saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename saved keys to the live model's names with the model's own conversion mapping."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key

    conversions = getattr(model, "_weight_conversions", None) or get_model_conversion_mapping(model)
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    live = model.state_dict()
    out = {}
    for key, tensor in saved.items():
        name, converter = rename_source_key(key, renamings, converters, model.base_model_prefix, live)
        if converter is not None:  # fused/split tensors (MoE experts): only from_pretrained rebuilds them
            raise CheckpointError(f"{key}: stored through a weight converter ({converter}); "
                                  "resume of this architecture needs DeepSpeed checkpoints")
        out[name] = tensor
    return out


def load_full_weights(model, folder: str | Path) -> None:
    """Load a checkpoint into `model`; every live tensor must come from it (tied ones aside)."""
    state = to_live_names(model, read_weights(folder))
    live = model.state_dict()
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = sorted(set(live) - set(state) - tied)
    unexpected = sorted(set(state) - set(live))
    shapes = sorted(k for k in set(state) & set(live) if state[k].shape != live[k].shape)
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{folder} does not match the model: {len(missing)} missing ({', '.join(missing[:5])}), "
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}), "
            f"{len(shapes)} with other shapes ({', '.join(shapes[:5])})")
    model.load_state_dict(state, strict=False)
    log.info("resumed %d tensors from %s", len(state), folder)


def verify_adapter(model, folder: str | Path) -> None:
    """After PEFT's load_adapter: every saved adapter tensor is in the live model, equal."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(folder) / ADAPTER
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {ADAPTER} (the LoRA run's checkpoint is incomplete)")
    saved = load_file(str(path), device="cpu")
    live = get_peft_model_state_dict(model)
    missing = sorted(set(saved) - set(live))
    differ = sorted(k for k in set(saved) & set(live) if not torch.equal(saved[k], live[k].detach().cpu().to(saved[k].dtype)))
    if missing or differ or not saved:
        raise CheckpointError(f"{folder}: adapter not restored ({len(missing)} tensors not in the model: "
                              f"{', '.join(missing[:5])}; {len(differ)} differ: {', '.join(differ[:5])})")
    log.info("resumed %d adapter tensors from %s", len(saved), folder)


class VerifiedResumeMixin:
    """Put first in a transformers Trainer subclass's bases: resume loads weights verified."""

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from transformers.trainer import _is_peft_model

        model = model if model is not None else self.model
        if self.is_fsdp_enabled:  # FSDP writes its own sharded state, with live names
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        if _is_peft_model(model):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return verify_adapter(model, resume_from_checkpoint)
        load_full_weights(model, resume_from_checkpoint)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, *args, **kwargs):
        epochs, steps = super()._init_training_state(max_steps, num_update_steps_per_epoch, num_train_epochs,
                                                     *args, **kwargs)
        if self.state.global_step >= max_steps:
            # resumed from the last step (a run killed during its final save): transformers would
            # train one step past max_steps, since it checks the limit only after a step
            return num_train_epochs, 0
        return epochs, steps


