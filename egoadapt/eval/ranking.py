"""A training sweep's evaluations ranked (`egoadapt compare DIR` on a Hydra multirun folder).

Job N lives in `<folder>/N/` with `.hydra/overrides.yaml`; its evaluation is
`<folder>/N/<eval_subdir>/results.json` (eval_subdir defaults to `eval`, i.e. `egoadapt eval ...
out=<folder>/N/eval`, what `egoadapt eval sweep=DIR` writes), or else the single results.json found
anywhere inside the job folder. Jobs are ranked by `metric`, their swept values as columns:
sweep.{json,csv,md}.
"""
from __future__ import annotations

import csv
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from egoadapt.data.schema import QA_TYPES
from egoadapt.eval.report import ALL, Evaluation, ResultsError, find_row, key_str, load_evaluation, pct

log = logging.getLogger(__name__)


def is_multirun(path: Path) -> bool:
    if not path.is_dir() or (path / "results.json").exists():
        return False
    return (path / "multirun.yaml").exists() or any((d / ".hydra" / "overrides.yaml").is_file()
                                                    for d in path.iterdir() if d.is_dir())


def parse_overrides(path: Path) -> dict[str, str]:
    import yaml

    items = yaml.safe_load(path.read_text()) or []
    out = {}
    for it in items:
        k, _, v = str(it).partition("=")
        out[k.lstrip("+~")] = v
    return out


def job_results(job: Path, eval_subdir: str) -> Path | None:
    preferred = job / eval_subdir / "results.json"
    if preferred.is_file():
        return preferred
    found = sorted(p for p in job.rglob("results.json") if ".hydra" not in p.parts)
    if len(found) > 1:
        raise ResultsError(f"{job}: several results.json ({', '.join(str(p.relative_to(job)) for p in found)}); "
                           f"put the job's evaluation in {job.name}/{eval_subdir}/ or set eval_subdir=")
    return found[0] if found else None


def sweep_jobs(folder: Path) -> list[Path]:
    """A multirun folder's job folders (those with .hydra/overrides.yaml), in job order."""
    dirs = [d for d in folder.iterdir() if d.is_dir() and (d / ".hydra" / "overrides.yaml").is_file()]
    return sorted(dirs, key=lambda d: (0, int(d.name), "") if d.name.isdigit() else (1, 0, d.name))


def load_sweep(folder: Path, eval_subdir: str = "eval") -> tuple[list[tuple[str, dict[str, str], Evaluation]],
                                                                  list[str]]:
    """([(job, overrides, evaluation)] in job order, [jobs without an evaluation])."""
    jobs, missing = [], []
    for d in sweep_jobs(folder):
        res = job_results(d, eval_subdir)
        if res is None:
            missing.append(d.name)
            continue
        jobs.append((d.name, parse_overrides(d / ".hydra" / "overrides.yaml"), load_evaluation(res.parent,
                                                                                              f"job {d.name}")))
    if missing:
        log.warning("%s: no evaluation in jobs %s (expected <job>/%s/results.json)", folder, missing, eval_subdir)
    if not jobs:
        raise ResultsError(f"{folder}: no job has an evaluation (expected <job>/{eval_subdir}/results.json: run "
                           f"`egoadapt eval ... out={folder}/<job>/{eval_subdir}`)")
    return jobs, missing


METRIC_FIELDS = {"accuracy": ("micro", "accuracy"), "macro_accuracy": ("macro", "accuracy"),
                 "format_violation_rate": ("micro", "format_violation_rate")}


def metric_row(metric: str) -> tuple[tuple[str, str, str, str], str]:
    """(table row key, field) of a metric name: [close.|open.]accuracy | macro_accuracy |
    format_violation_rate, or QA/DOMAIN/CATEGORY/STAT (accuracy of that row)."""
    if metric.count("/") == 3:
        return tuple(metric.split("/")), "accuracy"  # type: ignore[return-value]
    qa, name = ALL, metric
    for q in (*QA_TYPES, ALL):
        for sep in (".", "_"):
            if metric.startswith(q + sep) and metric[len(q) + 1:] in METRIC_FIELDS:
                qa, name = q, metric[len(q) + 1:]
    if name not in METRIC_FIELDS:
        names = [f"{p}{n}" for p in ("", "close.", "open.") for n in METRIC_FIELDS]
        raise ResultsError(f"metric={metric!r}: choose one of {', '.join(names)}, or a table row "
                           "QA/DOMAIN/CATEGORY/STAT such as close/surgery/all/micro")
    stat, field_ = METRIC_FIELDS[name]
    return (qa, ALL, ALL, stat), field_


def rank_sweep(jobs: Sequence[tuple[str, dict[str, str], Evaluation]], metric: str) -> dict[str, Any]:
    """sweep.json: metric, order, swept keys, and the jobs best first."""
    key, field_ = metric_row(metric)
    ascending = field_ == "format_violation_rate"
    keys = sorted({k for _, o, _ in jobs for k in o})
    swept = [k for k in keys if len({o.get(k) for _, o, _ in jobs}) > 1] or keys
    rows = []
    for job, overrides, ev in jobs:
        r = find_row(ev.results["table"], key)
        s = ev.results.get("summary", {})
        rows.append({"job": job, "path": str(ev.path), "overrides": {k: overrides.get(k) for k in swept},
                     "metric": None if r is None else r.get(field_),
                     "ci_low": None if r is None or field_ != "accuracy" else r.get("ci_low"),
                     "ci_high": None if r is None or field_ != "accuracy" else r.get("ci_high"),
                     "n": None if r is None else r.get("n"),
                     **{k: s.get(k) for k in ("accuracy", "macro_accuracy", "close_accuracy", "open_accuracy")}})
    rows.sort(key=lambda r: (r["metric"] is None, (r["metric"] or 0) * (1 if ascending else -1)))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return {"metric": metric, "row": key_str(key), "field": field_, "ascending": ascending, "swept": swept,
            "jobs": rows}


def sweep_markdown(sweep: Mapping[str, Any], folder: Path, missing: Sequence[str]) -> str:
    swept = sweep["swept"]
    order = "lower is better" if sweep["ascending"] else "higher is better"
    lines = [f"# Sweep {folder}: ranked by {sweep['metric']} ({sweep['row']}, {order})", "",
             "| rank | job | " + " | ".join(swept) + f" | {sweep['metric']} % | CI | accuracy % | macro % |",
             "|---|---|" + "---|" * (len(swept) + 4)]
    for r in sweep["jobs"]:
        ci = "-" if r["ci_low"] is None else f"[{pct(r['ci_low'])}, {pct(r['ci_high'])}]"
        lines.append(f"| {r['rank']} | {r['job']} | " + " | ".join(str(r["overrides"].get(k)) for k in swept)
                     + f" | {pct(r['metric'])} | {ci} | {pct(r['accuracy'])} | {pct(r['macro_accuracy'])} |")
    if missing:
        lines += ["", f"Jobs without an evaluation: {', '.join(missing)}"]
    return "\n".join(lines) + "\n"


def sweep_csv(sweep: Mapping[str, Any]) -> str:
    fields = ["rank", "job", *sweep["swept"], "metric", "ci_low", "ci_high", "n", "accuracy", "macro_accuracy",
              "close_accuracy", "open_accuracy", "path"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in sweep["jobs"]:
        flat = {**{k: v for k, v in r.items() if k != "overrides"}, **r["overrides"]}
        w.writerow({k: "" if flat.get(k) is None else flat.get(k) for k in fields})
    return buf.getvalue()
