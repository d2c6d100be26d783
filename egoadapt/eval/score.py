"""`egoadapt score predictions=FILE data.annotations=FILE [data.answers=FILE] mode=official|training out=DIR`

Scores a predictions JSONL (`{"id", "output"[, "qa": "close"|"open"]}` per line, `output`
the model's raw text) with the same code GRPO uses for rewards
(`egoadapt.rewards.scoring.score_outputs`), prints a summary and writes, atomically:

    DIR/scores.jsonl      one line per prediction: id, qa, prediction, format_ok, correct,
                          reward, method, issue, mark, judge_status, domain, category, ...
    DIR/summary.json      accuracy overall / per QA type / per domain / category / question
                          type, format-violation rate, issue and method counts, judge counters
    DIR/score_config.yaml the composed config (the judge key's variable name only)

When the judge fails on more than `judge.max_failure_rate` of the answers it was asked
about, OpenQA accuracy (and the pooled accuracy) is reported as unmeasured (null, with a
note) rather than as the fallback marks' score, and the command exits 3 after writing
every file.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egoadapt.data.schema import QA_TYPES, Sample, has_answer_text
from egoadapt.files import json_text, write_atomic
from egoadapt.rewards.judge import FALLBACK_STATUSES, Judge, check_judge_config, settings_dict
from egoadapt.rewards.scoring import MODES, Score, ScoringConfig, Target, score_outputs

log = logging.getLogger(__name__)

MAX_REPORTED_ERRORS = 10
EXIT_JUDGE_FAILED = 3  # eval and score: files written, but the judge failed above judge.max_failure_rate


class ScoreInputError(ValueError):
    """Bad predictions or references, with messages naming file, line and field."""


@dataclass(frozen=True)
class Prediction:
    id: str
    output: str
    qa: str | None  # None: close if the sample has options, else open
    line: int


def read_predictions(path: str | os.PathLike, bad: list[str] | None = None) -> list[Prediction]:
    """Parse and check a predictions JSONL. A bad line (not JSON, bytes that are not UTF-8, a field
    missing or of the wrong type, a duplicate) is named by file, line and field: appended to `bad`
    and skipped when a list is given (the rest is scored), else every one is raised in one error."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ScoreInputError(f"{path}: predictions file not found")
    errors: list[str] = bad if bad is not None else []
    preds: list[Prediction] = []
    first_line: dict[tuple[str, str | None], int] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                rec = json.loads(line, strict=False)  # raw control characters (a NUL) inside strings too
            except json.JSONDecodeError as e:
                errors.append(f"{where}: invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(rec, dict):
                errors.append(f"{where}: expected a JSON object, got {type(rec).__name__}")
                continue
            rid, output, qa = rec.get("id"), rec.get("output"), rec.get("qa")
            if rid is None:
                errors.append(f"{where}: missing field 'id'")
                continue
            if isinstance(rid, bool) or not isinstance(rid, (str, int)):
                errors.append(f"{where}: field 'id' must be a string or an integer, got {type(rid).__name__}")
                continue
            if "output" not in rec:
                errors.append(f"{where}: missing field 'output'")
                continue
            if not isinstance(output, str):
                errors.append(f"{where}: field 'output' must be a string, got {type(output).__name__}")
                continue
            if qa is not None and qa not in QA_TYPES:
                errors.append(f"{where}: field 'qa' must be 'close' or 'open', got {qa!r}")
                continue
            key = (str(rid), qa)
            if key in first_line:
                errors.append(f"{where}: field 'id': duplicate prediction for id {rid!r}"
                              f"{f' (qa={qa})' if qa else ''}, first at line {first_line[key]}")
                continue
            first_line[key] = n
            preds.append(Prediction(str(rid), output, qa, n))
    if bad is None:
        _raise_if(errors)
    return preds


def _raise_if(errors: list[str]) -> None:
    if errors:
        raise ScoreInputError(_bad_lines_message(errors, header=False))


def _bad_lines_message(errors: list[str], header: bool = True) -> str:
    more = f"\n... and {len(errors) - MAX_REPORTED_ERRORS} more" if len(errors) > MAX_REPORTED_ERRORS else ""
    head = f"{len(errors)} bad prediction line(s), not scored:\n" if header else ""
    return head + "\n".join(errors[:MAX_REPORTED_ERRORS]) + more


def targets_for(preds: Sequence[Prediction], samples: Mapping[str, Sample], source: str,
                bad: list[str] | None = None) -> list[Target | None]:
    """The reference of every prediction. An unknown id or a missing answer is an error, or with a
    `bad` list is appended there and that prediction's target is None (not scored)."""
    errors: list[str] = []
    targets: list[Target | None] = []
    for p in preds:
        s = samples.get(p.id)
        qa = p.qa or ("close" if s is not None and s.options else "open")
        if s is None:
            errors.append(f"{source}:{p.line}: field 'id': {p.id!r} is not in the annotations")
        elif qa == "close" and (not s.options or s.answer_letter is None):
            errors.append(f"{source}:{p.line}: id {p.id!r} has no options or answer letter to score CloseQA "
                          "(pass data.answers=FILE, or the answers file as data.annotations)")
        elif qa == "open" and not has_answer_text(s.answer_text):
            errors.append(f"{source}:{p.line}: id {p.id!r} has no answer_text to score OpenQA "
                          "(pass data.answers=FILE, or the answers file as data.annotations)")
        else:
            targets.append(Target.from_sample(s, qa))
            continue
        targets.append(None)
    if bad is None:
        _raise_if(errors)
    else:
        bad.extend(errors)
    return targets


def score_records(
    preds: Sequence[Prediction],
    samples: Mapping[str, Sample],
    scoring: ScoringConfig,
    judge: Judge | None = None,
    chunk_size: int = 256,
    source: str = "<predictions>",
    bad: list[str] | None = None,
) -> list[dict[str, Any]]:
    """One scores.jsonl row per prediction (reusable by in-process evaluation); with a `bad` list,
    predictions without a reference are named there and left out instead of raising."""
    targets = targets_for(preds, samples, source, bad)
    kept = [i for i, t in enumerate(targets) if t is not None]
    preds, targets = [preds[i] for i in kept], [targets[i] for i in kept]
    rows: list[dict[str, Any]] = []
    chunk_size = max(1, int(chunk_size))
    for start in range(0, len(preds), chunk_size):
        chunk = range(start, min(start + chunk_size, len(preds)))
        scores = score_outputs([preds[i].output for i in chunk], [targets[i] for i in chunk], scoring, judge)
        for i, sc in zip(chunk, scores):
            rows.append(_row(preds[i], samples[preds[i].id], targets[i], sc))
        if len(preds) > chunk_size:
            log.info("scored %d/%d", len(rows), len(preds))
    return rows


def _row(p: Prediction, s: Sample, t: Target, sc: Score) -> dict[str, Any]:
    return {
        "id": p.id, "qa": sc.qa, "prediction": sc.prediction, "format_ok": sc.format_ok,
        "correct": sc.correct, "reward": sc.reward, "method": sc.method, "issue": sc.issue,
        "mark": sc.mark, "judge_status": sc.judge_status,
        "answer": t.answer_letter if sc.qa == "close" else t.answer_text,
        "domain": s.domain, "dataset": s.dataset, "category": s.category, "question_type": s.question_type,
        "question_id": s.question_id,
    }


# --------------------------------------------------------------------------- summary

def _block(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    correct = sum(bool(r["correct"]) for r in rows)
    block: dict[str, Any] = {
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "mean_reward": sum(r["reward"] for r in rows) / n if n else None,
        "format_violation_rate": sum(not r["format_ok"] for r in rows) / n if n else None,
    }
    for key in ("domain", "category", "question_type"):
        groups: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            groups[r[key] or "(none)"].append(bool(r["correct"]))
        block[f"by_{key}"] = {g: {"n": len(v), "accuracy": sum(v) / len(v)} for g, v in sorted(groups.items())}
    block["issues"] = dict(sorted(Counter(r["issue"] for r in rows if r["issue"]).items()))
    block["methods"] = dict(sorted(Counter(r["method"] for r in rows).items()))
    return block


def summarize(rows: list[dict[str, Any]], mode: str, judge: Judge | None = None,
              n_samples: int | None = None) -> dict[str, Any]:
    overall = _block(rows)
    summary: dict[str, Any] = {
        "mode": mode,
        "n": overall["n"],
        "accuracy": overall["accuracy"],
        "format_violation_rate": overall["format_violation_rate"],
        "counts": {qa: sum(r["qa"] == qa for r in rows) for qa in QA_TYPES},
        "overall": overall,
    }
    for qa in QA_TYPES:
        sub = [r for r in rows if r["qa"] == qa]
        if sub:
            summary[qa] = _block(sub)
    if n_samples is not None:
        summary["counts"]["samples_without_prediction"] = max(0, n_samples - len({r["id"] for r in rows}))
    statuses = Counter(r["judge_status"] for r in rows if r["judge_status"])
    summary["judge"] = {
        "settings": settings_dict(judge),
        "counters": judge.counters if judge else None,
        "statuses": dict(sorted(statuses.items())),
        "unjudged": statuses.get("unjudged", 0),
        **judge_health(rows, judge.settings.max_failure_rate if judge else None),
    }
    note = summary["judge"]["unmeasured"]
    if note:  # the fallback marks are not a measurement: no accuracy for OpenQA or pooled
        for block in (summary, summary["overall"], summary.get("open") or {}):
            block.update(accuracy=None, unmeasured=note)
            for key in ("domain", "category", "question_type"):
                for v in block.get(f"by_{key}", {}).values():
                    v.update(accuracy=None)
    return summary


def judge_health(rows: Sequence[Mapping[str, Any]], max_failure_rate: float | None) -> dict[str, Any]:
    """How many answers went to the judge, how many got the fallback mark instead (failed,
    skipped by the circuit breaker, unparsable, over budget), and `unmeasured`: a note when
    that share exceeds max_failure_rate (then OpenQA accuracy is not a measurement), else None."""
    asked = [r for r in rows if r.get("judge_status") not in (None, "unjudged")]
    failed = sum(r["judge_status"] in FALLBACK_STATUSES for r in asked)
    rate = failed / len(asked) if asked else None
    over = rate is not None and max_failure_rate is not None and rate > max_failure_rate
    return {"asked": len(asked), "failed": failed, "failure_rate": rate, "max_failure_rate": max_failure_rate,
            "unmeasured": f"judge failed: {failed} of {len(asked)}" if over else None}


def judge_failure_message(judge_summary: Mapping[str, Any]) -> str:
    j = judge_summary
    return (f"the judge failed on {j['failed']} of {j['asked']} OpenQA answers "
            f"({100 * j['failure_rate']:.0f}% > judge.max_failure_rate={j['max_failure_rate']}): OpenQA accuracy "
            "is reported as unmeasured; every file is written, and rerunning when the judge is back asks it "
            "only about the failed answers (verdicts are cached)")


def format_summary(summary: dict[str, Any]) -> str:
    def pct(x: float | None, block: Mapping[str, Any] | None = None) -> str:
        if x is None and block is not None and block.get("unmeasured"):
            return f"n/a ({block['unmeasured']})"
        return "-" if x is None else f"{100 * x:.1f}"

    accuracy = f"n/a ({summary['unmeasured']})" if summary.get("unmeasured") else f"{pct(summary['accuracy'])}%"
    lines = [(f"mode: {summary['mode']}   predictions: {summary['n']}   accuracy: {accuracy}   "
              f"format violations: {pct(summary['format_violation_rate'])}%"),
             "", "| group | n | accuracy % |", "|---|---|---|"]
    for qa in QA_TYPES:
        if qa not in summary:
            continue
        b = summary[qa]
        lines.append(f"| {qa}QA | {b['n']} | {pct(b['accuracy'], b)} |")
        for key in ("domain", "category"):
            for g, v in b[f"by_{key}"].items():
                lines.append(f"| {qa} · {g} | {v['n']} | {pct(v['accuracy'], b)} |")
    j = summary["judge"]
    if j["counters"]:
        c = j["counters"]
        skipped = (f", circuit opened {c['breaker_opens']} times, {c['breaker_skips']} calls skipped (judge down)"
                   if c.get("breaker_opens") else "")
        lines.append(f"\njudge: calls {c['calls']}, cache hits {c['cache_hits']}, failures {c['failures']}, "
                     f"unparsable {c['unparsable']}, budget exhausted {c['budget_exhausted']}{skipped}")
    if j["unjudged"]:
        lines.append(f"\n{j['unjudged']} OpenQA answers needed a judge and had none (scored incorrect): "
                     "add judge=vllm_local or judge=qwen_max")
    return "\n".join(lines)


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json_text(r) + "\n" for r in rows)


def _load_samples(data_cfg: Any) -> list[Sample]:
    from egoadapt.data.load import load_samples

    return load_samples(data_cfg)


# --------------------------------------------------------------------------- command

def main(cfg: Any) -> int:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from egoadapt.data.errors import DataError

    if cfg.mode not in MODES:
        print(f"egoadapt score: mode must be one of {', '.join(MODES)}, got {cfg.mode!r}", file=sys.stderr)
        return 2
    bad: list[str] = []  # bad prediction lines: named, counted, skipped; never the whole run
    try:
        check_judge_config(cfg.judge)  # preflight: a judge that cannot work fails before anything loads
        preds = read_predictions(cfg.predictions, bad)
        samples = {s.id: s for s in _load_samples(cfg.data)}
        scoring = ScoringConfig.from_mapping(OmegaConf.to_container(cfg.reward, resolve=True), mode=cfg.mode)
        judge = Judge.from_config(cfg.judge)
    except (ScoreInputError, DataError, ValueError, OmegaConfBaseException) as e:
        print(f"egoadapt score: {e}", file=sys.stderr)
        return 2

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        rows = score_records(preds, samples, scoring, judge, cfg.chunk_size, str(cfg.predictions), bad)
        summary = summarize(rows, cfg.mode, judge, n_samples=len(samples))
    finally:
        if judge is not None:
            judge.close()
    if bad:
        print("egoadapt score: skipped " + _bad_lines_message(bad), file=sys.stderr)
    if not rows:  # nothing scorable: the file or the annotations are wrong, not one line
        print("egoadapt score: no prediction could be scored", file=sys.stderr)
        return 2
    summary["predictions"] = os.path.abspath(cfg.predictions)
    summary["bad_lines"] = {"count": len(bad), "first": bad[:MAX_REPORTED_ERRORS]}
    write_atomic(out / "scores.jsonl", _jsonl(rows))
    write_atomic(out / "summary.json", json_text(summary, indent=2) + "\n")
    write_atomic(out / "score_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    print(format_summary(summary))
    print(f"\nwrote {out / 'scores.jsonl'} and {out / 'summary.json'}")
    if summary["judge"]["unmeasured"]:
        print(f"egoadapt score: {judge_failure_message(summary['judge'])}", file=sys.stderr)
        return EXIT_JUDGE_FAILED
    return 0
