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
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from egoadapt.config import schema


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
        from egoadapt.config.trainer import trainer_problems

        found += trainer_problems(trainer, cfg.trainer, str(cfg.get("algorithm")))
    return found


# ------------------------------------------------------------------ secrets

_SECRET = re.compile(r"(^|_)(api_?key|apikey|password|passwd|secret|secret_key|access_key|private_key|credentials?"
                     r"|authorization|(hub|hf|access|auth|api|bearer|refresh|session)_token)$|^token$", re.IGNORECASE)


def is_secret_key(name: str) -> bool:
    """A key that holds a secret: api_key, token, password, secret, ... (not api_key_env, which
    names the environment variable, nor pad_token and friends, which are vocabulary)."""
    return bool(_SECRET.search(str(name)))


def secret_message(path: str) -> str:
    if path.split(".")[0] == "judge":
        where = ("export it in the environment variable named by judge.api_key_env "
                 "(EGOADAPT_JUDGE_API_KEY unless you change it)")
    else:
        where = "put it in an environment variable instead (e.g. HF_TOKEN for the hub, WANDB_API_KEY for wandb)"
    return f"{path}: secrets are never taken from the config, which is written to disk with the run; remove it and {where}"


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

def did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_key(path: str, key: str, known: list[str]) -> str:
    hint = did_you_mean(key, known)
    if not hint and len(known) <= 30:
        hint = "; known: " + ", ".join(sorted(known))
    return f"unknown key {path}{hint}"


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


def value_problem(where: str, value: Any, hint: Any, meta: Mapping[str, Any]) -> str | None:
    """What is wrong with `value` for a field of type `hint` with rules `meta`, or None."""
    if not conforms(value, hint):
        quote = f" (quote it: {where}='{value}')" if isinstance(value, (int, float)) and conforms(str(value), hint) else ""
        return f"{where}={value!r}: expected {describe(hint)}{quote}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where}={value}: expected a finite number"
    if value is None:
        return None
    leaf, choices = where.rsplit(".", 1)[-1], meta.get("choices")
    if choices and value not in choices:
        return f"{where}={value!r}: {leaf} must be one of {', '.join(choices)}"
    for op, ok, word in (("ge", lambda v, b: v >= b, ">="), ("gt", lambda v, b: v > b, ">"),
                         ("le", lambda v, b: v <= b, "<="), ("lt", lambda v, b: v < b, "<")):
        if op in meta and isinstance(value, (int, float)) and not ok(value, meta[op]):
            return f"{where}={value!r}: {leaf} must be {word} {meta[op]:g}"
    if meta.get("output"):
        return output_problem(where, str(value), meta["output"])
    return None


def _union_args(hint: Any) -> tuple | None:
    return typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else None


def conforms(value: Any, hint: Any) -> bool:
    """Whether a plain (YAML) value fits a type annotation. Strict: no int for str, no float
    for int, no 1/0 for bool. Types it does not know pass (their owner checks them)."""
    if hint is Any:
        return True
    args = _union_args(hint)
    if args is not None:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, Enum)]
        if enums and isinstance(value, str):  # TRL's `SchedulerType | str`: the string must name a member
            return any(value in {m.value for m in e} for e in enums)
        return any(conforms(value, a) for a in args)
    if hint is type(None) or hint is None:
        return value is None
    origin, params = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return value in params
    if isinstance(hint, type) and issubclass(hint, Enum):
        return isinstance(value, hint) or value in {m.value for m in hint}
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint in (list, tuple) or origin in (list, tuple):
        return isinstance(value, (list, tuple)) and (not params or all(conforms(v, params[0]) for v in value))
    if hint is dict or origin is dict:
        return isinstance(value, dict) and (not params or all(conforms(k, params[0]) and conforms(v, params[1])
                                                               for k, v in value.items()))
    return True


def describe(hint: Any) -> str:
    args = _union_args(hint)
    if args is not None:
        enums = [a for a in args if isinstance(a, type) and issubclass(a, Enum)]
        parts = [describe(a) for a in (enums + [type(None)] * (type(None) in args) if enums else args)]
        return " or ".join(dict.fromkeys(parts))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(str(m.value) for m in hint)
    names = {Any: "anything", type(None): "null", bool: "true or false", int: "an integer", float: "a number",
             str: "a string"}
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint) or hint
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(hint))
    return {list: "a list", tuple: "a list", dict: "a mapping"}.get(origin, getattr(hint, "__name__", str(hint)))


# ------------------------------------------------------------------ outputs

def output_problem(where: str, value: str, kind: str) -> str | None:
    """`out=` must be able to become what the command writes: a folder (kind "dir") or a file."""
    path = Path(value).expanduser()
    if kind == "dir" and path.exists() and not path.is_dir():
        return f"{where}={value}: an existing file, not a folder (the command writes a folder there)"
    if kind == "file" and path.is_dir():
        return f"{where}={value}: an existing folder, not a file (the command writes a file there)"
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{where}={value}: {parent} is a file, so nothing can be written under it"
            break
    return None


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
