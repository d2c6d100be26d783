"""Batched greedy generation for evaluation, written to predictions.jsonl as it goes.

`PredictionsLog` is the resumable file: one JSON object per finished (id, qa), appended
and flushed (fsync) after every batch, so a killed run loses at most the batch in flight.
On reopen, an incomplete last line (the process died mid-write) is cut off; every other
line must parse. `generate_predictions` asks the backend only for items not yet in the
file.

Bad inputs: with `frames.on_error: skip` an item whose frames cannot be read or processed
is written as a skipped record (`"skipped": true`, `output` empty, the reason), so it is
counted and listed, and a resumed run does not try it again; with `raise` its FrameError
(file, record, field) ends the run. `skip_unusable` finds what frame headers show before
any model loads; `generate_predictions` catches what only decoding shows, batch by batch.

Backends wrap the rollout engines in `egoadapt.rollout.engines`, so evaluation sees the
same frames, prompts and token handling as training: `hf` (transformers generate on a
plain model) and `vllm` (a colocated in-process vLLM engine on the checkpoint); `openai`
(`egoadapt.eval.openai_backend`) asks a model behind an OpenAI-compatible chat endpoint.

A remote backend gives `Failed` for an item whose request failed after its retries: it is
not written (a rerun asks again), and is counted and listed (`GenerationStats.failed`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from egoadapt.data.errors import DataError, Problem
from egoadapt.data.frames import check_source, on_skip, skip_mode
from egoadapt.data.schema import OPEN, QA_MODES, Sample
from egoadapt.files import json_text

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm", "openai")


class EvalError(ValueError):
    """A problem with an evaluation's inputs or folder, in words a user can act on."""


@dataclass(frozen=True)
class Failed:
    """An item a remote backend got no answer for: left out of predictions.jsonl, so that
    rerunning the command asks it again."""

    reason: str


@dataclass(frozen=True)
class Item:
    """One question asked one way."""

    id: str
    qa: str  # close | open


def eval_items(samples: Sequence[Sample], qa: str = "both") -> list[Item]:
    """CloseQA items first, then OpenQA (similar prompt lengths batch together); samples
    without options have no CloseQA item."""
    if qa not in QA_MODES:
        raise EvalError(f"qa={qa!r}: choose {', '.join(QA_MODES)}")
    return [Item(s.id, q) for q in QA_MODES[qa] for s in samples if q == OPEN or s.options]


# --------------------------------------------------------------------------- predictions file

