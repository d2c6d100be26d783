"""`egoadapt <command> [subcommand] key=value ...`: one Hydra config per command.

Each command is a function `main(cfg: DictConfig)` in the module that does the work and
a primary config `conf/<config>.yaml` composed with the user's Hydra overrides
(`key=value`, `group=option`, `+new.key=value`). Add a command by adding a row below.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

from omegaconf import OmegaConf

from egoadapt.config.compose import compose, find_recipe, launch, recipes, sweep_jobs
from egoadapt.configs import CONF_DIR, RECIPES_DIR, hydra_value  # noqa: F401 (where configs live, for callers)

RECIPE = "@recipe"  # config name of commands whose primary config is a recipe (recipe=NAME)
TRAIN_FLAGS = {"-m", "--multirun", "--cfg", "-c"}  # Hydra's flags `train` takes
# Hydra's flags that locate configs, in either spelling (`--config-dir DIR`, `--config-dir=DIR`, `-cd DIR`)
LOCATION_FLAGS = {"--config-dir": "config_dir", "-cd": "config_dir", "--config-name": "config_name",
                  "-cn": "config_name", "--config-path": "config_path", "-cp": "config_path"}

# command words -> (module:function, primary config name, one-line help)
COMMANDS: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("model", "tiny"): ("egoadapt.models.tiny:main", "model_tiny",
                        "build a tiny random checkpoint of a model family (family=F size=micro|small out=DIR)"),
    ("data", "synth"): ("egoadapt.data.synthetic:main", "data_synth",
                        "render a synthetic EgoCross-format data set (out=DIR seed=N)"),
    ("data", "validate"): ("egoadapt.data.validate:main", "data_validate",
                           "check annotations: counts and every problem (data.annotations=FILE [data.root=DIR])"),
    ("data", "split"): ("egoadapt.data.split:main", "data_split",
                        "write a train/test manifest (split.protocol=paper_70_30|lodo|support out=FILE)"),
    ("data", "export"): ("egoadapt.data.export:main", "data_export",
                         "write a split for other trainers (split=FILE format=hf|swift|llamafactory out=DIR)"),
    ("train",): ("egoadapt.train.run:main", RECIPE,
                 "SFT or GRPO from a recipe (recipe=NAME|PATH.yaml out=DIR key=value ...; -m for sweeps)"),
    ("score",): ("egoadapt.eval.score:main", "score",
                 "score a predictions JSONL (predictions=FILE data.annotations=FILE mode=official|training out=DIR)"),
    ("eval",): ("egoadapt.eval.command:main", "eval",
                "generate, score and tabulate a checkpoint (checkpoint=PATH data.annotations=FILE backend=hf|vllm|openai "
                "[protocol=official] out=DIR)"
                " or every job of a training sweep (sweep=DIR)"),
    ("compare",): ("egoadapt.eval.compare:main", "compare",
                   "compare evaluations or rank a sweep (DIR... out=DIR [metric=NAME])"),
    ("push",): ("egoadapt.publish:main", "push",
                "a run's final model and its model card to the Hub (run=DIR repo=USER/NAME [--dry-run])"),
    ("demo",): ("egoadapt.demo:main", "demo",
                "the whole study on synthetic data, CPU only (demo=full|ci out=DIR)"),
}
# Commands whose bare arguments (no `=`) are a list: `compare a b` -> `runs=['a','b']`.
POSITIONAL: dict[tuple[str, ...], str] = {("compare",): "runs"}
# Short keys of a command: `data export split=FILE` -> `split.manifest=FILE` (`split` is a config group).
ALIASES: dict[tuple[str, ...], dict[str, str]] = {("data", "export"): {"split": "split.manifest"}}
# Flags of a command that stand for an override: `push --dry-run` -> `dry_run=true`.
FLAGS: dict[tuple[str, ...], dict[str, str]] = {("push",): {"--dry-run": "dry_run=true"}}


class UsageError(SystemExit):
    def __init__(self, msg: str):
        super().__init__(f"egoadapt: {msg}\nRun `egoadapt --help` for the commands.")


def usage() -> str:
    width = max(len(" ".join(words)) for words in COMMANDS)
    rows = [f"  {' '.join(words):<{width}}  {help_}" for words, (_, _, help_) in COMMANDS.items()]
    return (
        "usage: egoadapt <command> [key=value ...]\n\n"
        "Adapt video multimodal LLMs to egocentric domains (SFT, GRPO, evaluation).\n"
        "Arguments are Hydra overrides; `egoadapt <command> --cfg` prints the composed config.\n\n"
        "commands:\n" + "\n".join(rows) + "\n"
    )


def split_command(argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    words = []
    for arg in argv:
        if "=" in arg or arg.startswith("-"):
            break
        words.append(arg)
        if tuple(words) in COMMANDS:
            return tuple(words), argv[len(words):]
    known = sorted({w[0] for w in COMMANDS})
    raise UsageError(f"unknown command {' '.join(words) or '(none)'!r}; known: {', '.join(known)}")


def positional_overrides(words: tuple[str, ...], rest: list[str]) -> list[str]:
    """Gather the bare arguments of a POSITIONAL command into one quoted Hydra list override."""
    key = POSITIONAL.get(words)
    bare = [a for a in rest if "=" not in a and not a.startswith("-")] if key else []
    if not bare:
        return rest
    if any(a.split("=", 1)[0].lstrip("+~") == key for a in rest if "=" in a):
        raise UsageError(f"give {key} either as bare arguments or as {key}=[...], not both")
    quoted = ",".join(hydra_value(a) for a in bare)
    return [a for a in rest if "=" in a or a.startswith("-")] + [f"{key}=[{quoted}]"]


def aliased_overrides(words: tuple[str, ...], rest: list[str]) -> list[str]:
    aliases, flags = ALIASES.get(words, {}), FLAGS.get(words, {})
    rest = [flags.get(a, a) for a in rest]
    return [f"{aliases[a.split('=', 1)[0]]}={a.split('=', 1)[1]}" if a.split("=", 1)[0] in aliases else a
            for a in rest]


def location_flags(rest: list[str]) -> tuple[dict[str, str], list[str]]:
    """Hydra's config-location flags pulled out of the arguments: ({config_dir|config_name|config_path:
    value}, the other arguments)."""
    found, others, args = {}, [], iter(rest)
    for a in args:
        flag, eq, value = a.partition("=")
        if flag not in LOCATION_FLAGS:
            others.append(a)
            continue
        value = value if eq else next(args, None)
        if not value or value.startswith("-"):
            raise UsageError(f"{flag} needs a value: {flag} VALUE or {flag}=VALUE")
        found[LOCATION_FLAGS[flag]] = value
    if "config_dir" in found and not Path(found["config_dir"]).expanduser().is_dir():
        raise UsageError(f"--config-dir {found['config_dir']}: no such folder")
    return found, others


# Hydra's flags that take a value, and the value each takes when none is given (None: required)
VALUE_FLAGS = {"--cfg": ("job", "hydra", "all"), "-c": ("job", "hydra", "all"),
               "--info": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
               "-i": ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath"),
               "--package": None, "-p": None}


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's flags with their values, the overrides): Hydra wants its flags first."""
    flags, plain, it = [], [], iter(args)
    for a in it:
        if a.split("=", 1)[0] in VALUE_FLAGS and "=" in a:
            flags.append(a)
        elif a in VALUE_FLAGS:
            choices = VALUE_FLAGS[a]
            value = next(it, None)
            if choices is not None and value not in choices:  # `--cfg` alone means `--cfg job`
                plain += [value] if value is not None else []
                value = choices[0]
            flags += [a, value] if value is not None else [a]
        elif a.startswith("-"):
            flags.append(a)
        else:
            plain.append(a)
    return flags, plain


