"""Config checked before anything loads or is written, for every command, as a user meets it:
types and ranges of every group, every key known (with a did-you-mean), secrets refused,
`out=` sane. Each bad launch must exit non-zero naming the key, write nothing under out=,
and load no model; everything the project ships must pass."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from egoadapt import cli
from egoadapt.cli import CONF_DIR, compose, recipes
from egoadapt.config import ConfigError, check, is_secret_key, problems
from egoadapt.config import compose as compose_module
from egoadapt.config.trainer import grpo_batch_problem

SECRET = "sk-do-not-print-me"
GROUPS = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))  # not __pycache__
PRIMARY = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


@pytest.fixture(autouse=True)
def _checks_come_first(no_model_load):
    """Every test here: loading a model or a processor fails it."""


def nothing_written(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


# ------------------------------------------------------------------ what ships passes

def trainer_class(cfg):
    from egoadapt.train.run import trl_config_class

    return trl_config_class(cfg.algorithm)


@pytest.mark.parametrize("name", recipes())
def test_every_recipe_passes(name):
    cfg = compose(name, ["out=/tmp/egoadapt-x"], recipe=True)
    assert problems(cfg, "train", trainer=trainer_class(cfg)) == []


def _options(config: str) -> list[tuple[str, str, str]]:
    """(config, group, option) for each option of each group in the config's defaults list."""
    from omegaconf import OmegaConf

    defaults = OmegaConf.load(CONF_DIR / f"{config}.yaml").get("defaults") or []
    groups = [g for d in defaults if not isinstance(d, str) for g in d if g in GROUPS]
    return [(config, g, p.stem) for g in groups for p in sorted((CONF_DIR / g).glob("*.yaml"))]


@pytest.mark.parametrize("config,group,option", [c for name in PRIMARY for c in _options(name)] +
                         [(name, None, None) for name in PRIMARY])
def test_every_primary_config_and_group_option_passes(config, group, option):
    overrides = [f"{group}={option}"] if group else []
    if group == "trainer":
        overrides.append(f"algorithm={option}")  # trainer=sft goes with algorithm=sft
    cfg = compose(config, overrides)
    trainer = trainer_class(cfg) if config == "train" else None
    assert problems(cfg, config, trainer=trainer) == []


def test_schemas_are_omegaconf_structured_configs():
    """The foundation for Hydra ConfigStore registration: each schema builds as a structured config."""
    from omegaconf import OmegaConf

    from egoadapt.config.schema import SCHEMAS

    for schema in SCHEMAS.values():
        OmegaConf.structured(schema)


# ------------------------------------------------------------------ train

