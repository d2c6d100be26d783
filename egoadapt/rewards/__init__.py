"""Answer parsing, matching, the LLM judge and reward functions (shared by GRPO and evaluation).

parse     raw output -> Parsed (prediction, format_ok, letters...); official extraction;
          is_prediction_key, the one rule for the prediction field
commit    does a prediction commit to exactly one answer (hedges, negations, lists)?
match     letter / text / count / time-span / region comparisons
judge     OpenAI-compatible LLM judge: concurrent, retried, cached, budgeted
scoring   score_outputs(outputs, targets, cfg, judge) -> [Score]: the one scoring path
registry  TRL reward functions by name; build_reward_funcs(cfg.reward, judge)
audit     python -m egoadapt.rewards.audit: expected reward of hedging strategies on real option sets
"""
from egoadapt.rewards.judge import Judge, JudgeRequest, JudgeSettings, Verdict
from egoadapt.rewards.parse import Parsed, official_extract, parse_answer
from egoadapt.rewards.registry import (
    available_rewards,
    build_reward_funcs,
    register_reward,
)
from egoadapt.rewards.scoring import Score, ScoringConfig, Target, score_outputs

__all__ = [
    "Judge",
    "JudgeRequest",
    "JudgeSettings",
    "Parsed",
    "Score",
    "ScoringConfig",
    "Target",
    "Verdict",
    "available_rewards",
    "build_reward_funcs",
    "official_extract",
    "parse_answer",
    "register_reward",
    "score_outputs",
]
