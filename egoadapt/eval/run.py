"""`egoadapt eval checkpoint=PATH data.annotations=FILE [data.answers=FILE] [split.manifest=FILE]
backend=hf|vllm|openai out=DIR [qa=close|open|both] [submission.template=FILE submission.out=FILE]`

Steps: pick the questions (a manifest's test side, or every record), generate what
out/predictions.jsonl does not have yet (`egoadapt.eval.generate`), score every
prediction with the same code as `egoadapt score` (`egoadapt.eval.score`), write the
results (`egoadapt.eval.report`) and, when asked, the challenge submission
(`egoadapt.eval.submission`). `evaluate(cfg)` does it all from Python and returns the
results dict.

A folder remembers what generated its predictions (out/generation.json: checkpoint,
backend, generation, prompt and frame settings): resuming with different settings is
refused, since mixing two models' answers in one file would be silently wrong.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from egoadapt.data.schema import QA_MODES, QA_TYPES, Sample, has_answer_text
from egoadapt.eval.generate import (
    BACKENDS,
    EvalError,
    Item,
    PredictionsLog,
    eval_items,
    generate_predictions,
    scored_skip,
    skip_unusable,
)
from egoadapt.eval.openai_backend import OpenAIBackend, openai_identity
from egoadapt.files import write_atomic

log = logging.getLogger("egoadapt.eval")

MODES = ("official", "training")
EXIT_INCOMPLETE = 4  # results written, but some questions have no prediction (failed requests): rerun


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def preflight(cfg: DictConfig) -> None:
    """Config-only checks, before any data or model is loaded."""
    from egoadapt.config import ConfigError, check
    from egoadapt.inputs.families import UnknownFamily, check_family, check_pixel_limits
    from egoadapt.models.loading import ModelConfigError, check_model_path

    try:  # every key known, types and ranges, no secrets, out= sane (the CLI checked already; Python callers)
        check(cfg, "eval")
    except ConfigError as e:
        raise EvalError(str(e)) from None
    if cfg.get("backend") == "openai":
        from egoadapt.eval.openai_backend import check_openai_config

        check_openai_config(cfg.get("openai"))
        if OmegaConf.is_missing(cfg, "checkpoint"):  # the served model is what is evaluated: it names the run
            cfg.checkpoint = cfg.openai.model
    for key, hint in (("checkpoint", "checkpoint=PATH (a save_pretrained folder or a hub id)"),
                      ("out", "out=DIR (the evaluation folder)")):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            raise EvalError(f"{hint} is required")
    if cfg.backend not in BACKENDS:
        raise EvalError(f"backend={cfg.backend!r}: choose one of {', '.join(BACKENDS)}")
    if cfg.mode not in MODES:
        raise EvalError(f"mode={cfg.mode!r}: choose one of {', '.join(MODES)}")
    if cfg.qa not in QA_MODES:
        raise EvalError(f"qa={cfg.qa!r}: choose {', '.join(QA_MODES)}")
    sub = cfg.get("submission") or {}
    if bool(sub.get("template")) != bool(sub.get("out")):
        raise EvalError("a submission needs both submission.template=FILE and submission.out=FILE")
    if sub.get("template") and not Path(sub.template).is_file():
        raise EvalError(f"submission.template={sub.template}: no such file")
    manifest = cfg.split.get("manifest")
    if manifest and not Path(manifest).is_file():
        raise EvalError(f"split.manifest={manifest}: no such file")
    if cfg.split.get("side", "test") not in ("test", "train"):
        raise EvalError(f"split.side={cfg.split.side!r}: choose test or train")
    try:
        if cfg.backend != "openai":  # nothing is loaded here: the endpoint serves the model
            check_model_path(str(cfg.checkpoint))
            check_family(str(cfg.checkpoint))  # a model type without a family module fails here, naming the known
            check_pixel_limits(str(cfg.checkpoint), cfg.get("model"))
    except (ModelConfigError, UnknownFamily) as e:
        raise EvalError(f"checkpoint={cfg.checkpoint}: {e}") from None
    if cfg.qa in ("open", "both"):  # only OpenQA asks the judge
        from egoadapt.rewards.judge import JudgeConfigError, check_judge_config

        try:
            check_judge_config(cfg.get("judge"))
        except JudgeConfigError as e:
            raise EvalError(str(e)) from None


def eval_samples(cfg: DictConfig) -> tuple[list[Sample], dict[str, Any]]:
    """(the questions to evaluate, the split record for results.json)."""
    from egoadapt.data.load import load_samples
    from egoadapt.data.split import file_sha256, load_split

    samples = load_samples(cfg.data)
    check_domain_context(cfg.prompt, samples)
    manifest = cfg.split.get("manifest")
    if manifest:
        side = cfg.split.get("side", "test")
        chosen = load_split(manifest, samples, side)
        try:
            protocol = json.loads(Path(manifest).read_text()).get("protocol")
        except (OSError, json.JSONDecodeError, AttributeError):
            protocol = None
        split = {"manifest": os.path.abspath(manifest), "hash": file_sha256(manifest), "side": side,
                 "protocol": protocol}
    else:
        chosen, split = samples, {"manifest": None, "hash": "all", "side": "all", "protocol": None}
    if cfg.get("limit"):
        chosen = chosen[: int(cfg.limit)]
    if not chosen:
        raise EvalError("no questions to evaluate (empty split side or data)")
    return chosen, split


def check_domain_context(prompt_cfg: Any, samples: list[Sample]) -> None:
    from egoadapt.data.prompts import unknown_context_domains

    domains = {s.domain for s in samples}
    unknown = unknown_context_domains(prompt_cfg, domains)
    if unknown:
        raise EvalError(f"prompt.domain_context.{unknown[0]}: no question of the data is of domain {unknown[0]!r} "
                        f"(its domains: {', '.join(sorted(domains))}); the context line would never be asked")


def prompt_identity(prompt_cfg: Any) -> dict[str, Any]:
    """What decides every prompt's wording, for results.json and `egoadapt compare`: the prompt
    config's name, its domain context lines, and a hash of all its wording (name, empty context
    lines and the SFT-only target_reason aside)."""
    import hashlib

    wording = {k: v for k, v in _container(prompt_cfg).items() if k not in ("name", "target_reason")}
    wording["domain_context"] = {d: t for d, t in (wording.get("domain_context") or {}).items() if t}
    digest = hashlib.sha256(json.dumps(wording, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return {"name": prompt_cfg.get("name"), "domain_context": wording["domain_context"], "sha256": digest}


def generation_identity(cfg: DictConfig) -> dict[str, Any]:
    """What decides the predictions: resuming is only allowed when this is unchanged."""
    ckpt = str(cfg.checkpoint)
    remote = {"openai": openai_identity(cfg.openai)} if cfg.backend == "openai" else {}
    return {
        **remote,
        "checkpoint": os.path.abspath(ckpt) if Path(ckpt).exists() else ckpt,
        "weights": weights_stamp(ckpt),
        "data": data_identity(cfg.data),
        "backend": cfg.backend,
        "generation": _container(cfg.generation),
        "prompt": _container(cfg.prompt),
        "frames": {k: v for k, v in _container(cfg.frames).items() if k != "on_error"},  # skips are records
        "model": {k: _container(cfg.model.get(k)) for k in ("dtype", "min_pixels", "max_pixels")},
    }


def data_identity(data: DictConfig) -> dict[str, Any]:
    """The questions and clips behind the sample ids (answers only matter to scoring, which is redone)."""
    from egoadapt.data.hub import is_hub, local_file
    from egoadapt.data.split import file_sha256

    ann, root = data.get("annotations"), data.get("root")
    local = local_file(ann) if is_hub(ann) else ann
    return {"format": data.get("format"), "annotations_sha256": file_sha256(local) if local and Path(local).is_file() else ann,
            "root": root if is_hub(root) or not root else os.path.abspath(root),
            "fps": _container(data.get("fps")), "domains": _container(data.get("domains"))}


def weights_stamp(ckpt: str) -> list | None:
    """Name, size and mtime of a local checkpoint's weight files: retraining into the same
    folder changes it, hashing 15 GB would not be worth it. None for a hub id."""
    folder = Path(ckpt)
    if not folder.is_dir():
        return None
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(folder.iterdir())
            if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]


def claim_folder(out: Path, identity: dict[str, Any], fresh: bool) -> PredictionsLog:
    out.mkdir(parents=True, exist_ok=True)
    preds, ident_path = PredictionsLog(out / "predictions.jsonl"), out / "generation.json"
    if fresh:
        preds.path.unlink(missing_ok=True)
    elif preds.path.exists() and ident_path.exists():
        old = json.loads(ident_path.read_text())
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        if diff:
            raise EvalError(f"{out} holds predictions made with other settings ({', '.join(diff)} differ): "
                            "use another out=DIR, or fresh=true to start over")
    write_atomic(ident_path, json.dumps(identity, indent=2) + "\n")
    return preds


def make_backend(cfg: DictConfig, samples: list[Sample]):
    """Processor, inputs and model: only built when something is left to generate."""
    from egoadapt.data.cache import InputCache
    from egoadapt.eval.generate import build_backend
    from egoadapt.inputs.families import for_checkpoint
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.models.loading import load_processor
    from egoadapt.rollout.context import eval_context

    if cfg.backend == "openai":  # no local model, processor or token counts: the endpoint has them
        return OpenAIBackend.from_config(cfg, samples)
    processor = load_processor(cfg.model)
    family = for_checkpoint(str(cfg.checkpoint), processor)  # from the checkpoint's model_type
    context = eval_context(cfg, samples, family)  # a prompt the model cannot hold fails here, naming the clip
    cache = InputCache(cfg.get("cache_dir"), enabled=bool(cfg.get("cache_dir")))
    video = VideoInputs(samples, processor, cfg.frames, cfg.prompt, cache=cache,
                        ram_bytes=cfg.get("cache_ram_bytes"), family=family)
    return build_backend(cfg.backend, str(cfg.checkpoint), video, cfg.model, _container(cfg.generation),
                         _container(cfg.vllm.get("engine_kwargs")) if cfg.get("vllm") else None, context=context)


def batch_size(cfg: DictConfig) -> int:
    """Questions per generation call: backend=openai sends a batch at once, so a batch holds at least
    openai.concurrency questions (that many requests in flight)."""
    n = int(cfg.batch_size)
    return max(n, int(cfg.openai.concurrency)) if cfg.backend == "openai" else n


def has_reference(sample: Sample, qa: str) -> bool:
    return bool(sample.options and sample.answer_letter) if qa == "close" else has_answer_text(sample.answer_text)


def score(cfg: DictConfig, items: list[Item], records: dict[Item, dict], by_id: dict[str, Sample]
          ) -> tuple[list[dict], dict[str, Any], int]:
    """(scored rows, judge summary, predictions without a reference)."""
    from egoadapt.eval.score import Prediction, score_records, summarize
    from egoadapt.rewards.judge import Judge
    from egoadapt.rewards.scoring import ScoringConfig

    skipped = [it for it in items if it in records and records[it].get("skipped") and has_reference(by_id[it.id], it.qa)]
    preds = [Prediction(it.id, str(records[it]["output"]), it.qa, n) for n, it in enumerate(items, 1)
             if it in records and not records[it].get("skipped") and has_reference(by_id[it.id], it.qa)]
    unscored = sum(it in records for it in items) - len(preds) - len(skipped)
    scoring = ScoringConfig.from_mapping(_container(cfg.reward), mode=cfg.mode)
    judge = Judge.from_config(cfg.judge) if any(p.qa == "open" for p in preds) else None
    try:
        rows = score_records(preds, by_id, scoring, judge, cfg.score_chunk_size,
                             str(Path(cfg.out) / "predictions.jsonl"))
        rows += [scored_skip(it, records[it], by_id[it.id]) for it in skipped]  # counted: incorrect
        summary = summarize(rows, cfg.mode, judge, n_samples=len(by_id))
    finally:
        if judge is not None:
            judge.close()
    return rows, summary["judge"], unscored


def run_config(cfg: DictConfig) -> dict[str, Any]:
    return {
        "checkpoint": generation_identity(cfg)["checkpoint"], "backend": cfg.backend, "mode": cfg.mode,
        "qa": cfg.qa, "batch_size": int(cfg.batch_size), "limit": cfg.get("limit"),
        "generation": _container(cfg.generation),
        "data": {k: cfg.data.get(k) for k in ("format", "annotations", "answers", "root")},
        "prompt": prompt_identity(cfg.prompt),  # compare refuses runs asked with different wording
        # the sampling rate: frames.fps, else the data's own (per dataset / record); compare labels runs by it
        "sampling": {"frames.fps": cfg.frames.get("fps"), "data.fps": _container(cfg.data.get("fps"))},
        **({"openai": {k: cfg.openai.get(k) for k in ("base_url", "model", "send")}} if cfg.backend == "openai" else {}),
    }


def config(*overrides: str) -> DictConfig:
    """conf/eval.yaml composed with Hydra overrides, for calling `evaluate` from Python:
    `evaluate(config(f"checkpoint={ckpt}", "data=synthetic", f"data.root={d}", f"out={o}"))`."""
    from egoadapt.config.compose import compose

    return compose("eval", list(overrides))


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Generate (resuming), score and write the results; returns results.json's content.
    One eval at a time per `out=` (a second one fails at once instead of redoing the work)."""
    from egoadapt.files import exclusive

    preflight(cfg)
    with exclusive(Path(cfg.out), "egoadapt eval"):
        return _evaluate(cfg)