def train(*args: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(["train", *args])
    return str(e.value)


BAD_TRAIN = [
    (["trainer.num_generations=abc"], ["trainer.num_generations='abc'", "expected an integer"]),
    (["trainer.per_device_train_batch_size=3"], ["trainer.num_generations=8", "multiple of num_generations",
                                                 "per_device_train_batch_size 3"]),
    (["trainer.gradient_accumulation_steps=0"], ["trainer.gradient_accumulation_steps=0: gradient_accumulation_steps must be >= 1"]),
    (["trainer.lr_scheduler_type=cosin"], ["trainer.lr_scheduler_type", "cosine"]),
    (["trainer.learning_rte=1e-3"], ["learning_rte (did you mean learning_rate?)"]),
    (["frames.max_frames=0"], ["frames.max_frames=0: max_frames must be >= 1"]),
    (["frames.odd_frames=bogus"], ["frames.odd_frames='bogus': odd_frames must be one of pad, drop, keep"]),
    (["frames.max_pixels=-1"], ["frames.max_pixels=-1: max_pixels must be >= 1"]),
    (["frames.fps=nan"], ["frames.fps", "finite"]),
    (["model.min_pixels=0"], ["model.min_pixels=0: min_pixels must be >= 1"]),
    (["model.min_pixels=5000", "model.max_pixels=100"], ["model.min_pixels=5000 is above model.max_pixels=100"]),
    (["model.lora.r=abc"], ["model.lora.r='abc'"]),
    (["data.fps.default=0"], ["data.fps.default"]),
    (["split.test_fraction=1.5"], ["split.test_fraction=1.5: test_fraction must be < 1"]),
    (["rollout.engine=vllm"], ["rollout.engine='vllm': engine must be one of hf, vllm_colocate, vllm_server"]),
    (["reward.iou_threshold=2"], ["reward.iou_threshold=2: iou_threshold must be <= 1"]),
    (["seed=abc"], ["seed='abc'", "expected an integer"]),
    (["algorithm=ppo"], ["algorithm='ppo': algorithm must be one of sft, grpo"]),
    (["+frames.max_frame=8"], ["unknown key frames.max_frame (did you mean max_frames?)"]),
    (["frames.max_frame=8"], ["unknown key frames.max_frame (did you mean frames.max_frames?)"]),
    (["+judge.timout_s=5"], ["unknown key judge.timout_s (did you mean timeout_s?)"]),
    (["+rewrd.mode=official"], ["unknown key rewrd (did you mean reward?)"]),
    (["judge=vllm_local", "judge.retries=-1"], ["judge.retries=-1: retries must be >= 0"]),
    (["+judge.retries=-1"], ["judge.retries=-1: retries must be >= 0"]),  # judge=none: still a bad value
    (["+requires_gpu=8"], ["requires_gpu=8: expected a string or null (quote it: requires_gpu='8')"]),
]


@pytest.mark.parametrize("overrides,expected", BAD_TRAIN, ids=[" ".join(o) for o, _ in BAD_TRAIN])
def test_bad_train_config_fails_before_anything_is_written(overrides, expected, config_only_model, tmp_path):
    out = tmp_path / "run"
    msg = train("recipe=demo/tiny_grpo", f"out={out}", f"model.path={config_only_model}", f"data.root={tmp_path}",
                *overrides)
    for part in expected:
        assert part in msg, msg
    assert not out.exists()  # not even Hydra's .hydra/ or train.log


def test_all_problems_are_listed_at_once(config_only_model, tmp_path):
    msg = train("recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"model.path={config_only_model}",
                f"data.root={tmp_path}", "frames.max_frames=0", "+frames.max_frame=3", "trainer.num_train_epochs=x")
    assert "3 problems" in msg and "frames.max_frames" in msg and "max_frame " in msg and "num_train_epochs" in msg


@pytest.mark.parametrize("override", [f"+judge.api_key={SECRET}", f"judge.api_key={SECRET}",
                                      f"trainer.hub_token={SECRET}", f"+logger.password={SECRET}"])
def test_a_secret_is_refused_before_anything_is_written(override, config_only_model, tmp_path, capsys):
    out = tmp_path / "run"
    msg = train("recipe=demo/tiny_grpo", f"out={out}", f"model.path={config_only_model}", f"data.root={tmp_path}", override)
    key = override.lstrip("+").split("=")[0]
    assert key in msg and "environment variable" in msg
    if key.startswith("judge."):
        assert "judge.api_key_env" in msg
    assert SECRET not in msg + capsys.readouterr().err
    assert not out.exists()


def test_out_naming_a_file_is_refused(config_only_model, tmp_path):
    out = tmp_path / "a_file"
    out.write_text("keep me")
    msg = train("recipe=demo/tiny_sft", f"out={out}", f"model.path={config_only_model}", f"data.root={tmp_path}")
    assert f"out={out}: an existing file" in msg and out.read_text() == "keep me"
    msg = train("recipe=demo/tiny_sft", f"out={out / 'run'}", f"model.path={config_only_model}", f"data.root={tmp_path}")
    assert "is a file" in msg


def test_a_typo_in_a_recipe_file_names_the_key(config_only_model, tmp_path, monkeypatch):
    recipes_dir = tmp_path / "recipes"
    recipes_dir.mkdir()
    (recipes_dir / "typo.yaml").write_text("# @package _global_\ndefaults:\n  - /train\n  - override /trainer: sft\n"
                                           "  - _self_\nalgorithm: sft\nframes:\n  max_frame: 8\n"
                                           "judge:\n  timout_s: 5\n")
    monkeypatch.setattr(compose_module, "RECIPES_DIR", recipes_dir)
    out = tmp_path / "run"
    msg = train("recipe=typo", f"out={out}", f"model.path={config_only_model}", f"data.root={tmp_path}")
    assert "frames.max_frame (did you mean max_frames?)" in msg and "judge.timout_s (did you mean timeout_s?)" in msg
    assert not out.exists()


def test_a_sweep_is_checked_job_by_job_before_any_job_runs(config_only_model, tmp_path):
    out = tmp_path / "sweep"
    msg = train("-m", "recipe=demo/tiny_grpo", f"out={out}", f"model.path={config_only_model}", f"data.root={tmp_path}",
                "trainer.per_device_train_batch_size=16,12")
    assert "per_device_train_batch_size 12" in msg and "multiple of num_generations" in msg
    assert not out.exists()


def test_grpo_batch_rule_counts_processes(monkeypatch):
    t = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "num_generations": 8,
         "generation_batch_size": None, "steps_per_generation": None}
    assert grpo_batch_problem(t, processes=2) is None  # 4 x 2 = 8
    assert "4 x 1 process x gradient_accumulation_steps 1 = 4" in grpo_batch_problem(t, processes=1)
    assert grpo_batch_problem({**t, "gradient_accumulation_steps": 2}, processes=1) is None
    assert grpo_batch_problem({**t, "steps_per_generation": 3}, processes=2) is None  # 24
    assert "set one of them" in grpo_batch_problem({**t, "steps_per_generation": 2, "generation_batch_size": 8}, 1)
    assert "global batch" in grpo_batch_problem({**t, "generation_batch_size": 12}, processes=2)
    cfg = compose("demo/tiny_grpo", ["out=/tmp/egoadapt-x", "trainer.per_device_train_batch_size=4"], recipe=True)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as accelerate launch sets it
    assert problems(cfg, "train", trainer=trainer_class(cfg)) == []
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert "multiple of num_generations" in " ".join(problems(cfg, "train", trainer=trainer_class(cfg)))


