"""Rollout engines for video GRPO: HF generate, vLLM colocated in the trainer, vLLM server.

An engine samples one completion per prompt row, from the video and prompt it is given,
and takes the trainer's new weights after each optimizer step (`sync`). Engines get the
same `VideoInputs` as the trainer, so rollouts and log-prob passes see identical frames.

Weight sync works everywhere: colocated vLLM reloads in process through vLLM's own
`reload_weights`; a vLLM server takes them over vLLM's weight-transfer engines (NCCL between
GPUs, egoadapt's gloo engine elsewhere: egoadapt.rollout.transfer, rollout.sync=transfer) or
reloads from a safetensors folder both can see through its `/collective_rpc` endpoint
(dev mode; rollout.sync=disk).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import torch

from egoadapt.inputs.request import RolloutRequest
from egoadapt.inputs.video import VideoInputs

log = logging.getLogger(__name__)

def cut_at_eos(ids: Sequence[int], eos_ids: Sequence[int], banned: Sequence[int] = ()) -> list[int]:
    """Keep tokens up to and including the first EOS; drop anything from a vision token on
    (a sampled placeholder would not match the video features in the next forward pass)."""
    out = []
    for t in ids:
        if t in banned:
            break
        out.append(int(t))
        if t in eos_ids:
            break
    return out


class RolloutEngine:
    name = "base"
    # `generate` returns the sampler's log-prob of each completion token (after temperature and
    # logit processors): TRL's importance-sampling correction weighs the loss with them
    sampling_logprobs = False

    def __init__(self, video: VideoInputs, sampling: dict[str, Any]):
        self.video = video
        self.sampling = sampling  # temperature, top_p, top_k, max_tokens
        self.eos_ids = video.family.stop_token_ids()
        self.banned = video.family.vision_token_ids()  # placeholders only a processor may place
        self.synced_step = 0  # the engine starts from the checkpoint the trainer starts from
        self.closed = False

    def generate(self, requests: Sequence[RolloutRequest], trainer
                 ) -> tuple[list[list[int]], list[list[float]] | None]:
        """(completion ids, the sampler's log-prob per completion token or None) per request."""
        raise NotImplementedError

    def logprobs_problem(self) -> str | None:
        """Why the engine's log-probs would bias the importance-sampling correction, or None."""
        return None

    def sync(self, trainer) -> None:
        """Push the trainer's weights into the engine (no-op for HF, which uses the model itself)."""

    def close(self) -> None:
        """Free what the engine holds (train/run.py calls it at the end of every job, error or
        not, so the next job of a multirun starts clean). Idempotent."""
        self.closed = True


class HFEngine(RolloutEngine):
    """transformers `generate` on the policy itself, video tensors included: one `generate` per group of
    requests whose clips stack into one model call (`VideoInputs.groups`; LLaVA-OneVision: one frame count),
    completions back in request order."""

    name = "hf"

    def generate(self, requests, trainer):
        """`trainer`: the GRPO trainer (its model is unwrapped for generation), or a plain
        model (evaluation)."""
        if any(r.prompt_ids is None for r in requests):
            raise ValueError("HF generation needs each request's prompt_ids (VideoInputs.request(..., tokenize=True))")
        completions: list[list[int]] = [[] for _ in requests]
        with _generation_model(trainer) as model, torch.no_grad():
            for group in self.video.groups([r.sample_id for r in requests]):
                for i, ids in zip(group, self._generate_stackable(model, [requests[i] for i in group], trainer)):
                    completions[i] = ids
        return completions, None

    def _generate_stackable(self, model, requests, trainer) -> list[list[int]]:
        """Completion ids of requests whose clips collate into one call, left-padded into one batch."""
        pad = self.video.tokenizer.pad_token_id
        prompt_ids = [r.prompt_ids for r in requests]
        width = max(len(p) for p in prompt_ids)
        input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, ids in enumerate(prompt_ids):  # left padding
            input_ids[i, width - len(ids):] = torch.tensor(ids)
            attention[i, width - len(ids):] = 1
        inputs = {"input_ids": input_ids, "attention_mask": attention,
                  **self.video.token_inputs(input_ids),
                  **self.video.collate(r.sample_id for r in requests)}
        plain = isinstance(trainer, torch.nn.Module)
        device = next(trainer.parameters()).device if plain else trainer.accelerator.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        s = self.sampling
        kwargs = dict(max_new_tokens=s["max_tokens"], do_sample=s["temperature"] > 0, pad_token_id=pad,
                      eos_token_id=self.eos_ids, suppress_tokens=self.banned)
        if s["temperature"] > 0:
            kwargs.update(temperature=s["temperature"], top_p=s.get("top_p", 1.0), top_k=s.get("top_k") or 0)
        out = model.generate(**inputs, **kwargs)
        return [cut_at_eos(c, self.eos_ids, self.banned) for c in out[:, width:].cpu().tolist()]


def _generation_model(trainer):
    if isinstance(trainer, torch.nn.Module):
        return contextlib.nullcontext(trainer)
    from trl.models.utils import unwrap_model_for_generation

    return unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator,
                                       gather_deepspeed3_params=trainer.args.ds3_gather_for_generation)


