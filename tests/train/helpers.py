"""Shared pieces of the training tests: run the CLI in process, compare checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from egoadapt.cli import main as cli
from egoadapt.rewards.registry import available_rewards, register_reward

VISION = ("model.visual.", "visual.")
REPO = Path(__file__).resolve().parents[2]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")


if "test_length" not in available_rewards():
    @register_reward("test_length")
    def _length(scorer):
        """Varies within every group, so advantages (and gradients) are never all zero."""
        def fn(prompts=None, completions=(), completion_ids=None, **columns):
            return [(sum(c) % 11) / 10.0 for c in completion_ids]
        return fn


def launch(args: list[str], out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a launcher command (accelerate, torchrun) in the repo; its output goes to <out>.log."""
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def train(recipe: str, model: Path, data: Path, out: Path, *overrides: str) -> Path:
    rc = cli(["train", f"recipe={recipe}", f"model.path={model}", f"data.root={data}", f"out={out}",
              f"cache_dir={out.parent / 'input_cache'}", "trainer.logging_steps=1", *overrides])
    assert rc == 0
    return out


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / "model.safetensors"))


def max_abs_change(before: dict, after: dict, vision_prefixes: tuple[str, ...] = VISION) -> tuple[float, float]:
    """(vision tower, language model) max |dW| between two checkpoints; the tower by its parameter prefixes."""
    vision = language = 0.0
    assert set(before) == set(after)
    for name, w in before.items():
        d = (after[name].float() - w.float()).abs().max().item()
        if name.startswith(vision_prefixes):
            vision = max(vision, d)
        else:
            language = max(language, d)
    return vision, language
