"""`egoadapt eval sweep=DIR ...`: evaluate every job of a training sweep (a Hydra multirun folder).

Each job's `final/` is evaluated into `<job>/<eval_subdir>/` with the command's other settings
(data, qa, backend, ...) and the job's own `split.json` (its test side) unless `split.manifest=`
is given: the layout `egoadapt compare DIR` ranks. Resumable: a job whose evaluation is complete
for the same weights, data and settings is skipped, one stopped midway resumes (eval's own
predictions log); a job without `final/` (failed, or still training) is listed as missing.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from egoadapt.eval.generate import EvalError
from egoadapt.eval.ranking import sweep_jobs
from egoadapt.eval.run import evaluate, generation_identity, input_errors, run_config

log = logging.getLogger("egoadapt.eval")


def job_config(cfg: DictConfig, job: Path) -> DictConfig:
    """The eval config of one job: its final/ into <job>/<eval_subdir>/."""
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        job_cfg.sweep = None
        job_cfg.checkpoint = str(job / "final")
        job_cfg.out = str(job / str(cfg.eval_subdir))
        if not cfg.split.get("manifest") and (job / "split.json").is_file():
            job_cfg.split.manifest = str(job / "split.json")
    return job_cfg


def already_evaluated(cfg: DictConfig) -> bool:
    """results.json is there, was made from these weights, data, split and settings, and is whole
    (a judge that failed is asked again: eval rescores with its cached verdicts)."""
    from egoadapt.data.split import file_sha256

    out = Path(cfg.out)
    try:
        results = json.loads((out / "results.json").read_text())
        identity = json.loads((out / "generation.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    manifest = cfg.split.get("manifest")
    split = results.get("split") or {}
    same_split = split.get("hash") == (file_sha256(manifest) if manifest else "all") and \
        split.get("side") == (cfg.split.get("side", "test") if manifest else "all")
    roundtrip = json.loads(json.dumps([generation_identity(cfg), run_config(cfg)]))
    whole = not (results.get("judge") or {}).get("unmeasured") and not results.get("failed")
    return whole and same_split and [identity, results.get("config")] == roundtrip


def evaluate_sweep(cfg: DictConfig) -> dict[str, Any]:
    """{"folder", "jobs": [{"job", "status": evaluated | already evaluated | missing final/, "out",
    "accuracy", "judge_unmeasured"}]}, in job order."""
    from egoadapt.tracking import log_evaluation

    folder = Path(str(cfg.sweep))
    for key in ("checkpoint", "out"):
        if not OmegaConf.is_missing(cfg, key) and cfg.get(key):
            raise EvalError(f"sweep={folder} evaluates each job's final/ into <job>/{cfg.eval_subdir}/: "
                            f"leave {key}= out")
    if not folder.is_dir():
        raise EvalError(f"sweep={folder}: no such folder")
    jobs = sweep_jobs(folder)
    if not jobs:
        raise EvalError(f"sweep={folder}: no job folders (a job folder holds .hydra/overrides.yaml: "
                        "the out= of `egoadapt train -m ...`)")
    rows = []
    for job in jobs:
        job_cfg = job_config(cfg, job)
        row = {"job": job.name, "out": job_cfg.out, "accuracy": None, "judge_unmeasured": False}
        if not (job / "final" / "config.json").is_file():
            row["status"] = "missing final/"
        elif already_evaluated(job_cfg):
            row["status"] = "already evaluated"
            row["accuracy"] = json.loads((Path(job_cfg.out) / "results.json").read_text())["summary"].get("accuracy")
        else:
            log.info("job %s: evaluating %s into %s", job.name, job_cfg.checkpoint, job_cfg.out)
            results = evaluate(job_cfg)
            log_evaluation(job_cfg, results)  # logger=wandb: into the job's own training run
            row.update(status="evaluated", accuracy=results["summary"].get("accuracy"),
                       judge_unmeasured=bool(results["judge"].get("unmeasured")))
        rows.append(row)
    if all(r["status"] == "missing final/" for r in rows):
        raise EvalError(f"sweep={folder}: no job has a final/ yet ({len(rows)} jobs)")
    return {"folder": str(folder), "jobs": rows}


def sweep_markdown(result: dict[str, Any]) -> str:
    lines = [f"# Sweep {result['folder']}", "", "| job | status | accuracy % | evaluation |", "|---|---|---|---|"]
    for r in result["jobs"]:
        acc = "-" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
        where = "-" if r["status"] == "missing final/" else os.path.relpath(r["out"], result["folder"])
        lines.append(f"| {r['job']} | {r['status']} | {acc} | {where} |")
    return "\n".join(lines) + "\n"


def main(cfg: DictConfig) -> int:
    from egoadapt.eval.score import EXIT_JUDGE_FAILED

    try:
        result = evaluate_sweep(cfg)
    except input_errors() as e:
        print(f"egoadapt eval: {e}", file=sys.stderr)
        return 2
    print(sweep_markdown(result))
    missing = [r["job"] for r in result["jobs"] if r["status"] == "missing final/"]
    if missing:
        print(f"jobs without final/ (failed or still training): {', '.join(missing)}; rerun when they finish")
    print(f"rank them: egoadapt compare {result['folder']} out=DIR [metric=NAME]")
    if any(r["judge_unmeasured"] for r in result["jobs"]):
        print("egoadapt eval: the judge failed on some jobs (OpenQA unmeasured); rerun when it is back",
              file=sys.stderr)
        return EXIT_JUDGE_FAILED
    return 0
