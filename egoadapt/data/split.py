"""Leak-free, deterministic train/test splits written as a JSON manifest that training and
evaluation both read (`load_split`).

Protocols:
- paper_70_30: the EgoCross paper's pilot split. Whole source videos (`Sample.group`) go to one
  side; which ones is chosen so every dataset x primary-category cell is as close to the test
  fraction as the videos allow. Cells sharing videos form a component; a component of up to
  16 videos is solved exactly (all subsets), a larger one by seeded local search (restarts,
  single moves and pair swaps). Objective, lexicographic: total excess over one question per
  cell, then total deviation per cell, then deviation of the component's total.
- lodo: leave one domain out (`split.test_domain`); train on every other domain.
- support: train on the support set (`split.support`, a data config), test on the test bed.

Determinism: no Python `hash()`, sorted iteration, integer arithmetic, and `random.Random`
seeded with strings (seeded through SHA-512, the same on every machine and Python build).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.load import load_samples
from egoadapt.data.schema import Sample
from egoadapt.files import write_atomic

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
EXACT_MAX_GROUPS = 16
RESTARTS = 8


def natural_key(x: str) -> tuple:
    return (0, int(x), "") if x.isdigit() else (1, 0, x)


def cell_of(s: Sample) -> str:
    return f"{s.dataset}/{s.category}"


def group_of(s: Sample) -> str:
    return s.group or f"id:{s.id}"


# ---------------------------------------------------------------- paper_70_30

def _components(group_cells: dict[str, Counter]) -> list[list[str]]:
    """Groups linked through shared cells (union-find), each sorted, in a stable order."""
    parent = {g: g for g in group_cells}

    def find(g: str) -> str:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    first_in_cell: dict[str, str] = {}
    for g in sorted(group_cells):
        for c in sorted(group_cells[g]):
            if c in first_in_cell:
                a, b = find(first_in_cell[c]), find(g)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first_in_cell[c] = g
    comps: dict[str, list[str]] = defaultdict(list)
    for g in sorted(group_cells):
        comps[find(g)].append(g)
    return [comps[k] for k in sorted(comps)]


def _costs(t: np.ndarray, n: np.ndarray, p: int, q: int) -> tuple[np.ndarray, ...]:
    """Objective terms for test counts t (..., cells): deviations in units of 1/q question."""
    dev = np.abs(q * t - p * n)
    return (np.maximum(dev - q, 0).sum(-1), dev.sum(-1), np.abs(q * t.sum(-1) - p * n.sum()))


def _best(t: np.ndarray, n: np.ndarray, p: int, q: int) -> tuple[int, tuple[int, ...]]:
    """Index of the lexicographically smallest cost row (first on ties) and its cost."""
    c1, c2, c3 = _costs(t, n, p, q)
    i = int(np.lexsort((c3, c2, c1))[0])
    return i, (int(c1[i]), int(c2[i]), int(c3[i]))


def _solve_exact(C: np.ndarray, n: np.ndarray, p: int, q: int, rng: random.Random) -> np.ndarray:
    g = C.shape[0]
    subsets = (np.arange(2 ** g, dtype=np.int64)[:, None] >> np.arange(g)) & 1
    c1, c2, c3 = _costs(subsets @ C, n, p, q)
    order = np.lexsort((c3, c2, c1))
    best = order[0]
    ties = [int(i) for i in order if (c1[i], c2[i], c3[i]) == (c1[best], c2[best], c3[best])]
    return subsets[ties[rng.randrange(len(ties))]].astype(bool)


def _solve_search(C: np.ndarray, n: np.ndarray, p: int, q: int, rng: random.Random) -> np.ndarray:
    g = C.shape[0]
    best_x, best_cost = None, None
    for _ in range(RESTARTS):
        x = np.zeros(g, dtype=bool)
        t = np.zeros(C.shape[1], dtype=np.int64)
        order = list(range(g))
        rng.shuffle(order)
        cost = _best(t[None], n, p, q)[1]
        for i in order:  # greedy start: add a group when it helps
            c = _best((t + C[i])[None], n, p, q)[1]
            if c < cost:
                x[i], t, cost = True, t + C[i], c
        while True:  # hill climb: best single move or pair swap until neither helps
            sign = np.where(x, -1, 1)[:, None]
            i, c_move = _best(t + sign * C, n, p, q)
            ins, outs = np.flatnonzero(x), np.flatnonzero(~x)
            c_swap, pair = None, None
            if len(ins) and len(outs):
                swaps = t - C[ins][:, None, :] + C[outs][None, :, :]
                k, c_swap = _best(swaps.reshape(-1, C.shape[1]), n, p, q)
                pair = (ins[k // len(outs)], outs[k % len(outs)])
            if c_move < cost and (c_swap is None or c_move <= c_swap):
                x[i] = ~x[i]
                t, cost = t + sign[i] * C[i], c_move
            elif c_swap is not None and c_swap < cost:
                x[pair[0]], x[pair[1]] = False, True
                t, cost = t - C[pair[0]] + C[pair[1]], c_swap
            else:
                break
        if best_cost is None or cost < best_cost:
            best_x, best_cost = x.copy(), cost
    return best_x


def paper_split(samples: list[Sample], seed: int, test_fraction: float = 0.3) -> tuple[set[str], set[str]]:
    """(train ids, test ids): whole groups per side, each cell near `test_fraction`."""
    frac = Fraction(str(test_fraction)).limit_denominator(1000)
    if not 0 <= frac <= 1:
        raise DataError(Problem("<config>", "", "split.test_fraction", f"must be in [0, 1], got {test_fraction}"))
    p, q = frac.numerator, frac.denominator
    group_cells: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        group_cells[group_of(s)][cell_of(s)] += 1
    test_groups: set[str] = set()
    for comp in _components(group_cells):
        cells = sorted({c for g in comp for c in group_cells[g]})
        C = np.array([[group_cells[g][c] for c in cells] for g in comp], dtype=np.int64)
        n = C.sum(0)
        rng = random.Random(f"egoadapt-split|{seed}|{cells[0]}|{comp[0]}")
        solve = _solve_exact if len(comp) <= EXACT_MAX_GROUPS else _solve_search
        x = solve(C, n, p, q, rng)
        test_groups.update(g for g, chosen in zip(comp, x) if chosen)
    test = {s.id for s in samples if group_of(s) in test_groups}
    return {s.id for s in samples} - test, test


# ---------------------------------------------------------------- manifests

def samples_hash(samples: Iterable[Sample]) -> str:
    rows = sorted(([s.id, group_of(s), s.dataset, s.domain, s.category, s.question_id] for s in samples),
                  key=lambda r: natural_key(r[0]))
    return hashlib.sha256(json.dumps(rows, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _cell_counts(samples: list[Sample], train: set[str], test: set[str], frac: float) -> dict[str, dict]:
    cells: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        cells[cell_of(s)]["train" if s.id in train else "test" if s.id in test else "unused"] += 1
    out = {}
    for c in sorted(cells):
        n = cells[c]["train"] + cells[c]["test"]
        out[c] = {"train": cells[c]["train"], "test": cells[c]["test"], "test_target": round(frac * n, 2)}
    return out


def make_manifest(samples: list[Sample], protocol: str, seed: int = 0, test_fraction: float = 0.3,
                  test_domain: str | None = None, support: list[Sample] | None = None,
                  inputs: list[dict] | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if protocol == "paper_70_30":
        train, test = paper_split(samples, seed, test_fraction)
        pool, frac = samples, test_fraction
        extra = {"test_fraction": test_fraction, "stratify_by": "dataset/primary_category",
                 "group_by": "source video"}
    elif protocol == "lodo":
        domains = sorted({s.domain for s in samples})
        if test_domain not in domains:
            what = "not set" if test_domain is None else f"{test_domain!r} is not a domain of the data"
            raise DataError(Problem("<config>", "", "split.test_domain", f"{what}; one of {domains}"))
        test = {s.id for s in samples if s.domain == test_domain}
        train = {s.id for s in samples} - test
        pool, frac = samples, len(test) / max(1, len(samples))
        extra = {"test_domain": test_domain, "train_domains": [d for d in domains if d != test_domain]}
    elif protocol == "support":
        if not support:
            raise DataError(Problem("<config>", "", "split.support.annotations",
                                    "the support protocol needs a support set: split.support.annotations=FILE"))
        clash = sorted({s.id for s in support} & {s.id for s in samples}, key=natural_key)
        if clash:
            raise DataError(Problem("<config>", "", "id", f"{len(clash)} support ids are also test-bed ids, "
                                                          f"e.g. {clash[:3]}"))
        train, test = {s.id for s in support}, {s.id for s in samples}
        pool, frac = support + samples, len(test) / max(1, len(support) + len(samples))
        shared = sorted({group_of(s) for s in support} & {group_of(s) for s in samples})
        if shared:
            log.warning("support protocol: %d source videos appear in both the support set and the test bed",
                        len(shared))
        extra = {"shared_source_videos": shared}
    else:
        raise DataError(Problem("<config>", "", "split.protocol",
                                f"unknown protocol {protocol!r}; one of paper_70_30, lodo, support"))

    by_id = {s.id: s for s in pool}
    groups = {side: {group_of(by_id[i]) for i in ids} for side, ids in (("train", train), ("test", test))}
    leaked = sorted(groups["train"] & groups["test"])
    if leaked and protocol != "support":
        raise DataError(Problem("<data>", "", "group", f"source videos on both sides: {leaked[:5]}"))
    domains: dict[str, Counter] = defaultdict(Counter)
    for s in pool:
        domains[s.domain]["train" if s.id in train else "test"] += 1
    return {
        "version": MANIFEST_VERSION,
        "protocol": protocol,
        "seed": int(seed),
        **extra,
        "counts": {
            "train": len(train), "test": len(test),
            "train_groups": len(groups["train"]), "test_groups": len(groups["test"]),
            "domains": {d: dict(sorted(domains[d].items())) for d in sorted(domains)},
            "cells": _cell_counts(pool, train, test, frac),
        },
        "input_hash": samples_hash(pool),
        "inputs": inputs or [],
        "train": sorted(train, key=natural_key),
        "test": sorted(test, key=natural_key),
    }


def write_manifest(manifest: dict, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(manifest, indent=1, sort_keys=False, ensure_ascii=False) + "\n")


def load_split(manifest_path: str | os.PathLike, samples: list[Sample], side: str) -> list[Sample]:
    """The samples of one side ("train" | "test") of a manifest, in manifest order."""
    if side not in ("train", "test"):
        raise ValueError(f"side must be train or test, got {side!r}")
    path = os.fspath(manifest_path)
    try:
        manifest = json.loads(Path(path).read_text())
        ids = [str(i) for i in manifest[side]]
    except FileNotFoundError:
        raise DataError(Problem(path, "", "", "split manifest not found", "missing_file")) from None
    except (ValueError, KeyError, TypeError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise DataError(Problem(path, "", side, f"not a split manifest ({type(e).__name__}: {e})",
                                "bad_file")) from None
    by_id = {s.id: s for s in samples}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise DataError(Problem(path, "", side, f"{len(missing)} of {len(ids)} ids are not in the loaded data "
                                                f"(e.g. {missing[:3]}): wrong data config for this manifest?",
                                "manifest_mismatch"))
    return [by_id[i] for i in ids]


# ---------------------------------------------------------------- CLI

def _inputs(data_cfg: Any, role: str) -> list[dict]:
    from egoadapt.data.hub import is_hub, local_file

    out = []
    for key in ("annotations", "answers"):
        p = data_cfg[key]
        p = local_file(p, f"{role}.{key}") if is_hub(p) else p
        if p and os.path.isfile(p):
            out.append({"role": f"{role}.{key}", "file": Path(p).name, "sha256": file_sha256(p)})
    return out


def build_split(data_cfg: Any, split_cfg: Any, samples: list[Sample] | None = None, media: bool = True
                ) -> tuple[dict[str, Any], list[Sample]]:
    """(manifest, every sample its ids can name) for a split config.

    Reads `split.manifest` when set, else makes one; the support protocol adds the support set
    (`split.support`) to the samples, so `load_split(path, pool, "train")` finds its ids.
    """
    protocol = split_cfg.protocol
    samples = load_samples(data_cfg, media=media) if samples is None else samples
    support_cfg = split_cfg.support
    support = load_samples(support_cfg, media=media) if protocol == "support" and support_cfg.annotations else None
    pool = (support or []) + samples
    given = split_cfg.manifest
    if given:
        try:
            return json.loads(Path(given).read_text()), pool
        except (OSError, ValueError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
            raise DataError(Problem(os.fspath(given), "", "split.manifest", f"cannot read the manifest ({e})",
                                    "bad_file")) from None
    inputs = _inputs(data_cfg, "data") + (_inputs(support_cfg, "support") if support else [])
    manifest = make_manifest(samples, protocol, seed=int(split_cfg.seed), test_fraction=float(split_cfg.test_fraction),
                             test_domain=split_cfg.test_domain, support=support, inputs=inputs)
    return manifest, pool


def main(cfg: Any) -> int:
    """egoadapt data split data.annotations=FILE [data.answers=FILE] split.protocol=... split.seed=N out=FILE"""
    out = cfg.out
    try:
        if not out:
            raise DataError(Problem("<config>", "", "out", "not set: pass out=FILE for the manifest"))
        manifest, _ = build_split(cfg.data, cfg.split, media=False)  # ids only: Hub frames stay on the Hub
    except DataError as e:
        print(f"egoadapt data split: error: {e}", file=sys.stderr)
        return 2
    write_manifest(manifest, out)
    c, protocol = manifest["counts"], manifest["protocol"]
    print(f"{protocol} split (seed {manifest['seed']}): train {c['train']} / test {c['test']} questions, "
          f"{c['train_groups']} / {c['test_groups']} source videos -> {out}")
    print("\n| cell | train | test | test target |\n|---|---|---|---|")
    for cell, v in c["cells"].items():
        print(f"| {cell} | {v['train']} | {v['test']} | {v['test_target']:g} |")
    return 0
