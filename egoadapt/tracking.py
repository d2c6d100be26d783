"""Experiment tracking: which trackers a run reports to, and its wandb run.

Training reports through TRL's own callbacks (`trainer.report_to`, from `logger.report_to`);
this module starts the wandb run before TRL does, so the run carries egoadapt's name, group
and resolved config, and TRL's `WandbCallback` logs into it. The run's id is kept in the run
folder (`wandb_run.json`): a resumed training continues the same wandb run, and `egoadapt
eval` of the run's checkpoint logs its tables into it. `egoadapt compare` logs into a run of
its own. Tracking never fails a run: wandb is online when it finds credentials (the
environment or a netrc entry, as wandb itself looks), offline otherwise, and offline again
when going online fails.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from omegaconf import DictConfig, OmegaConf

from egoadapt.config.validate import is_secret_key
from egoadapt.files import write_atomic

log = logging.getLogger("egoadapt.tracking")

RUN_FILE = "wandb_run.json"  # in a training run folder: the wandb run that training logged to
# report_to name -> (module that must import, setup.cfg extra that installs it)
TRACKERS = {"wandb": ("wandb", None), "tensorboard": ("tensorboard", "tensorboard"), "trackio": ("trackio", "trackio")}


def report_to(logger: Mapping[str, Any] | DictConfig | None) -> list[str]:
    """`logger.report_to` as a list of tracker names ("none" and null: [])."""
    value = (OmegaConf.to_container(logger, resolve=True) if isinstance(logger, DictConfig) else dict(logger or {})
             ).get("report_to")
    names = value if isinstance(value, list) else [value]
    return [str(n) for n in names if n not in (None, "none", "")]


def tracker_problems(logger: Mapping[str, Any] | DictConfig | None) -> list[str]:
    """A line per requested tracker that is not installed, naming the extra that installs it."""
    found = []
    for name in report_to(logger):
        module, extra = TRACKERS.get(name, (None, None))
        if module is None:
            continue  # another of transformers' integrations (mlflow, comet_ml, ...): TRL checks it
        if importlib.util.find_spec(module) is None:
            how = f"pip install 'egoadapt[{extra}]'" if extra else f"pip install {module}"
            found.append(f"logger.report_to={name}: {module} is not installed; {how}")
    return found


def wandb_logged_in() -> bool:
    """Whether wandb would find credentials: WANDB_API_KEY / WANDB_IDENTITY_TOKEN_FILE, or a
    netrc entry for its host (`wandb login` writes one)."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        from wandb.sdk.lib.wbauth import read_netrc_auth

        return bool(read_netrc_auth(host=os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")))
    except Exception:  # noqa: BLE001 - an unreadable netrc or another wandb layout: not logged in
        return False


def wandb_mode() -> str:
    """WANDB_MODE when the user set it; else online when logged in, offline otherwise."""
    return os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")


def wandb_dir(logger: Mapping[str, Any], out: Path) -> str:
    """Where wandb keeps a run's files: logger.dir, else WANDB_DIR, else the command's folder."""
    return str(logger.get("dir") or os.environ.get("WANDB_DIR") or out)


def public_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config without any key that holds a secret (the config refuses them, and a
    value resolved from the environment must not reach a tracker either)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)

    def clean(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: clean(v) for k, v in node.items() if not is_secret_key(str(k))}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return clean(data)


def job_identity(out: Path, logger: Mapping[str, Any]) -> tuple[str, str | None]:
    """(run name, group): `logger.run_name` / `logger.group` when set; otherwise the run folder's
    name, and for a job of a Hydra sweep `<sweep folder>-<job number>` in the group `<sweep folder>`."""
    name, group = logger.get("run_name"), logger.get("group")
    sweep = None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            hc = HydraConfig.get()
            sweep = (Path(hc.sweep.dir).name, hc.job.num)
    except ImportError:
        pass
    if sweep:
        return str(name or f"{sweep[0]}-{sweep[1]}"), str(group or sweep[0])
    return str(name or Path(out).resolve().name), (str(group) if group else None)


def recipe_of(hydra: Any) -> str | None:
    """The recipe a training job ran, from its Hydra node (live, or .hydra/hydra.yaml's `hydra`):
    its name among egoadapt's recipes (demo/tiny_sft), else the file it was read from."""
    from egoadapt.configs import RECIPES_DIR

    name = hydra.job.get("config_name")
    main = next((s.path for s in hydra.runtime.get("config_sources") or [] if s.provider == "main"), None)
    if not name or not main:
        return name
    path = Path(str(main).removeprefix("file://")) / f"{name}.yaml"
    try:
        return str(path.relative_to(RECIPES_DIR).with_suffix(""))
    except ValueError:
        return str(path)


def hydra_record() -> dict[str, Any]:
    """The Hydra facts of this job worth seeing beside its config: overrides, sweep, job number."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return {}
        from hydra.types import RunMode

        hc = HydraConfig.get()
        sweep = hc.mode == RunMode.MULTIRUN
        return {"overrides": list(hc.overrides.task), "recipe": recipe_of(hc),
                "job_num": hc.job.get("num") if sweep else None, "sweep_dir": hc.sweep.dir if sweep else None}
    except Exception:  # noqa: BLE001 - only a record; never fail a run for it
        return {}


@dataclass
class WandbRun:
    """A started wandb run; `close()` finishes it (idempotent)."""
    run: Any

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def wandb_reachable(timeout_s: float = 5.0) -> bool:
    """Whether wandb's server accepts a TCP connection within `timeout_s`. wandb.init itself
    spends about 90 s in retries before it gives up on a server that is down; a run should not.
    Behind a proxy (HTTPS_PROXY, ALL_PROXY) the server's own address may be unreachable while
    wandb works: no probe then."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urlsplit(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
        return True
    except OSError as e:
        log.warning("wandb server %s:%s unreachable (%s): logging offline (`wandb sync` uploads it later)",
                    url.hostname, port, e)
        return False


def _init(**kwargs) -> Any:
    """wandb.init in the mode `wandb_mode()` picks; offline when the server is unreachable or
    online fails; None when even that fails (a warning, never an error)."""
    import wandb

    mode = wandb_mode()
    if mode == "online" and not wandb_reachable():
        mode = "offline"
    for attempt in ([mode, "offline"] if mode == "online" else [mode]):
        try:
            return wandb.init(mode=attempt, **kwargs)
        except Exception as e:  # noqa: BLE001 - tracking must not fail the run
            log.warning("wandb.init (%s) failed: %s: %s", attempt, type(e).__name__, e)
    return None


def start_training_run(cfg: DictConfig, out: Path) -> WandbRun | None:
    """The wandb run of a training job (main process only), before TRL's callback starts one;
    None when the job does not report to wandb. A resumed job continues its run."""
    logger = OmegaConf.to_container(cfg.logger, resolve=True) or {}
    if "wandb" not in report_to(logger):
        return None
    name, group = job_identity(out, logger)
    record_path = out / RUN_FILE
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    config = public_config(cfg)
    config["hydra"] = hydra_record()
    folder = wandb_dir(logger, out)
    run = _init(project=str(logger.get("project") or "egoadapt"), entity=logger.get("entity"), name=name,
                group=group, dir=folder, config=config, id=previous.get("id"),
                resume="allow" if previous.get("id") else None, job_type=str(cfg.get("algorithm") or "train"))
    if run is None:
        return None
    write_atomic(record_path, json.dumps({"id": run.id, "project": run.project, "entity": run.entity,
                                          "name": run.name, "group": group, "dir": folder,
                                          "mode": wandb_mode()}, indent=2) + "\n")
    return WandbRun(run)


def training_run_of(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The wandb run recorded by the training run a checkpoint folder belongs to (`out/final`,
    `out/checkpoint-N`), or None."""
    folder = Path(checkpoint)
    for candidate in (folder / RUN_FILE, folder.parent / RUN_FILE):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, json.JSONDecodeError):
                return None
    return None


def csv_table(path: Path):
    """A wandb.Table from a CSV file egoadapt wrote (numbers as numbers, empty cells as None)."""
    import wandb

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))

    def cell(v: str) -> Any:
        if v == "":
            return None
        try:
            return float(v) if any(c in v for c in ".eE") or v.lower() in ("nan", "inf") else int(v)
        except ValueError:
            return v

    return wandb.Table(columns=rows[0], data=[[cell(v) for v in r] for r in rows[1:]])


def log_evaluation(cfg: DictConfig, results: Mapping[str, Any]) -> str | None:
    """An `egoadapt eval` folder's table and headline numbers (log_results), into the training
    run of its checkpoint when that run logged to wandb."""
    out = Path(str(cfg.out))
    return log_results(cfg, out, job_type="eval", tables={"results": out / "results.csv"},
                       summary=results.get("summary") or {}, checkpoint=str(cfg.checkpoint))


def log_results(cfg: DictConfig, out: Path, *, job_type: str, tables: Mapping[str, Path],
                images: Mapping[str, Path] = {}, summary: Mapping[str, Any] = {},
                checkpoint: str | None = None) -> str | None:
    """Log an evaluation's or comparison's tables (CSV files), plots and headline numbers to
    wandb: into the training run of `checkpoint` when it recorded one, else into a run of their
    own named after `out`. Returns the run id, or None when the command does not report to
    wandb (or wandb could not start: a warning)."""
    logger = OmegaConf.to_container(cfg.logger, resolve=True) if cfg.get("logger") else {}
    if "wandb" not in report_to(logger):
        return None
    import wandb

    training = training_run_of(checkpoint) if checkpoint else None
    if training:
        kwargs = {"project": training.get("project"), "entity": training.get("entity") or None,
                  "id": training["id"], "resume": "allow", "dir": str(logger.get("dir") or training.get("dir") or out)}
    else:
        name, group = job_identity(out, logger)
        kwargs = {"project": str(logger.get("project") or "egoadapt"), "entity": logger.get("entity"), "name": name,
                  "group": group, "dir": wandb_dir(logger, out), "job_type": job_type,
                  "config": public_config(cfg)}
    run = _init(**kwargs)
    if run is None:
        return None
    try:
        payload: dict[str, Any] = {f"{job_type}/{k}": csv_table(p) for k, p in tables.items() if Path(p).is_file()}
        payload.update({f"{job_type}/{k}": wandb.Image(str(p)) for k, p in images.items() if Path(p).is_file()})
        run.log(payload)
        run.summary.update({f"{job_type}/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        return run.id
    finally:
        run.finish()
