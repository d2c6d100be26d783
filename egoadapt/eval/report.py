"""An evaluation's results: the accuracy table with bootstrap intervals, and its files.

The table is a flat list of cells keyed by (qa, domain, category, stat):

    qa        all | close | open            ("all" pools both QA types)
    domain    a domain name | all
    category  a primary category | all
    stat      micro (mean over questions) | macro (mean over domains; only with domain=all)

Every row: n, correct, accuracy, ci_low, ci_high (percentile bootstrap; macro rows
resample within domains), format_violation_rate, and for macro rows n_domains. When the
judge failed above judge.max_failure_rate, the cells holding OpenQA answers have no
accuracy (null) and `unmeasured: "n/a (judge failed: K of N)"` instead.

Files (each written atomically): results.json (schema in `build_results`), results.csv
(the table), results.md (pivot tables for people), scores.jsonl (one scored row per
(id, qa): what `egoadapt compare` pairs on).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from egoadapt.data.schema import CATEGORIES, QA_NAMES, QA_TYPES
from egoadapt.eval.stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    bootstrap_ci,
    statistic,
)
from egoadapt.files import write_atomic

log = logging.getLogger(__name__)

SCHEMA = "egoadapt.eval.results/1"
ALL = "all"  # a table level that pools: both QA types, every domain, every category
QA_LEVELS = (ALL, *QA_TYPES)
KEY_FIELDS = ("qa", "domain", "category", "stat")
CSV_FIELDS = (*KEY_FIELDS, "n", "correct", "accuracy", "ci_low", "ci_high", "format_violation_rate", "n_domains",
              "unmeasured")


def row_key(row: Mapping[str, Any]) -> tuple[str, str, str, str]:
    return tuple(str(row[k]) for k in KEY_FIELDS)  # type: ignore[return-value]


def key_str(key: Sequence[str]) -> str:
    return "/".join(key)


def category_order(categories: set[str]) -> list[str]:
    """EgoCross's four task families first, in their usual order, then any others."""
    known = [c for c in CATEGORIES if c in categories]
    return known + sorted(categories - set(known))


def select(rows: Sequence[Mapping[str, Any]], qa: str, domain: str, category: str) -> list[Mapping[str, Any]]:
    """The scored rows of one cell (`all` matches everything)."""
    return [r for r in rows
            if (qa == ALL or r["qa"] == qa)
            and (domain == ALL or (r.get("domain") or "(none)") == domain)
            and (category == ALL or (r.get("category") or "(none)") == category)]


def cell_keys(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str, str]]:
    """Every cell the scored rows fill, in reading order."""
    keys = []
    for qa in QA_LEVELS:
        sub = select(rows, qa, ALL, ALL)
        if not sub:
            continue
        domains = sorted({r.get("domain") or "(none)" for r in sub})
        cats = category_order({r.get("category") or "(none)" for r in sub})
        keys += [(qa, ALL, ALL, "micro"), (qa, ALL, ALL, "macro")]
        keys += [(qa, d, ALL, "micro") for d in domains]
        for c in cats:
            keys += [(qa, ALL, c, "micro"), (qa, ALL, c, "macro")]
        keys += [(qa, d, c, "micro") for d in domains for c in cats if select(sub, qa, d, c)]
    return keys


