"""Video GRPO: TRL's GRPOTrainer with the video in generation and in every log-prob pass.

Stock TRL builds the model's visual inputs only from `image`/`images` columns, so on video
prompts the policy, old-policy and reference log-probs are computed from placeholder tokens
alone and the vision tower never gets a gradient. This subclass works through six seams of
GRPOTrainer (listed in docs/architecture.md) and copies none of its code. In short:

- generation goes through `rollout_func` (TRL's hook) and a rollout engine from
  `egoadapt.rollout` (HF generate, vLLM colocated, vLLM server) that sees the video;
- `_get_per_token_logps_and_entropies` runs each chunk of rows with that chunk's
  `pixel_values_videos`, `video_grid_thw`, `second_per_grid_ts` and `mm_token_type_ids`
  (3-D mRoPE), through a thin wrapper around the model, leaving TRL's loss code untouched;
- the dataset's `prompt` is a text view (the chat messages with the video are rebuilt per
  row from `sample_id`), so completion logs and tables stay plain text;
- a `video_row` column travels with the rows through TRL's shuffling and splitting, so a
  training mini-batch knows which clip each of its rows came from.

With a vLLM engine, TRL's own importance-sampling correction (`vllm_importance_sampling_*`)
weighs the loss by trainer log-prob / sampler log-prob from the engine's per-token log-probs.
TRL gates that code on `use_vllm`, which egoadapt leaves False in the config (it would start
TRL's own, image-only vLLM); the trainer sets it after TRL's init instead and hands TRL's
rollout_func sync hook (`vllm_generation.sync_weights()`) the engine's sync.

Everything else (loss types, beta and the reference model, num_iterations, clipping,
logging) is TRL's own.
"""
from __future__ import annotations

import logging
import time
from typing import Any

import torch
from trl import GRPOTrainer

from egoadapt.inputs.video import VideoInputs
from egoadapt.rollout.engines import RolloutEngine
from egoadapt.train.checkpoint import VerifiedResumeMixin

log = logging.getLogger(__name__)


class _WithVideo:
    """Calls the model with a chunk's video inputs added (what TRL passes stays as is)."""

    def __init__(self, model, video: VideoInputs, sample_ids: list[str]):
        self.model, self.video, self.sample_ids = model, video, sample_ids

    def __call__(self, **kwargs):
        input_ids = kwargs["input_ids"]
        vision = self.video.collate(self.sample_ids)
        kwargs.update({k: v.to(input_ids.device) for k, v in vision.items()})
        kwargs.update(self.video.token_inputs(input_ids))
        return self.model(**kwargs)


class VideoRollout:
    """TRL `rollout_func`: prompt ids with expanded video tokens, completions from the engine."""

    def __init__(self, engine: RolloutEngine, video: VideoInputs):
        self.engine, self.video = engine, video

    def sync(self, trainer: "VideoGRPOTrainer") -> None:
        """Push the trainer's weights into the engine once per optimizer step."""
        if trainer.state.global_step == self.engine.synced_step:
            return
        start = time.perf_counter()
        self.engine.sync(trainer)
        trainer.accelerator.wait_for_everyone()  # no rank samples from stale weights
        self.engine.synced_step = trainer.state.global_step
        # wall time of the whole sync (gather, write, reload, barrier), averaged over ranks
        trainer._log_metric("rollout/sync_seconds", time.perf_counter() - start)

    def __call__(self, prompts: list, trainer: "VideoGRPOTrainer") -> dict[str, Any]:
        self.sync(trainer)
        rows = trainer.batch_rows
        requests = [self.video.request(r["sample_id"], r["qa"]) for r in rows]
        completion_ids, logprobs = self.engine.generate(requests, trainer)
        for name, total in getattr(self.engine, "counters", {}).items():  # requests, retries, mismatches...
            trainer._log_metric(f"rollout/{name}", float(total))  # running totals since the run started
        # None (HF): TRL then has no sampler log-probs, and its off-policy mask falls back to the
        # old policy's own instead of reading made-up zeros
        return {"prompt_ids": [r.prompt_ids for r in requests], "completion_ids": completion_ids, "logprobs": logprobs}


