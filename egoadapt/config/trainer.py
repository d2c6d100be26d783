"""`trainer.*`: TRL's SFTConfig / GRPOConfig fields by their own names.

Checked against the TRL class's own fields and type annotations, plus a few ranges and
GRPO's batch rule, without building the TRL config: building it sets up devices and the
process group, which belongs to the run.
"""
from __future__ import annotations

import os
import typing
from dataclasses import MISSING, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from egoadapt.config.values import is_secret_key, unknown_key, value_problem

# egoadapt's own values of TRL fields (egoadapt.train.run.trainer_kwargs resolves them per machine)
EXTRA_VALUES = {"bf16": ("auto",)}

RANGES = {
    "per_device_train_batch_size": {"ge": 1}, "gradient_accumulation_steps": {"ge": 1},
    "num_generations": {"ge": 2}, "max_completion_length": {"ge": 1}, "max_length": {"ge": 1},
    "generation_batch_size": {"ge": 1}, "steps_per_generation": {"ge": 1}, "num_iterations": {"ge": 1},
    "learning_rate": {"ge": 0}, "warmup_steps": {"ge": 0}, "beta": {"ge": 0}, "temperature": {"gt": 0},
    "top_p": {"gt": 0, "le": 1}, "save_steps": {"gt": 0}, "logging_steps": {"gt": 0},
    "dataloader_num_workers": {"ge": 0},
}


def trainer_problems(cls: type, node: DictConfig, algorithm: str) -> list[str]:
    """Problems of the `trainer` node for the TRL config class `cls`."""
    try:
        values = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as e:
        return [f"trainer: {e}"]
    names = [f.name for f in fields(cls)]
    hints = typing.get_type_hints(cls)
    found = []
    for key, value in values.items():
        where = f"trainer.{key}"
        if is_secret_key(key):
            continue  # reported with the other secrets, value unseen
        if key not in hints:
            found.append(unknown_key(where, key, names) + f" (not a field of TRL's {cls.__name__})")
            continue
        if value in EXTRA_VALUES.get(key, ()):
            continue
        problem = value_problem(where, value, hints[key], RANGES.get(key, {}))
        if problem:
            found.append(problem)
    if algorithm == "grpo" and not found:
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        problem = grpo_batch_problem({**defaults, **values}, int(os.environ.get("WORLD_SIZE", "1")))
        if problem:
            found.append(problem)
    return found


def grpo_batch_problem(t: dict[str, Any], processes: int) -> str | None:
    """TRL 1.16 (GRPOConfig.__post_init__): the generation batch, which holds whole prompt
    groups, is per_device_train_batch_size x processes x steps_per_generation (default:
    gradient_accumulation_steps), or generation_batch_size when given; it must be a multiple
    of num_generations."""
    per_device, generations = t["per_device_train_batch_size"], t["num_generations"]
    if generations is None:
        return None
    given, steps = t.get("generation_batch_size"), t.get("steps_per_generation")
    if given is not None and steps is not None:
        return "trainer.generation_batch_size and trainer.steps_per_generation: set one of them, not both"
    global_batch = per_device * processes
    procs = f"{processes} process" + ("es" if processes != 1 else "")
    if given is not None:
        if given % global_batch:
            return (f"trainer.generation_batch_size={given} must be a multiple of the global batch "
                    f"(per_device_train_batch_size {per_device} x {procs} = {global_batch})")
        batch, how = given, f"generation_batch_size {given}"
    else:
        name, steps = ("steps_per_generation", steps) if steps is not None else \
            ("gradient_accumulation_steps", t["gradient_accumulation_steps"])
        batch = global_batch * steps
        how = f"per_device_train_batch_size {per_device} x {procs} x {name} {steps} = {batch}"
    if batch % generations:
        return (f"trainer.num_generations={generations}: GRPO's generation batch ({how} completions) must be a "
                f"multiple of num_generations, so that every prompt gets its whole group; change "
                f"trainer.per_device_train_batch_size or trainer.num_generations")
    return None
