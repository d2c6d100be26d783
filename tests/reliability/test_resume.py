"""Resume after a kill: the checkpoint's weights come back, verified, and `final/` is never
written from anything else.

A resumed run used to restore the step count, optimizer and schedule but not the weights
(saved keys `visual.*`/`model.layers.*` vs live `model.visual.*`/`model.language_model.*`,
loaded with strict=False): these tests compare tensors, not step numbers.
"""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.train.helpers import ACCELERATE, launch, train

REPO = Path(__file__).resolve().parents[2]
CONSTANT_LR = ("trainer.lr_scheduler_type=constant", "trainer.warmup_steps=0")
SFT = ("trainer.per_device_train_batch_size=2", "trainer.save_steps=2", "trainer.save_total_limit=null",
       "trainer.logging_steps=1", *CONSTANT_LR)
GRPO = ("trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=8",
        "trainer.learning_rate=1e-2", "trainer.save_steps=2", "trainer.logging_steps=1",
        "+reward.weights.test_length=1.0")  # a reward with spread, so that a step moves the weights


def tensors(folder: Path, name: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return load_file(str(folder / name))


def assert_same_tensors(a: dict, b: dict, atol: float = 0.0) -> None:
    assert set(a) == set(b)
    differ = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), atol=atol, rtol=0)]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ, e.g. {differ[:3]}"


