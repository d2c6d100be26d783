"""Check a composed config before a command loads or writes anything.

`check(cfg, command)` raises ConfigError listing every problem found: a secret in the
config (it would be written to disk with the run), a key no schema knows (with the closest
valid one), a value of the wrong type, out of range or not one of the choices, an `out=`
that names a file where a folder is written (or the reverse), and the cross-field rules
below. Values that cannot be resolved yet (`???`, an interpolation to one) are left to the
command, which says what is required.
"""
from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from egoadapt.config import schema
from egoadapt.config.trainer import trainer_problems
from egoadapt.config.values import is_secret_key, secret_message, unknown_key, value_problem


class ConfigError(ValueError):
    """A config that cannot work; `problems` holds one line per problem, each naming its key."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = self.problems[0] if len(self.problems) == 1 else \
            f"{len(self.problems)} problems in the config:\n  " + "\n  ".join(self.problems)
        super().__init__(head)


def check(cfg: DictConfig, command: str, trainer: type | None = None) -> None:
    """Raise ConfigError if `problems` finds any."""
    found = problems(cfg, command, trainer)
    if found:
        raise ConfigError(found)


def problems(cfg: DictConfig, command: str, trainer: type | None = None) -> list[str]:
    """Every problem of `cfg`, the composed primary config `command` (conf/<command>.yaml, or
    "train" for a recipe). `trainer`: the TRL config class `trainer.*` is checked against."""
    found = secret_problems(cfg)
    root = schema.SCHEMAS.get(command)
    if root is not None:
        _walk(cfg, root, "", found)
    if trainer is not None and isinstance(cfg.get("trainer"), DictConfig):
        found += trainer_problems(trainer, cfg.trainer, str(cfg.get("algorithm")))
    return found


# ------------------------------------------------------------------ secrets

def secret_problems(cfg: DictConfig) -> list[str]:
    """A line per key that looks like a secret, anywhere in the config (its value never shown)."""
    found: list[str] = []

    def visit(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                where = f"{path}.{k}" if path else str(k)
                if is_secret_key(str(k)):
                    found.append(secret_message(where))
                else:
                    visit(v, where)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]")

    visit(OmegaConf.to_container(cfg, resolve=False), "")
    return found


# ------------------------------------------------------------------ keys and types

def suggest(command: str, dotted: str) -> str | None:
    """The closest valid key to a misspelt `dotted` key of `command`'s config, as a dotted path."""
    node: Any = schema.SCHEMAS.get(command)
    parts = dotted.lstrip("+~").split(".")
    for i, part in enumerate(parts):
        if not is_dataclass(node):
            return None
        names = [f.name for f in fields(node)]
        if part not in names:
            close = difflib.get_close_matches(part, names, n=1, cutoff=0.6)
            return ".".join(parts[:i] + close) if close else None
        node = typing.get_type_hints(node)[part]
    return None


def _walk(node: DictConfig, cls: type, path: str, found: list[str]) -> None:
    specs = {f.name: f for f in fields(cls)}
    hints = typing.get_type_hints(cls)
    before = len(found)
    for key in node:
        key = str(key)
        where = f"{path}.{key}" if path else key
        if is_secret_key(key):
            continue  # reported by secret_problems, value unseen
        if key not in specs:
            found.append(unknown_key(where, key, list(specs)))
            continue
        try:
            if OmegaConf.is_missing(node, key):
                continue
            value = node[key]
            hint = hints[key]
            if is_dataclass(hint):
                if isinstance(value, DictConfig):
                    _walk(value, hint, where, found)
                else:
                    found.append(f"{where}: expected a mapping ({', '.join(f.name for f in fields(hint))}), "
                                 f"got {value!r}")
                continue
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException:
            continue  # not resolvable yet (an interpolation to a required value): the command says so
        problem = value_problem(where, value, hint, specs[key].metadata)
        if problem:
            found.append(problem)
    rule = CROSS.get(cls.__name__)
    if rule and len(found) == before:  # cross-field rules only on well-typed values
        found += rule(node, path)


# ------------------------------------------------------------------ cross-field rules (schema name -> rule)

def _plain(node: DictConfig, key: str) -> Any:
    try:
        if key not in node or OmegaConf.is_missing(node, key):
            return None
        value = node[key]
        return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
    except OmegaConfBaseException:
        return None


def _pixels(node: DictConfig, path: str) -> list[str]:
    lo, hi = _plain(node, "min_pixels"), _plain(node, "max_pixels")
    if lo is not None and hi is not None and lo > hi:
        return [f"{path}.min_pixels={lo} is above {path}.max_pixels={hi}"]
    return []


def _fps(node: DictConfig, path: str) -> list[str]:
    """data.fps: a rate, or a mapping of dataset / domain / default to rates (null: not set)."""
    fps = _plain(node, "fps")

    def rate(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0

    if fps is None or rate(fps):
        return []
    if not isinstance(fps, dict):
        return [f"{path}.fps={fps!r}: expected a rate > 0 or a mapping of dataset / domain / default to rates"]
    return [f"{path}.fps.{k}={v!r}: expected a rate > 0 (frames per second)" for k, v in fps.items()
            if v is not None and not rate(v)]


def _synth(node: DictConfig, path: str) -> list[str]:
    video, sampling = _plain(node, "video_fps"), _plain(node, "sampling_fps")
    if video and sampling and abs(video / sampling - round(video / sampling)) > 1e-9:
        return [f"video_fps={video} must be a multiple of sampling_fps={sampling}"]
    return []


CROSS: dict[str, Callable[[DictConfig, str], list[str]]] = {
    "Model": _pixels, "Data": _fps, "DataSynth": _synth,
}
