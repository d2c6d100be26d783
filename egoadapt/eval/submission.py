"""The EgoCross challenge submission: the template (`{id, question_id, dataset, answer}` x 957)
with `answer` set to the predicted option letter, rows in the template's order.

The letter is read the way the benchmark's own CloseQA scorer reads it
(`official_extract`: the first JSON object's "prediction"), trimmed and upper-cased; an
answer that is not one of the question's option letters (or no CloseQA prediction at
all) leaves an empty string, which the challenge scores as wrong rather than rejecting
the file.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from egoadapt.data.schema import LETTERS
from egoadapt.files import write_atomic
from egoadapt.rewards.parse import official_extract

log = logging.getLogger(__name__)

DEFAULT_OPTION_COUNT = 4


class SubmissionError(ValueError):
    pass


def predicted_letter(output: str, n_options: int = DEFAULT_OPTION_COUNT) -> str:
    """The option letter a raw CloseQA output answers, or "" when it names no valid letter."""
    pred, _ = official_extract(output, "close")
    if not isinstance(pred, str):
        return ""
    letter = pred.strip().upper()
    return letter if len(letter) == 1 and letter in LETTERS[:n_options] else ""


def letters_from_predictions(records: Iterable[Mapping[str, Any]],
                             n_options: Mapping[str, int] | None = None) -> dict[str, str]:
    """{id: letter} from predictions records (`id`, `output`, `qa`); OpenQA records are ignored."""
    n_options = n_options or {}
    out: dict[str, str] = {}
    for r in records:
        if (r.get("qa") or "close") != "close":
            continue
        rid = str(r["id"])
        out[rid] = predicted_letter(str(r.get("output") or ""), n_options.get(rid, DEFAULT_OPTION_COUNT))
    return out


def read_template(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f)
    except FileNotFoundError:
        raise SubmissionError(f"{path}: submission template not found") from None
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "id" in r for r in rows):
        raise SubmissionError(f"{path}: expected a JSON list of objects with an 'id' (the challenge template)")
    seen: set[str] = set()
    for r in rows:
        if str(r["id"]) in seen:
            raise SubmissionError(f"{path}: duplicate id {r['id']!r} in the template")
        seen.add(str(r["id"]))
    return rows


@dataclass(frozen=True)
class SubmissionReport:
    path: str
    rows: int
    answered: int  # rows with a letter
    no_prediction: int  # template ids without a CloseQA prediction
    invalid: int  # predictions that named no valid letter
    unknown_ids: int  # predicted ids the template does not have (not written)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fill_template(template: list[dict[str, Any]], letters: Mapping[str, str]) -> list[dict[str, Any]]:
    """A copy of the template with `answer` filled; every other field and the order unchanged."""
    return [{**row, "answer": letters.get(str(row["id"]), "")} for row in template]


def write_submission(template_path: str | os.PathLike, letters: Mapping[str, str],
                     out_path: str | os.PathLike) -> SubmissionReport:
    template = read_template(template_path)
    rows = fill_template(template, letters)
    ids = {str(r["id"]) for r in template}
    report = SubmissionReport(
        path=os.fspath(out_path), rows=len(rows), answered=sum(bool(r["answer"]) for r in rows),
        no_prediction=sum(str(r["id"]) not in letters for r in template),
        invalid=sum(1 for i, v in letters.items() if i in ids and not v),
        unknown_ids=sum(i not in ids for i in letters),
    )
    if report.unknown_ids:
        log.warning("submission: %d predicted ids are not in the template (not written)", report.unknown_ids)
    if report.no_prediction:
        log.warning("submission: %d of %d template ids have no CloseQA prediction (answer left empty)",
                    report.no_prediction, report.rows)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    write_atomic(out_path, json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    return report
