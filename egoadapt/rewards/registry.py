"""Reward functions by name, with TRL's reward-function signature, built from Hydra config.

    funcs, weights = build_reward_funcs(cfg.reward, judge=Judge.from_config(cfg.judge))
    GRPOTrainer(..., reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))

Each function is `f(prompts, completions, completion_ids=None, **columns) -> list[float | None]`;
dataset columns (answer_letter, answer_text, options, qa, category, question_type,
question, detailed_answer) arrive as lists aligned with `completions`. Functions built
together share one scorer, so `accuracy` and `correct` on the same batch parse once
and ask the judge once.

Add a reward:

    @register_reward("my_reward")
    def _my_reward(scorer: BatchScorer):
        def fn(prompts, completions, completion_ids=None, **columns):
            return [s.reward for s in scorer(completions, columns)]
        return fn
"""
from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from egoadapt.rewards.judge import FALLBACK_STATUSES, Judge
from egoadapt.rewards.parse import parse_answer
from egoadapt.rewards.scoring import ZERO_CREDIT_REASONS, Score, ScoringConfig, Target, score_outputs

log = logging.getLogger(__name__)

RewardFn = Callable[..., list]
JUDGE_METRICS = ("calls", "cache_hits", "failures", "unparsable", "budget_exhausted", "breaker_opens", "breaker_skips")
REWARN_EVERY = 50  # batches: a long judge outage is warned about again
_REGISTRY: dict[str, Callable[[BatchScorer], RewardFn]] = {}

# Columns TRL passes that are not dataset columns.
_TRAINER_KWARGS = {"trainer_state", "log_extra", "log_metric", "environments"}