class VLLMColocateEngine(RolloutEngine):
    """A vLLM engine inside each training process (TRL's colocate mode, video-aware).

    Its context length, batch token budget and pixel limits come from the data
    (`egoadapt.rollout.context`: the longest prompt of `context`, or of every sample the
    VideoInputs holds, plus `max_tokens`); `engine_kwargs` overrides them."""

    name = "vllm_colocate"
    sampling_logprobs = True

    def __init__(self, video, sampling, model_path: str, engine_kwargs: dict[str, Any] | None = None,
                 world_size: int = 1, context=None, kwargs_key: str = "rollout.engine_kwargs"):
        super().__init__(video, sampling)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: reloads in place
        from vllm import LLM

        from egoadapt.inputs.context import plan_for_video
        from egoadapt.rollout.context import vllm_kwargs

        context = context or plan_for_video(video, sampling["max_tokens"], model_path)
        engine_kwargs = vllm_kwargs(context, video.family, engine_kwargs, kwargs_key)
        # log-probs of the distribution sampled from (temperature, logit bias), as TRL's own colocated vLLM
        kwargs = dict(enforce_eager=True, seed=0, logprobs_mode="processed_logprobs")
        if not torch.cuda.is_available():
            kwargs["kv_cache_memory_bytes"] = 256 * 1024**2
        else:
            kwargs["gpu_memory_utilization"] = 0.3
        if world_size > 1:
            kwargs["distributed_executor_backend"] = "external_launcher"
        kwargs.update(engine_kwargs or {})
        self.llm = LLM(model_path, **kwargs)

    def _params(self):
        from vllm import SamplingParams

        s = self.sampling
        return SamplingParams(n=1, temperature=s["temperature"], top_p=s.get("top_p", 1.0), top_k=s.get("top_k") or -1,
                              max_tokens=s["max_tokens"], logprobs=0, stop_token_ids=self.eos_ids,
                              logit_bias={t: -100.0 for t in self.banned})

    def vllm_inputs(self, requests):
        reqs = []
        for r in requests:
            clip = self.video.clip(r.sample_id)
            reqs.append({"prompt": self.video.prompt_text(r.messages),
                         "multi_modal_data": self.video.family.vllm_video(clip)})
        return reqs

    def generate(self, requests, trainer):
        outs = self.llm.generate(self.vllm_inputs(requests), self._params(), use_tqdm=False)
        completions, logprobs = [], []
        for o in outs:
            c = o.outputs[0]
            ids = cut_at_eos(c.token_ids, self.eos_ids, self.banned)
            completions.append(ids)
            lps = [next(iter(lp.values())).logprob if lp else float("nan") for lp in (c.logprobs or [])]
            logprobs.append(lps[:len(ids)])
        return completions, logprobs

    def sync(self, trainer):
        from egoadapt.rollout.weights import iter_weights

        # a generator, not a list: the engine runs in this process and takes one tensor at a
        # time, so a 7B model is never held twice (under ZeRO-3 each is gathered on demand)
        weights = iter_weights(trainer.model_wrapped, trainer.accelerator)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        # cached KV blocks and vision-encoder outputs were computed with the old weights
        self.llm.reset_prefix_cache()
        self.llm.llm_engine.reset_encoder_cache()
        self.llm.reset_mm_cache()

    def close(self):
        """Shut the engine down and drop it: its model, KV cache and workers go with it."""
        import gc

        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            try:
                if core is not None:
                    core.shutdown()  # vLLM's own shutdown: engine core (and its processes, if any)
            finally:
                del llm, core
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            log.info("closed the colocated vLLM engine")
        super().close()


