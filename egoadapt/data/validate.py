"""`egoadapt data validate data.annotations=FILE [data.answers=FILE] [data.root=DIR]`: load every
record, print counts per domain / dataset / category / question type and every problem found
(bad or missing fields, text that is not UTF-8, non-finite numbers, duplicate ids, frames
missing under the root, frame headers the processor would refuse: decompression bombs,
aspect ratios over 200:1, degenerate sizes; with `validate.decode=true` also undecodable
frames and spans), and exit 1 when there is any problem (2 when the file cannot be read).
Samples with unusable frames are what `frames.on_error=skip` leaves out of train and eval.
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Any

from egoadapt.data.errors import DataError, LoadReport, Problem
from egoadapt.data.load import load_with_report, missing_files
from egoadapt.data.schema import Sample


def _plain(cfg: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ValueError:
        return dict(cfg)


def file_problems(samples: list[Sample]) -> list[Problem]:
    out = []
    for s in samples:
        missing = missing_files(s)
        if missing:
            n = len(s.frame_source.frames) or 1
            field_ = "video_path" if s.frame_source.kind == "frames" else "video"
            more = f" ({len(missing)} of {n} files missing)" if n > 1 else ""
            out.append(Problem(s.meta.get("file", ""), s.id, field_, f"not found: {missing[0]}{more}",
                               "missing_frames"))
    return out


def frame_problems(samples: list[Sample], frames_cfg: Any, decode: bool, reported: set[str]) -> list[Problem]:
    """What `load_clip` would refuse: from the headers alone (`check_source`), or decoding everything."""
    from egoadapt.data.frames import check_source, load_clip

    out = []
    for s in samples:
        if s.id in reported:
            continue
        try:
            (load_clip if decode else check_source)(s, frames_cfg)
        except DataError as e:
            out.extend(e.problems)
    return out


def table(title: str, counts: Counter) -> str:
    rows = [f"| {title} | questions |", "|---|---:|"]
    rows += [f"| {k or '(none)'} | {v} |" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(rows)


def summarize(samples: list[Sample], report: LoadReport) -> str:
    parts = [f"{report.loaded} samples loaded, {report.skipped} records skipped"]
    for title, key in (("domain", lambda s: s.domain), ("dataset", lambda s: s.dataset),
                       ("category", lambda s: s.category), ("question type", lambda s: s.question_type),
                       ("frame source", lambda s: f"{s.frame_source.kind} @ {s.frame_source.fps:g} fps")):
        parts.append(table(title, Counter(key(s) for s in samples)))
    answered = sum(s.answer_letter is not None or s.answer_text is not None for s in samples)
    parts.append(f"with answers: {answered} of {len(samples)}; with question_id: "
                 f"{sum(bool(s.question_id) for s in samples)}; source videos: {len({s.group for s in samples})}")
    return "\n\n".join(parts)


def main(cfg: Any) -> int:
    data_cfg = _plain(cfg.data)
    data_cfg.update(on_error="skip", check_files=False)  # collect everything, drop nothing for counting
    vcfg = cfg.validate
    try:
        samples, report = load_with_report(data_cfg)
    except DataError as e:
        print(f"egoadapt data validate: error: {e}", file=sys.stderr)
        return 2
    problems = list(report.problems)
    unusable: list[Problem] = []
    if vcfg.check_files:
        unusable += file_problems(samples)
    if vcfg.check_files or vcfg.decode:
        unusable += frame_problems(samples, cfg.frames, bool(vcfg.decode),
                                   {p.record for p in unusable})
    problems += unusable
    print(f"{data_cfg.get('annotations')}: " + summarize(samples, report))
    if problems:
        kinds = Counter(p.kind for p in problems)
        print(f"\n{len(problems)} problems ({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items()))}):")
        for p in problems:
            print(f"  {p}")
        if unusable:
            ids = list(dict.fromkeys(p.record for p in unusable))
            print(f"{len(ids)} samples have unusable frames; train and eval skip them with frames.on_error=skip: "
                  + ", ".join(ids[:20]) + (", ..." if len(ids) > 20 else ""))
        if kinds.get("missing_frames") and not data_cfg.get("root"):
            print("hint: frame paths such as /egocross_testbed/... are resolved under data.root=DIR")
        return 1
    print("\nno problems found")
    return 0
