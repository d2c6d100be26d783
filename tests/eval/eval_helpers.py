"""Build evaluation folders (results.json + scores.jsonl) from hand-written correctness lists."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from egoadapt.eval.report import build_results, write_results


def rows(correct: Sequence[int], domains: Sequence[str], categories: Sequence[str], qa: str = "close",
         format_ok: Sequence[bool] | None = None, first_id: int = 1) -> list[dict]:
    """Scored rows as `egoadapt.eval.score.score_records` makes them (the fields compare reads)."""
    format_ok = format_ok if format_ok is not None else [True] * len(correct)
    return [{"id": str(first_id + i), "qa": qa, "correct": bool(c), "format_ok": bool(f), "reward": float(c),
             "domain": d, "category": k}
            for i, (c, d, k, f) in enumerate(zip(correct, domains, categories, format_ok))]


def write_eval(folder: Path, scored: list[dict], split_hash: str = "h" * 64, resamples: int = 200,
               checkpoint: str = "ckpt") -> Path:
    results = build_results(scored, config={"checkpoint": checkpoint, "backend": "hf", "mode": "official"},
                            split={"manifest": None, "hash": split_hash, "side": "test"},
                            counts={"scored": len(scored)}, n_resamples=resamples, seed=0)
    write_results(folder, results, scored)
    return folder
