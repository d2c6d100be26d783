"""`egoadapt train trainer_file=FILE`: a TRL YAML, the file `trl sft --config FILE` reads, merged
into `trainer.*` as Hydra overrides placed before the command line's (so `trainer.X=` still wins).

Its keys are checked against the TRL config class of the recipe's algorithm (SFTConfig or
GRPOConfig, with a did-you-mean). The keys TRL's scripts give to `ModelConfig` that egoadapt has
a place for go there (`model_name_or_path` -> `model.path`, `lora_r` -> `model.lora.r`, ...);
`env` sets environment variables as TRL does; anything else (a `ScriptArguments` key such as
`dataset_name`: data comes from `data.*` here) is refused naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from egoadapt.configs import hydra_value

# TRL ModelConfig fields -> egoadapt keys
MODEL_KEYS = {"model_name_or_path": "model.path", "dtype": "model.dtype", "torch_dtype": "model.dtype",
              "attn_implementation": "model.attn_implementation", "use_peft": "model.lora.enabled",
              "lora_r": "model.lora.r", "lora_alpha": "model.lora.alpha", "lora_dropout": "model.lora.dropout",
              "lora_target_modules": "model.lora.target_modules"}


class TrainerFileError(SystemExit):
    def __init__(self, path: str, problems: list[str]):
        super().__init__(f"egoadapt train: trainer_file={path}: " + "; ".join(problems))


def read(path: str) -> dict[str, Any]:
    import yaml

    p = Path(path).expanduser()
    if not p.is_file():
        raise TrainerFileError(path, ["no such file"])
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise TrainerFileError(path, [f"not YAML: {str(e).splitlines()[0]}"]) from None
    if not isinstance(data, dict):
        raise TrainerFileError(path, [f"must be a YAML mapping of TRL arguments, got {type(data).__name__}"])
    return data


def trainer_file_overrides(path: str, algorithm: str | None) -> list[str]:
    """Hydra overrides for the TRL YAML at `path` (its `env` is applied to os.environ)."""
    from trl import GRPOConfig, ScriptArguments, SFTConfig

    from egoadapt.config.values import is_secret_key

    cls = {"sft": SFTConfig, "grpo": GRPOConfig}.get(str(algorithm))
    if cls is None:
        raise TrainerFileError(path, [f"the recipe's algorithm={algorithm!r} is not sft or grpo"])
    values = read(path)
    env = values.pop("env", None) or {}
    if not isinstance(env, dict):
        raise TrainerFileError(path, ["env: must be a mapping of environment variables"])
    fields = {f.name for f in dataclasses.fields(cls)}
    script = {f.name for f in dataclasses.fields(ScriptArguments)}
    overrides, problems = [], []
    for key, value in values.items():
        if is_secret_key(str(key)):
            problems.append(f"{key}: secrets are never taken from a file: use the environment (HF_TOKEN, ...)")
        elif key in fields or key in MODEL_KEYS:
            try:
                overrides.append(f"{'++trainer.' + key if key in fields else MODEL_KEYS[key]}={hydra_value(value)}")
            except ValueError as e:
                problems.append(f"{key}: {e}")
        elif key in script:
            problems.append(f"{key} is a TRL ScriptArguments field: egoadapt reads data from data.* "
                            "(data.annotations=FILE, data.root=DIR)")
        else:
            close = difflib.get_close_matches(str(key), sorted(fields | set(MODEL_KEYS)), n=1)
            problems.append(f"{key} is not a field of TRL's {cls.__name__}" + (f" (did you mean {close[0]}?)"
                                                                              if close else ""))
    if problems:
        raise TrainerFileError(path, problems)
    for k, v in env.items():  # as TRL's parser does
        os.environ[str(k)] = str(v)
    return overrides
