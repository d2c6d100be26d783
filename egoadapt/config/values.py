"""Checks of one key or value against its declared type: secret key names, unknown keys (with
the closest valid one), types, ranges, choices and `out=` paths. `validate` applies them to the
config groups' schemas, `trainer` to TRL's config fields.
"""
from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union

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


def did_you_mean(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_key(path: str, key: str, known: list[str]) -> str:
    hint = did_you_mean(key, known)
    if not hint and len(known) <= 30:
        hint = "; known: " + ", ".join(sorted(known))
    return f"unknown key {path}{hint}"


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
            shown = int(value) if isinstance(value, float) and value.is_integer() else value  # as typed: a float field holds 2.0
            return f"{where}={shown!r}: {leaf} must be {word} {meta[op]:g}"
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
