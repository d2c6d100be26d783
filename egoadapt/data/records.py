"""Checks shared by the annotation readers (egocross, support, jsonl): one record's fields
(`RecordCheck`), options and answer letters, sampling fps, paths and source-video groups, and
reading JSON / JSONL files so that bad bytes and bad lines name file, line and record.

The readers import this module; `egoadapt.data.load` imports the readers.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from egoadapt.data.errors import DataError, LoadReport, Problem, handle
from egoadapt.data.schema import DATASET_DOMAINS, LETTERS, Sample

# "A: text" (the test bed's form); letters must run A, B, C, ... in order.
OPTION_RE = re.compile(r"^\s*([A-Z])\s*:\s?(.*)$", re.DOTALL)
# Lone surrogates: a JSON escape such as "\ud800", or a non-UTF-8 byte read with surrogateescape
# (U+DC80-U+DCFF). Neither is text: the tokenizer (and any UTF-8 writer) refuses them.
SURROGATE = re.compile("[\ud800-\udfff]")


class RecordCheck:
    """Collects every field problem of one record; `ok` tells whether it may become a Sample."""

    def __init__(self, raw: Any, file: str, record: str):
        self.raw = raw if isinstance(raw, Mapping) else {}
        self.file, self.record = file, record
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []  # reported, but the record still loads
        if not isinstance(raw, Mapping):
            self.fail("", f"expected a JSON object, got {type(raw).__name__}", "bad_record")
        for field_, message in bad_text(self.raw):
            self.fail(field_, message, "bad_text")

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, field_: str, message: str, kind: str = "bad_field") -> None:
        self.problems.append(Problem(self.file, self.record, field_, message, kind))

    def warn(self, field_: str, message: str, kind: str) -> None:
        self.warnings.append(Problem(self.file, self.record, field_, message, kind))

    def get(self, name: str | tuple[str, ...], types: type | tuple[type, ...], required: bool = True,
            default: Any = None) -> Any:
        """The value of the first present key in `name`, checked against `types` (bool is never a number)."""
        names = (name,) if isinstance(name, str) else name
        key = next((n for n in names if n in self.raw and self.raw[n] is not None), None)
        if key is None:
            if required:
                self.fail(names[0], "missing", "missing_field")
            return default
        value = self.raw[key]
        types_ = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in types_ or not isinstance(value, types_):
            want = " or ".join(t.__name__ for t in types_)
            self.fail(key, f"expected {want}, got {type(value).__name__} {_short(value)}")
            return default
        if isinstance(value, str) and required and not value.strip():
            self.fail(key, "empty string")
            return default
        return value

    def number(self, name: str | tuple[str, ...], required: bool = True) -> float | None:
        v = self.get(name, (int, float), required)
        if v is not None and not math.isfinite(v):  # JSON readers accept NaN and Infinity
            names = (name,) if isinstance(name, str) else name
            self.fail(next(n for n in names if self.raw.get(n) is not None), f"must be a finite number, got {v}")
            return None
        return None if v is None else float(v)


def bad_text(value: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """(field, message) for every string in a JSON value that is not valid Unicode text."""
    if isinstance(value, str):
        m = SURROGATE.search(value)
        if m:
            c = ord(m.group())
            what = f"undecodable byte 0x{c - 0xDC00:02x} (the file is not UTF-8)" if 0xDC80 <= c <= 0xDCFF \
                else f"lone surrogate U+{c:04X}"
            yield path, f"{what} at character {m.start()}: not text the tokenizer can encode"
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from bad_text(k, path or "<key>")
            yield from bad_text(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from bad_text(v, f"{path}[{i}]")


def _short(v: Any, n: int = 60) -> str:
    s = json.dumps(v, ensure_ascii=False, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


# ---------------------------------------------------------------- shared field helpers

def parse_options(chk: RecordCheck, options: Any, field_: str = "options",
                  allow_plain: bool = False) -> tuple[str, ...]:
    """["A: x", "B: y"] -> ("x", "y"); letters must be A, B, ... in order.

    `allow_plain` also accepts unlettered texts (lettered in order), but not a mix.
    """
    if options is None:
        return ()
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
        chk.fail(field_, f"expected a list of 'LETTER: text' strings, got {_short(options)}")
        return ()
    if not options:
        chk.fail(field_, "empty option list")
        return ()
    if len(options) > len(LETTERS):
        chk.fail(field_, f"{len(options)} options; at most {len(LETTERS)} are supported")
        return ()
    matches = [OPTION_RE.match(o) for o in options]
    if allow_plain and not any(matches):
        return tuple(o.strip() for o in options)
    texts = []
    for i, (o, m) in enumerate(zip(options, matches)):
        if not m:
            chk.fail(f"{field_}[{i}]", f"option {o!r} is not 'LETTER: text'")
        elif m.group(1) != LETTERS[i]:
            chk.fail(f"{field_}[{i}]", f"option {o!r} should start with letter {LETTERS[i]}")
        elif not m.group(2).strip():
            chk.fail(f"{field_}[{i}]", f"option {o!r} has no text")
        else:
            texts.append(m.group(2).strip())
    return tuple(texts) if len(texts) == len(options) else ()


def answer_text_value(chk: RecordCheck, names: str | tuple[str, ...] = "answer_text") -> str | int | float | None:
    """The reference answer as the file gives it: text, or a finite JSON number, kept a number (the
    released answers file may write counts as numbers, and the reference open-set scorer has a
    branch for int answers: `==` or digits in the prediction)."""
    v = chk.get(names, (str, int, float), required=False)
    if isinstance(v, float) and not math.isfinite(v):
        chk.fail(names if isinstance(names, str) else names[0], f"must be text or a finite number, got {v}")
        return None
    return v


def answer_letter(chk: RecordCheck, raw: Any, options: tuple[str, ...], field_: str) -> str | None:
    """Accept 'B', 'b', 'B: text', 'B.' or the exact option text; None (and a problem) otherwise."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if not isinstance(raw, str):
        chk.fail(field_, f"expected an option letter, got {_short(raw)}")
        return None
    s = raw.strip()
    m = re.match(r"^([A-Za-z])(?:\s*[:.)]|\s*$)", s)
    if m:
        letter = m.group(1).upper()
        if options and letter not in LETTERS[: len(options)]:
            chk.fail(field_, f"answer {raw!r} is not one of the options {LETTERS[:len(options)]}")
            return None
        return letter
    for i, text in enumerate(options):
        if s.lower() == text.lower():
            return LETTERS[i]
    chk.fail(field_, f"answer {raw!r} is neither an option letter nor an option text")
    return None


