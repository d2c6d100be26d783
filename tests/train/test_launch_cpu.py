"""Training as users launch it: vLLM rollouts, 2-process DDP, DeepSpeed ZeRO-2, resume, sweeps, bad configs."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from egoadapt.cli import main as cli
from tests.train.helpers import train

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
GRPO_SMALL = ("trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=8")


def launch(args: list[str], out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
    proc = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    (out.parent / f"{out.name}.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


def cli_args(model, data, out, *overrides):
    return ["-m", "egoadapt.cli", "train", "recipe=demo/tiny_grpo", f"model.path={model}", f"data.root={data}",
            f"out={out}", f"cache_dir={out.parent / 'input_cache'}", "trainer.max_steps=2", *GRPO_SMALL, *overrides]


@pytest.mark.integration
def test_grpo_with_vllm_colocate(tiny_model_dir, synth_dir, tmp_path):
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "colocate", "rollout=vllm_colocate",
                "trainer.max_steps=2", *GRPO_SMALL)
    assert json.loads(next(out.glob("checkpoint-2/trainer_state.json")).read_text())["global_step"] == 2


@pytest.mark.server
def test_grpo_with_vllm_server(tiny_model_dir, synth_dir, tmp_path):
    from egoadapt.rollout.server import VLLMServer

    with VLLMServer(str(tiny_model_dir), served_model_name="policy", log_path=tmp_path / "server.log") as server:
        out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "server", "rollout=vllm_server",
                    f"rollout.base_url={server.base_url}", "rollout.model=policy", "trainer.max_steps=3",
                    "trainer.learning_rate=1e-2", *GRPO_SMALL)
    # the server was handed the weights after steps 1 and 2
    assert (out / "rollout_weights" / "model.safetensors").is_file()
    assert json.loads(next(out.glob("checkpoint-3/trainer_state.json")).read_text())["global_step"] == 3


@pytest.mark.integration
def test_grpo_ddp_two_processes(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "ddp"
    proc = launch([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1",
                   *cli_args(tiny_model_dir, synth_dir, out, "trainer.use_cpu=true")], out)
    log = proc.stdout + proc.stderr
    assert "process 0 of 2" in log and "process 1 of 2" in log
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.integration
def test_grpo_deepspeed_zero2(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "zero2"
    proc = launch([ACCELERATE, "launch", "--config_file", "launch/accelerate/cpu_zero2.yaml",
                   *cli_args(tiny_model_dir, synth_dir, out)], out, timeout=900)
    assert "DeepSpeed" in proc.stdout + proc.stderr
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.integration
def test_killed_run_resumes_and_continues_the_step_count(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "resume"
    common = [f"model.path={tiny_model_dir}", f"data.root={synth_dir}", f"out={out}", f"cache_dir={tmp_path / 'cache'}",
              "trainer.save_steps=2", "trainer.per_device_train_batch_size=2", "trainer.logging_steps=1"]
    # a run far too long to finish: killed as soon as it has a checkpoint past step 4
    proc = subprocess.Popen([sys.executable, "-m", "egoadapt.cli", "train", "recipe=demo/tiny_sft", *common,
                             "trainer.max_steps=100000"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def saved_steps():
        return [int(p.parent.name.split("-")[1]) for p in out.glob("checkpoint-*/trainer_state.json")]

    deadline = time.monotonic() + 300
    while max(saved_steps(), default=0) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert max(saved_steps(), default=0) >= 4, "no checkpoint written before the kill"
    assert not (out / "final").exists()
    last = max(saved_steps())
    split_before = (out / "split.json").read_bytes()
    train("demo/tiny_sft", tiny_model_dir, synth_dir, out, "resume=true", f"trainer.max_steps={last + 4}",
          "trainer.save_steps=2", "trainer.per_device_train_batch_size=2")
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == last + 4
    resumed = [h["step"] for h in state["log_history"] if "loss" in h and h["step"] > last]
    assert resumed == [last + 1, last + 2, last + 3, last + 4]  # continued from the checkpoint, not from 0
    assert (out / "split.json").read_bytes() == split_before  # same split on resume
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.integration
def test_hydra_multirun_sweep_one_folder_per_job(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "sweep"
    rc = cli(["train", "-m", "recipe=demo/tiny_sft", f"model.path={tiny_model_dir}", f"data.root={synth_dir}",
              f"out={out}", f"cache_dir={tmp_path / 'cache'}", "trainer.max_steps=1",
              "trainer.learning_rate=1e-3,2e-3", "seed=0,1"])
    assert rc == 0
    jobs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    lrs = set()
    for job in jobs:
        assert (job / "final" / "model.safetensors").is_file() and (job / "split.json").is_file()
        lrs.add(json.loads((job / "final" / "training_args.json").read_text())["learning_rate"]
                if (job / "final" / "training_args.json").exists() else
                __import__("yaml").safe_load((job / "config.yaml").read_text())["trainer"]["learning_rate"])
    assert lrs == {1e-3, 2e-3}
