"""The one way egoadapt composes a config: every command, `train` included, and Python callers.

`compose(name, overrides)` gives conf/<name>.yaml (or a recipe, on conf/) with Hydra overrides;
`launch(target, name, overrides, multirun=...)` runs a job on the same composition through
Hydra's own run / multirun machinery (run folder, .hydra/, log, sweeper and launcher plugins).
Each primary config lists its schema (`<name>_schema`, the dataclasses of
`egoadapt.config.schema` in Hydra's ConfigStore) first in its defaults, so Hydra types every key
while composing: a typo or a wrong type in a recipe, a group's YAML or an override fails here,
reported as a ConfigError listing every problem (with a did-you-mean) and the file Hydra named.
"""
from __future__ import annotations

import re
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import is_dataclass
from functools import partial
from pathlib import Path

from omegaconf import DictConfig

from egoadapt.config import schema
from egoadapt.config.validate import ConfigError, problems, suggest
from egoadapt.config.values import is_secret_key, secret_message, value_problem
from egoadapt.configs import CONF_DIR, RECIPES_DIR, SEARCHPATH

schema.register()


class ComposeError(SystemExit):
    """Hydra could not compose the config for a reason that is not a value's (a missing group option,
    a malformed override): its message, with the closest key for an unknown one."""


def searchpath(config_dirs: list[str], packaged: bool) -> list[str]:
    """The user's config folders first (as Hydra's --config-dir), then, when the primary config is
    not in egoadapt/conf itself (a recipe, a user's file), egoadapt's conf and recipes."""
    return [f"file://{Path(d).expanduser().resolve()}" for d in config_dirs] + (SEARCHPATH if packaged else [])


@contextmanager
def _hydra(config_dir: Path, config_dirs: list[str], job_name: str = "app") -> Iterator[list[str]]:
    """Hydra initialized on `config_dir`; yields the override that puts `config_dirs` (and egoadapt's
    configs, for a primary config outside conf/) on its search path."""
    from hydra import initialize_config_dir

    search = searchpath(list(config_dirs), packaged=Path(config_dir) != CONF_DIR)
    with initialize_config_dir(config_dir=str(config_dir), job_name=job_name, version_base=None):
        yield [f"hydra.searchpath=[{','.join(search)}]"] if search else []


def compose(config_name: str, overrides: list[str], recipe: bool = False, hydra_config: bool = False,
            config_dir: Path | None = None, config_dirs: list[str] = (), command: str | None = None) -> DictConfig:
    """conf/<config_name>.yaml (or a recipe in `config_dir`, default recipes/, on conf/) with Hydra
    overrides, `config_dirs` searched first (and the `hydra` node when `hydra_config`). `command`:
    the schema the config is checked against (default: "train" for a recipe, else `config_name`).
    Raises ConfigError for a key or value the schema refuses, ComposeError for Hydra's other refusals."""
    from hydra import compose as hydra_compose
    from hydra.errors import HydraException

    command = command or ("train" if recipe else config_name)
    config_dir = config_dir or (RECIPES_DIR if recipe else CONF_DIR)
    typed = override_problems(command, overrides)
    failure = None
    with _hydra(config_dir, list(config_dirs)) as extra:
        try:
            cfg = hydra_compose(config_name=config_name, overrides=extra + overrides, return_hydra_config=hydra_config)
            if not typed:
                return cfg
        except HydraException as e:
            failure = str(e)
        with _untyped():  # the same config without its schema: every problem, not only the first Hydra met
            try:
                cfg = hydra_compose(config_name=config_name, overrides=extra + overrides)
            except HydraException as e:
                raise ComposeError(hydra_message(str(e), command)) from None
    found = list(dict.fromkeys(typed + problems(cfg, command, trainer=trainer_config_class(cfg.get("algorithm"))
                                                  if command == "train" else None)))
    if not found:
        raise ComposeError(hydra_message(failure or "", command))
    raise ConfigError([_with_file(p, failure, [config_dir, *config_dirs, CONF_DIR, RECIPES_DIR]) for p in found])


def override_problems(command: str, overrides: list[str]) -> list[str]:
    """Override values of the wrong type, checked as typed (OmegaConf would turn `requires_gpu=8` into
    the string '8' and `resume=1` into true). Sweeps and interpolations are checked once composed."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException:
        return []  # Hydra reports it while composing
    found = []
    for o in parsed:
        if o.is_delete() or o.is_sweep_override() or o.key_or_group.startswith("hydra"):
            continue
        spec = schema.field_spec(command, o.key_or_group)
        value = o.value()
        if spec is None or (isinstance(value, str) and ("${" in value or _is_node(spec[0]))):
            continue  # an interpolation, or a group's option (trainer=sft)
        problem = value_problem(o.key_or_group, value, spec[0], {})  # types only: ranges are check()'s
        if problem:
            found.append(problem)
    return found


def trainer_config_class(algorithm: str | None) -> type | None:
    """TRL's config class of `algorithm` (sft: SFTConfig, grpo: GRPOConfig), None for another value."""
    name = {"sft": "SFTConfig", "grpo": "GRPOConfig"}.get(str(algorithm))
    if name is None:
        return None
    import trl

    return getattr(trl, name)