def cell(rows: Sequence[Mapping[str, Any]], key: tuple[str, str, str, str], *,
         n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
         confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    qa, domain, category, stat = key
    sub = select(rows, qa, domain, category)
    correct = [float(bool(r["correct"])) for r in sub]
    strata = [r.get("domain") or "(none)" for r in sub] if stat == "macro" else None
    lo, hi = bootstrap_ci(correct, strata, n_resamples=n_resamples, seed=seed, key=key_str(key),
                          confidence=confidence)
    out: dict[str, Any] = dict(zip(KEY_FIELDS, key))
    out.update(n=len(sub), correct=int(sum(correct)), accuracy=statistic(correct, strata), ci_low=lo, ci_high=hi,
               format_violation_rate=(sum(not r["format_ok"] for r in sub) / len(sub)) if sub else None,
               n_domains=len(set(strata)) if strata else None)
    return out


def build_table(rows: Sequence[Mapping[str, Any]], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                confidence: float = DEFAULT_CONFIDENCE) -> list[dict[str, Any]]:
    return [cell(rows, k, n_resamples=n_resamples, seed=seed, confidence=confidence) for k in cell_keys(rows)]


def mark_unmeasured(table: list[dict[str, Any]], rows: Sequence[Mapping[str, Any]], note: str) -> None:
    """Fallback marks are no measurement: cells that hold OpenQA answers lose their accuracy."""
    for r in table:
        if any(x["qa"] == "open" for x in select(rows, r["qa"], r["domain"], r["category"])):
            r.update(correct=None, accuracy=None, ci_low=None, ci_high=None, unmeasured=f"n/a ({note})")


def find_row(table: Sequence[Mapping[str, Any]], key: Sequence[str]) -> Mapping[str, Any] | None:
    key = tuple(key)
    return next((r for r in table if row_key(r) == key), None)


def build_results(rows: Sequence[Mapping[str, Any]], *, config: Mapping[str, Any], split: Mapping[str, Any],
                  counts: Mapping[str, Any] | None = None, judge: Mapping[str, Any] | None = None,
                  timing: Mapping[str, Any] | None = None, n_resamples: int = DEFAULT_RESAMPLES,
                  seed: int = 0, confidence: float = DEFAULT_CONFIDENCE) -> dict[str, Any]:
    """results.json:

    schema     "egoadapt.eval.results/1"
    created    UTC ISO time
    config     the run: checkpoint, backend, mode, qa, generation settings, data files...
    split      {manifest: path | null, hash: sha256 of the manifest's bytes | "all", side}
    counts     samples, items (id x qa asked), predictions, scored, unscored, close, open
    summary    headline numbers: accuracy (all micro), macro_accuracy, close_/open_accuracy
               (+ _macro_accuracy), format_violation_rate, each with ci_low/ci_high
    table      the cells (module docstring)
    bootstrap  {resamples, seed, confidence, method}
    judge      settings (no key), counters, statuses, unjudged, asked, failed, failure_rate,
               max_failure_rate, unmeasured (from egoadapt.eval.score.summarize)
    timing     generation time and throughput of this invocation and of all predictions
    """
    table = build_table(rows, n_resamples=n_resamples, seed=seed, confidence=confidence)
    note = (judge or {}).get("unmeasured")
    if note:
        mark_unmeasured(table, rows, note)
    return {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": dict(config),
        "split": dict(split),
        "counts": dict(counts or {}),
        "summary": {**headline(table), **({"unmeasured": f"OpenQA: n/a ({note})"} if note else {})},
        "table": table,
        "bootstrap": {"resamples": n_resamples, "seed": seed, "confidence": confidence,
                      "method": "percentile; macro rows resample within domains"},
        "judge": dict(judge or {}),
        "timing": dict(timing or {}),
    }


def headline(table: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for qa in QA_LEVELS:
        prefix = "" if qa == ALL else f"{qa}_"
        for stat, name in (("micro", "accuracy"), ("macro", "macro_accuracy")):
            r = find_row(table, (qa, ALL, ALL, stat))
            if r is None:
                continue
            out[prefix + name] = r["accuracy"]
            out[prefix + name + "_ci"] = [r["ci_low"], r["ci_high"]]
            if stat == "micro":
                out[prefix + "n"] = r["n"]
                out[prefix + "format_violation_rate"] = r["format_violation_rate"]
    return out


# --------------------------------------------------------------------------- rendering

def pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}"


def table_csv(table: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in table:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in CSV_FIELDS})
    return buf.getvalue()


def _cell_text(r: Mapping[str, Any] | None) -> str:
    if r is None or not r["n"]:
        return "-"
    if r.get("unmeasured"):
        return f"{r['unmeasured']} (n={r['n']})"
    return f"{pct(r['accuracy'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}] (n={r['n']})"


def breaker_text(counters: Mapping[str, Any]) -> str:
    if not counters.get("breaker_opens"):
        return ""
    return (f"; judge circuit opened {counters['breaker_opens']} times, {counters.get('breaker_skips')} "
            "calls skipped (judge down)")


