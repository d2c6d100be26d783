"""Shared pieces of the training tests: run the CLI in process, compare checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from egoadapt.cli import main as cli

VISION = ("model.visual.", "visual.")


def train(recipe: str, model: Path, data: Path, out: Path, *overrides: str) -> Path:
    rc = cli(["train", f"recipe={recipe}", f"model.path={model}", f"data.root={data}", f"out={out}",
              f"cache_dir={out.parent / 'input_cache'}", "trainer.logging_steps=1", *overrides])
    assert rc == 0
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def max_abs_change(before: dict, after: dict) -> tuple[float, float]:
    """(vision tower, language model) max |dW| between two checkpoints."""
    vision = language = 0.0
    assert set(before) == set(after)
    for name, w in before.items():
        d = (after[name].float() - w.float()).abs().max().item()
        if name.startswith(VISION):
            vision = max(vision, d)
        else:
            language = max(language, d)
    return vision, language