class PredictionsLog:
    """predictions.jsonl: `{"id", "qa", "output", "prompt", ...timing}` per line, appended per batch.
    `prompt` is the exact text the question was asked with (`egoadapt.data.prompts.asked_text`:
    the user message's text; `system` too when one is configured)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> dict[Item, dict[str, Any]]:
        """Finished items (first line wins); repairs a torn last line in place."""
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        end = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
        lines = data[:end].split(b"\n")[:-1] if end else []
        done: dict[Item, dict[str, Any]] = {}
        for n, raw in enumerate(lines, 1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                item = Item(str(rec["id"]), str(rec["qa"]))
                str(rec["output"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                if n == len(lines):  # a last line written only in part: drop it and regenerate
                    end -= len(raw) + 1
                    break
                raise EvalError(f"{self.path}:{n}: not a predictions line ({type(e).__name__}); fix or delete "
                                "the file (or pass fresh=true)") from None
            if item in done:
                log.warning("%s:%d: duplicate prediction for %s (%s): keeping the first", self.path, n, item.id, item.qa)
                continue
            done[item] = rec
        if end < len(data):
            log.warning("%s: cut off %d bytes of an unfinished last line (killed mid-write?)", self.path,
                        len(data) - end)
            with open(self.path, "r+b") as f:
                f.truncate(end)
        return done

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        text = "".join(json_text(dict(r)) + "\n" for r in records)  # any model output, lone surrogates too
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


# --------------------------------------------------------------------------- backends

class Backend:
    """Turns items into raw output texts with one of the rollout engines (greedy by default)."""

    name = "base"
    tokenize = True  # the engine takes prompt ids (HF); vLLM tokenizes and processes the video itself

    def __init__(self, video, engine, model=None):
        self.video = video
        self.engine = engine
        self.model = model  # the HF engine generates with it; vLLM holds its own

    def generate(self, items: Sequence[Item]) -> list[tuple[str, int, dict[str, str]]]:
        """(output text, completion tokens, {"prompt": the text asked, ...}) per item."""
        from egoadapt.data.prompts import asked_text

        requests = [self.video.request(it.id, it.qa, tokenize=self.tokenize) for it in items]
        completions, _ = self.engine.generate(requests, self.model)
        decode = self.video.tokenizer.decode
        return [(decode(c, skip_special_tokens=True), len(c), asked_text(r.messages))
                for c, r in zip(completions, requests)]

    def close(self) -> None:
        self.engine.close()


class HFBackend(Backend):
    name = "hf"


class VLLMBackend(Backend):
    name = "vllm"
    tokenize = False

    def close(self) -> None:
        # the engine lives in this process: drop it so a caller evaluating several
        # checkpoints in a row (the demo) gets its memory back
        import gc

        import torch

        super().close()
        self.engine.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def sampling_of(gen_cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"temperature": float(gen_cfg.get("temperature", 0.0)), "top_p": float(gen_cfg.get("top_p", 1.0)),
            "top_k": gen_cfg.get("top_k"), "max_tokens": int(gen_cfg.get("max_new_tokens", 256))}


def build_backend(name: str, checkpoint: str, video, model_cfg: Any, gen_cfg: Mapping[str, Any],
                  engine_kwargs: Mapping[str, Any] | None = None, context=None) -> Backend:
    """`context`: the run's `ContextPlan` (egoadapt.inputs.context); vLLM's context length holds
    its longest prompt plus max_new_tokens (computed from `video`'s samples when not given)."""
    from egoadapt.rollout.engines import HFEngine

    sampling = sampling_of(gen_cfg)
    if name == "hf":
        import torch

        from egoadapt.models.loading import load_model

        model = load_model(model_cfg, training=False).eval()
        if torch.cuda.is_available():
            model = model.to("cuda")
        return HFBackend(video, HFEngine(video, sampling), model)
    if name == "vllm":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise EvalError("backend=vllm needs vLLM, which is not installed (pip install -e .[gpu], or make "
                            "install on CPU); or use backend=hf")
        import torch

        from egoadapt.rollout.engines import VLLMColocateEngine

        # Evaluation has the device to itself: most of the GPU's memory. The context length is
        # the longest prompt's plus max_new_tokens (egoadapt.inputs.context)
        kwargs: dict[str, Any] = {}
        if torch.cuda.is_available():
            kwargs["gpu_memory_utilization"] = 0.85
        kwargs.update(engine_kwargs or {})
        return VLLMBackend(video, VLLMColocateEngine(video, sampling, checkpoint, kwargs, context=context,
                                                     kwargs_key="vllm.engine_kwargs"))
    raise EvalError(f"backend={name!r}: choose one of {', '.join(BACKENDS)}")


# --------------------------------------------------------------------------- the loop

@dataclass
class GenerationStats:
    items: int  # asked for in this evaluation
    already_done: int  # found in predictions.jsonl
    generated: int  # generated by this call
    seconds: float  # generation wall time of this call
    batches: int
    skipped: int = 0  # written as skipped by this call (frames.on_error=skip)
    failed: list[dict[str, str]] = field(default_factory=list)  # {id, qa, reason}: requests that failed (not written)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["failed"] = len(self.failed)
        d["items_per_second"] = self.generated / self.seconds if self.seconds > 0 else None
        return d


def batches(items: Sequence[Item], size: int) -> Iterable[list[Item]]:
    size = max(1, int(size))
    for i in range(0, len(items), size):
        yield list(items[i:i + size])


def pending(items: Sequence[Item], log_: PredictionsLog) -> tuple[list[Item], int]:
    done = log_.load()
    todo = [it for it in items if it not in done]
    return todo, len(items) - len(todo)


def skipped_record(item: Item, problem: Problem) -> dict[str, Any]:
    """A predictions line for an item whose input could not be used: no output, the reason."""
    return {"id": item.id, "qa": item.qa, "output": "", "skipped": True, "kind": problem.kind,
            "reason": str(problem), "completion_tokens": 0, "seconds": 0.0}


def scored_skip(item: Item, record: Mapping[str, Any], sample: Sample) -> dict[str, Any]:
    """The scores.jsonl row of a skipped item: incorrect and without a valid answer, as a blank
    answer counts in the benchmark, with the reason it was skipped."""
    from egoadapt.eval.score import Prediction, _row
    from egoadapt.rewards.scoring import Score, Target

    score = Score(item.qa, None, format_ok=False, correct=False, reward=0.0, method="skipped", issue="input_skipped")
    row = _row(Prediction(item.id, "", item.qa, 0), sample, Target.from_sample(sample, item.qa), score)
    return {**row, "reason": record.get("reason")}


def skip_unusable(items: Sequence[Item], samples: Mapping[str, Sample], frames_cfg: Any,
                  log_: PredictionsLog) -> int:
    """The cheap pass before a model loads: items whose sample fails `check_source` (missing or
    unreadable frames, sizes the processor refuses, a bad span) are written as skipped, or raise
    (frames.on_error=raise). Returns how many items were skipped."""
    skip_mode(frames_cfg)  # a bad on_error value fails here, not at the first bad sample
    todo, _ = pending(items, log_)
    bad: dict[str, Problem] = {}
    for sid in dict.fromkeys(it.id for it in todo):
        try:
            check_source(samples[sid], frames_cfg)
        except DataError as e:
            bad[sid] = on_skip(e, frames_cfg)
    log_.append(skipped_record(it, bad[it.id]) for it in todo if it.id in bad)
    return sum(it.id in bad for it in todo)


def _generate(backend: Backend, batch: list[Item], frames_cfg: Any) -> list[tuple | Problem | Failed]:
    """Outputs of a batch. When an item's input fails (a DataError) under frames.on_error=skip, the
    batch is retried item by item and each failing item gives its Problem instead of an output."""
    try:
        return list(backend.generate(batch))
    except DataError as e:
        if len(batch) == 1:
            return [on_skip(e, frames_cfg)]
        if not skip_mode(frames_cfg):
            raise
    return [out for it in batch for out in _generate(backend, [it], frames_cfg)]


def generate_predictions(items: Sequence[Item], backend: Backend | Any, log_: PredictionsLog,
                         batch_size: int = 8, progress: bool = True, frames_cfg: Any = None) -> GenerationStats:
    """Generate every item not yet in `log_`, appending each finished batch.

    `backend` may be a callable returning a Backend: it is only built when there is work.
    `frames_cfg` decides (its `on_error`) whether an item whose input fails is skipped or raises."""
    from tqdm import tqdm

    todo, done = pending(items, log_)
    stats = GenerationStats(len(items), done, 0, 0.0, 0)
    if not todo:
        return stats
    if not isinstance(backend, Backend) and callable(backend):
        backend = backend()
    bar = tqdm(total=len(items), initial=done, desc=f"eval [{backend.name}]", unit="q", disable=not progress,
               dynamic_ncols=True)
    try:
        for batch in batches(todo, batch_size):
            t0 = time.perf_counter()
            outputs = _generate(backend, batch, frames_cfg)
            dt = time.perf_counter() - t0
            log_.append(skipped_record(it, out) if isinstance(out, Problem) else
                        {"id": it.id, "qa": it.qa, "output": out[0], "completion_tokens": out[1],
                         "seconds": round(dt / len(batch), 4), "batch_seconds": round(dt, 4), "batch_size": len(batch),
                         "backend": backend.name, **(out[2] if len(out) > 2 else {})}  # a backend's own fields
                        for it, out in zip(batch, outputs) if not isinstance(out, Failed))
            skipped = sum(isinstance(out, Problem) for out in outputs)
            failed = [{"id": it.id, "qa": it.qa, "reason": out.reason} for it, out in zip(batch, outputs)
                      if isinstance(out, Failed)]
            stats.failed += failed
            stats.generated += len(batch) - skipped - len(failed)
            stats.skipped += skipped
            stats.seconds += dt
            stats.batches += 1
            bar.update(len(batch))
    finally:
        bar.close()
    return stats