def sampling_fps(fps_cfg: Mapping | float | None, dataset: str, domain: str = "", path: str = "",
                 record_fps: float | None = None) -> float:
    """Per-dataset sampling fps: `<dataset>_<ext>` > `<dataset>` > `<domain>` > the record's own > default.

    EgoCross: 0.5 fps, except CholecTrack20 .png frames and EgoSurgery at 1 fps.
    """
    if isinstance(fps_cfg, (int, float)):
        return float(fps_cfg)
    fps_cfg = dict(fps_cfg or {})
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    for key in (f"{dataset}_{ext}" if ext else None, dataset, domain):
        if key and fps_cfg.get(key) is not None:
            return float(fps_cfg[key])
    if record_fps is not None:
        return float(record_fps)
    return float(fps_cfg.get("default", 0.5))


def domain_of(dataset: str, record_domain: str | None, extra: Mapping | None = None) -> str | None:
    if record_domain:
        return record_domain
    return dict(extra or {}).get(dataset) or DATASET_DOMAINS.get(dataset)


def resolve_path(path: str, root: str | os.PathLike | None, base: str | os.PathLike | None) -> str:
    """Release paths are absolute from the data folder (/egocross_testbed/...): join them to `root`.

    Relative paths are taken from `root` when given, else from the annotation file's folder.
    """
    if root:
        return os.path.normpath(os.path.join(os.fspath(root), path.lstrip("/")))
    if os.path.isabs(path) or base is None:
        return path
    return os.path.normpath(os.path.join(os.fspath(base), path))


