"""The official EgoCross test bed (a JSON list of records with frame lists), plus an optional
answers file joined by `id` (question_id, correct_option_letter, answer_text, detailed_answer).

The submission template (`{id, question_id, dataset, answer: ""}`) also works as an answers
file: it gives every question its `question_id`, hence its source video, without answers.
"""
from __future__ import annotations

import os
from typing import Any

from egoadapt.data.load import (
    DataError,
    LoadReport,
    Problem,
    RecordCheck,
    accept,
    answer_letter,
    cfg_get,
    domain_of,
    group_from_path,
    group_from_question_id,
    handle,
    parse_options,
    read_json,
    resolve_path,
    sampling_fps,
)
from egoadapt.data.schema import LETTERS, FrameSource, Sample


def load(data_cfg: Any, report: LoadReport, on_error: str) -> list[Sample]:
    path = os.fspath(cfg_get(data_cfg, "annotations"))
    records = read_json(path, report=report)
    if not isinstance(records, list):
        raise DataError(Problem(path, "", "", f"expected a JSON list of records, got {type(records).__name__}",
                                "bad_file"))
    answers_path = cfg_get(data_cfg, "answers")
    answers = load_answers(answers_path, report, on_error) if answers_path else {}
    root = cfg_get(data_cfg, "root")
    fps_cfg = cfg_get(data_cfg, "fps")
    domains = cfg_get(data_cfg, "domains")
    base = os.path.dirname(os.path.abspath(path))

    samples, used = [], set()
    for i, raw in enumerate(records):
        rid = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else f"#{i}"
        chk = RecordCheck(raw, path, rid)
        sample = _record(chk, i, answers.get(rid), answers_path, root, base, fps_cfg, domains)
        if accept(report, on_error, chk, sample):
            used.add(rid)
            samples.append(sample)
    for rid in sorted(set(answers) - used):
        # an answer for no question: harmless for loading, but validate should say so
        report.problems.append(Problem(os.fspath(answers_path), rid, "id", "answer for an id not in the annotations",
                                       "orphan_answer"))
    return samples


def _record(chk: RecordCheck, index: int, ans: dict | None, answers_path: Any, root: Any, base: str,
            fps_cfg: Any, domains: Any) -> Sample | None:
    chk.get("id", (int, str))
    dataset = chk.get("dataset", str, default="")
    category = chk.get(("primary_category", "category"), str, default="")
    qtype = chk.get("question_type", str, required=False, default="")
    question = chk.get(("question_text", "question"), str, default="")
    options = parse_options(chk, chk.get("options", list, default=None))
    original_fps = chk.number(("original_video_fps", "original_fps"), required=False)
    frames = chk.get("video_path", list, default=None)
    if frames is not None:
        if not frames:
            chk.fail("video_path", "empty frame list")
        bad = [j for j, f in enumerate(frames) if not isinstance(f, str) or not f.strip()]
        if bad:
            chk.fail(f"video_path[{bad[0]}]", f"frame paths must be non-empty strings ({len(bad)} are not)")
    domain = domain_of(dataset, chk.get("domain", str, required=False), domains) if dataset else None
    if dataset and not domain:
        chk.fail("dataset", f"unknown dataset {dataset!r}: give the record a 'domain' or map it in data.domains")
    if original_fps is not None and original_fps <= 0:
        chk.fail("original_video_fps", f"must be positive, got {original_fps}")

    question_id = chk.raw.get("question_id") or ""
    letter = text = detailed = None
    if ans is not None:
        achk = RecordCheck(ans, os.fspath(answers_path), chk.record)
        question_id = achk.get("question_id", str, required=False, default="") or question_id
        letter = answer_letter(achk, ans.get("correct_option_letter", ans.get("answer")), options,
                               "correct_option_letter")
        text = achk.get("answer_text", str, required=False)
        detailed = achk.get("detailed_answer", str, required=False)
        if letter and text is None and options:
            text = options[LETTERS.index(letter)]
        if letter and text and options and text.strip().lower() != options[LETTERS.index(letter)].lower():
            # keep the sample: the letter decides CloseQA; the text is the OpenQA reference
            chk.warn("answer_text", f"{text!r} differs from option {letter} {options[LETTERS.index(letter)]!r}"
                     f" (in {achk.file})", "answer_mismatch")
        chk.problems.extend(achk.problems)
    if not chk.ok:
        return None

    frames = [resolve_path(f, root, base) for f in frames]
    video = group_from_question_id(question_id, dataset) or group_from_path(frames[0], dataset)
    fps = sampling_fps(fps_cfg, dataset, domain, frames[0], chk.number(("sampling_fps", "fps"), required=False))
    if fps <= 0:
        chk.fail("sampling_fps", f"sampling fps must be positive, got {fps:g} (record or data.fps)")
        return None
    meta = {"file": chk.file, "index": index}
    return Sample(
        id=chk.record, question=question.strip(), options=options, question_id=question_id, dataset=dataset,
        domain=domain, category=category, question_type=qtype, answer_letter=letter, answer_text=text,
        detailed_answer=detailed, original_fps=original_fps, group=f"{dataset}/{video}",
        frame_source=FrameSource(frames=tuple(frames), fps=fps), meta=meta,
    )


def load_answers(path: Any, report: LoadReport, on_error: str) -> dict[str, dict]:
    """id (as str) -> answer record; accepts a list of records or an {id: record} object."""
    path = os.fspath(path)
    data = read_json(path, "answers", report)
    if isinstance(data, dict):
        data = [dict(v, id=k) if isinstance(v, dict) else v for k, v in data.items()]
    if not isinstance(data, list):
        raise DataError(Problem(path, "", "", f"expected a JSON list of answers, got {type(data).__name__}",
                                "bad_file"))
    out: dict[str, dict] = {}
    for i, rec in enumerate(data):
        if not isinstance(rec, dict) or rec.get("id") is None:
            handle(report, on_error, [Problem(path, f"#{i}", "id", "answer record without an id", "bad_record")])
            continue
        rid = str(rec["id"])
        if rid in out:
            handle(report, on_error, [Problem(path, rid, "id", "duplicate id in answers", "duplicate_id")])
            continue
        out[rid] = rec
    return out
