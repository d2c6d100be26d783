"""Where configs come from: a user's recipe file (`recipe=PATH.yaml`), a TRL YAML merged into
`trainer.*` (`trainer_file=FILE`), Hydra's location flags in both spellings, and the packaged
configs themselves."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from egoadapt import cli, configs
from egoadapt.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def job_config(capsys, *args: str) -> dict:
    """`egoadapt train ... --cfg job` as a dict."""
    assert main(["train", *args, "--cfg", "job"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.fixture
def user_recipe(tmp_path) -> Path:
    path = tmp_path / "mine" / "short_sft.yaml"  # extends a packaged recipe, no @package header
    path.parent.mkdir()
    path.write_text("defaults:\n  - /demo/tiny_sft\n  - _self_\ntrainer:\n  num_train_epochs: 3\n")
    return path


def test_recipe_path_yaml_extends_a_packaged_recipe(user_recipe, tmp_path, capsys):
    cfg = job_config(capsys, f"recipe={user_recipe}", f"out={tmp_path / 'run'}")
    assert cfg["algorithm"] == "sft" and cfg["trainer"]["num_train_epochs"] == 3
    assert cfg["trainer"]["learning_rate"] == 2.0e-3  # the packaged recipe's, underneath


def test_a_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match="recipe=.*nope.yaml: no such file"):
        main(["train", f"recipe={tmp_path / 'nope.yaml'}", "out=x"])


TRL_YAML = """\
# what `trl sft --config FILE` reads
learning_rate: 5.0e-6
lr_scheduler_type: cosine
gradient_checkpointing_kwargs: {use_reentrant: false}
model_name_or_path: MODEL
lora_r: 16
env:
  EGOADAPT_TEST_TRL_ENV: "from the file"