class _EngineWeights:
    """Stands in for TRL's `VLLMGeneration` where TRL's rollout_func path syncs weights."""

    def __init__(self, rollout: VideoRollout, trainer: "VideoGRPOTrainer"):
        self.rollout, self.trainer = rollout, trainer

    def sync_weights(self) -> None:
        self.rollout.sync(self.trainer)


class VideoGRPOTrainer(VerifiedResumeMixin, GRPOTrainer):
    def __init__(self, *args, video: VideoInputs, engine: RolloutEngine, **kwargs):
        self.video = video
        self.engine = engine
        self.batch_rows: list[dict] = []  # rows of the generation batch being scored
        self._active_sample_ids: list[str] | None = None  # rows of the current log-prob pass
        super().__init__(*args, rollout_func=VideoRollout(engine, video), **kwargs)
        self._correct_with_engine_logprobs()

    def _correct_with_engine_logprobs(self) -> None:
        """Turn on TRL's importance-sampling correction for rollouts from a vLLM engine.

        TRL computes the ratio, truncates or masks it and logs `sampling/importance_sampling_ratio/*`
        and `sampling/sampling_logp_difference/*` only when `self.use_vllm`; with `args.use_vllm`
        it would also build its own vLLM, so the flag is set here, after TRL's init. TRL's
        rollout_func path then syncs through `vllm_generation.sync_weights()`: the engine's sync."""
        if not self.vllm_importance_sampling_correction:
            return
        if not self.engine.sampling_logprobs:
            log.info("importance-sampling correction off: rollout=%s samples from the policy being trained and "
                     "returns no sampler log-probs", self.engine.name)
            return
        self.use_vllm = True
        self.vllm_generation = _EngineWeights(self.rollout_func, self)
        self._last_loaded_step = -1  # TRL's tag; the engine's own `synced_step` decides whether a sync is due
        log.info("importance-sampling correction on (TRL's %s, clip %s..%s) with rollout=%s's log-probs",
                 self.vllm_importance_sampling_mode, self.vllm_importance_sampling_clip_min,
                 self.vllm_importance_sampling_clip_max, self.engine.name)
        if self.accelerator.is_main_process and (problem := self.engine.logprobs_problem()):
            log.warning("importance-sampling correction: %s", problem)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns = list(self._signature_columns) + ["sample_id"]

    def _generate_and_score_completions(self, inputs):
        self.batch_rows = inputs
        self._active_sample_ids = [x["sample_id"] for x in inputs]
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._rollout_sample_ids, self._active_sample_ids = self._active_sample_ids, None
        output["video_row"] = torch.arange(len(inputs), device=output["prompt_ids"].device)
        return output

    def _compute_loss(self, model, inputs):
        self._active_sample_ids = [self._rollout_sample_ids[i] for i in inputs["video_row"].tolist()]
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._active_sample_ids = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False, **kw):
        rows = self._active_sample_ids
        if rows is None:  # not a video batch
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **kw)
        if len(rows) != input_ids.size(0):
            raise RuntimeError(f"video rows ({len(rows)}) do not match the batch ({input_ids.size(0)})")
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            lp, ent, ax = super()._get_per_token_logps_and_entropies(
                _WithVideo(model, self.video, rows[start:end]), input_ids[start:end], attention_mask[start:end],
                logits_to_keep, end - start, compute_entropy, compute_aux_loss, **kw)
            logps.append(lp)
            if ent is not None:
                entropies.append(ent)
            if ax is not None:
                aux.append(ax)
        return (torch.cat(logps), torch.cat(entropies) if entropies else None,
                torch.stack(aux).mean() if aux else None)
