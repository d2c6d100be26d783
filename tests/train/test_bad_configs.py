"""Bad launches fail at start, with a message that says what to fix, before any model is loaded."""
import importlib.util

import pytest

from egoadapt.cli import main as cli


def run(*args):
    with pytest.raises(SystemExit) as e:
        cli(["train", *args])
    return str(e.value)


def test_unknown_recipe_lists_the_recipes():
    msg = run("recipe=demo/tiny_sfft", "out=/tmp/x")
    assert "unknown recipe 'demo/tiny_sfft'" in msg and "demo/tiny_sft" in msg


def test_missing_recipe_argument():
    assert "recipe=NAME is required" in run("out=/tmp/x")


def test_missing_model_path(no_model_load, tmp_path):
    assert "model.path" in run("recipe=demo/tiny_sft", f"out={tmp_path}", f"data.root={tmp_path}")


def test_model_path_that_is_not_a_checkpoint(no_model_load, tmp_path):
    msg = run("recipe=demo/tiny_sft", f"out={tmp_path}", f"model.path={tmp_path}", f"data.root={tmp_path}")
    assert "no config.json" in msg


def test_gpu_recipe_on_a_cpu_machine(no_model_load, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU machine, wherever this runs
    msg = run("recipe=egocross/sft_qwen2_5_vl_7b", f"out={tmp_path}")
    assert "sized for GPUs (4x H100)" in msg


def test_vllm_requested_but_not_installed(no_model_load, tiny_model_dir, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    msg = run("recipe=demo/tiny_grpo", f"out={tmp_path}", f"model.path={tiny_model_dir}", f"data.root={tmp_path}",
              "rollout=vllm_colocate")
    assert "needs vLLM, which is not installed" in msg


def test_unknown_trainer_key_suggests_the_trl_name(no_model_load, tiny_model_dir, tmp_path):
    msg = run("recipe=demo/tiny_sft", f"out={tmp_path}", f"model.path={tiny_model_dir}", f"data.root={tmp_path}",
              "trainer.learning_rte=1e-3")
    assert "learning_rte (did you mean learning_rate?)" in msg


def test_server_rollout_without_url(no_model_load, tiny_model_dir, tmp_path):
    msg = run("recipe=demo/tiny_grpo", f"out={tmp_path}", f"model.path={tiny_model_dir}", f"data.root={tmp_path}",
              "rollout=vllm_server")
    assert "rollout.base_url" in msg


def test_unknown_reward(no_model_load, tiny_model_dir, tmp_path):
    msg = run("recipe=demo/tiny_grpo", f"out={tmp_path}", f"model.path={tiny_model_dir}", f"data.root={tmp_path}",
              "+reward.weights.nonsense=1.0")
    assert "unknown rewards ['nonsense']" in msg


def test_resume_skips_a_checkpoint_left_half_written(tmp_path):
    from egoadapt.train.checkpoint import last_checkpoint

    for step, complete in ((2, True), (4, True), (6, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert last_checkpoint(tmp_path / "nothing") is None