def run_recipe(target: str, rest: list[str], located: dict[str, str]) -> int:
    """Compose the recipe (the primary config, on conf/'s groups), check every job, and run it through
    Hydra's run / multirun machinery (egoadapt.config.compose.launch): run folders, `-m` sweeps with
    their launchers and .hydra/ records as Hydra users know them."""
    from omegaconf import open_dict

    from egoadapt.config import ConfigError
    from egoadapt.train.launch import runs_here

    name = next((a.split("=", 1)[1] for a in rest if a.startswith("recipe=")), None)
    if located.get("config_name") and name and located["config_name"] != name:
        raise UsageError(f"--config-name {located['config_name']} and recipe={name}: give one recipe")
    name = name or located.get("config_name")
    if not name:
        raise UsageError("recipe=NAME is required; recipes: " + ", ".join(recipes()) + ", or recipe=PATH.yaml")
    dirs = [located[k] for k in ("config_dir", "config_path") if k in located]  # -cp: where the recipe is, too
    folder, name = find_recipe(name, dirs)
    # any TRL config field may be set as trainer.<field>=...: force-add it (`++`), and let
    # egoadapt.train.run check the name against TRL's config class (with a did-you-mean)
    overrides = [f"++{a}" if a.startswith("trainer.") else a for a in rest
                 if not a.startswith(("recipe=", "trainer_file="))]
    flags, plain = split_flags(overrides)
    names = {f.split("=", 1)[0] for f in flags if f.startswith("-")}
    if names - TRAIN_FLAGS:
        raise UsageError(f"egoadapt train takes key=value overrides, -m (a sweep) and --cfg [job|hydra|all]; "
                         f"not {', '.join(sorted(names - TRAIN_FLAGS))}")
    multirun = bool(names & {"-m", "--multirun"})
    source = dict(recipe=True, config_dir=folder, config_dirs=dirs)
    try:
        trainer_file = next((a.split("=", 1)[1] for a in rest if a.startswith("trainer_file=")), None)
        if trainer_file:  # before the user's own trainer.* overrides, which win
            from egoadapt.config.trainer_file import trainer_file_overrides

            plain = trainer_file_overrides(trainer_file, compose(name, plain, **source).get("algorithm")) + plain
        if names & {"--cfg", "-c"}:  # print, run nothing
            shown = next((f.split("=", 1)[1] if "=" in f else flags[i + 1] for i, f in enumerate(flags)
                          if f.split("=", 1)[0] in ("--cfg", "-c")), "job")
            cfg = compose(name, plain, hydra_config=shown != "job", **source)
            if shown == "hydra":
                cfg = cfg.hydra
            print(OmegaConf.to_yaml(cfg))
            return 0
        # every config-only check before Hydra writes anything (.hydra/, train.log)
        preflight = load_function(target.split(":")[0] + ":preflight")
        for job in sweep_jobs(plain) if multirun else [plain]:
            cfg = compose(name, job, hydra_config=True, **source)
            here = runs_here(cfg.hydra.launcher.get("_target_"))  # a Slurm job checks its node's GPUs itself
            with open_dict(cfg):
                del cfg["hydra"]
            preflight(cfg, here=here)
    except ConfigError as e:
        raise UsageError(f"train: {e}") from None
    return launch(target, name, plain, multirun=multirun, job_name="train", **source)


