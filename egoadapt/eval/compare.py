"""`egoadapt compare DIR... out=DIR`: evaluations side by side, or a sweep ranked.

Evaluations (folders written by `egoadapt eval`: results.json + scores.jsonl) are
compared cell by cell (the table of `egoadapt.eval.report`) against the first one:
each run's accuracy with its interval, and for every other run the delta to the first
with a paired-bootstrap interval and p-value over the questions both answered, and
McNemar's exact test on the questions one run got right and the other wrong. Runs
evaluated on different split manifests (different hash) are refused unless
`allow_mismatched_splits=true`: their numbers would not measure the same thing. So are runs
whose questions were asked with different prompts (wording or domain-context lines, results.json
config.prompt) unless `allow_mismatched_prompts=true` (a prompt ablation).

A Hydra multirun folder (`egoadapt train -m ...` then an evaluation per job) is ranked
by `metric` (`egoadapt.eval.ranking`), then its jobs' evaluations compared as above.

Writes compare.{json,csv,md}, accuracy_by_domain.png and accuracy_by_task.png (and for
sweeps sweep.{json,csv,md}), each atomically.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from egoadapt.data.schema import QA_NAMES, QA_TYPES
from egoadapt.eval.ranking import is_multirun, load_sweep, rank_sweep, sweep_csv, sweep_markdown
from egoadapt.eval.report import (
    ALL,
    KEY_FIELDS,
    Evaluation,
    ResultsError,
    category_order,
    find_row,
    key_str,
    load_evaluation,
    pct,
    row_key,
    select,
)
from egoadapt.eval.stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, mcnemar_exact, paired_bootstrap
from egoadapt.files import atomic_path, write_atomic

log = logging.getLogger(__name__)

TITLES = {**QA_NAMES, ALL: "both QA types"}
SIGNIFICANCE = 0.05


class CompareError(ResultsError):
    """Evaluations that cannot be compared as asked (labels, splits, prompts, arguments)."""


def default_labels(paths: Sequence[Path]) -> list[str]:
    """Folder names; the shortest path suffix that tells them apart when names repeat."""
    parts = [p.resolve().parts for p in paths]
    for depth in range(1, max(len(x) for x in parts) + 1):
        labels = ["/".join(x[-depth:]) for x in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{i}:{p}" for i, p in enumerate(paths)]


def sampling_rate(results: Mapping[str, Any]) -> str:
    """A run's frame sampling rate in words, from its results.json: `frames.fps` when it was set
    (the sampling-rate ablation), else the data's own rates."""
    sampling = (results.get("config") or {}).get("sampling")
    if not sampling:
        return "rate not recorded"
    if sampling.get("frames.fps"):
        return f"{float(sampling['frames.fps']):g} fps"
    return "the data's own fps"


def label_by_rate(evals: Sequence[Evaluation]) -> None:
    """When the runs were sampled at different rates, say so in their default labels."""
    rates = [sampling_rate(e.results) for e in evals]
    if len(set(rates)) > 1:
        for e, rate in zip(evals, rates):
            e.label = f"{e.label} @ {rate}"


def check_splits(evals: Sequence[Evaluation], allow_mismatch: bool) -> bool:
    """True when every run used the same split; raises on a mismatch unless allowed."""
    hashes = {e.split_hash for e in evals}
    if len(hashes) <= 1:
        return True
    detail = "; ".join(f"{e.label}: {e.split_hash[:12]} ({(e.results.get('split') or {}).get('manifest') or 'all'})"
                       for e in evals)
    if not allow_mismatch:
        raise CompareError(f"the evaluations used different splits ({detail}). Their accuracies are not comparable; "
                           "re-evaluate on one manifest, or pass allow_mismatched_splits=true")
    log.warning("comparing evaluations made on different splits (%s)", detail)
    return False


def prompt_of(e: Evaluation) -> dict[str, Any] | None:
    """The wording its questions were asked with (results.json config.prompt; None before it was recorded)."""
    return (e.results.get("config") or {}).get("prompt")


