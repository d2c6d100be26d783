"""The input cache's store (egoadapt.data.cache): hits on the second read, a stable key, an
unreadable entry is a miss and rewritten, and concurrent writers of one key leave a valid entry.
What it stores for a clip is tested in tests/inputs/test_encode.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import torch

from egoadapt.data.cache import InputCache, make_key


def test_second_read_hits(tmp_path):
    cache = InputCache(tmp_path)
    calls = []

    def fn():
        calls.append(1)
        return {"x": torch.arange(6.0).reshape(2, 3), "grid": torch.tensor([[1, 2, 3]]), "fps": 0.5}

    a = cache.get_or_compute({"k": 1}, fn)
    b = cache.get_or_compute({"k": 1}, fn)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["grid"], b["grid"]) and b["fps"] == 0.5
    cache.get_or_compute({"k": 2}, fn)
    assert len(calls) == 2
    assert InputCache(None).get_or_compute({"k": 1}, fn) and len(calls) == 3  # disabled: always computes


def test_key_is_stable_and_order_free():
    assert make_key({"a": 1, "b": [1, 2]}) == make_key({"b": [1, 2], "a": 1})
    assert make_key({"a": 1}) != make_key({"a": 1.5})


def test_corrupt_entry_is_a_miss_and_rewritten(tmp_path):
    cache = InputCache(tmp_path)
    key = make_key({"k": 1})
    cache.put(key, {"x": torch.ones(3)})
    cache.path(key).write_bytes(b"garbage")
    assert cache.get(key) is None
    assert torch.equal(cache.get_or_compute({"k": 1}, lambda: {"x": torch.zeros(3)})["x"], torch.zeros(3))
    assert torch.equal(cache.get(key)["x"], torch.zeros(3))


WRITER = textwrap.dedent("""
    import os, sys, torch
    from egoadapt.data.cache import InputCache
    cache, value, sync = InputCache(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    open(os.path.join(sync, f"ready-{value}"), "w").close()
    while not os.path.exists(os.path.join(sync, "go")):  # start together
        pass
    for _ in range(40):
        cache.put(sys.argv[4], {"x": torch.full((256, 256), value), "v": value})
""")


def test_concurrent_writers_leave_a_valid_entry(tmp_path):
    key = make_key({"sample": "same"})
    sync = tmp_path / "sync"
    sync.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "c"), str(v), str(sync), key], env=env)
             for v in (1.0, 2.0)]
    deadline = time.time() + 60
    while len(list(sync.glob("ready-*"))) < 2 and time.time() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    (sync / "go").touch()
    cache, reads = InputCache(tmp_path / "c"), 0
    while any(p.poll() is None for p in procs):
        got = cache.get(key)  # a reader never sees a partial entry
        if got is not None:
            reads += 1
            assert got["x"].shape == (256, 256) and float(got["x"][0, 0]) == got["v"] in (1.0, 2.0)
            assert torch.all(got["x"] == got["v"])
    assert [p.wait() for p in procs] == [0, 0]
    final = cache.get(key)
    assert final is not None and torch.all(final["x"] == final["v"]) and final["v"] in (1.0, 2.0)
    assert not [p for p in cache.path(key).parent.iterdir() if p.suffix == ".tmp"]  # no temp files left


# ---------------------------------------------------------------- compact entries, RAM bound, warm-up shares
