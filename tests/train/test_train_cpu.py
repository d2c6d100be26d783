"""SFT and GRPO on the tiny model, on CPU: the video reaches the loss, runs land in their folders."""
import json

import pytest

from tests.train.helpers import max_abs_change, train, weights

pytestmark = pytest.mark.integration

def test_sft_updates_vision_tower_and_language_model(tiny_model_dir, synth_dir, tmp_path):
    out = train("demo/tiny_sft", tiny_model_dir, synth_dir, tmp_path / "sft", "trainer.max_steps=3",
                "trainer.per_device_train_batch_size=4", "trainer.learning_rate=1e-2")
    vision, language = max_abs_change(weights(tiny_model_dir), weights(out / "final"))
    assert vision > 0 and language > 0
    # the run folder holds what reproduces it
    assert (out / "config.yaml").is_file() and "demo" not in (out / "config.yaml").read_text()[:0]
    manifest = json.loads((out / "split.json").read_text())
    assert manifest["train"] and manifest["test"] and not set(manifest["train"]) & set(manifest["test"])
    from transformers import AutoModelForImageTextToText, AutoProcessor

    AutoModelForImageTextToText.from_pretrained(out / "final")
    AutoProcessor.from_pretrained(out / "final")


@pytest.mark.parametrize("loss_type,beta,iterations,checkpointing", [
    ("grpo", 0.04, 1, False), ("dapo", 0.0, 2, True), ("dr_grpo", 0.0, 1, False), ("bnpo", 0.04, 1, False)])
def test_grpo_hf_rollouts_update_vision_tower(tiny_model_dir, synth_dir, tmp_path, loss_type, beta, iterations,
                                              checkpointing):
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "grpo", "trainer.max_steps=2",
                f"trainer.gradient_checkpointing={str(checkpointing).lower()}",
                "trainer.per_device_train_batch_size=8", "trainer.num_generations=4", "trainer.learning_rate=1e-2",
                "trainer.max_completion_length=12", f"trainer.loss_type={loss_type}", f"trainer.beta={beta}",
                f"trainer.num_iterations={iterations}", "+reward.weights.test_length=1.0")
    vision, language = max_abs_change(weights(tiny_model_dir), weights(out / "final"))
    assert vision > 0, "the vision tower got no gradient: the video did not reach the loss"
    assert language > 0
    state = json.loads(next(out.glob("checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == 2


def test_grpo_with_lora_and_frozen_vision(tiny_model_dir, synth_dir, tmp_path):
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "lora", "trainer.max_steps=2",
                "trainer.per_device_train_batch_size=4", "trainer.num_generations=4",
                "trainer.max_completion_length=8", "trainer.learning_rate=1e-1", "model.lora.enabled=true",
                "model.lora.r=4", "model.freeze_vision=true", "+reward.weights.test_length=1.0")
    vision, language = max_abs_change(weights(tiny_model_dir), weights(out / "final"))  # merged checkpoint
    assert vision == 0 and language > 0
    assert (out / "final" / "adapter" / "adapter_config.json").is_file()


def test_wandb_offline_logs_reward_components_and_completions(tiny_model_dir, synth_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "wandb", "trainer.max_steps=2",
                "trainer.per_device_train_batch_size=4", "trainer.num_generations=4",
                "trainer.max_completion_length=8", "logger=wandb", f"logger.dir={tmp_path / 'wandb'}",
                "trainer.log_completions=true")
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # offline: no key, no prompt, nothing sent
    tables = list(runs[0].glob("files/media/table/completions_*.table.json"))
    assert tables
    table = json.loads(tables[0].read_text())
    assert {"prompt", "completion", "format", "accuracy", "advantage", "zero_credit"} <= set(table["columns"])
    assert all(row[table["columns"].index("prompt")].startswith("<video>") for row in table["data"])
    state = json.loads((out / "trainer_state.json").read_text())
    logged = set().union(*(h.keys() for h in state["log_history"]))
    assert {"rewards/format/mean", "rewards/accuracy/mean", "reward", "zero_credit/hedge", "zero_credit/any"} <= logged