def group_from_path(path: str, dataset: str) -> str:
    """Source video from a frame path: the folder after the dataset's (skipping 'generated'),
    else the frame's grandparent folder (the parent is the per-question folder)."""
    parts = Path(path).parts
    if dataset in parts:
        rest = [p for p in parts[parts.index(dataset) + 1:-1] if p not in ("generated", "frames")]
        if rest:
            return rest[0]
    return Path(path).parent.parent.name or Path(path).parent.name


def group_from_question_id(question_id: str, dataset: str) -> str | None:
    """`CholecTrack20_VID01_q1_...` -> `VID01` (the second `_` field, after the dataset name)."""
    if not question_id:
        return None
    rest = question_id[len(dataset) + 1:] if question_id.startswith(dataset + "_") else \
        question_id.split("_", 1)[1] if "_" in question_id else ""
    return rest.split("_", 1)[0] or None


def _text(data: bytes) -> str:
    """Bytes as text; bytes that are not UTF-8 become lone surrogates (surrogateescape), which
    `RecordCheck` refuses naming the record and field (and a JSONL line), instead of one
    UnicodeDecodeError for the whole file."""
    return data.decode("utf-8", "surrogateescape")


def utf8_problem(path: str, data: bytes, what: str) -> Problem | None:
    """A file-level note naming the first byte that is not UTF-8, by line and column (None: all are)."""
    try:
        data.decode("utf-8")
        return None
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        return Problem(path, "", "", f"{what} file is not UTF-8: byte 0x{data[e.start]:02x} at line {line} column "
                                     f"{col}", "bad_encoding")


def read_json(path: str | os.PathLike, what: str = "annotations", report: LoadReport | None = None) -> Any:
    """A JSON file. Bytes that are not UTF-8 raise, or with a `report` are noted there (line and
    column) and fail the records holding them (`RecordCheck`: record and field)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(Problem(path, "", "", f"{what} file not found", "missing_file"))
    try:
        with open(path, "rb") as f:
            data = f.read()
        value = json.loads(_text(data))
    except json.JSONDecodeError as e:
        raise DataError(Problem(path, "", "", f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}",
                                "bad_file")) from None
    except OSError as e:
        raise DataError(Problem(path, "", "", f"cannot read {what}: {e}", "bad_file")) from None
    note = utf8_problem(path, data, what)
    if note is not None:
        if report is None:
            raise DataError(note)
        report.problems.append(note)
    return value


def read_jsonl(path: str | os.PathLike, report: LoadReport, on_error: str) -> list[tuple[int, Any]]:
    """(line number, parsed object) per non-empty line; bad lines raise or are skipped."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(Problem(path, "", "", "file not found", "missing_file"))
    rows = []
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            line = _text(raw)
            if not line.strip():
                continue
            try:
                rows.append((n, json.loads(line)))
                continue
            except json.JSONDecodeError as e:
                problem = Problem(path, f"line {n}", "", f"invalid JSON: {e.msg} (column {e.colno})", "bad_record")
            handle(report, on_error, [problem])  # outside the except: no chained decoder traceback
    return rows


def accept(report: LoadReport, on_error: str, chk: "RecordCheck", sample: Sample | None) -> bool:
    """Book one record's checks: warnings are kept; a failed record raises or is counted
    (`handle`). True when its sample is good."""
    report.problems.extend(chk.warnings)
    if sample is None:
        handle(report, on_error, chk.problems)
        return False
    return True
