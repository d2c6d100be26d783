"""On-disk store of computed tensors: `InputCache.get_or_compute(key_parts, fn)` runs fn once per key.

Entries are keyed by a SHA-256 of the caller's key parts (`egoadapt.inputs.encode` keys a clip's
vision inputs by everything that changes its pixels). A changed key part gives a new key (a
miss); stale entries are simply never read again (delete the folder to reclaim space).

Writes go to a unique temporary file in the entry's folder and are renamed into place with
os.replace, which is atomic on POSIX: concurrent writers of one key (several ranks, GRPO
workers) each leave a complete file, the last rename wins, and readers never see a partial
entry. An unreadable entry counts as a miss and is rewritten.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from egoadapt.files import atomic_path

log = logging.getLogger(__name__)


def make_key(key_parts: Mapping[str, Any]) -> str:
    blob = json.dumps(dict(key_parts), sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def entry_bytes(value: Mapping[str, Any]) -> int:
    """Bytes of an entry's tensors (what it costs in RAM; on disk add a small header)."""
    return sum(v.nbytes for v in value.values() if isinstance(v, torch.Tensor))


class InputCache:
    """`get_or_compute(key_parts, fn)`: fn() -> {name: tensor | json-able} computed once per key."""

    def __init__(self, root: str | os.PathLike | None, enabled: bool = True):
        self.root = Path(root) if root else None
        self.enabled = enabled and self.root is not None
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, Any] | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            # one read of the bytes: a reopen by path could meet a newer entry renamed in between
            data = p.read_bytes()
            header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
            extra = json.loads((header.get("__metadata__") or {}).get("extra", "{}"))
            return {**load(data), **extra}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            log.warning("input cache: unreadable entry %s (%s); recomputing", p, e)
            return None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        p = self.path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in value.items() if isinstance(v, torch.Tensor)}
        extra = {k: v for k, v in value.items() if not isinstance(v, torch.Tensor)}
        with atomic_path(p) as tmp:
            save_file(tensors, tmp, metadata={"extra": json.dumps(extra)})

    def get_or_compute(self, key_parts: Mapping[str, Any], fn: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        if not self.enabled:
            return dict(fn())
        key = make_key(key_parts)
        hit = self.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        value = dict(fn())
        self.put(key, value)
        return value
