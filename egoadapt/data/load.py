"""Read annotation files into `Sample`s: dispatch to the reader of `data_cfg.format`
(egocross | support | jsonl), duplicate ids, missing files, `limit`.

Bad records either raise a `DataError` naming file, record and field (`on_error: raise`)
or are skipped and counted in a `LoadReport` (`on_error: skip`); a file that cannot be
read at all always raises. The record checks the readers share are in `egoadapt.data.records`,
the error types in `egoadapt.data.errors`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from egoadapt.configs import complete
from egoadapt.data import egocross, hub, jsonl, support
from egoadapt.data.errors import DataError, LoadReport, Problem, handle
from egoadapt.data.schema import Sample

log = logging.getLogger(__name__)

READERS: dict[str, Callable[..., list[Sample]]] = {
    "egocross": egocross.load, "support": support.load, "jsonl": jsonl.load}


def load_with_report(data_cfg: Any, media: bool = True) -> tuple[list[Sample], LoadReport]:
    """Samples and what the load found. `hf://` files and roots come from the Hub
    (`egoadapt.data.hub`); `media=False` leaves a Hub root's frames and videos unfetched
    (a split needs only the annotations)."""
    fmt = data_cfg.get("format") if data_cfg is not None else None
    if fmt not in READERS:
        raise DataError(Problem("<config>", "", "data.format", f"unknown format {fmt!r}; one of {sorted(READERS)}"))
    try:  # a Python caller's partial settings over conf/data/<format>.yaml
        data_cfg = complete("data", data_cfg, option=fmt)
    except ValueError as e:
        raise DataError(Problem("<config>", "", "data", str(e))) from None
    data_cfg, hub_root = hub.localize(data_cfg) if hub.uses_hub(data_cfg) else (data_cfg, None)
    if not data_cfg["annotations"]:
        raise DataError(Problem("<config>", "", "data.annotations", "not set: pass data.annotations=FILE"))
    on_error = data_cfg["on_error"]
    if on_error not in ("raise", "skip"):
        raise DataError(Problem("<config>", "", "data.on_error", f"must be raise or skip, got {on_error!r}"))
    report = LoadReport()
    samples = READERS[fmt](data_cfg, report, on_error)
    samples = _drop_duplicates(samples, report, on_error)
    limit, check = data_cfg["limit"], data_cfg["check_files"]
    if hub_root and media:
        hub.fetch_media(hub_root, samples if check or not limit else samples[: int(limit)])
    if check:
        samples = check_files(samples, report, on_error)
    if limit:
        samples = samples[: int(limit)]
    report.loaded = len(samples)
    if report.skipped:
        log.warning("loaded %d samples, skipped %d bad records (%s)", report.loaded, report.skipped,
                    ", ".join(f"{k}={v}" for k, v in report.counts().items() if k not in ("loaded", "skipped")))
    return samples, report


def load_samples(data_cfg: Any, report: LoadReport | None = None, media: bool = True) -> list[Sample]:
    """Samples of `data_cfg` (keys: format, annotations, answers, root, fps, domains, on_error, ...)."""
    samples, rep = load_with_report(data_cfg, media)
    if report is not None:
        report.loaded, report.skipped = rep.loaded, rep.skipped
        report.problems.extend(rep.problems)
    return samples


def _drop_duplicates(samples: list[Sample], report: LoadReport, on_error: str) -> list[Sample]:
    seen: dict[str, Sample] = {}
    out = []
    for s in samples:
        if s.id in seen:
            first = seen[s.id].meta.get("index")
            handle(report, on_error, [Problem(s.meta.get("file", ""), s.id, "id",
                                              f"duplicate id (first seen at record #{first})", "duplicate_id")])
            continue
        seen[s.id] = s
        out.append(s)
    return out


def missing_files(sample: Sample) -> list[str]:
    fs = sample.frame_source
    return [p for p in (fs.frames if fs.kind == "frames" else (fs.video,)) if not os.path.isfile(p)]


def check_files(samples: Iterable[Sample], report: LoadReport, on_error: str) -> list[Sample]:
    """Drop (or raise on) samples whose frame files or video are not on disk."""
    out = []
    for s in samples:
        missing = missing_files(s)
        if missing:
            field_ = "video_path" if s.frame_source.kind == "frames" else "video"
            more = f" (+{len(missing) - 1} more of {len(s.frame_source.frames)})" if len(missing) > 1 else ""
            handle(report, on_error, [Problem(s.meta.get("file", ""), s.id, field_,
                                              f"file not found: {missing[0]}{more}", "missing_frames")])
            continue
        out.append(s)
    return out