def _is_node(hint) -> bool:
    return is_dataclass(hint) or hint is dict or typing.get_origin(hint) is dict


@contextmanager
def _untyped() -> Iterator[None]:
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name in schema.SCHEMAS:
        store.store(name=f"{name}_schema", node={})
    try:
        yield
    finally:
        schema.register()


def _with_file(problem: str, failure: str | None, folders: list) -> str:
    """`problem`, naming the file when it is the one Hydra stopped at ("In 'demo/tiny_sft': ... full_key: k")."""
    m = re.match(r"In '([^']+)'.*?full_key: (\S+)", failure or "", re.S)
    if not m or m.group(2) not in problem:
        return problem
    for folder in folders:
        path = Path(str(folder).removeprefix("file://")).expanduser() / f"{m.group(1)}.yaml"
        if path.is_file():
            return f"{problem} (in {path})"
    return f"{problem} (in {m.group(1)}.yaml)"


def hydra_message(msg: str, command: str) -> str:
    """Hydra's refusal of an unknown key, with the closest valid key; never a secret's value."""
    m = re.search(r"Could not override '([^']+)'", msg)
    if not m:
        return msg
    key = m.group(1)
    if is_secret_key(key.split(".")[-1]):
        return secret_message(key)
    close = suggest(command, key)
    return f"unknown key {key} (did you mean {close}?)" if close else msg


# ------------------------------------------------------------------ recipes (train's primary configs)

def recipes(folder: Path | None = None) -> list[str]:
    folder = folder or RECIPES_DIR
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml"))


def find_recipe(name: str, config_dirs: list[str]) -> tuple[Path, str]:
    """(folder, config name) of `recipe=`: a YAML file of the user's (`recipe=PATH.yaml`), else a
    name under a --config-dir, else under egoadapt's recipes/. Raises ComposeError."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name).expanduser()
        if not path.is_file():
            raise ComposeError(f"recipe={name}: no such file")
        return path.resolve().parent, path.stem
    for folder in [Path(d).expanduser().resolve() for d in config_dirs] + [RECIPES_DIR]:
        path = folder / f"{name}.yaml"
        if path.is_file():  # its own folder as the primary one: a recipe `team/r1` is not packaged under `team`
            return path.parent, path.stem
    close = [r for r in recipes() if name.split("/")[-1] in r]
    raise ComposeError(f"unknown recipe {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
                       + "; recipes: " + ", ".join(recipes()) + ", or recipe=PATH.yaml for a file of yours")


# ------------------------------------------------------------------ running a job

def sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """The overrides of each job a sweep runs, expanded as Hydra's basic sweeper does (none when it
    cannot: another sweeper's syntax; each job checks itself then)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # its split is not public API
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)[0]
    except HydraException:
        return []


def _job(target: str, cfg: DictConfig) -> int:
    """One job: `target` (module:function) called with its config. Module level, so a launcher that
    pickles the task (submitit) imports this module, and with it the schemas, where the job runs."""
    import importlib

    module, fn = target.split(":")
    return int(getattr(importlib.import_module(module), fn)(cfg) or 0)


def launch(target: str, config_name: str, overrides: list[str], multirun: bool = False, recipe: bool = True,
           config_dir: Path | None = None, config_dirs: list[str] = (), job_name: str = "app") -> int:
    """Run `target` (module:function) on the composed config as `hydra.main` would (a run folder,
    .hydra/, the job's log; `multirun`: every job of the sweep through the configured sweeper and
    launcher), without handing Hydra the process's argv. Returns the (largest) job return code."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    config_dir = config_dir or (RECIPES_DIR if recipe else CONF_DIR)
    task = partial(_job, target)
    with _hydra(config_dir, list(config_dirs), job_name) as extra:
        # The Hydra that initialize_config_dir set up runs the job: its run/multirun are what hydra.main calls
        hydra = GlobalHydra.instance().hydra
        mode = ["hydra.mode=MULTIRUN" if multirun else "hydra.mode=RUN"]  # as hydra.main records it
        try:
            if not multirun:
                return int(hydra.run(config_name=config_name, task_function=task,
                                     overrides=extra + overrides + mode).return_value or 0)
            batches = hydra.multirun(config_name=config_name, task_function=task, overrides=extra + overrides + mode)
        except HydraException as e:
            raise ComposeError(hydra_message(str(e), "train" if recipe else config_name)) from None
    from hydra.core.utils import JobStatus

    done = [r for batch in batches or [] for r in batch if r.status == JobStatus.COMPLETED]
    return max((r.return_value for r in done if isinstance(r.return_value, int)), default=0)
