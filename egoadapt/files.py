"""Small filesystem guarantees shared by every command: one writer per folder, files written and
folders published whole."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any, **kwargs: Any) -> str:
    """`json.dumps` whose text any UTF-8 writer and strict JSON reader accepts, whatever a model
    wrote: lone surrogates (a "\\ud800" escape, a broken pair) become U+FFFD; NULs and control
    characters are escaped by JSON itself."""
    return _SURROGATE.sub("\ufffd", json.dumps(obj, ensure_ascii=False, **kwargs))


class FolderBusyError(RuntimeError):
    pass


@contextlib.contextmanager
def exclusive(folder: Path, what: str):
    """Hold `folder/.lock` for the block; a second writer fails at once, naming the holder.

    An OS lock (flock): released when the holder exits or is killed, so a crash never leaves
    a stale lock behind. Local filesystems and NFSv4 honour it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise FolderBusyError(f"{folder} is in use by {holder} ({what}); wait for it or use another out=DIR") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(fd)


def publish_atomically(staging: Path, final: Path) -> None:
    """Move a fully written folder into place: `final/` is either the old one or the new one, whole."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.replace(old)
        staging.replace(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.replace(final)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary file beside `path` for the block to write (by name: savefig, safetensors,
    an encoder); then fsynced and renamed over `path`, so a reader sees the old file or the new one,
    whole. Its name is unique (two writers of one file never share it) and ends with `path`'s
    suffix (writers that pick a format by extension); a failed block leaves no file behind."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make results unreadable to anyone else
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write `data` to `path` whole (`atomic_path`). Text is UTF-8; a lone surrogate from a JSON
    input ("\\ud800") becomes "?", not a crash."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", errors="replace"))
