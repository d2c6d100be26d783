"""Reward functions with TRL's signature, built from the real Hydra config."""
from __future__ import annotations

import json
import math

import pytest

from egoadapt.config.compose import compose
from egoadapt.rewards.judge import Judge, JudgeSettings
from egoadapt.rewards.registry import (
    available_rewards,
    build_reward_funcs,
    completion_text,
    register_reward,
)
from tests.rewards.judge_stub_server import StubJudgeServer

OPTIONS = ["hook", "scissors", "grasper", "clipper"]


def reward_cfg(overrides=(), name="default"):
    return compose("score", [f"reward={name}", *overrides]).reward


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def columns(n: int, qa: list[str]) -> dict:
    """Dataset columns as TRL passes them: one list per column, plus trainer kwargs."""
    return {
        "answer_letter": ["B"] * n, "answer_text": ["scissors"] * n, "options": [OPTIONS] * n, "qa": qa,
        "category": ["Identification"] * n, "question_type": ["dominant held-object identification"] * n,
        "question": ["Which tool is held?"] * n, "detailed_answer": ["The surgeon holds scissors."] * n,
        "trainer_state": object(), "log_extra": lambda *a: None,
    }


def test_default_config_builds_named_funcs_and_weights():
    funcs, weights = build_reward_funcs(reward_cfg())
    assert [f.__name__ for f in funcs] == ["format", "accuracy"]
    assert weights == [0.1, 1.0]
    funcs, weights = build_reward_funcs(reward_cfg(["reward.weights.format=0.5", "+reward.weights.correct=2"]))
    assert [f.__name__ for f in funcs] == ["format", "accuracy", "correct"] and weights == [0.5, 1.0, 2.0]
    funcs, weights = build_reward_funcs(reward_cfg(name="official"))
    assert weights == [0.0, 1.0]


def test_trl_call_with_chat_completions():
    funcs, _ = build_reward_funcs(reward_cfg())
    fmt, acc = funcs
    outs = [json.dumps({"prediction": "B", "reason": "r"}), "B", "A or B", json.dumps({"prediction": "A"})]
    completions = [chat(o) for o in outs]
    cols = columns(4, ["close"] * 4)
    assert fmt(prompts=[[]] * 4, completions=completions, completion_ids=[[1]] * 4, **cols) == [1.0, 0.0, 0.0, 1.0]
    assert acc(prompts=[[]] * 4, completions=completions, completion_ids=[[1]] * 4, **cols) == [1.0, 1.0, 0.0, 0.0]


def test_official_mode_reward_is_the_benchmark_rule():
    funcs, _ = build_reward_funcs(reward_cfg(name="official"))
    acc = funcs[1]
    outs = ["B", json.dumps({"prediction": "b"}), json.dumps({"prediction": "hook, scissors, grasper"})]
    got = acc(prompts=None, completions=outs, **columns(3, ["close", "close", "open"]))
    assert got == [0.0, 1.0, 1.0]  # official: bare letters fail, listing candidates passes


def test_qa_specific_rewards_return_none_on_other_rows():
    cfg = reward_cfg(["reward.weights.format=null", "reward.weights.accuracy=null",  # off: not built
                      "+reward.weights.close_accuracy=1.0", "+reward.weights.open_accuracy=1.0"])
    close_acc, open_acc = build_reward_funcs(cfg)[0]
    outs = [json.dumps({"prediction": "B"}), json.dumps({"prediction": "scissors"})]
    cols = columns(2, ["close", "open"])
    assert close_acc(prompts=None, completions=outs, **cols) == [1.0, None]
    assert open_acc(prompts=None, completions=outs, **cols) == [None, 1.0]


def test_a_null_weight_turns_a_reward_off():
    funcs, weights = build_reward_funcs({"weights": {"format": None, "accuracy": 1.0}})
    assert len(funcs) == 1 and weights == [1.0]
    funcs, weights = build_reward_funcs({"weights": {"format": 0, "accuracy": 1.0}})  # 0: computed, adds nothing
    assert len(funcs) == 2 and weights == [0.0, 1.0]
    with pytest.raises(ValueError, match="every reward is turned off"):
        build_reward_funcs({"weights": {"format": None}})


def test_missing_columns_default_sensibly_and_lettered_options():
    funcs, _ = build_reward_funcs(reward_cfg())
    acc = funcs[1]
    # no qa column: options + letter -> CloseQA; options given as "A: text"
    got = acc(prompts=None, completions=["scissors", "hook"], answer_letter=["B", "B"],
              options=[["A: hook", "B: scissors", "C: grasper", "D: clipper"]] * 2)
    assert got == [1.0, 0.0]


