"""egoadapt.files.write_atomic / atomic_path: concurrent writers of one file never leave it torn
or mixed, and leave no temporary files behind."""
from __future__ import annotations

import multiprocessing as mp
import os

import pytest

from egoadapt.files import atomic_path, write_atomic

SIZE = 1 << 18  # 256 KiB: many write() calls' worth, so a shared temp file would interleave
ROUNDS = 40


def _writer(path: str, letter: str, start, rounds: int) -> None:
    start.wait()
    for i in range(rounds):
        # the whole file is one letter plus the round: a mix of two writers is visible anywhere in it
        write_atomic(path, f"{letter}{i:04d}" + letter * SIZE)


def _check(data: str) -> str:
    letter = data[:1]
    assert letter in ("a", "b"), data[:20]
    assert len(data) == 5 + SIZE and data[5:] == letter * SIZE, f"torn or mixed file: {data[:20]!r}..."
    return letter


def test_two_concurrent_writers_leave_a_whole_file_and_no_temp_files(tmp_path):
    path = tmp_path / "results.json"
    write_atomic(path, "a0000" + "a" * SIZE)
    ctx = mp.get_context("fork")
    start = ctx.Barrier(3)
    writers = [ctx.Process(target=_writer, args=(str(path), letter, start, ROUNDS)) for letter in "ab"]
    for w in writers:
        w.start()
    start.wait()
    seen = set()
    while any(w.is_alive() for w in writers):
        seen.add(_check(path.read_text()))  # a reader during the writes sees one writer's whole file
    for w in writers:
        w.join()
        assert w.exitcode == 0
    _check(path.read_text())
    assert seen <= {"a", "b"}
    assert sorted(os.listdir(tmp_path)) == ["results.json"]  # no .tmp left by either writer
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)  # readable by others, not mkstemp's 0600


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "plot.png"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png"  # writers that pick a format by extension
        tmp.write_bytes(b"half")
        raise RuntimeError("writer died")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["plot.png"]


def test_text_with_a_lone_surrogate_is_written_not_refused(tmp_path):
    path = tmp_path / "scores.jsonl"
    write_atomic(path, "answer \ud800 end\n")
    assert path.read_text(encoding="utf-8") == "answer ? end\n"