def describe_prompt(prompt: Mapping[str, Any] | None) -> str:
    if not prompt:
        return "not recorded"
    context = ", ".join(f"{d} context" for d in sorted(prompt.get("domain_context") or {}))
    return f"'{prompt.get('name')}' {str(prompt.get('sha256'))[:12]}" + (f" + {context}" if context else "")


def check_prompts(evals: Sequence[Evaluation], allow_mismatch: bool) -> bool:
    """True when every run asked its questions with the same wording (prompt config and domain
    context lines; runs from before it was recorded are not checked); raises on a mismatch
    unless allowed: a prompt or domain-context ablation says so with allow_mismatched_prompts=true."""
    if len({p["sha256"] for p in map(prompt_of, evals) if p}) <= 1:
        return True
    detail = "; ".join(f"{e.label}: {describe_prompt(prompt_of(e))}" for e in evals)
    if not allow_mismatch:
        raise CompareError(f"the evaluations asked their questions with different prompts ({detail}). Their "
                           "accuracies would mix the prompt's effect into the model's; re-evaluate with one prompt, "
                           "or, to measure the prompt itself (a domain-context ablation), pass "
                           "allow_mismatched_prompts=true")
    log.warning("comparing evaluations asked with different prompts (%s)", detail)
    return False


# --------------------------------------------------------------------------- the comparison

def _paired(base: Evaluation, other: Evaluation, key: tuple[str, ...], n_resamples: int, seed: int,
            confidence: float) -> dict[str, Any]:
    qa, domain, category, stat = key
    a_rows = select(base.scores, qa, domain, category)
    b_by = {(str(r["id"]), r["qa"]): r for r in select(other.scores, qa, domain, category)}
    pairs = [(r, b_by[(str(r["id"]), r["qa"])]) for r in a_rows if (str(r["id"]), r["qa"]) in b_by]
    a = [float(bool(x["correct"])) for x, _ in pairs]
    b = [float(bool(y["correct"])) for _, y in pairs]
    strata = [x.get("domain") or "(none)" for x, _ in pairs] if stat == "macro" else None
    boot = paired_bootstrap(a, b, strata, n_resamples=n_resamples, seed=seed, key=f"{other.label}|{key_str(key)}",
                            confidence=confidence)
    return {**boot.to_dict(), **mcnemar_exact(a, b).to_dict()}


def compare(evals: Sequence[Evaluation], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
            confidence: float = DEFAULT_CONFIDENCE, same_split: bool = True) -> dict[str, Any]:
    """compare.json: runs, baseline, bootstrap settings and one row per cell of the baseline's
    table: {qa, domain, category, stat, n, runs: {label: {accuracy, ci_low, ci_high, n}},
    deltas: {label: {delta, delta_ci_low, delta_ci_high, p_value, n_paired, mcnemar_gains,
    mcnemar_losses, mcnemar_p}}} (no delta for the baseline; `delta` is on the paired questions,
    so it equals the difference of the accuracies when both runs answered the same questions;
    `p_value` is the bootstrap's, `mcnemar_p` McNemar's exact test on the same pairs)."""
    if not evals:
        raise CompareError("nothing to compare: give evaluation folders (egoadapt compare DIR... out=DIR)")
    base = evals[0]
    rows = []
    for brow in base.results["table"]:
        key = row_key(brow)
        row: dict[str, Any] = dict(zip(KEY_FIELDS, key))
        row.update(n=brow["n"], runs={}, deltas={})
        for e in evals:
            r = find_row(e.results["table"], key)
            row["runs"][e.label] = None if r is None else {k: r.get(k) for k in ("accuracy", "ci_low", "ci_high", "n")}
            if e is base:
                continue
            unmeasured = brow.get("unmeasured") or (r or {}).get("unmeasured")  # judge failed: no OpenQA delta
            if base.scores and e.scores and not unmeasured:
                row["deltas"][e.label] = _paired(base, e, key, n_resamples, seed, confidence)
            else:  # no per-question scores: the plain difference, without a paired test
                d = None if r is None or brow["accuracy"] is None or r["accuracy"] is None else \
                    r["accuracy"] - brow["accuracy"]
                row["deltas"][e.label] = {"n_paired": 0, "delta": d, "delta_ci_low": None, "delta_ci_high": None,
                                          "p_value": None, "mcnemar_gains": None, "mcnemar_losses": None,
                                          "mcnemar_p": None}
        rows.append(row)
    return {
        "runs": [{"label": e.label, "path": str(e.path), "split_hash": e.split_hash,
                  "checkpoint": e.results.get("config", {}).get("checkpoint"),
                  "backend": e.results.get("config", {}).get("backend"),
                  "mode": e.results.get("config", {}).get("mode"),
                  "sampling_rate": sampling_rate(e.results)} for e in evals],
        "baseline": base.label,
        "same_split": same_split,
        "bootstrap": {"resamples": n_resamples, "seed": seed, "confidence": confidence,
                      "method": "paired percentile bootstrap over questions both runs answered; macro rows "
                                "resample within domains; two-sided p for delta = 0",
                      "mcnemar": "McNemar's exact test (two-sided binomial test of gains vs losses among the "
                                 "questions exactly one run got right; macro rows pool the domains); * marks "
                                 f"mcnemar_p < {SIGNIFICANCE}"},
        "table": rows,
    }