def register_reward(name: str):
    """Register a reward factory `factory(scorer) -> reward_fn` under `name`."""
    def deco(factory):
        if name in _REGISTRY:
            raise ValueError(f"reward {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory
    return deco


def available_rewards() -> list[str]:
    return sorted(_REGISTRY)


def completion_text(completion: Any) -> str:
    """A completion as text: a string, or a chat list whose last assistant message may
    hold a string or content blocks."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        completion = [completion]
    if isinstance(completion, Sequence):
        msgs = [m for m in completion if isinstance(m, Mapping)]
        assistant = [m for m in msgs if m.get("role", "assistant") == "assistant"] or msgs
        if not assistant:
            return ""
        content = assistant[-1].get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, Sequence):
            return "".join(
                str(b.get("text", "")) for b in content
                if isinstance(b, Mapping) and b.get("type", "text") == "text"
            )
    return "" if completion is None else str(completion)


def targets_from_columns(n: int, columns: Mapping[str, Any]) -> list[Target]:
    """One Target per completion from TRL's column lists (missing columns are None)."""
    cols = {k: v for k, v in columns.items() if k not in _TRAINER_KWARGS and isinstance(v, (list, tuple))}
    bad = [k for k, v in cols.items() if len(v) != n]
    if bad:
        raise ValueError(f"reward columns {bad} do not have one value per completion ({n})")
    return [Target.from_row({k: v[i] for k, v in cols.items()}) for i in range(n)]


class BatchScorer:
    """Scores a batch once for all reward functions built together (same completions ->
    same scores), and reports judge/issue statistics through TRL's `log_metric`."""

    def __init__(self, cfg: ScoringConfig, judge: Judge | None = None):
        self.cfg = cfg
        self.judge = judge
        self._lock = threading.Lock()
        self._last_key: tuple | None = None
        self._last: list[Score] = []
        self._failing_batches = 0  # batches in a row whose judge failure rate is over the limit

    def texts_and_targets(self, completions, columns) -> tuple[list[str], list[Target]]:
        texts = [completion_text(c) for c in completions]
        return texts, targets_from_columns(len(texts), columns)

    def __call__(self, completions, columns: Mapping[str, Any]) -> list[Score]:
        texts, targets = self.texts_and_targets(completions, columns)
        key = (tuple(texts), tuple(targets))
        with self._lock:
            if key == self._last_key:
                return self._last
            before = self.judge.counters if self.judge else None
            scores = score_outputs(texts, targets, self.cfg, self.judge)
            self._last_key, self._last = key, scores
            rate = self._judge_health(scores)
        self._log(columns, scores, before, rate)
        return scores

    def _judge_health(self, scores: list[Score]) -> float | None:
        """This batch's judge failure rate; warns when it goes over judge.max_failure_rate,
        again every REWARN_EVERY batches while it stays there, and when it recovers. Training
        goes on: a transient outage costs some fallback rewards, not the run."""
        asked = [s for s in scores if s.judge_status not in (None, "unjudged")]
        if self.judge is None or not asked:
            return None
        failed = sum(s.judge_status in FALLBACK_STATUSES for s in asked)
        rate, limit = failed / len(asked), self.judge.settings.max_failure_rate
        if limit is not None and rate > limit:
            self._failing_batches += 1
            if self._failing_batches % REWARN_EVERY == 1:
                log.warning("JUDGE FAILING: %d of %d judgments in this batch got the fallback mark (> "
                            "judge.max_failure_rate=%s), %d batch(es) in a row; their OpenQA rewards are not the "
                            "judge's. Training goes on; see the judge/* metrics.", failed, len(asked), limit,
                            self._failing_batches)
        elif self._failing_batches:
            log.warning("judge recovered after %d failing batch(es)", self._failing_batches)
            self._failing_batches = 0
        return rate

    def _log(self, columns: Mapping[str, Any], scores: list[Score], before: dict | None,
             judge_failure_rate: float | None) -> None:
        """Per step: the share of outputs that earned nothing for each reason (zero_credit/<reason>, so a
        drift toward a loophole shows as a rising curve) and, in TRL's completions table, each
        output's reason (column zero_credit, empty when it earned something)."""
        log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
        if callable(log_extra) and scores:
            log_extra("zero_credit", [s.zero_credit or "" for s in scores])
        if not callable(log_metric) or not scores:
            return
        n = len(scores)
        reasons = Counter(s.zero_credit for s in scores if s.zero_credit)
        for reason in ZERO_CREDIT_REASONS:
            log_metric(f"zero_credit/{reason}", reasons.pop(reason, 0) / n)
        log_metric("zero_credit/other", sum(reasons.values()) / n)
        log_metric("zero_credit/any", sum(s.zero_credit is not None for s in scores) / n)
        if self.judge is not None and before is not None:
            after = self.judge.counters
            for k in JUDGE_METRICS:
                log_metric(f"judge/{k}", float(after[k] - before[k]))
        if judge_failure_rate is not None:
            log_metric("judge/failure_rate", judge_failure_rate)


# --------------------------------------------------------------------------- built-in rewards

@register_reward("format")
def _format(scorer: BatchScorer) -> RewardFn:
    """1.0 when the output follows the JSON answer contract, else 0.0."""
    def fn(prompts=None, completions=(), completion_ids=None, **columns):
        texts, targets = scorer.texts_and_targets(completions, columns)
        return [float(parse_answer(x, t.options or None, t.qa).format_ok) for x, t in zip(texts, targets)]
    return fn


@register_reward("accuracy")
def _accuracy(scorer: BatchScorer) -> RewardFn:
    """CloseQA: 1.0 for the right letter. OpenQA: exact/task-aware/substring/judge score in [0, 1]."""
    def fn(prompts=None, completions=(), completion_ids=None, **columns):
        return [s.reward for s in scorer(completions, columns)]
    return fn


@register_reward("correct")
def _correct(scorer: BatchScorer) -> RewardFn:
    """1.0 when the answer counts as correct (OpenQA: judge mark >= pass mark), else 0.0."""
    def fn(prompts=None, completions=(), completion_ids=None, **columns):
        return [float(s.correct) for s in scorer(completions, columns)]
    return fn


def _only(qa: str) -> Callable[[BatchScorer], RewardFn]:
    def factory(scorer: BatchScorer) -> RewardFn:
        def fn(prompts=None, completions=(), completion_ids=None, **columns):
            return [s.reward if s.qa == qa else None for s in scorer(completions, columns)]
        return fn
    factory.__doc__ = f"accuracy on {qa}QA rows, None (ignored by TRL) on the others"
    return factory


register_reward("close_accuracy")(_only("close"))
register_reward("open_accuracy")(_only("open"))


# --------------------------------------------------------------------------- building

def make_reward(name: str, scorer: BatchScorer) -> RewardFn:
    if name not in _REGISTRY:
        raise ValueError(f"unknown reward {name!r}; registered: {', '.join(available_rewards())}")
    fn = _REGISTRY[name](scorer)
    fn.__name__ = fn.__qualname__ = name  # TRL logs it as rewards/<name>
    return fn


def build_reward_funcs(reward_cfg: Any, judge: Judge | None = None) -> tuple[list[RewardFn], list[float]]:
    """(reward functions, weights) from a `reward` config node:

        mode: training            # or official
        weights: {format: 0.1, accuracy: 1.0}   # null: off (never computed); 0: computed, logged, adds nothing
        ...scoring settings (see ScoringConfig)
    """
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(reward_cfg, DictConfig):
            reward_cfg = OmegaConf.to_container(reward_cfg, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    reward_cfg = dict(reward_cfg or {})
    weights_cfg = dict(reward_cfg.get("weights") or {})
    if not weights_cfg:
        raise ValueError("reward config has no weights: give e.g. weights: {format: 0.1, accuracy: 1.0}")
    scorer = BatchScorer(ScoringConfig.from_mapping(reward_cfg), judge)
    funcs, weights = [], []
    for name, w in weights_cfg.items():
        if w is None:  # turned off (a structured config cannot delete a key): never computed
            continue
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise ValueError(f"reward weight for {name!r} must be a number, got {w!r}") from None
        if not math.isfinite(w):
            raise ValueError(f"reward weight for {name!r} must be finite, got {w}")
        funcs.append(make_reward(name, scorer))
        weights.append(w)
    if not funcs:
        raise ValueError(f"every reward is turned off (weight null) in {weights_cfg}: give at least one a weight")
    return funcs, weights
