"""Where egoadapt's Hydra configs live: the config groups and each command's primary config
(`conf/`) and the training recipes (`recipes/`). Everything that locates them reads this module;
`hydra_value` spells a value as a Hydra override."""
from __future__ import annotations

import re
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