# --------------------------------------------------------------------------- rendering

def signed_pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def _acc(r: Mapping[str, Any] | None) -> str:
    if not r or r.get("accuracy") is None:
        return "-"
    return f"{pct(r['accuracy'])} [{pct(r['ci_low'])}, {pct(r['ci_high'])}]"


def _delta(d: Mapping[str, Any] | None) -> str:
    if not d or d.get("delta") is None:
        return "-"
    if d.get("p_value") is None:
        return signed_pct(d["delta"])
    mcnemar = d.get("mcnemar_p")
    star = " *" if mcnemar is not None and mcnemar < SIGNIFICANCE else ""
    return (f"{signed_pct(d['delta'])} [{signed_pct(d['delta_ci_low'])}, {signed_pct(d['delta_ci_high'])}] "
            f"p={d['p_value']:.3f}" + ("" if mcnemar is None else f", McNemar p={mcnemar:.3f}") + star)


def compare_markdown(result: Mapping[str, Any]) -> str:
    labels = [r["label"] for r in result["runs"]]
    base, others = labels[0], labels[1:]
    table = result["table"]
    conf = round(100 * result["bootstrap"]["confidence"])
    split = (f"split `{result['runs'][0]['split_hash'][:12]}` for every run" if result["same_split"]
             else "**different splits** (allowed by allow_mismatched_splits=true): deltas are not comparable")
    lines = [f"# Comparison: {' vs '.join(labels)}", "",
             (f"{split}. Accuracy in % [{conf}% bootstrap interval]; Δ: points vs `{base}` on the questions both "
              f"answered, [{conf}% paired-bootstrap interval], p (two-sided, bootstrap); McNemar p: McNemar's "
              f"exact test on the questions exactly one of the two runs got right; * McNemar p < {SIGNIFICANCE}.")]
    if not result.get("same_prompt", True):  # a prompt ablation: which column was asked how
        lines += ["", "**Different prompts** (allowed by allow_mismatched_prompts=true): "
                  + "; ".join(f"`{r['label']}` {describe_prompt(r.get('prompt'))}" for r in result["runs"]) + "."]
    rates = [r.get("sampling_rate") for r in result["runs"]]
    if len(set(rates)) > 1:  # the sampling-rate ablation: which column is which rate
        lines += ["", "Frame sampling: " + "; ".join(f"`{lab}` {rate}" for lab, rate in zip(labels, rates)) + "."]
    qas = [q for q in QA_TYPES if any(r["qa"] == q for r in table)]
    if len(qas) > 1:
        qas.append(ALL)
    domains = sorted({r["domain"] for r in table if r["domain"] != ALL})
    cats = category_order({r["category"] for r in table if r["category"] != ALL})
    groups = [("overall (micro)", ALL, ALL, "micro"), ("overall (macro over domains)", ALL, ALL, "macro")]
    groups += [(f"domain: {d}", d, ALL, "micro") for d in domains]
    groups += [(f"task: {c}", ALL, c, "micro") for c in cats]
    header = "| group | n | " + " | ".join([base] + [x for o in others for x in (o, f"Δ {o}")]) + " |"
    for qa in qas:
        lines += ["", f"## {TITLES[qa]}", "", header, "|---|---|" + "---|" * (1 + 2 * len(others))]
        for label, d, c, stat in groups:
            row = next((r for r in table if (r["qa"], r["domain"], r["category"], r["stat"]) == (qa, d, c, stat)), None)
            if row is None:
                continue
            cells = [_acc(row["runs"].get(base))]
            for o in others:
                cells += [_acc(row["runs"].get(o)), _delta(row["deltas"].get(o))]
            lines.append(f"| {label} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def compare_csv(result: Mapping[str, Any]) -> str:
    labels = [r["label"] for r in result["runs"]]
    fields = [*KEY_FIELDS, "n"]
    for i, lab in enumerate(labels):
        fields += [f"{lab}.accuracy", f"{lab}.ci_low", f"{lab}.ci_high", f"{lab}.n"]
        if i:
            fields += [f"{lab}.delta", f"{lab}.delta_ci_low", f"{lab}.delta_ci_high", f"{lab}.p_value",
                       f"{lab}.n_paired", f"{lab}.mcnemar_p", f"{lab}.mcnemar_gains", f"{lab}.mcnemar_losses"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in result["table"]:
        flat = {k: r[k] for k in (*KEY_FIELDS, "n")}
        for lab in labels:
            for k, v in (r["runs"].get(lab) or {}).items():
                flat[f"{lab}.{k}"] = v
            for k, v in (r["deltas"].get(lab) or {}).items():
                flat[f"{lab}.{k}"] = v
        w.writerow({k: "" if flat.get(k) is None else flat.get(k) for k in fields})
    return buf.getvalue()


def plot(result: Mapping[str, Any], out: Path) -> list[Path]:
    """Grouped bars (one per run, with its interval) per domain and per task family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    table = result["table"]
    labels = [r["label"] for r in result["runs"]]
    qas = [q for q in QA_TYPES if any(r["qa"] == q for r in table)]
    written = []
    for name, field_, groups in (
        ("accuracy_by_domain.png", "domain", sorted({r["domain"] for r in table if r["domain"] != ALL})),
        ("accuracy_by_task.png", "category", category_order({r["category"] for r in table if r["category"] != ALL})),
    ):
        xs = ["overall", *groups]
        panel_width = max(5.0, 0.3 * len(xs) * len(labels) + 2.0)
        fig, axes = plt.subplots(1, len(qas), figsize=(panel_width * len(qas), 4.2), squeeze=False)
        width = 0.8 / len(labels)
        for ax, qa in zip(axes[0], qas):
            for i, lab in enumerate(labels):
                vals, lo, hi = [], [], []
                for g in xs:
                    key = {"qa": qa, "domain": ALL, "category": ALL, "stat": "micro"}
                    if g != "overall":
                        key[field_] = g
                    row = next((r for r in table if all(r[k] == v for k, v in key.items())), None)
                    run = (row or {}).get("runs", {}).get(lab) or {}
                    acc = run.get("accuracy")
                    vals.append(100 * acc if acc is not None else np.nan)
                    lo.append(100 * (acc - run["ci_low"]) if acc is not None and run.get("ci_low") is not None else 0)
                    hi.append(100 * (run["ci_high"] - acc) if acc is not None and run.get("ci_high") is not None else 0)
                pos = np.arange(len(xs)) + (i - (len(labels) - 1) / 2) * width
                ax.bar(pos, vals, width, yerr=[lo, hi], capsize=2, label=lab)
            ax.set_xticks(np.arange(len(xs)), xs, rotation=25, ha="right")
            ax.set_ylim(0, 100)
            ax.set_ylabel("accuracy %")
            ax.set_title(f"{TITLES[qa]} by {'task family' if field_ == 'category' else 'domain'}")
            ax.grid(axis="y", alpha=0.3)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="upper center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.92))  # room for the legend above the panels
        path = out / name
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------- command

def config(*overrides: str) -> Any:
    """conf/compare.yaml composed with Hydra overrides (`runs=[a,b]`, `out=DIR`, ...), for `run`."""
    from egoadapt.config.compose import compose

    return compose("compare", list(overrides))


def run(cfg: Any) -> dict[str, Any]:
    """The whole command from Python; returns compare.json's content (with `sweep` for sweeps)."""
    runs = [Path(str(r)) for r in (cfg.get("runs") or [])]
    if not runs:
        raise CompareError("give evaluation folders: egoadapt compare DIR DIR... out=DIR (or runs=[...])")
    if not cfg.get("out") or str(cfg.get("out")) == "???":
        raise CompareError("out=DIR is required")
    for r in runs:
        if not r.exists():
            raise CompareError(f"{r}: no such folder")
    out = Path(str(cfg.out))
    b = cfg.get("bootstrap") or {}
    stats_kw = {"n_resamples": int(b.get("resamples", DEFAULT_RESAMPLES)), "seed": int(b.get("seed", 0)),
                "confidence": float(b.get("confidence", DEFAULT_CONFIDENCE))}
    sweep, missing = None, []
    if any(is_multirun(r) for r in runs):
        if len(runs) > 1:
            raise CompareError("give one multirun folder, or several evaluation folders, not both")
        jobs, missing = load_sweep(runs[0], str(cfg.get("eval_subdir") or "eval"))
        sweep = rank_sweep(jobs, str(cfg.get("metric") or "accuracy"))
        evals = [ev for _, _, ev in jobs]
    else:
        labels = list(cfg.get("labels") or []) or default_labels(runs)
        if len(labels) != len(runs):
            raise CompareError(f"{len(labels)} labels for {len(runs)} runs")
        if len(set(labels)) != len(labels):
            raise CompareError(f"labels must differ, got {labels}")
        evals = [load_evaluation(r, lab) for r, lab in zip(runs, labels)]
        if not cfg.get("labels"):
            label_by_rate(evals)
    same = check_splits(evals, bool(cfg.get("allow_mismatched_splits")))
    same_prompt = check_prompts(evals, bool(cfg.get("allow_mismatched_prompts")))
    result = compare(evals, same_split=same, **stats_kw)
    result["same_prompt"] = same_prompt
    for entry, e in zip(result["runs"], evals):
        entry["prompt"] = prompt_of(e)
    out.mkdir(parents=True, exist_ok=True)
    if sweep is not None:
        result["sweep"] = sweep
        write_atomic(out / "sweep.csv", sweep_csv(sweep))
        write_atomic(out / "sweep.md", sweep_markdown(sweep, runs[0], missing))
        write_atomic(out / "sweep.json", json.dumps({**sweep, "folder": str(runs[0]), "missing": missing},
                                                    indent=2) + "\n")
    write_atomic(out / "compare.csv", compare_csv(result))
    write_atomic(out / "compare.md", compare_markdown(result))
    if cfg.plots:
        result["plots"] = [str(p) for p in plot(result, out)]
    write_atomic(out / "compare.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return result


def main(cfg: Any) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = run(cfg)
    except ResultsError as e:  # CompareError included
        print(f"egoadapt compare: {e}", file=sys.stderr)
        return 2
    out = Path(str(cfg.out))
    if "sweep" in result:
        print((out / "sweep.md").read_text())
    print((out / "compare.md").read_text())
    print(f"wrote {out}/compare.json, compare.csv, compare.md" + (", sweep.*" if "sweep" in result else "")
          + (", plots" if result.get("plots") else ""))
    from egoadapt.tracking import log_results

    tables = {"compare": out / "compare.csv", **({"sweep": out / "sweep.csv"} if "sweep" in result else {})}
    log_results(cfg, out, job_type="compare", tables=tables, images={Path(p).stem: Path(p) for p in result.get("plots") or []})
    return 0
