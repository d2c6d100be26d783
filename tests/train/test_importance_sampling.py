"""TRL's importance-sampling correction runs on rollouts from vLLM engines (issue 12 item 2):
the ratio trainer/sampler is ~1 when both score the same weights, and truncation engages when
the sampler's log-probs disagree; rollouts from HF generate leave it off."""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from egoadapt.rollout.engines import HFEngine, RolloutEngine, VLLMColocateEngine, VLLMServerEngine
from egoadapt.train.grpo import VideoGRPOTrainer, VideoRollout
from tests.train.helpers import train

SMALL = ("trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=8",
         "trainer.max_steps=2", "+reward.weights.test_length=1.0")


def logged(out: Path, key: str) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [h[key] for h in history if key in h]


def test_only_vllm_engines_return_sampler_logprobs():
    assert not RolloutEngine.sampling_logprobs and not HFEngine.sampling_logprobs
    assert VLLMColocateEngine.sampling_logprobs and VLLMServerEngine.sampling_logprobs


def stand_in_trainer(engine_cls, correction=True):
    """What `_correct_with_engine_logprobs` reads of a trainer after TRL's init."""
    engine = SimpleNamespace(sampling_logprobs=engine_cls.sampling_logprobs, name=engine_cls.name, synced_step=0,
                             syncs=[])
    engine.sync = lambda trainer: engine.syncs.append(trainer.state.global_step)
    engine.logprobs_problem = lambda: None
    trainer = SimpleNamespace(engine=engine, use_vllm=False, vllm_importance_sampling_correction=correction,
                              vllm_importance_sampling_mode="token_truncate", vllm_importance_sampling_clip_min=None,
                              vllm_importance_sampling_clip_max=3.0, state=SimpleNamespace(global_step=0),
                              accelerator=SimpleNamespace(wait_for_everyone=lambda: None, is_main_process=True),
                              _log_metric=lambda name, value: None)
    trainer.rollout_func = VideoRollout(engine, video=None)
    VideoGRPOTrainer._correct_with_engine_logprobs(trainer)
    return trainer


def test_vllm_engine_turns_on_trls_gate_and_syncs_through_trls_hook():
    trainer = stand_in_trainer(VLLMColocateEngine)
    assert trainer.use_vllm and trainer._last_loaded_step == -1
    trainer.vllm_generation.sync_weights()  # what TRL's rollout_func path calls before each rollout
    assert trainer.engine.syncs == []  # step 0: the engine starts from the trainer's checkpoint
    trainer.state.global_step = 1
    trainer.vllm_generation.sync_weights()
    trainer.rollout_func.sync(trainer)  # VideoRollout's own call finds the engine current
    assert trainer.engine.syncs == [1]


@pytest.mark.parametrize("engine_cls,correction", [(HFEngine, True), (VLLMColocateEngine, False)])
def test_correction_stays_off(engine_cls, correction):
    trainer = stand_in_trainer(engine_cls, correction)
    assert not trainer.use_vllm and not hasattr(trainer, "vllm_generation")


def test_vespo_with_sequence_level_correction_is_refused(tiny_model_dir, tmp_path):
    from egoadapt.cli import main as cli

    with pytest.raises(SystemExit) as e:
        cli(["train", "recipe=demo/tiny_grpo", f"out={tmp_path / 'run'}", f"model.path={tiny_model_dir}",
             f"data.root={tmp_path}", "rollout=vllm_colocate", "trainer.loss_type=vespo",
             "trainer.vllm_importance_sampling_mode=sequence_mask"])
    assert "vllm_importance_sampling_mode=token_truncate or token_mask" in str(e.value)


@pytest.mark.integration
def test_ratio_is_one_when_engine_and_trainer_agree_and_truncated_when_not(tiny_model_dir, synth_dir, tmp_path,
                                                                           monkeypatch):
    """One GRPO run with colocated vLLM: step 1 scores the engine's own log-probs (same weights, both
    float32 on CPU); step 2's engine log-probs are lowered by 2 nats a token, as a sampler whose
    policy puts e^-2 the trainer's probability on what it sampled: TRL's per-token ratio e^2 ~ 7.4
    is truncated to clip_max 3."""
    real = VLLMColocateEngine.generate
    calls = []

    def second_call_disagrees(self, *args):
        completions, logprobs = real(self, *args)
        calls.append(logprobs)
        if len(calls) == 2:
            logprobs = [[lp - 2.0 for lp in row] for row in logprobs]
        return completions, logprobs

    monkeypatch.setattr(VLLMColocateEngine, "generate", second_call_disagrees)
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "is", "rollout=vllm_colocate",
                "trainer.temperature=1.0", *SMALL)
    assert len(calls) == 2
    mean, low, high = (logged(out, f"sampling/importance_sampling_ratio/{k}") for k in ("mean", "min", "max"))
    diff = logged(out, "sampling/sampling_logp_difference/mean")
    assert len(mean) == 2 and len(diff) == 2
    # measured: ratio mean 0.97 (0.83..1.13), |dlogp| 0.07 nats: vLLM's vision kernels, and its
    # log-probs renormalised without the banned vision tokens
    assert abs(mean[0] - 1) < 0.1 and 0.7 < low[0] <= high[0] < 1.4 and diff[0] < 0.15
    assert diff[1] == pytest.approx(2.0, abs=0.15)
    assert low[1] == pytest.approx(3.0) and high[1] == pytest.approx(3.0)  # every token's ratio truncated


@pytest.mark.server
def test_rollout_server_returns_processed_logprobs(vllm_server, tiny_model_dir, synth_dir, tmp_path):
    """The rollout server as egoadapt starts it samples and reports the same distribution; a
    server without dev mode's /server_info is named as unchecked."""
    from egoadapt.data.load import load_samples
    from egoadapt.inputs.video import VideoInputs

    samples = load_samples({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                            "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})[:1]
    from transformers import AutoProcessor

    video = VideoInputs(samples, AutoProcessor.from_pretrained(tiny_model_dir), frames_cfg=None)
    engine = VLLMServerEngine(video, {"temperature": 1.0, "max_tokens": 4}, vllm_server.base_url,
                              vllm_server.served_model_name, tmp_path, retries=0)
    try:
        assert engine.logprobs_problem() is None
        engine.root = engine.root + "/nothing-here"
        assert "could not read the logprobs mode" in engine.logprobs_problem()
    finally:
        engine.close()
