"""Where egoadapt's Hydra configs live: the config groups and each command's primary config
(`conf/`) and the training recipes (`recipes/`). Everything that locates them reads this module;
`hydra_value` spells a value as a Hydra override."""
from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

HOME = Path(__file__).resolve().parent  # the package: every install has its configs
CONF_DIR = HOME / "conf"
RECIPES_DIR = HOME / "recipes"
# Hydra's search path for a recipe: the groups, and the recipes (a recipe may extend a packaged one)
SEARCHPATH = ["pkg://egoadapt.conf", "pkg://egoadapt.recipes"]


def hydra_value(v: Any) -> str:
    """A value in Hydra's override grammar: strings single-quoted (backslashes literal except before a
    quote or the closing quote, where they are doubled), lists and mappings spelled out."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(hydra_value(x) for x in v) + "]"
    if isinstance(v, dict):
        bad = [k for k in v if not re.fullmatch(r"[A-Za-z_][\w.-]*", str(k))]
        if bad:  # Hydra's grammar has no quoted keys
            raise ValueError(f"mapping key {bad[0]!r} cannot be written as a Hydra override")
        return "{" + ",".join(f"{k}:{hydra_value(x)}" for k, x in v.items()) + "}"
    s = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(v))
    return "'" + s.replace("'", "\\'") + "'"


@cache
def group_option(group: str, option: str) -> Any:
    """conf/<group>/<option>.yaml as a DictConfig, the options its defaults list names merged
    under it (as Hydra composes a group option). Read-only: callers get copies from `complete`."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
    parents = [d for d in node.pop("defaults", []) if d != "_self_"]
    cfg = OmegaConf.merge(*[group_option(group, p) for p in parents], node) if parents else node
    OmegaConf.set_readonly(cfg, True)
    return cfg


def complete(group: str, values: Any, option: str = "default") -> Any:
    """A group's settings whole, for the modules that read them: a composed node as it is, else
    `values` (part of one, as a mapping: Python callers, tests; None: nothing) over
    conf/<group>/<option>.yaml, so the YAML stays the one place for defaults. A key the option
    does not have is refused (a misspelt key never falls back to a default)."""
    from omegaconf import DictConfig, OmegaConf

    base = group_option(group, option)
    if values is None:
        return base
    if isinstance(values, DictConfig):
        if set(base.keys()) <= set(values.keys()):  # keys, as `in` is false for an unset (???) value
            return values
        values = OmegaConf.to_container(values, resolve=True)  # a node of a composed config: resolved in place
    values = {k: v for k, v in values.items() if v != "???"}  # unset (another command's key) is not given
    unknown = [str(k) for k in values if k not in base.keys()]
    if unknown:
        raise ValueError(f"{group}: unknown key {', '.join(unknown)} (known: {', '.join(base)}; "
                         f"conf/{group}/{option}.yaml)")
    merged = OmegaConf.merge(base, values)
    OmegaConf.set_readonly(merged, False)
    OmegaConf.set_struct(merged, False)
    return merged