def results_markdown(results: Mapping[str, Any]) -> str:
    table, cfg, split = results["table"], results["config"], results["split"]
    conf = round(100 * float((results.get("bootstrap") or {}).get("confidence", DEFAULT_CONFIDENCE)))
    where = (f"{split.get('side', 'test')} side of `{split['manifest']}` (sha256 {str(split.get('hash'))[:12]})"
             if split.get("manifest") else "every record (no split manifest)")
    qas = [qa for qa in QA_TYPES if find_row(table, (qa, ALL, ALL, "micro"))]
    if len(qas) > 1:
        qas.append(ALL)
    names = {**QA_NAMES, ALL: "both"}
    domains = sorted({r["domain"] for r in table if r["domain"] != ALL})
    cats = category_order({r["category"] for r in table if r["category"] != ALL})
    s = results["summary"]
    j = results.get("judge") or {}
    lines = [
        f"# Evaluation: {cfg.get('checkpoint', '?')}", "",
        (f"backend `{cfg.get('backend')}`, scoring mode `{cfg.get('mode')}`, questions: {where}; "
         f"accuracy in %, [{conf}% bootstrap interval], n questions."), "",
        f"Format violations: {pct(s.get('format_violation_rate'))}%", "",
        *([f"**OpenQA accuracy is unmeasured** ({j['unmeasured']}; judge.max_failure_rate="
           f"{j.get('max_failure_rate')}): rescore when the judge is back.", ""] if j.get("unmeasured") else []),
        "| group | " + " | ".join(names[q] for q in qas) + " |",
        "|---|" + "---|" * len(qas),
    ]
    if not qas:
        n = results.get("counts", {}).get("unscored", 0)
        note = f"Nothing scored: none of the {n} predictions has a reference answer (pass data.answers=FILE)."
        return "\n".join([*lines[:4], note, ""])
    groups = [("overall (micro)", ALL, ALL, "micro"), ("overall (macro over domains)", ALL, ALL, "macro")]
    groups += [(f"domain: {d}", d, ALL, "micro") for d in domains]
    groups += [(f"task: {c}", ALL, c, "micro") for c in cats]
    for label, d, c, stat in groups:
        lines.append(f"| {label} | " + " | ".join(_cell_text(find_row(table, (q, d, c, stat))) for q in qas) + " |")
    for q in qas[: 2 if len(qas) > 1 else 1]:
        lines += ["", f"## {names[q]}: domain x task", "", "| domain | " + " | ".join(cats) + " |",
                  "|---|" + "---|" * len(cats)]
        for d in domains:
            lines.append(f"| {d} | " + " | ".join(_cell_text(find_row(table, (q, d, c, "micro"))) for c in cats)
                         + " |")
    if j.get("counters"):
        c = j["counters"]
        lines += ["", (f"Judge: calls {c.get('calls')}, cache hits {c.get('cache_hits')}, failures "
                       f"{c.get('failures')}, unparsable {c.get('unparsable')}, budget exhausted "
                       f"{c.get('budget_exhausted')}" + breaker_text(c))]
    if j.get("unjudged"):
        lines += ["", f"{j['unjudged']} OpenQA answers needed a judge and had none (scored incorrect)."]
    skipped = results.get("skipped") or []
    if skipped:
        ids = ", ".join(dict.fromkeys(str(x["id"]) for x in skipped[:20])) + (", ..." if len(skipped) > 20 else "")
        lines += ["", f"{len(skipped)} questions were skipped for unusable input (frames.on_error=skip) and are "
                      f"scored incorrect: {ids} (reasons in results.json)."]
    unscored = results.get("counts", {}).get("unscored")
    if unscored:
        lines += ["", f"{unscored} predictions have no reference answer and are not scored."]
    return "\n".join(lines) + "\n"


def write_results(out: str | os.PathLike, results: Mapping[str, Any],
                  scored_rows: Sequence[Mapping[str, Any]] | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if scored_rows is not None:
        write_atomic(out / "scores.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in scored_rows))
    write_atomic(out / "results.csv", table_csv(results["table"]))
    write_atomic(out / "results.md", results_markdown(results))
    # results.json last: its presence marks a finished evaluation
    write_atomic(out / "results.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")


def read_results(path: str | os.PathLike) -> dict[str, Any]:
    """results.json of an evaluation folder (or the file itself)."""
    p = Path(path)
    p = p / "results.json" if p.is_dir() else p
    return json.loads(p.read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- an evaluation read back

class ResultsError(ValueError):
    """A folder that is not a finished evaluation, or evaluations that cannot be read as asked."""


@dataclass
class Evaluation:
    label: str
    path: Path
    results: dict[str, Any]
    scores: list[dict[str, Any]] = field(default_factory=list)

    @property
    def split_hash(self) -> str:
        return str((self.results.get("split") or {}).get("hash"))


def load_evaluation(path: str | os.PathLike, label: str | None = None) -> Evaluation:
    p = Path(path)
    folder = p.parent if p.name == "results.json" else p
    results_path = folder / "results.json"
    if not results_path.is_file():
        raise ResultsError(f"{folder}: no results.json (not an `egoadapt eval` folder, or the evaluation "
                           "did not finish)")
    try:
        results = json.loads(results_path.read_text(encoding="utf-8"))
        table = results["table"]
        if not isinstance(table, list):
            raise TypeError("table is not a list")
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ResultsError(f"{results_path}: not an evaluation results file ({e})") from None
    scores = []
    scores_path = folder / "scores.jsonl"
    if scores_path.is_file():
        scores = [json.loads(line) for line in scores_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        log.warning("%s: no scores.jsonl: deltas without paired intervals", folder)
    return Evaluation(label or folder.name, folder, results, scores)