def kill_after_checkpoint(args: list[str], out: Path, step: int, timeout: float = 300) -> int:
    """Start a training run, SIGKILL it once a complete checkpoint at `step` or later exists;
    returns the newest complete checkpoint step."""
    proc = subprocess.Popen([sys.executable, "-m", "egoadapt.cli", "train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def saved() -> list[int]:
        return [int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json")]

    deadline = time.monotonic() + timeout
    try:
        while max(saved(), default=0) < step and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert max(saved(), default=0) >= step, "no checkpoint written before the kill"
    assert not (out / "final").exists(), "the run finished before it could be killed"
    return max(saved())


def losses(out: Path) -> dict[int, float]:
    state = json.loads((out / "trainer_state.json").read_text())
    return {h["step"]: h["loss"] for h in state["log_history"] if "loss" in h}


@pytest.mark.integration
def test_sft_killed_and_resumed_equals_an_uninterrupted_run(tiny_model_dir, synth_dir, tmp_path):
    """kill -9 mid-run, resume: the weights and the losses after the kill are those of a run
    that was never killed (constant LR, so max_steps only decides where each run stops)."""
    killed = tmp_path / "killed"
    common = [f"model.path={tiny_model_dir}", f"data.root={synth_dir}", f"cache_dir={tmp_path / 'cache'}",
              "recipe=demo/tiny_sft", *SFT]
    k = kill_after_checkpoint([*common, f"out={killed}", "trainer.max_steps=100000"], killed, step=4)
    before, split = tensors(killed / f"checkpoint-{k}"), (killed / "split.json").read_bytes()
    train("demo/tiny_sft", tiny_model_dir, synth_dir, killed, "resume=true", f"trainer.max_steps={k + 3}", *SFT)
    reference = train("demo/tiny_sft", tiny_model_dir, synth_dir, tmp_path / "reference",
                      f"trainer.max_steps={k + 3}", *SFT)

    resumed_final, reference_final = tensors(killed / "final"), tensors(reference / "final")
    assert_same_tensors(resumed_final, reference_final, atol=1e-5)
    # and it trained on from the checkpoint: every tensor moved away from it
    assert all(not torch.equal(before[n], resumed_final[n]) for n in before if n.endswith("proj.weight"))
    assert (killed / "split.json").read_bytes() == split  # the split the run started with
    after_kill, uninterrupted = losses(killed), losses(reference)
    for step in range(k + 1, k + 4):
        assert after_kill[step] == pytest.approx(uninterrupted[step], rel=1e-4), (step, after_kill, uninterrupted)


@pytest.mark.integration
@pytest.mark.parametrize("variant", ["grpo", "sft_lora", "grpo_lora"])
def test_resume_restores_every_tensor(variant, tiny_model_dir, synth_dir, tmp_path):
    """A resume that trains no further steps writes `final/` equal to the checkpoint, tensor by tensor."""
    recipe = "demo/tiny_grpo" if variant.startswith("grpo") else "demo/tiny_sft"
    knobs = [*(GRPO if variant.startswith("grpo") else SFT), "trainer.max_steps=2"]
    if variant.endswith("lora"):
        knobs += ["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8", "trainer.learning_rate=5e-2"]
    out = train(recipe, tiny_model_dir, synth_dir, tmp_path / variant, *knobs)
    base = tensors(tiny_model_dir)
    if variant.endswith("lora"):
        saved = tensors(out / "checkpoint-2", "adapter_model.safetensors")
        train(recipe, tiny_model_dir, synth_dir, out, "resume=true", *knobs)
        assert_same_tensors(tensors(out / "final" / "adapter", "adapter_model.safetensors"), saved)
    else:
        saved = tensors(out / "checkpoint-2")
        assert sum(not torch.equal(saved[n], base[n]) for n in saved) > len(saved) // 2  # it did train
        train(recipe, tiny_model_dir, synth_dir, out, "resume=true", *knobs)
        assert_same_tensors(tensors(out / "final"), saved)
    assert not (out / ".final.partial").exists()


def test_a_checkpoint_that_misses_tensors_fails_loudly(tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    from egoadapt.train.checkpoint import CheckpointError, load_full_weights

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    state = tensors(tiny_model_dir)
    state = {k: v + 1 for k, v in state.items()}
    save_file(state, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    load_full_weights(model, tmp_path)  # legacy saved names map onto the live ones
    live = model.state_dict()
    assert torch.equal(live["model.visual.patch_embed.proj.weight"], state["visual.patch_embed.proj.weight"])

    dropped = dict(state)
    dropped.pop("visual.patch_embed.proj.weight")
    dropped["model.layers.0.not_a_weight"] = torch.zeros(1)
    save_file(dropped, str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"1 missing \(model.visual.patch_embed.proj.weight\).*1 unexpected"):
        load_full_weights(model, tmp_path)


def test_final_is_replaced_whole(tmp_path):
    from egoadapt.train.checkpoint import publish_atomically

    final, staging = tmp_path / "final", tmp_path / ".final.partial"
    final.mkdir()
    (final / "model.safetensors").write_text("old")
    staging.mkdir()
    (staging / "model.safetensors").write_text("new")
    publish_atomically(staging, final)
    assert (final / "model.safetensors").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


@pytest.mark.integration
@pytest.mark.parametrize("launcher", ["ddp", "zero3"])
def test_resume_restores_every_tensor_when_launched(launcher, tiny_model_dir, synth_dir, tmp_path):
    """2-process DDP (the plain load on every rank) and DeepSpeed ZeRO-3 (its own partitioned
    checkpoint): a resume that trains no further steps gives back the checkpoint's weights."""
    out = tmp_path / launcher
    flags = (["--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1"] if launcher == "ddp"
             else ["--config_file", "launch/accelerate/zero3.yaml", "--num_processes", "2"])
    args = [ACCELERATE, "launch", *flags, "-m", "egoadapt.cli", "train", "recipe=demo/tiny_sft",
            f"model.path={tiny_model_dir}", f"data.root={synth_dir}", f"out={out}",
            f"cache_dir={tmp_path / 'cache'}", "trainer.max_steps=2", "trainer.learning_rate=1e-2", *SFT]
    if launcher == "ddp":
        args.append("trainer.use_cpu=true")
    launch(args, out, timeout=900)
    saved = tensors(out / "checkpoint-2")
    assert sum(not torch.equal(saved[n], w) for n, w in tensors(tiny_model_dir).items()) > len(saved) // 2
    launch([*args, "resume=true"], out.with_name(f"{launcher}_resumed"), timeout=900)
    assert_same_tensors(tensors(out / "final"), saved)