def load_function(target: str):
    module, fn = target.split(":")
    return getattr(importlib.import_module(module), fn)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    words, rest = split_command(argv)
    located, rest = location_flags(rest)
    rest = aliased_overrides(words, positional_overrides(words, rest))
    target, config_name, help_ = COMMANDS[words]
    if config_name == RECIPE and not ({"-h", "--help"} & set(rest)):
        return run_recipe(target, rest, located)
    if config_name == RECIPE:
        print(f"egoadapt {' '.join(words)}: {help_}\n\nrecipes:\n  " + "\n  ".join(recipes()))
        print("\nshow a recipe's composed config: egoadapt train recipe=NAME out=DIR --cfg job")
        return 0
    if "-h" in rest or "--help" in rest:
        print(f"egoadapt {' '.join(words)}: {help_}\n\ndefaults (override with key=value):\n")
        print(OmegaConf.to_yaml(compose(config_name, [])))
        return 0
    flags, overrides = split_flags(rest)  # `--cfg`, `--cfg job`, `--cfg=job`, `-c job` as in Hydra
    names = {f.split("=", 1)[0] for f in flags if f.startswith("-")}
    if names - {"--cfg", "-c"}:
        raise UsageError(f"egoadapt {' '.join(words)} takes key=value overrides and --cfg (print the config); "
                         f"not {', '.join(sorted(names - {'--cfg', '-c'}))}" +
                         (" (sweeps with -m are for `egoadapt train`)" if names & {"-m", "--multirun"} else ""))
    show = bool(names)
    # --config-dir DIR: groups and primary configs of the user's; --config-name NAME: the primary config
    dirs = [located[k] for k in ("config_dir", "config_path") if k in located]
    primary_dir = Path(dirs[0]).expanduser().resolve() if "config_name" in located and dirs else None
    from egoadapt.config import ConfigError, check

    try:  # before the command loads or writes anything
        cfg = compose(located.get("config_name", config_name), overrides, config_dir=primary_dir, config_dirs=dirs,
                      command=config_name)
        if show:
            print(OmegaConf.to_yaml(cfg))
            return 0
        check(cfg, config_name)
    except ConfigError as e:
        print(f"egoadapt {' '.join(words)}: {e}", file=sys.stderr)
        return 2
    result = load_function(target)(cfg)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