def _evaluate(cfg: DictConfig) -> dict[str, Any]:
    from egoadapt.eval import report

    out = Path(cfg.out)
    samples, split = eval_samples(cfg)
    by_id = {s.id: s for s in samples}
    items = eval_items(samples, cfg.qa)
    if not items:
        raise EvalError(f"qa={cfg.qa}: none of the {len(samples)} questions has options for CloseQA")
    preds_log = claim_folder(out, generation_identity(cfg), bool(cfg.fresh))
    write_atomic(out / "eval_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    holder: dict[str, Any] = {}

    def backend():
        holder["b"] = make_backend(cfg, samples)
        return holder["b"]

    skip_unusable(items, by_id, cfg.frames, preds_log)  # what frame headers show, before a model loads
    try:
        stats = generate_predictions(items, backend, preds_log, batch_size(cfg), bool(cfg.progress),
                                     cfg.frames)
    finally:
        if "b" in holder:
            holder["b"].close()
    records = preds_log.load()
    rows, judge, unscored = score(cfg, items, records, by_id)
    timing = stats.to_dict()
    timing["seconds_all_predictions"] = round(sum(float(records[it].get("seconds") or 0) for it in items
                                                  if it in records), 3)
    counts = {"samples": len(samples), "items": len(items), "predictions": sum(it in records for it in items),
              "scored": len(rows), "unscored": unscored,
              **{qa: sum(r["qa"] == qa for r in rows) for qa in QA_TYPES}}
    skipped = [{"id": it.id, "qa": it.qa, "kind": records[it].get("kind"), "reason": records[it].get("reason")}
               for it in items if it in records and records[it].get("skipped")]
    if skipped:
        counts["skipped"] = len(skipped)
    if stats.failed:  # backend=openai: requests that failed; their questions have no prediction yet
        counts["failed"] = len(stats.failed)
    b = cfg.bootstrap
    results = report.build_results(rows, config=run_config(cfg), split=split, counts=counts, judge=judge,
                                   timing=timing, n_resamples=int(b.resamples), seed=int(b.seed),
                                   confidence=float(b.confidence))
    results["skipped"] = skipped  # frames.on_error=skip: items whose input could not be used, with the reason
    results["failed"] = stats.failed  # requests that failed in this run (not written: the next run asks again)
    if cfg.submission.get("template"):
        results["submission"] = write_submission(cfg, items, records, by_id)
    report.write_results(out, results, rows)
    return results


def write_submission(cfg: DictConfig, items: list[Item], records: dict[Item, dict],
                     by_id: dict[str, Sample]) -> dict[str, Any]:
    from egoadapt.eval.submission import letters_from_predictions
    from egoadapt.eval.submission import write_submission as write

    close = [records[it] for it in items if it.qa == "close" and it in records]
    letters = letters_from_predictions(close, {i: len(s.options) for i, s in by_id.items()})
    return write(cfg.submission.template, letters, cfg.submission.out).to_dict()


def input_errors() -> tuple[type[Exception], ...]:
    """What `egoadapt eval` reports in one line with exit 2 (bad data, config, folder), not a traceback."""
    from omegaconf.errors import OmegaConfBaseException

    from egoadapt.data.errors import DataError
    from egoadapt.eval.score import ScoreInputError
    from egoadapt.eval.submission import SubmissionError
    from egoadapt.files import FolderBusyError

    return EvalError, DataError, ScoreInputError, SubmissionError, FolderBusyError, OmegaConfBaseException


def main(cfg: DictConfig) -> int:
    """`egoadapt eval` of one checkpoint: evaluate, print the tables, exit status."""
    from egoadapt.eval.report import results_markdown

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = evaluate(cfg)
    except input_errors() as e:
        print(f"egoadapt eval: {e}", file=sys.stderr)
        return 2
    print(results_markdown(results))
    t, c = results["timing"], results["counts"]
    print(f"{c['predictions']} predictions ({t['generated']} generated now in {t['seconds']:.1f}s, "
          f"{t['already_done']} resumed), {c['scored']} scored, {c['unscored']} without a reference"
          + (f", {c['skipped']} skipped for their input (frames.on_error=skip; listed in results.json)"
             if c.get("skipped") else ""))
    if "submission" in results:
        s = results["submission"]
        print(f"submission: {s['path']} ({s['answered']}/{s['rows']} answered, {s['no_prediction']} without a "
              f"prediction, {s['invalid']} without a valid letter)")
    print(f"wrote {Path(cfg.out) / 'results.json'}, results.csv, results.md")
    from egoadapt.tracking import log_evaluation

    log_evaluation(cfg, results)  # logger=wandb: into the checkpoint's training run, or a run of its own
    if results.get("failed"):
        f = results["failed"]
        print(f"egoadapt eval: {len(f)} requests failed, so {c['predictions']} of {c['items']} questions have a "
              f"prediction; the accuracy leaves the others out. Run the same command again to ask them again "
              f"(listed in results.json; first: {f[0]['id']} ({f[0]['qa']}): {f[0]['reason'][:300]})", file=sys.stderr)
        return EXIT_INCOMPLETE
    if results["judge"].get("unmeasured"):
        from egoadapt.eval.score import EXIT_JUDGE_FAILED, judge_failure_message

        print(f"egoadapt eval: {judge_failure_message(results['judge'])}", file=sys.stderr)
        return EXIT_JUDGE_FAILED
    return 0
