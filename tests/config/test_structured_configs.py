"""One config story: the schemas are Hydra structured configs (ConfigStore), so a typo or a wrong
type in a recipe file, a group's YAML or an override fails while composing, naming the key and
the file; every command composes through egoadapt.config.compose, `train` included (its runs and
`-m` sweeps through Hydra's own run/multirun, without rewriting sys.argv)."""
from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from egoadapt.cli import main
from egoadapt.config import ConfigError, schema
from egoadapt.config.compose import compose, launch

PACKAGE = Path(schema.__file__).resolve().parents[1]


def recipe(folder: Path, name: str, body: str) -> Path:
    path = folder / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# @package _global_\ndefaults:\n  - /demo/tiny_sft\n  - _self_\n" + body)
    return path


def test_each_primary_schema_is_in_the_config_store_and_types_the_composed_config():
    for name, cls in schema.SCHEMAS.items():
        assert ConfigStore.instance().load(f"{name}_schema.yaml").node._metadata.object_type is cls
    cfg = compose("eval", ["checkpoint=ckpt", "out=/tmp/x"])
    assert OmegaConf.get_type(cfg) is schema.Eval and OmegaConf.get_type(cfg.frames) is schema.Frames
    assert OmegaConf.get_type(compose("demo/tiny_sft", ["out=/tmp/x"], recipe=True).model.lora) is schema.Lora


def test_a_typo_in_a_recipe_file_fails_at_compose_naming_key_and_file(tmp_path):
    path = recipe(tmp_path, "typo", "frames:\n  max_frame: 8\njudge:\n  timout_s: 5\n")
    with pytest.raises(ConfigError) as e:
        compose("typo", ["out=/tmp/x"], recipe=True, config_dir=tmp_path)
    msg = str(e.value)
    assert "unknown key frames.max_frame (did you mean max_frames?)" in msg and f"(in {path})" in msg
    assert "unknown key judge.timout_s (did you mean timeout_s?)" in msg  # every problem, not only the first


def test_a_wrong_type_in_a_recipe_file_fails_at_compose(tmp_path):
    path = recipe(tmp_path, "wrong", "seed: abc\n")
    with pytest.raises(ConfigError, match=r"seed='abc': expected an integer \(in .*wrong.yaml\)"):
        compose("wrong", ["out=/tmp/x"], recipe=True, config_dir=tmp_path)
    assert str(path).endswith("wrong.yaml")


def test_a_typo_in_a_group_option_fails_at_compose_naming_key_and_file(tmp_path):
    """A user's frames option (--config-dir) with a misspelt key and a value of the wrong type."""
    option = tmp_path / "frames" / "mine.yaml"
    option.parent.mkdir()
    option.write_text("defaults:\n  - default\n  - _self_\nmax_frame: 8\n")
    with pytest.raises(ConfigError) as e:
        compose("eval", ["frames=mine", "checkpoint=c", "out=/tmp/x"], config_dirs=[str(tmp_path)])
    assert "unknown key frames.max_frame (did you mean max_frames?)" in str(e.value)
    assert f"(in {option})" in str(e.value)
    option.write_text("defaults:\n  - default\n  - _self_\nthreads: many\n")
    with pytest.raises(ConfigError, match=r"frames.threads='many': expected an integer \(in .*mine.yaml\)"):
        compose("eval", ["frames=mine", "checkpoint=c", "out=/tmp/x"], config_dirs=[str(tmp_path)])


@pytest.mark.parametrize("override,expected", [
    ("batch_size=1.5", "batch_size=1.5: expected an integer"),
    ("fresh=1", "fresh=1: expected true or false"),  # OmegaConf would take 1 for true
    ("checkpoint=8", "checkpoint=8: expected a string (quote it: checkpoint='8')"),  # ... and 8 for '8'
    ("frames.max_frame=8", "unknown key frames.max_frame (did you mean frames.max_frames?)"),
])
def test_a_wrong_override_fails_at_compose(override, expected):
    with pytest.raises((ConfigError, SystemExit), match=re.escape(expected)):
        compose("eval", ["checkpoint=ckpt", "out=/tmp/x", override])


def test_group_options_and_interpolations_are_not_taken_for_values():
    cfg = compose("train", ["out=/tmp/x", "trainer=sft", "algorithm=sft", "frames=pyav", "seed=${split.seed}"])
    assert cfg.trainer.get("num_train_epochs") is not None and cfg.frames.backend == "pyav" and cfg.seed == 0


def test_train_cfg_job_composes_through_the_helper(capsys, tmp_path):
    path = recipe(tmp_path, "typo", "frames:\n  max_frame: 8\n")
    argv = list(sys.argv)
    assert main(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", "seed=3", "--cfg", "job"]) == 0
    job = yaml.safe_load(capsys.readouterr().out)
    assert job["seed"] == 3 and job["algorithm"] == "sft" and "hydra" not in job
    assert main(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", "--cfg", "hydra"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["job"]["name"] == "train"
    with pytest.raises(SystemExit, match=f"max_frame.*{path}"):  # the same compose-time check as every command
        main(["train", f"recipe={path}", f"out={tmp_path / 'run'}", "--cfg", "job"])
    assert sys.argv == argv and not (tmp_path / "run").exists()


def record_job(cfg) -> int:
    """A job for `launch`: writes what it was given into its run folder."""
    from hydra.core.hydra_config import HydraConfig

    Path(HydraConfig.get().runtime.output_dir, f"job_{cfg.seed}.json").write_text(json.dumps(
        {"seed": cfg.seed, "num": HydraConfig.get().job.get("num"), "mode": str(HydraConfig.get().mode)}))
    return 0


def test_launch_runs_hydra_run_and_multirun_without_argv(tmp_path):
    argv = list(sys.argv)
    run = tmp_path / "run"
    assert launch(f"{__name__}:record_job", "demo/tiny_sft", [f"out={run}", "seed=5"], job_name="train") == 0
    assert json.loads((run / "job_5.json").read_text())["mode"] == "RunMode.RUN"
    assert (run / ".hydra" / "config.yaml").is_file() and (run / "train.log").exists()
    sweep = tmp_path / "sweep"
    assert launch(f"{__name__}:record_job", "demo/tiny_sft", [f"out={sweep}", "seed=1,2"], multirun=True) == 0
    for num, seed in ((0, 1), (1, 2)):  # one folder per job (hydra.sweep.subdir), as hydra.main makes them
        job = json.loads((sweep / str(num) / f"job_{seed}.json").read_text())
        assert job == {"seed": seed, "num": num, "mode": "RunMode.MULTIRUN"}
        assert f"seed={seed}" in (sweep / str(num) / ".hydra" / "overrides.yaml").read_text()
    assert sys.argv == argv


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module} | \
        {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}


def test_no_module_rewrites_sys_argv_and_eval_does_not_import_the_cli():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                assert not any(ast.unparse(t) == "sys.argv" for t in node.targets), path
    for path in (PACKAGE / "eval").rglob("*.py"):
        assert "egoadapt.cli" not in _imports(path), path


def test_no_code_default_for_a_config_key():
    """cfg_get(cfg, key, default) kept a second default in code and let a misspelt key fall back: gone."""
    for path in PACKAGE.rglob("*.py"):
        assert "cfg_get" not in path.read_text(), path
