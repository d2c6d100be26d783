"""`egoadapt eval`: one checkpoint (`egoadapt.eval.run`), or with `sweep=DIR` every job of a
training sweep (`egoadapt.eval.sweep`, which evaluates each job with `eval.run`)."""
from __future__ import annotations

from omegaconf import DictConfig

from egoadapt.eval import run, sweep


def main(cfg: DictConfig) -> int:
    return sweep.main(cfg) if cfg.get("sweep") else run.main(cfg)