class RolloutError(RuntimeError):
    """Rollouts that failed after every retry. The step fails rather than go on without them:
    a GRPO group is `num_generations` completions of one prompt, and TRL's advantages and
    loss assume every row is there. A dropped row would shift the groups; a stand-in (an
    empty completion with a reward) would be trained on as if the policy had written it."""


class VLLMServerEngine(RolloutEngine):
    """A vLLM OpenAI-compatible server on another node (or process); the video travels as an
    mp4 data URL encoded at the clip's sampling fps, so the server decodes exactly its frames.

    Every request (rollouts, weight reloads, cache resets) is retried on transport errors,
    408/409/429 and 5xx with backoff (`egoadapt.net.request_with_retries`), and sends
    `Authorization: Bearer $<api_key_env>` when that variable is set (a server started with
    an API key). A rollout that still fails fails the step (`RolloutError`, counted in
    `counters["failures"]`), never a silent gap in a group."""

    name = "vllm_server"
    sampling_logprobs = True  # when the server runs with --logprobs-mode processed_logprobs (launch/vllm_server.sh)
    SYNC_PREFIX = "step-"

    def __init__(self, video, sampling, base_url: str, model: str, weights_dir: Path,
                 timeout: float = 600.0, max_concurrency: int = 16, api_key_env: str | None = None,
                 retries: int = 3, backoff_s: float = 1.0, backoff_max_s: float = 30.0, sync: str = "auto",
                 transfer_address: str | None = None, transfer_port: int = 0):
        super().__init__(video, sampling)
        from egoadapt.net import DeadlineClient
        from egoadapt.rollout.transfer import SYNCS

        if sync not in SYNCS:
            raise ValueError(f"rollout.sync={sync!r}: choose one of {', '.join(SYNCS)}")
        # rollout.sync: "transfer" (vLLM's weight-transfer engine), "disk", or "auto" (transfer when the
        # server runs an engine this trainer can join, else disk); decided at the first sync
        self.sync_mode, self.sync_route = sync, None if sync == "auto" else sync
        self.transfer_address, self.transfer_port = transfer_address, int(transfer_port or 0)
        self.timeout = float(timeout)
        self._transfer = None  # vLLM's trainer engine, joined with the server's workers at the first sync

        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.model = model
        self.weights_dir = Path(weights_dir)
        self.retry = {"retries": int(retries), "backoff_s": float(backoff_s), "backoff_max_s": float(backoff_max_s)}
        key = os.environ.get(api_key_env, "") if api_key_env else ""
        # `timeout` bounds each whole request (headers and body), not each socket read:
        # a stuck server fails the attempt instead of hanging training
        self.http = DeadlineClient(timeout_s=timeout, max_connections=max_concurrency,
                                   headers={"Authorization": f"Bearer {key}"} if key else None)
        self.max_concurrency = max_concurrency
        self.counters = {"requests": 0, "retries": 0, "failures": 0, "syncs": 0, "prompt_token_mismatches": 0}
        self.synced_dir: Path | None = None  # the folder the server loaded last
        # the trainer's pixel limits travel with every request: a server started without
        # --mm-processor-kwargs would otherwise cut the clip into other video tokens than the
        # trainer's log-prob passes see
        self.mm_processor_kwargs = video.family.mm_processor_kwargs()
        self._lock = threading.Lock()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def _post(self, url: str, **kwargs):
        from egoadapt.net import request_with_retries

        self._count("requests")
        return request_with_retries(self.http, "POST", url, on_retry=lambda _: self._count("retries"),
                                    **self.retry, **kwargs)

    def _video_block(self, sid: str) -> dict:
        """The clip as the family sends it to a server (Qwen2.5-VL: an mp4 `video_url` at its sampling fps,
        which the server decodes back to exactly its frames)."""
        return self.video.family.served_video(self.video.clip(sid))

    def _one(self, messages, sid, expected_tokens: int | None = None):
        """One rollout; a generation the server gave up on (stopping, or cancelled) is asked again."""
        from egoadapt.net import UnfinishedCompletion

        for attempt in range(self.retry["retries"] + 1):
            try:
                return self._attempt(messages, sid, expected_tokens)
            except UnfinishedCompletion:
                if attempt == self.retry["retries"]:
                    raise
                self._count("retries")

    def _attempt(self, messages, sid, expected_tokens: int | None = None):
        from egoadapt.data.chat_media import chat_messages
        from egoadapt.net import finished_choice

        chat = chat_messages(messages, [self._video_block(sid)])
        s = self.sampling
        body = {"model": self.model, "messages": chat, "max_tokens": s["max_tokens"], "temperature": s["temperature"],
                "top_p": s.get("top_p", 1.0), "logprobs": True, "return_token_ids": True,
                "skip_special_tokens": False, "stop_token_ids": self.eos_ids,
                "logit_bias": {str(t): -100 for t in self.banned}}
        if s.get("top_k"):
            body["top_k"] = s["top_k"]
        if self.video.family.chat_template_kwargs:
            body["chat_template_kwargs"] = dict(self.video.family.chat_template_kwargs)
        pixels = self.mm_processor_kwargs
        if pixels:
            body["mm_processor_kwargs"] = pixels
        r = self._post(f"{self.base_url}/chat/completions", json=body)
        if pixels and r.status_code == 400 and b"mm_processor_kwargs" in r.content:
            self._untrusted_pixels()  # a server started without --trust-request-mm-kwargs
            del body["mm_processor_kwargs"]
            r = self._post(f"{self.base_url}/chat/completions", json=body)
        if r.status_code >= 400:  # a 4xx: the request itself is wrong, retrying will not help
            raise httpx.HTTPStatusError(f"HTTP {r.status_code} (not retried): "
                                        f"{r.content[:500].decode('utf-8', 'replace')}", request=r.request, response=r)
        reply = r.json()
        self._check_prompt_tokens(sid, (reply.get("usage") or {}).get("prompt_tokens"), expected_tokens)
        choice = finished_choice(reply)  # a generation the server gave up on is no rollout (retried in _one)
        ids = choice.get("token_ids") or []
        lps = [t["logprob"] for t in (choice.get("logprobs") or {}).get("content") or []]
        ids = cut_at_eos(ids, self.eos_ids, self.banned)
        return ids, lps[:len(ids)]

    def logprobs_problem(self):
        """A server must return the log-probs of what it sampled from (after temperature and logit
        bias: `--logprobs-mode processed_logprobs`), read from its dev-mode `/server_info`."""
        from egoadapt.net import request_with_retries

        try:
            r = request_with_retries(self.http, "GET", f"{self.root}/server_info", params={"config_format": "json"},
                                     **self.retry)
            r.raise_for_status()
            mode = r.json()["vllm_config"]["model_config"]["logprobs_mode"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:
            return (f"could not read the logprobs mode of the vLLM server at {self.root} from /server_info "
                    f"({type(e).__name__}: {e}); it must run with --logprobs-mode processed_logprobs")
        if mode == "processed_logprobs":
            return None
        return (f"the vLLM server at {self.root} runs with --logprobs-mode {mode}, which biases the correction "
                "(temperature and logit bias are not in its log-probs): restart it with --logprobs-mode "
                "processed_logprobs (launch/vllm_server.sh passes it) or set "
                "trainer.vllm_importance_sampling_correction=false")

    def _untrusted_pixels(self) -> None:
        with self._lock:
            if not self.mm_processor_kwargs:
                return
            log.warning("rollout: the vLLM server at %s refuses per-request pixel limits %s (it was started without "
                        "--trust-request-mm-kwargs, which launch/vllm_server.sh passes in dev mode): start it with "
                        "--mm-processor-kwargs '%s' or that flag; requests go on without them, and prompts the server "
                        "reads differently are counted in rollout/prompt_token_mismatches", self.base_url,
                        self.mm_processor_kwargs, json.dumps(self.mm_processor_kwargs))
            self.mm_processor_kwargs = {}

    def _check_prompt_tokens(self, sid: str, served: int | None, expected: int | None) -> None:
        """The server must see the prompt the trainer scores: the same number of tokens. A
        difference means other video tokens (pixel limits, fps, frame count) or another chat
        template, and log-probs computed on a prompt the policy never sampled from."""
        if served is None or expected is None or served == expected:
            return
        self._count("prompt_token_mismatches")
        if self.counters["prompt_token_mismatches"] == 1:
            log.warning("rollout: the vLLM server at %s read sample %s as a %d-token prompt, the trainer as %d tokens: "
                        "the server processes the video differently (its --mm-processor-kwargs, --media-io-kwargs "
                        "or its model's processor config) and rollouts do not come from the prompt being trained; "
                        "counted in rollout/prompt_token_mismatches", self.base_url, sid, served, expected)

    def generate(self, requests, trainer):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.max_concurrency) as pool:  # every request finishes before we judge
            futures = [pool.submit(self._one, r.messages, r.sample_id, len(r.prompt_ids) if r.prompt_ids else None)
                       for r in requests]
        results, failed = [], []
        for sid, fut in zip((r.sample_id for r in requests), futures):
            err = fut.exception()
            if err is None:
                results.append(fut.result())
            else:
                failed.append((sid, err))
        if failed:
            self._count("failures", len(failed))
            sid, err = failed[0]
            raise RolloutError(
                f"{len(failed)} of {len(requests)} rollouts from the vLLM server at {self.base_url} failed "
                f"(transient errors are retried {self.retry['retries']} times; a GRPO group cannot lose a row, so "
                f"the step stops here); first: sample {sid}: {type(err).__name__}: {err}") from err
        return [r[0] for r in results], [r[1] for r in results]

    def sync(self, trainer):
        """Push the trainer's weights to the server: over vLLM's weight-transfer engine
        (`_sync_transfer`) or through a folder (`_sync_disk`), as `rollout.sync` decides; then
        reset the caches computed with the old weights. Every rank calls it (ZeRO-3 gathers are
        collective); only rank 0 talks to the server."""
        from egoadapt.rollout.weights import iter_weights

        if not trainer.accelerator.is_main_process:
            for _ in iter_weights(trainer.model_wrapped, trainer.accelerator):  # take part in ZeRO-3 gathers
                pass
            return
        step = int(getattr(getattr(trainer, "state", None), "global_step", 0) or 0)
        if self._route() == "transfer":
            self._sync_transfer(trainer, step)
        else:
            self._sync_disk(trainer, step)
        for cache in ("reset_prefix_cache", "reset_encoder_cache", "reset_mm_cache"):  # computed with old weights
            self._post(f"{self.root}/{cache}").raise_for_status()
        self._count("syncs")

    def _route(self) -> str:
        """`transfer` or `disk`. For rollout.sync=auto: transfer when the server runs a weight-transfer
        engine this trainer can drive, else disk (logged once, with the reason)."""
        if self.sync_route is None:
            problem = self._transfer_problem()
            self.sync_route = "disk" if problem else "transfer"
            if problem:
                log.warning("rollout.sync=auto: weights go to the vLLM server at %s through the disk (%s): %s",
                            self.root, self.weights_dir, problem)
        return self.sync_route

    def _server_backend(self) -> str | None:
        from egoadapt.net import request_with_retries

        r = request_with_retries(self.http, "GET", f"{self.root}/server_info", params={"config_format": "json"},
                                 **self.retry)
        r.raise_for_status()
        return ((r.json().get("vllm_config") or {}).get("weight_transfer_config") or {}).get("backend")

    def _transfer_problem(self) -> str | None:
        """Why weights cannot go over a transfer engine, or None."""
        from egoadapt.rollout.transfer import TransferError, trainer_backend

        try:
            trainer_backend(self._server_backend())
        except TransferError as e:
            return f"the vLLM server at {self.root}: {e}"
        except (httpx.HTTPError, ValueError) as e:
            return f"could not read the vLLM server's config from {self.root}/server_info ({type(e).__name__}: {e})"
        return None

    def _sync_transfer(self, trainer, step: int) -> None:
        """Broadcast the weights over the group vLLM's trainer engine shares with the server's
        workers (opened at the first sync): start, update (the tensors stream alongside it, one at
        a time, as `iter_weights` yields them), finish. rollout.sync=auto falls back to the disk
        if the group cannot be opened."""
        from egoadapt.rollout import transfer

        source = transfer.TrainerWeights(trainer.model_wrapped, trainer.accelerator)
        if self._transfer is None:
            problem = self._transfer_problem()
            if problem:
                raise RuntimeError(f"rollout.sync=transfer: {problem}; or set rollout.sync=disk")
            address = self.transfer_address or transfer.local_address(self.root)
            from egoadapt.net import request_with_retries

            r = request_with_retries(self.http, "GET", f"{self.root}/get_world_size", **self.retry)
            r.raise_for_status()
            workers = int(r.json()["world_size"])  # the trainer is rank 0, the server's workers follow
            info = transfer.init_info(self._server_backend(), address,
                                      self.transfer_port or transfer.free_port(address), workers + 1, self.timeout)
            client = transfer.ServerSyncClient(self.root, self._post_once)
            try:
                self._transfer = transfer.open_transfer(info, client, source)
            except Exception as e:
                if self.sync_mode != "auto":
                    raise
                log.warning("rollout.sync=auto: could not open the %s weight-transfer group with the vLLM server at "
                            "%s (%s: %s); weights go through the disk (%s) from now on", info.backend, self.root,
                            type(e).__name__, e, self.weights_dir)
                self.sync_route = "disk"
                return self._sync_disk(trainer, step)
            log.info("rollout: weights sync to the vLLM server at %s over its %s weight-transfer engine (%s:%d)",
                     self.root, info.backend, info.master_address, info.master_port)
        self._transfer.source = source
        self._transfer.client.weight_version = f"step-{step}"
        self._transfer.send_weights()

    def _post_once(self, url: str, **kwargs):
        """A POST without retries (a weight-transfer request must not be repeated), with the
        engine's deadline and API key."""
        self._count("requests")
        return self.http.request("POST", url, **kwargs)

    def _sync_disk(self, trainer, step: int) -> None:
        """Stream the trainer's weights into a fresh folder `weights_dir/step-<step>-<id>/` (one
        tensor in memory at a time; under ZeRO-3 one parameter gathered at a time), have the
        server reload from it, then delete the older folders. A fresh path each time: vLLM
        has served stale weights when asked to reload a path it loaded before."""
        import shutil
        import uuid

        from egoadapt.rollout.weights import iter_weights, save_weights, weight_specs

        weights = iter_weights(trainer.model_wrapped, trainer.accelerator)
        name = f"{self.SYNC_PREFIX}{step:06d}-{uuid.uuid4().hex[:8]}"
        staging, folder = self.weights_dir / f".{name}.partial", self.weights_dir / name
        save_weights(weights, staging, weight_specs(trainer.model_wrapped, trainer.accelerator))
        staging.rename(folder)  # the server only ever sees a complete folder
        r = self._post(f"{self.root}/collective_rpc", json={
            "method": "reload_weights", "kwargs": {"weights_path": str(folder), "is_checkpoint_format": True}})
        if r.status_code == 404:
            raise RuntimeError("the vLLM server has no /collective_rpc: start it with VLLM_SERVER_DEV_MODE=1 "
                               "(launch/vllm_server.sh does)")
        if r.status_code == 401:
            raise RuntimeError(f"the vLLM server at {self.root} refused the weight reload (401): send its API key "
                               "in the environment variable named by rollout.api_key_env")
        r.raise_for_status()
        self.synced_dir = folder
        for old in self.weights_dir.iterdir():  # the server holds the new weights: the old folders can go
            if old != folder and old.is_dir() and old.name.lstrip(".").startswith(self.SYNC_PREFIX):
                shutil.rmtree(old, ignore_errors=True)

    def close(self):
        transfer, self._transfer = self._transfer, None
        if transfer is not None:  # let the server's workers leave the group (a later trainer opens a new one)
            try:
                transfer.client.shutdown_weight_transfer_engine()
            except Exception as e:  # noqa: BLE001 - closing: the server may be gone already
                log.warning("rollout: could not release the vLLM server's weight-transfer group: %s", e)
            transfer.shutdown()
        self.http.close()
        super().close()
