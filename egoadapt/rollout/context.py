"""vLLM engines' context from the plan (`egoadapt.inputs.context`), and each command's plan.

- **vLLM engines** (`vllm_kwargs`): `max_model_len` = longest prompt + completion budget
  (capped at the model's positions); `max_num_batched_tokens` at least that, since vLLM
  sizes its encoder cache from it and refuses a video with more tokens than the cache holds;
  and `mm_processor_kwargs` with the trainer's processor limits (`model.min_pixels` /
  `model.max_pixels`), so vLLM's video tokens are the trainer's. Any of them set in
  `rollout.engine_kwargs` / `vllm.engine_kwargs` wins; a `max_model_len` below the longest
  prompt is refused, naming the clip.
- **A vLLM server** (`check_server_context`): its `max_model_len` (from `/v1/models`) must
  hold the longest prompt; otherwise the run stops and says which `VLLM_MAX_MODEL_LEN` to
  restart `launch/vllm_server.sh` with.
- **Commands** (`train_context`, `eval_context`): the plan of `egoadapt train` / `egoadapt eval`
  from their configs, logged, and the rollout server checked against it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from egoadapt.data.schema import Sample
from egoadapt.inputs.context import SHRINK_HINT, ContextPlan, context_error, plan_context
from egoadapt.inputs.families import as_family
from egoadapt.inputs.qa import qa_modes

log = logging.getLogger(__name__)

# vLLM's own floor for max_num_batched_tokens on a GPU (its default for the offline LLM);
# more only where one prompt (and so one video) needs it
MIN_BATCHED_TOKENS = 16384


# ------------------------------------------------------------------ engines

def vllm_kwargs(plan: ContextPlan, family: Any, user: Mapping[str, Any] | None = None,
                key: str = "engine_kwargs") -> dict[str, Any]:
    """vLLM engine arguments from the plan, under the user's own (`key` names them in errors)."""
    user = dict(user or {})
    mm = as_family(family).mm_processor_kwargs()  # the trainer's pixel limits, so vLLM reads its video tokens
    out: dict[str, Any] = {"mm_processor_kwargs": mm} if mm else {}
    if plan.longest is None:  # nothing measured: vLLM's own defaults
        return {**out, **user}
    out["max_model_len"] = plan.max_model_len
    given = user.get("max_model_len")
    if given is not None and int(given) <= plan.longest.tokens:
        raise context_error(plan.longest, f"{key}.max_model_len={given} cannot hold this clip's prompt of "
                                          f"{plan.longest.tokens} tokens: remove it (the length is computed from "
                                          f"the data) or raise it to {plan.max_model_len}")
    length = int(given) if given is not None else plan.max_model_len
    if given is not None and int(given) < plan.needed:
        log.warning("context: %s.max_model_len=%s is under %s", key, given, plan.describe())
    # vLLM sizes its encoder cache from this, and refuses a video with more tokens than it holds
    out["max_num_batched_tokens"] = max(length, MIN_BATCHED_TOKENS)
    out.update(user)
    return out


def check_server_context(base_url: str, model: str, plan: ContextPlan, timeout_s: float = 10.0,
                         api_key: str = "") -> int | None:
    """The served model's max_model_len (vLLM's /v1/models); raises DataError naming the clip when
    it cannot hold the longest prompt. None when the server does not say (or does not answer:
    the server checks before this report that)."""
    import httpx

    try:
        r = httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout_s,
                      headers={"Authorization": f"Bearer {api_key}"} if api_key else None)
        r.raise_for_status()
        cards = r.json().get("data") or []
    except Exception as e:  # noqa: BLE001 - reported by the server checks; this one only reads a number
        log.warning("context: could not read max_model_len from %s/models (%s)", base_url, e)
        return None
    card = next((c for c in cards if c.get("id") == model), cards[0] if cards else {})
    served = card.get("max_model_len")
    if served is None or plan.longest is None:
        return served
    served = int(served)
    if served <= plan.longest.tokens:
        raise context_error(plan.longest, f"the prompt is {plan.longest.tokens} tokens and the vLLM server at "
                                          f"{base_url} holds {served} (max_model_len): restart it with "
                                          f"VLLM_MAX_MODEL_LEN={plan.max_model_len} launch/vllm_server.sh ..., "
                                          f"or {SHRINK_HINT}")
    if served < plan.needed:
        log.warning("context: the vLLM server at %s holds %d tokens, under %s: long completions are cut",
                    base_url, served, plan.describe())
    return served


# ------------------------------------------------------------------ commands

def train_context(cfg: Any, samples: Sequence[Sample], family: Any) -> ContextPlan:
    """`egoadapt train`'s plan: its QA types (data.qa), max_completion_length (GRPO; SFT: none)."""
    grpo = cfg.algorithm == "grpo"
    completion = int(cfg.trainer.get("max_completion_length") or 256) if grpo else 0
    plan = plan_context(samples, family, cfg.frames, cfg.prompt, qa_modes(cfg.data.get("qa", "close")),
                        completion, cfg.model.get("path"))
    log.info("context: %s", plan.describe())
    rollout = cfg.get("rollout") or {}
    if grpo and rollout.get("engine") == "vllm_server" and rollout.get("base_url"):
        import os

        key_env = rollout.get("api_key_env")
        check_server_context(rollout.base_url, rollout.get("model") or str(cfg.model.path), plan,
                             api_key=os.environ.get(key_env, "") if key_env else "")
    return plan


def eval_context(cfg: Any, samples: Sequence[Sample], family: Any) -> ContextPlan:
    """`egoadapt eval`'s plan: its QA types (qa), generation.max_new_tokens."""
    completion = int(cfg.generation.get("max_new_tokens") or 256)
    plan = plan_context(samples, family, cfg.frames, cfg.prompt, qa_modes(cfg.qa), completion,
                        str(cfg.checkpoint))
    log.info("context: %s", plan.describe())
    return plan