"""


def test_trainer_file_merges_into_trainer_and_the_command_line_wins(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EGOADAPT_TEST_TRL_ENV", raising=False)
    path = tmp_path / "trl.yaml"
    path.write_text(TRL_YAML.replace("MODEL", str(tmp_path / "some model")))
    cfg = job_config(capsys, "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"trainer_file={path}",
                     "trainer.lr_scheduler_type=linear")
    t = cfg["trainer"]
    assert t["learning_rate"] == 5.0e-6 and t["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    assert t["lr_scheduler_type"] == "linear"  # trainer.* on the command line wins over the file
    assert cfg["model"]["path"] == str(tmp_path / "some model") and cfg["model"]["lora"]["r"] == 16
    assert os.environ["EGOADAPT_TEST_TRL_ENV"] == "from the file"


@pytest.mark.parametrize("line, expected", [
    ("learning_rte: 1.0e-5", "learning_rte is not a field of TRL's SFTConfig (did you mean learning_rate?)"),
    ("dataset_name: trl-lib/Capybara", "dataset_name is a TRL ScriptArguments field"),
    ("num_generations: 8", "num_generations is not a field of TRL's SFTConfig"),  # a GRPO key in an SFT recipe
    ("hub_token: hf_abc", "hub_token: secrets are never taken from a file"),
])
def test_trainer_file_keys_are_checked_against_trl(line, expected, tmp_path):
    path = tmp_path / "trl.yaml"
    path.write_text(line + "\n")
    with pytest.raises(SystemExit) as e:
        main(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"trainer_file={path}"])
    assert f"trainer_file={path}" in str(e.value) and expected in str(e.value)
    assert "hf_abc" not in str(e.value) and not (tmp_path / "run").exists()


def test_trainer_file_values_are_type_checked_like_trainer_keys(tmp_path):
    path = tmp_path / "trl.yaml"
    path.write_text("per_device_train_batch_size: many\n")
    with pytest.raises(SystemExit, match="trainer.per_device_train_batch_size='many': expected an integer"):
        main(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"trainer_file={path}"])


@pytest.fixture
def config_dir(tmp_path, user_recipe) -> Path:
    d = tmp_path / "conf_mine"
    (d / "split").mkdir(parents=True)
    (d / "split" / "eighty.yaml").write_text("defaults:\n  - paper_70_30\n  - _self_\ntest_fraction: 0.2\n")
    (d / "team").mkdir()
    (d / "team" / "short.yaml").write_text(user_recipe.read_text())
    return d


@pytest.mark.parametrize("spelling", [["--config-dir", "{d}"], ["--config-dir={d}"], ["-cd", "{d}"], ["-cd={d}"]])
def test_config_dir_in_both_spellings(spelling, config_dir, capsys):
    args = [a.format(d=config_dir) for a in spelling]
    assert main(["data", "split", *args, "split=eighty", "--cfg"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["split"]["test_fraction"] == 0.2


@pytest.mark.parametrize("spelling", [["-cd", "{d}", "-cn", "team/short"], ["--config-dir={d}", "--config-name=team/short"],
                                      ["--config-dir", "{d}", "recipe=team/short"]])
def test_train_recipe_from_a_config_dir(spelling, config_dir, tmp_path, capsys):
    args = [a.format(d=config_dir) for a in spelling]
    cfg = job_config(capsys, *args, f"out={tmp_path / 'run'}")
    assert cfg["algorithm"] == "sft" and cfg["trainer"]["num_train_epochs"] == 3  # at the top, not under team:


def test_config_name_picks_a_users_primary_config(tmp_path, capsys):
    (tmp_path / "my_split.yaml").write_text("defaults:\n  - data_split\n  - _self_\nsplit:\n  seed: 7\n")
    assert main(["data", "split", "-cd", str(tmp_path), "-cn", "my_split", "--cfg"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["split"]["seed"] == 7 and cfg["split"]["protocol"] == "paper_70_30"


def test_a_config_dir_value_is_not_a_positional_run(config_dir, tmp_path, capsys):
    # compare takes bare arguments as runs: the folder after --config-dir is the flag's value
    assert main(["compare", "--config-dir", str(config_dir), "a", "b", f"out={tmp_path}", "--cfg"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["runs"] == ["a", "b"]


def test_flag_without_value_and_missing_dir_are_clear(tmp_path):
    with pytest.raises(SystemExit, match="--config-dir needs a value"):
        main(["data", "split", "--config-dir"])
    with pytest.raises(SystemExit, match="no such folder"):
        main(["data", "split", "--config-dir", str(tmp_path / "none"), "--cfg"])


def test_every_config_lives_in_one_place():
    """conf/ and recipes/ are found through egoadapt.configs (and are complete there)."""
    assert cli.CONF_DIR == configs.CONF_DIR and cli.RECIPES_DIR == configs.RECIPES_DIR
    assert (configs.CONF_DIR / "train.yaml").is_file() and (configs.RECIPES_DIR / "demo" / "tiny_sft.yaml").is_file()
    assert all((configs.CONF_DIR / f"{name}.yaml").is_file() for _, name, _ in cli.COMMANDS.values()
               if name != cli.RECIPE)


def test_hydra_value_round_trips_through_hydra():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    value = {"a_b": [1, 2.5e-06, None, True], "q": "it's \\ here\\", "d": {"use_reentrant": False}}
    parsed = OverridesParser.create().parse_override(f"x={configs.hydra_value(value)}").value()
    assert json.loads(json.dumps(parsed)) == value


@pytest.mark.integration
def test_a_user_recipe_with_a_trl_yaml_trains(tiny_model_dir, synth_dir, tmp_path, user_recipe):
    """Through Hydra's own entry point (not --cfg): the run's config.yaml holds the merged values."""
    trl = tmp_path / "trl.yaml"
    trl.write_text(f"model_name_or_path: {tiny_model_dir}\nmax_steps: 2\nper_device_train_batch_size: 4\n"
                   "learning_rate: 1.0e-2\nsave_strategy: 'no'\n")
    out = tmp_path / "run"
    assert main(["train", f"recipe={user_recipe}", f"trainer_file={trl}", f"data.root={synth_dir}", f"out={out}",
                 f"cache_dir={tmp_path / 'cache'}", "trainer.learning_rate=5e-3"]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"]["path"] == str(tiny_model_dir) and cfg["trainer"]["max_steps"] == 2
    assert cfg["trainer"]["learning_rate"] == 5e-3 and cfg["trainer"]["num_train_epochs"] == 3
    assert (out / "final" / "model.safetensors").is_file()
