"""Training as users launch it: vLLM rollouts, 2-process DDP, DeepSpeed ZeRO-2 and ZeRO-3, resume, sweeps,
bad configs."""
import json
import re
from pathlib import Path

import pytest

from egoadapt.cli import main as cli
from tests.train.helpers import ACCELERATE, launch, train

REPO = Path(__file__).resolve().parents[2]
GRPO_SMALL = ("trainer.per_device_train_batch_size=4", "trainer.num_generations=4", "trainer.max_completion_length=8")


def cli_args(model, data, out, *overrides):
    return ["-m", "egoadapt.cli", "train", "recipe=demo/tiny_grpo", f"model.path={model}", f"data.root={data}",
            f"out={out}", f"cache_dir={out.parent / 'input_cache'}", "trainer.max_steps=2", *GRPO_SMALL, *overrides]


def logged(out: Path, key: str) -> list[float]:
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    return [h[key] for h in history if key in h]


@pytest.mark.integration
def test_grpo_with_vllm_colocate(tiny_model_dir, synth_dir, tmp_path):
    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "colocate", "rollout=vllm_colocate",
                "trainer.max_steps=2", *GRPO_SMALL)
    assert json.loads(next(out.glob("checkpoint-2/trainer_state.json")).read_text())["global_step"] == 2
    assert len(sync := logged(out, "rollout/sync_seconds")) == 1 and sync[0] > 0  # the sync after step 1


@pytest.mark.integration
def test_multirun_closes_each_jobs_vllm_engine(tiny_model_dir, synth_dir, tmp_path, monkeypatch):
    """Two GRPO jobs with colocated vLLM in one process: the first job's engine is shut down and
    freed before the second job builds its own."""
    import gc
    import weakref

    from egoadapt.rollout.engines import VLLMColocateEngine

    engines, earlier_closed, llms = [], [], []
    real_init = VLLMColocateEngine.__init__

    def init(self, *args, **kwargs):
        gc.collect()
        earlier_closed.append([e.closed for e in engines] + [r() is None for r in llms])
        real_init(self, *args, **kwargs)
        engines.append(self)
        llms.append(weakref.ref(self.llm))

    monkeypatch.setattr(VLLMColocateEngine, "__init__", init)
    out = tmp_path / "sweep"
    assert cli(["train", "-m", *cli_args(tiny_model_dir, synth_dir, out, "rollout=vllm_colocate", "seed=0,1")[3:]]) == 0
    assert earlier_closed == [[], [True, True]]  # job 2 started after job 1's engine was closed and its LLM freed
    gc.collect()
    assert [e.closed for e in engines] == [True, True] and all(r() is None for r in llms)
    assert all((out / job / "final" / "model.safetensors").is_file() for job in ("0", "1"))


@pytest.mark.server
def test_grpo_with_vllm_server(tiny_model_dir, synth_dir, tmp_path):
    from egoadapt.rollout.server import VLLMServer

    with VLLMServer(str(tiny_model_dir), served_model_name="policy", log_path=tmp_path / "server.log") as server:
        out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "server", "rollout=vllm_server",
                    f"rollout.base_url={server.base_url}", "rollout.model=policy", "trainer.max_steps=3",
                    "trainer.learning_rate=1e-2", "rollout.sync=disk", *GRPO_SMALL)
    # (sync=auto takes the server's weight-transfer engine: benchmarks/rehearse.py --quick runs that
    # through this command, tests/rollout/test_weight_sync.py checks both ways token for token)
    # the server was handed the weights after steps 1 and 2, each time in a fresh folder; only
    # the last one is left, and each sync was timed
    synced = [p for p in (out / "rollout_weights").iterdir()]
    assert len(synced) == 1 and synced[0].name.startswith("step-000002-")
    assert (synced[0] / "model.safetensors").is_file()
    assert len(logged(out, "rollout/sync_seconds")) == 2
    assert json.loads(next(out.glob("checkpoint-3/trainer_state.json")).read_text())["global_step"] == 3


@pytest.mark.integration
def test_grpo_ddp_two_processes(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "ddp"
    proc = launch([ACCELERATE, "launch", "--multi_gpu", "--num_processes", "2", "--num_cpu_threads_per_process", "1",
                   *cli_args(tiny_model_dir, synth_dir, out, "trainer.use_cpu=true")], out)
    log = proc.stdout + proc.stderr
    assert "process 0 of 2" in log and "process 1 of 2" in log
    assert (out / "final" / "model.safetensors").is_file()
    # the input cache was warmed in shares: each rank processed its half of the clips (a fresh cache)
    warm = {int(r): (int(done), int(share), int(total)) for r, done, share, total in re.findall(
        r"input cache: rank (\d) of 2 processed (\d+) clips \(its share: (\d+) of (\d+);", log)}
    assert sorted(warm) == [0, 1], log[-3000:]
    total = warm[0][2]
    assert all(done == share < total for done, share, _ in warm.values())
    assert warm[0][1] + warm[1][1] == total and warm[0][1] - warm[1][1] in (0, 1)


@pytest.mark.integration
def test_grpo_deepspeed_zero2(tiny_model_dir, synth_dir, tmp_path):
    out = tmp_path / "zero2"
    proc = launch([ACCELERATE, "launch", "--config_file", "launch/accelerate/zero2.yaml", "--num_processes", "1",
                   *cli_args(tiny_model_dir, synth_dir, out)], out, timeout=900)
    assert "DeepSpeed" in proc.stdout + proc.stderr
    assert json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_sft_deepspeed_zero3_partitions_at_load(lora, tiny_model_dir, synth_dir, tmp_path):
    """2 CPU ranks under ZeRO-3: TRL's config exists before the model loads, so transformers loads
    it through DeepSpeed's zero.Init and each rank holds half the parameters before training starts;
    the weights arrive intact (learning rate 0: `final/` equals the checkpoint it started from; with
    LoRA, rank 0's merge into `final/` loads the base model whole, without waiting for rank 1)."""
    from safetensors.torch import load_file

    out = tmp_path / "zero3"
    proc = launch([ACCELERATE, "launch", "--config_file", "launch/accelerate/zero3.yaml", "--num_processes", "2",
                   "-m", "egoadapt.cli",
                   "train", "recipe=demo/tiny_sft", f"model.path={tiny_model_dir}", f"data.root={synth_dir}",
                   f"out={out}", f"cache_dir={out.parent / 'input_cache'}", "trainer.max_steps=1",
                   "trainer.per_device_train_batch_size=2", "trainer.learning_rate=0",
                   *(["model.lora.enabled=true", "model.lora.r=4", "model.lora.alpha=8"] if lora else [])],
                  out, timeout=900)
    log = proc.stdout + proc.stderr
    share = {int(r): (int(local), int(total), on) for r, local, total, on in re.findall(
        r"rank (\d) holds (\d+) of (\d+) parameter elements after load \(\S+; ZeRO-3 init (\w+)\)", log)}
    assert sorted(share) == [0, 1], log[-3000:]
    total = share[0][1]
    for local, t, on in share.values():
        assert on == "on" and t == total and local <= 0.55 * total  # a rank's partition, not the model
    assert sum(local for local, _, _ in share.values()) >= total  # and the partitions cover it
    assert "process 0 of 2" in log and "process 1 of 2" in log
    before, after = (load_file(str(d / "model.safetensors")) for d in (tiny_model_dir, out / "final"))
    assert set(before) == set(after) and all(before[k].equal(after[k]) for k in before)


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
