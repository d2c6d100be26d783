"""Sweeps on clusters: Hydra's submitit launcher, each job an accelerate + DeepSpeed launch, then
`egoadapt eval sweep=DIR` and `egoadapt compare DIR` on the sweep folder."""
import json
from pathlib import Path

import pytest
import submitit
from omegaconf import OmegaConf

from egoadapt.cli import main as cli

REPO = Path(__file__).resolve().parents[2]
SFT_7B = ["recipe=egocross/sft_qwen2_5_vl_7b", "data.annotations=/data/egocross/egocross_testbed_imgs.json",
          f"accelerate.config_file={REPO / 'launch/accelerate/zero3.yaml'}", "trainer.learning_rate=1e-6,2e-6"]


class Submitted(Exception):
    pass


def test_slurm_sweep_submits_one_8gpu_node_per_job(tmp_path, monkeypatch, capsys):
    """From a login node without GPUs: the 7B recipe (sized for GPUs) is not refused, since its jobs run
    on GPU nodes; submitit renders one sbatch array, 2 jobs of one task on an 8-GPU node each. No Slurm
    here, so the script is captured where submitit would hand it to sbatch."""
    scripts = []

    def submit(self, command):
        scripts.append(self._make_submission_file_text(command, "uid"))
        raise Submitted

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun is installed"
    monkeypatch.setattr(submitit.SlurmExecutor, "_submit_command", submit)
    with pytest.raises((Submitted, SystemExit)):  # the sentinel, or Hydra's exit after reporting it
        cli(["train", "-m", "hydra/launcher=slurm_8gpu", "hydra.launcher.partition=gpu",
             "hydra.launcher.account=proj42", *SFT_7B, f"out={tmp_path / 'sweep'}"])
    assert len(scripts) == 1, capsys.readouterr().err[-2000:]
    sbatch = scripts[0]
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --gpus-per-node=8", "#SBATCH --cpus-per-task=64", "#SBATCH --mem=512GB",
                 "#SBATCH --time=1440", "#SBATCH --partition=gpu", "#SBATCH --account=proj42"):
        assert line in sbatch, (line, sbatch)
    assert "-m submitit.core._submit" in sbatch


def test_gpu_recipe_is_still_refused_when_jobs_run_here(tmp_path, capsys):
    with pytest.raises(SystemExit, match="sized for GPUs"):
        cli(["train", "-m", *SFT_7B, f"out={tmp_path / 'sweep'}"])
    assert not (tmp_path / "sweep").exists()


def test_missing_accelerate_config_fails_before_submitting(tmp_path):
    with pytest.raises(SystemExit, match="accelerate.config_file=.*no such file"):
        cli(["train", "-m", "hydra/launcher=slurm_8gpu", *SFT_7B, "accelerate.config_file=nowhere.yaml",
             f"out={tmp_path / 'sweep'}"])


@pytest.mark.integration
def test_local_sweep_accelerate_deepspeed_then_eval_and_compare(tiny_model_dir, synth_dir, tmp_path, capsys):
    """2 SFT jobs through submitit's local executor, each an accelerate launch with DeepSpeed ZeRO-2 (CPU);
    `eval sweep=` evaluates both final/ into <job>/eval/ and lists a job without final/; a rerun skips
    both; `compare` ranks them by their swept learning rate."""
    sweep = tmp_path / "sweep"
    rc = cli(["train", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
              "recipe=demo/tiny_sft", f"model.path={tiny_model_dir}", f"data.root={synth_dir}", f"out={sweep}",
              f"cache_dir={tmp_path / 'input_cache'}", f"accelerate.config_file={REPO / 'launch/accelerate/zero2.yaml'}",
              "accelerate.num_processes=1",
              "data.train_limit=8", "trainer.max_steps=2", "trainer.per_device_train_batch_size=2",
              "trainer.learning_rate=1e-3,5e-3"])
    assert rc == 0
    for job in ("0", "1"):
        assert (sweep / job / "final" / "model.safetensors").is_file()
        assert json.loads((sweep / job / "trainer_state.json").read_text())["global_step"] == 2
        assert OmegaConf.load(sweep / job / "config.yaml").out == str(sweep / job)  # what the launched ranks trained
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "DeepSpeed" in logs and "accelerate.commands.launch" in logs, logs[-3000:]
    overrides = (sweep / "1" / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.learning_rate=0.005" in overrides and "accelerate.config_file=" in overrides

    (sweep / "2" / ".hydra").mkdir(parents=True)  # a job still training: no final/ yet
    (sweep / "2" / ".hydra" / "overrides.yaml").write_text("- trainer.learning_rate=1e-2\n")
    evaluate = ["eval", f"sweep={sweep}", "data=synthetic", f"data.root={synth_dir}", "qa=close", "limit=6",
                "batch_size=6", "generation.max_new_tokens=16", "progress=false", f"cache_dir={tmp_path / 'input_cache'}"]
    capsys.readouterr()
    assert cli(evaluate) == 0
    printed = capsys.readouterr().out
    assert printed.count("| evaluated |") == 2 and "| 2 | missing final/ |" in printed, printed
    for job in ("0", "1"):
        results = json.loads((sweep / job / "eval" / "results.json").read_text())
        assert results["counts"]["items"] == 6
        assert results["split"]["manifest"] == str((sweep / job / "split.json").resolve())  # the job's own split
    assert cli(evaluate) == 0  # resumable: nothing left to do
    assert capsys.readouterr().out.count("| already evaluated |") == 2

    assert cli(["compare", str(sweep), f"out={tmp_path / 'ranking'}", "plots=false"]) == 0
    ranked = json.loads((tmp_path / "ranking" / "sweep.json").read_text())
    assert sorted(r["job"] for r in ranked["jobs"]) == ["0", "1"] and ranked["missing"] == ["2"]
    assert ranked["swept"] == ["trainer.learning_rate"]
    assert {r["overrides"]["trainer.learning_rate"] for r in ranked["jobs"]} == {"0.001", "0.005"}