# ------------------------------------------------------------------ eval, score, data

@pytest.fixture
def eval_args(config_only_model, tmp_path):
    return ["eval", f"checkpoint={config_only_model}", "data=synthetic", f"data.root={tmp_path}", f"out={tmp_path / 'ev'}"]


BAD_EVAL = [
    ([f"+judge.api_key={SECRET}"], ["judge.api_key", "judge.api_key_env"]),
    (["frames.max_frames=0"], ["frames.max_frames=0: max_frames must be >= 1"]),
    (["frames.odd_frames=bogus"], ["frames.odd_frames='bogus': odd_frames must be one of pad, drop, keep"]),
    (["+judge.timout_s=5"], ["judge.timout_s (did you mean timeout_s?)"]),
    (["+frames.max_frame=8"], ["frames.max_frame (did you mean max_frames?)"]),
    (["batch_size=abc"], ["batch_size='abc'"]),
    (["generation.max_new_tokens=0"], ["generation.max_new_tokens=0: max_new_tokens must be >= 1"]),
    (["model.min_pixels=5000", "model.max_pixels=100"], ["model.min_pixels=5000 is above model.max_pixels=100"]),
    (["backend=trt"], ["backend='trt': backend must be one of hf, vllm"]),
    (["judge=vllm_local", "judge.retries=-1", "qa=close"], ["judge.retries=-1: retries must be >= 0"]),
    (["judge=vllm_local", "judge.timeout_s=0"], ["judge.timeout_s=0: timeout_s must be > 0"]),
]


@pytest.mark.parametrize("overrides,expected", BAD_EVAL, ids=[" ".join(o) for o, _ in BAD_EVAL])
def test_bad_eval_config_fails_before_anything_is_written(overrides, expected, eval_args, tmp_path, capsys):
    assert cli.main([*eval_args, *overrides]) == 2
    err = capsys.readouterr().err
    for part in expected:
        assert part in err, err
    assert SECRET not in err
    assert nothing_written(tmp_path / "ev")


def test_eval_out_naming_a_file_is_refused(eval_args, tmp_path, capsys):
    (tmp_path / "ev").write_text("keep me")
    assert cli.main(eval_args) == 2
    assert "an existing file" in capsys.readouterr().err and (tmp_path / "ev").read_text() == "keep me"