def test_rewards_are_never_nan():
    funcs, _ = build_reward_funcs(reward_cfg(["+reward.weights.correct=1"]))
    junk = [None, "", "{" * 50_000, chat(""), [], {"role": "assistant"},
            [{"role": "assistant", "content": [{"type": "text", "text": "B"}]}]]
    cols = columns(len(junk), ["close", "open"] * 3 + ["close"])
    for f in funcs:
        values = f(prompts=None, completions=junk, **cols)
        assert len(values) == len(junk) and all(v is None or math.isfinite(v) for v in values)


def test_completion_text_forms():
    assert completion_text("x") == "x"
    assert completion_text([{"role": "assistant", "content": "y"}]) == "y"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                               {"type": "text", "text": "b"}]}]) == "ab"
    assert completion_text(None) == ""


def test_unknown_reward_and_bad_weight():
    with pytest.raises(ValueError, match="registered: .*accuracy"):
        build_reward_funcs({"weights": {"acuracy": 1.0}})
    with pytest.raises(ValueError, match="number"):
        build_reward_funcs({"weights": {"accuracy": "high"}})
    with pytest.raises(ValueError, match="no weights"):
        build_reward_funcs({"mode": "training"})


def test_register_a_custom_reward():
    @register_reward("test_brevity")
    def _brevity(scorer):
        def fn(prompts=None, completions=(), completion_ids=None, **columns):
            return [1.0 if len(completion_text(c)) < 40 else 0.0 for c in completions]
        return fn

    assert "test_brevity" in available_rewards()
    (fn,), _ = build_reward_funcs({"weights": {"test_brevity": 1.0}})
    assert fn.__name__ == "test_brevity" and fn(completions=["short", "x" * 50]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="already registered"):
        register_reward("test_brevity")(_brevity)


def test_funcs_built_together_ask_the_judge_once(tmp_path):
    with StubJudgeServer() as stub:
        judge = Judge(JudgeSettings(base_url=stub.base_url, model="stub", backoff_s=0.01))
        funcs, _ = build_reward_funcs(reward_cfg(["+reward.weights.correct=1"]), judge=judge)
        outs = [json.dumps({"prediction": f"maybe the {w} tool"}) for w in ("sharp", "blue", "sharp")]
        metrics = {}
        cols = columns(3, ["open"] * 3)
        cols["log_metric"] = lambda name, value: metrics.__setitem__(name, value)
        results = [f(prompts=None, completions=outs, **cols) for f in funcs]
        judge.close()
    assert stub.requests == 2  # two distinct predictions; `accuracy` and `correct` share one scoring
    assert results[1] == [0.2, 0.2, 0.2]  # stub mark 1 -> reward 1/5
    assert results[2] == [0.0, 0.0, 0.0]
    assert metrics["judge/calls"] == 2.0 and metrics["judge/failures"] == 0.0


def test_qa_column_accepts_prompt_names_and_refuses_others():
    funcs, _ = build_reward_funcs(reward_cfg())
    acc = funcs[1]
    outs = [json.dumps({"prediction": "B"}), json.dumps({"prediction": "scissors"})]
    assert acc(prompts=None, completions=outs, **columns(2, ["CloseQA", "openqa"])) == [1.0, 1.0]
    with pytest.raises(ValueError, match="qa must be"):
        acc(prompts=None, completions=outs[:1], **columns(1, ["multiple-choice"]))


def test_zero_credit_reasons_are_counted_per_step_and_tabled():
    """Each reason an output earned nothing is a per-step metric (a policy drifting toward a
    loophole shows as a rising zero_credit/<reason>) and a column of TRL's completions table."""
    funcs, _ = build_reward_funcs(reward_cfg())
    acc = funcs[1]
    outs = [json.dumps({"prediction": "B"}), json.dumps({"prediction": "A or B"}),
            json.dumps({"prediction": "not A"}), json.dumps({"prediction": ""}), json.dumps({"prediction": "A"}),
            json.dumps({"Predicton": "B"}), json.dumps({"reason": "B"}), "x" * 5000]
    metrics, extra = {}, {}
    cols = columns(len(outs), ["close"] * len(outs))
    cols["log_metric"] = lambda name, value: metrics.__setitem__(name, value)
    cols["log_extra"] = lambda column, values: extra.__setitem__(column, values)
    assert acc(prompts=None, completions=outs, **cols) == [1.0, 0, 0, 0, 0, 1.0, 0, 0]
    assert extra["zero_credit"] == ["", "hedge", "negation", "empty", "wrong", "", "no_prediction_field", "too_long"]
    n = len(outs)
    for reason in ("hedge", "negation", "empty", "wrong", "no_prediction_field", "too_long"):
        assert metrics[f"zero_credit/{reason}"] == pytest.approx(1 / n), reason
    assert metrics["zero_credit/any"] == pytest.approx(6 / n) and metrics["zero_credit/other"] == 0.0
    assert metrics["zero_credit/wrong_candidate"] == 0.0  # every reason is logged every step (continuous curves)
