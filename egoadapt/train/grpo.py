"""Video GRPO: TRL's GRPOTrainer with the video in generation and in every log-prob pass.

Stock TRL builds the model's visual inputs only from `image`/`images` columns, so on video
prompts the policy, old-policy and reference log-probs are computed from placeholder tokens
alone and the vision tower never gets a gradient. This subclass works through six seams of
GRPOTrainer (listed in docs/architecture.md) and copies none of its code. In short:

- generation goes through `rollout_func` (TRL's hook) and a rollout engine from
  `egoadapt.rollout` (HF generate, vLLM colocated, vLLM server) that sees the video;
- `_get_per_token_logps_and_entropies` runs each chunk of rows with that chunk's video
  (`video_grid_thw`, `second_per_grid_ts`, `mm_token_type_ids` for 3-D mRoPE, and the vision
  tower's output: one tower forward per clip, `egoadapt.train.vision_dedupe`, or with
  `vision_dedupe=false` the `pixel_values_videos` of every row, unless the chunk's clips do not
  stack into one call: LLaVA-OneVision's different frame counts), through a thin wrapper around
  the model, leaving TRL's loss code untouched;
- the dataset's `prompt` is a text view (the chat messages with the video are rebuilt per
  row from `sample_id`), so completion logs and tables stay plain text;
- the per-batch state (which clip each row shows; a frozen tower's output per clip) is one
  `VideoBatch` per generation batch that travels with the rows through TRL's shuffling and
  splitting (`egoadapt.train.video_batch`), and is in scope only during the calls that use it.

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
from egoadapt.train.video_batch import BatchScope, VideoBatch
from egoadapt.train.vision_dedupe import ClipFeatures, tower_trains

log = logging.getLogger(__name__)


class _WithVideo:
    """Calls the model with a chunk's video inputs added (what TRL passes stays as is): the tower's
    output per clip from `features`, or (None) every row's pixels; a chunk whose clips do not stack
    (`VideoInputs.stackable`) takes its own `ClipFeatures` then, in this pass's graph."""

    def __init__(self, model, video: VideoInputs, sample_ids: list[str], features: ClipFeatures | None):
        self.model, self.video, self.sample_ids, self.features = model, video, sample_ids, features

    def __call__(self, **kwargs):
        input_ids = kwargs["input_ids"]
        features = self.features
        if features is None and not self.video.stackable(self.sample_ids):
            features = ClipFeatures(self.video, detached=False)
        if features is None:
            kwargs.update({k: v.to(input_ids.device) for k, v in self.video.collate(self.sample_ids).items()})
        else:
            kwargs.update(features.model_inputs(self.model, self.sample_ids, input_ids.device))
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
        rows = trainer.batch_in_scope().rows
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
    """`vision_dedupe`: rows of a log-prob pass that share a clip share one vision-tower forward
    (and a frozen tower's output is reused by every pass on a batch); False: one per row."""

    def __init__(self, *args, video: VideoInputs, engine: RolloutEngine, vision_dedupe: bool = True, **kwargs):
        self.video = video
        self.engine = engine
        self.vision_dedupe = vision_dedupe and video.family.precomputed_features
        self.batch_scope = BatchScope()  # the VideoBatch of the rollout / log-prob pass running now
        super().__init__(*args, rollout_func=VideoRollout(engine, video), **kwargs)
        self.tower_frozen = not tower_trains(self.model, video)
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

    def batch_in_scope(self) -> VideoBatch:
        if (batch := self.batch_scope.current) is None:
            raise RuntimeError("no video batch in scope: the rollout runs inside _generate_and_score_completions")
        return batch

    def _generate_and_score_completions(self, inputs):
        frozen = ClipFeatures(self.video, detached=True) if self.vision_dedupe and self.tower_frozen else None
        batch = VideoBatch(rows=tuple(inputs), frozen=frozen)
        with self.batch_scope(batch):  # the rollout, old-policy and reference passes
            output = super()._generate_and_score_completions(inputs)
        output.update(batch.columns(output["prompt_ids"].device))
        return output

    def _compute_loss(self, model, inputs):
        with self.batch_scope(VideoBatch.of(inputs)):  # this slice's rows, of the batch they came from
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                           batch_size=None, compute_entropy=False, compute_aux_loss=False, **kw):
        batch = self.batch_scope.current
        if batch is None:  # not a video batch
            return super()._get_per_token_logps_and_entropies(
                model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, compute_aux_loss, **kw)
        rows = batch.sample_ids
        if len(rows) != input_ids.size(0):
            raise RuntimeError(f"video rows ({len(rows)}) do not match the batch ({input_ids.size(0)})")
        # a trained tower's outputs belong to this pass (its model, its graph), shared by its chunks
        features = (batch.frozen or ClipFeatures(self.video, detached=False)) if self.vision_dedupe else None
        batch_size = batch_size or input_ids.size(0)
        logps, entropies, aux = [], [], []
        for start in range(0, input_ids.size(0), batch_size):
            end = min(start + batch_size, input_ids.size(0))
            lp, ent, ax = super()._get_per_token_logps_and_entropies(
                _WithVideo(model, self.video, rows[start:end], features), input_ids[start:end],
                attention_mask[start:end], logits_to_keep, end - start, compute_entropy, compute_aux_loss, **kw)
            logps.append(lp)
            if ent is not None:
                entropies.append(ent)
            if ax is not None:
                aux.append(ax)
        return (torch.cat(logps), torch.cat(entropies) if entropies else None,
                torch.stack(aux).mean() if aux else None)