def test_evaluate_from_python_checks_too(config_only_model, tmp_path):
    from egoadapt.eval.generate import EvalError
    from egoadapt.eval.run import config, evaluate

    cfg = config(f"checkpoint={config_only_model}", "data=synthetic", f"data.root={tmp_path}", f"out={tmp_path / 'ev'}",
                 f"+judge.api_key={SECRET}")
    with pytest.raises(EvalError, match="judge.api_key_env"):
        evaluate(cfg)
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("overrides,expected", [
    ([f"+judge.api_key={SECRET}"], "judge.api_key_env"),
    (["chunk_size=0"], "chunk_size=0: chunk_size must be >= 1"),
    (["+judge.timout_s=5"], "did you mean timeout_s?"),
    (["reward.iou_threshold=2"], "reward.iou_threshold=2: iou_threshold must be <= 1"),
    (["+data.annotation=x.json"], "data.annotation (did you mean annotations?)"),
])
def test_bad_score_config(overrides, expected, tmp_path, capsys):
    preds = tmp_path / "p.jsonl"
    preds.write_text('{"id": 1, "output": "A"}\n')
    out = tmp_path / "scored"
    assert cli.main(["score", f"predictions={preds}", f"data.annotations={tmp_path / 'a.json'}", f"out={out}",
                     *overrides]) == 2
    err = capsys.readouterr().err
    assert expected in err and SECRET not in err
    assert not out.exists()


@pytest.mark.parametrize("args,expected", [
    (["data", "validate", "frames.odd_frames=bogus"], "frames.odd_frames='bogus': odd_frames must be one of"),
    (["data", "validate", "validate.decode=maybe"], "validate.decode='maybe': expected true or false"),
    (["data", "validate", "+data.annotation=x.json"], "did you mean annotations?"),
    (["data", "split", "split.test_fraction=0"], "split.test_fraction=0: test_fraction must be > 0"),
    (["data", "split", "+split.sed=3"], "split.sed (did you mean seed?)"),
    (["data", "split", "data.on_error=ignore"], "data.on_error='ignore': on_error must be one of raise, skip"),
    (["data", "synth", "videos_per_domain=0"], "videos_per_domain=0: videos_per_domain must be >= 1"),
    (["data", "synth", "video_fps=3", "sampling_fps=2"], "video_fps=3.0 must be a multiple of sampling_fps=2.0"),  # typed: floats
    (["model", "tiny", "size=huge"], "size='huge': size must be one of micro, small"),
])
def test_bad_data_and_model_commands(args, expected, tmp_path, capsys):
    out = tmp_path / "out"
    extra = [f"data.annotations={tmp_path / 'a.json'}"] if args[:2] in (["data", "validate"], ["data", "split"]) else []
    extra += [] if args[:2] == ["data", "validate"] else [f"out={out}"]
    assert cli.main([*args, *extra]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_data_split_out_naming_a_folder_is_refused(tmp_path, capsys):
    assert cli.main(["data", "split", f"data.annotations={tmp_path / 'a.json'}", f"out={tmp_path}"]) == 2
    assert "an existing folder, not a file" in capsys.readouterr().err


def test_a_secret_never_reaches_the_disk_or_the_terminal(config_only_model, tmp_path):
    """As a user runs it: a separate process, its exit status and its output."""
    out = tmp_path / "ev"
    proc = subprocess.run([sys.executable, "-m", "egoadapt.cli", "eval", f"checkpoint={config_only_model}", "data=synthetic",
                           f"data.root={tmp_path}", f"out={out}", f"+judge.api_key={SECRET}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "judge.api_key_env" in proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert not out.exists()


# ------------------------------------------------------------------ units

@pytest.mark.parametrize("name", ["api_key", "API_KEY", "apikey", "token", "hub_token", "hf_token", "access_token",
                                  "password", "secret", "client_secret", "aws_secret_access_key", "Authorization"])
def test_secret_keys(name):
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["api_key_env", "pad_token", "eos_token", "max_tokens", "max_new_tokens",
                                  "tokenizer", "secrets_dir_env", "hub_private_repo"])
def test_not_secret_keys(name):
    assert not is_secret_key(name)


def test_config_error_lists_every_problem():
    cfg = compose("eval", ["frames.max_frames=0", "batch_size=0", "+judge.api_key=x"])
    with pytest.raises(ConfigError) as e:
        check(cfg, "eval")
    assert len(e.value.problems) == 3 and str(e.value).startswith("3 problems in the config")
    assert sum(p.startswith("judge.api_key:") for p in e.value.problems) == 1  # not also an unknown key
