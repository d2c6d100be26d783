"""A training job that starts its own `accelerate launch` (`accelerate.config_file=FILE`).

What a sweep job on a cluster needs: Hydra's submitit launcher runs each job's function as one
Slurm task on its node, and that function must start the node's N training processes. It writes
the job's resolved config to `<job>/config.yaml` (the job's overrides applied, `out` = the job's
folder) and runs

    python -m accelerate.commands.launch --config_file FILE [--num_processes N] \
        --main_process_port PORT -m egoadapt.train.rank <job>/config.yaml

whose processes train exactly that config (`egoadapt.train.rank`): no second
composition, no second `.hydra/` record, so the sweep's `<job>/.hydra/overrides.yaml` stays what
`egoadapt compare` ranks by. The job fails when the launch fails.

Also what every training run shares with the job: `TrainConfigError` and the run's
`config.yaml` (`save_run_config`).
"""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from egoadapt.files import write_atomic

log = logging.getLogger("egoadapt.train")


class TrainConfigError(SystemExit):
    def __init__(self, msg: str):
        super().__init__(f"egoadapt train: {msg}")


def save_run_config(cfg: DictConfig, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))  # env var names, never their values

# Hydra launchers that run a sweep's jobs on this machine (anything else, e.g. Slurm, runs them
# where this machine's GPUs say nothing: each job checks its own when it starts)
LOCAL_LAUNCHERS = frozenset({
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
})


def runs_here(launcher_target: str | None) -> bool:
    return not launcher_target or launcher_target in LOCAL_LAUNCHERS


def under_launcher() -> bool:
    """This process is one rank of accelerate launch / torchrun / deepspeed."""
    return "LOCAL_RANK" in os.environ


def launch_problems(cfg: DictConfig) -> list[str]:
    """Config-only checks of `accelerate.*` (preflight)."""
    config_file = (cfg.get("accelerate") or {}).get("config_file")
    if config_file and not Path(str(config_file)).is_file():
        return [f"accelerate.config_file={config_file}: no such file (e.g. launch/accelerate/zero3.yaml)"]
    return []


def free_port() -> int:
    """A port for the launch's rendezvous: two jobs on one node must not both take 29500."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(acc: DictConfig, config_path: Path) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", os.path.abspath(acc.config_file)]
    if acc.get("num_processes"):
        cmd += ["--num_processes", str(int(acc.num_processes))]
    cmd += ["--main_process_port", str(acc.get("main_process_port") or free_port())]
    return cmd + ["-m", "egoadapt.train.rank", str(config_path)]


def launch_job(cfg: DictConfig, out: Path) -> None:
    """Train `cfg` in `out` as an accelerate launch; raise when it fails."""
    if under_launcher():
        raise TrainConfigError("accelerate.config_file starts its own accelerate launch, and this process is already "
                               "a rank of one (accelerate launch / torchrun): drop accelerate.config_file, or run "
                               "`egoadapt train` without a launcher")
    cfg = OmegaConf.merge(cfg, {"out": str(out.resolve())})
    save_run_config(cfg, out)
    cmd = accelerate_command(cfg.accelerate, out / "config.yaml")
    log.info("launching: %s", " ".join(cmd))
    rc = subprocess.run(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}).returncode
    if rc != 0:
        raise TrainConfigError(f"accelerate launch for {out} exited with {rc} (its output is in this job's log)")
