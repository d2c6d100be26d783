"""The official EgoCross test bed (a JSON list of records with frame lists), plus an optional
answers file joined by `id` (question_id, correct_option_letter, answer_text, detailed_answer).

Two files of the release work as `data.annotations`:
- `egocross_testbed_imgs.json`: the questions only (what challenge entrants got);
- `egocross_testbed_answers.json`: the same 957 records, each also carrying `question_id`,
  `correct_option_letter`, `answer_text` (a string, or a number for some counts, kept a number) and
  `detailed_answer`. The official scripts read it alone; so can egoadapt. A file whose records
  carry answers must carry them for every record: one without `correct_option_letter` fails,
  naming file, record and field.

`data.answers` joins answers by `id` as before (it may be the answers file itself). When a
record carries answers and the answers file does too, they must agree.

The submission template (`{id, question_id, dataset, answer: ""}`) also works as an answers
file: it gives every question its `question_id`, hence its source video, without answers.
"""
from __future__ import annotations

import os
from typing import Any

from egoadapt.data.errors import DataError, LoadReport, Problem, handle
from egoadapt.data.records import (
    RecordCheck,
    accept,
    answer_letter,
    answer_text_value,
    domain_of,
    group_from_path,
    group_from_question_id,
    parse_options,
    read_json,
    resolve_path,
    sampling_fps,
)
from egoadapt.data.schema import LETTERS, FrameSource, Sample


def load(data_cfg: Any, report: LoadReport, on_error: str) -> list[Sample]:
    path = os.fspath(data_cfg["annotations"])
    records = read_json(path, report=report)
    if not isinstance(records, list):
        raise DataError(Problem(path, "", "", f"expected a JSON list of records, got {type(records).__name__}",
                                "bad_file"))
    answers_path = data_cfg["answers"]
    answers = load_answers(answers_path, report, on_error) if answers_path else {}
    root = data_cfg["root"]
    fps_cfg = data_cfg["fps"]
    domains = data_cfg["domains"]
    base = os.path.dirname(os.path.abspath(path))
    # the released answers file carries the questions too: its records bring their own answers
    inline = {k: sum(1 for r in records if isinstance(r, dict) and r.get(k) is not None) for k in INLINE_ANSWER}

    samples, used, ids = [], set(), set()
    for i, raw in enumerate(records):
        rid = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") is not None else f"#{i}"
        ids.add(rid)
        chk = RecordCheck(raw, path, rid)
        sample = _record(chk, i, answers.get(rid), answers_path, root, base, fps_cfg, domains,
                         inline={**inline, "records": len(records)} if any(inline.values()) else None)
        if accept(report, on_error, chk, sample):
            used.add(rid)
            samples.append(sample)
    for rid in sorted(set(answers) - ids):
        # an answer for no question: harmless for loading, but validate should say so
        report.problems.append(Problem(os.fspath(answers_path), rid, "id", "answer for an id not in the annotations",
                                       "orphan_answer"))
    if answers_path and answers:
        # a question the answers file does not cover loads without an answer: validate says which
        for rid in sorted(used - set(answers), key=lambda x: (len(x), x)):
            report.problems.append(Problem(os.fspath(answers_path), rid, "id",
                                           f"no answer record for this question (of {path})", "missing_answer"))
    return samples


# Answer fields a test-bed record may carry itself (the released egocross_testbed_answers.json does).
INLINE_ANSWER = ("correct_option_letter", "answer_text", "detailed_answer")


def _record(chk: RecordCheck, index: int, ans: dict | None, answers_path: Any, root: Any, base: str,
            fps_cfg: Any, domains: Any, inline: dict[str, int] | None = None) -> Sample | None:
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

    question_id = chk.get("question_id", str, required=False, default="")
    # answers: the record's own (an answers-bearing annotations file), then data.answers' record for its id
    sources = [chk] if inline else []
    if ans is not None:
        sources.append(RecordCheck(ans, os.fspath(answers_path), chk.record))
    found: dict[str, tuple[Any, str]] = {}  # field -> (value, file it came from)
    for src in sources:
        qid = src.get("question_id", str, required=False, default="") if src is not chk else ""
        raw_letter = src.raw.get("correct_option_letter")
        if src is not chk and raw_letter is None:
            raw_letter = src.raw.get("answer")  # the submission template's (empty) answer
        values = {"question_id": qid,
                  "correct_option_letter": answer_letter(src, raw_letter, options, "correct_option_letter"),
                  "answer_text": answer_text_value(src),
                  "detailed_answer": src.get("detailed_answer", str, required=False)}
        for key, value in values.items():
            if value is None or value == "":
                continue
            if key in found and key != "detailed_answer" and not _same(found[key][0], value):
                chk.fail(key, f"{found[key][0]!r} in {found[key][1]} but {value!r} in {src.file}: which is right?",
                         "answer_conflict")
            found[key] = (value, src.file)
        if src is not chk:
            chk.problems.extend(src.problems)
    question_id = found.get("question_id", (question_id,))[0] or question_id
    letter = found.get("correct_option_letter", (None,))[0]
    text = found.get("answer_text", (None,))[0]
    detailed = found.get("detailed_answer", (None,))[0]
    if inline and chk.ok and letter is None:  # options are required: every record is a CloseQA question
        where = f" (nor in {os.fspath(answers_path)})" if ans is not None else ""
        chk.fail("correct_option_letter", f"missing{where}: {inline['correct_option_letter']} of the "
                 f"{inline['records']} records of this file have one (an incomplete answers file?)", "missing_field")
    if letter and text is None and options:
        text = options[LETTERS.index(letter)]
    if chk.ok and letter and text is not None and options and \
            str(text).strip().lower() != options[LETTERS.index(letter)].lower():
        # keep the sample: the letter decides CloseQA; the text is the OpenQA reference
        chk.warn("answer_text", f"{text!r} differs from option {letter} {options[LETTERS.index(letter)]!r}"
                 f" (in {found['answer_text'][1]})", "answer_mismatch")
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


def _same(a: Any, b: Any) -> bool:
    return str(a).strip().lower() == str(b).strip().lower()


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
