"""The EgoCross recipes say what they run: every model family's recipes keep the paper's settings (lr 1e-6,
SFT 12 epochs on 4 GPUs, GRPO 16 epochs with beta 0.04 on 8), their header's launch line names the recipe,
an accelerate config that exists and a process count, and their pixel budget is a whole number of the
family's merged patches. Composed as a launch composes them (every recipe also passes the config checks:
tests/config/test_config_checks.py); nothing loads."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from egoadapt.cli import RECIPES_DIR, compose, recipes

ROOT = Path(__file__).resolve().parents[2]
EGOCROSS = [n for n in recipes() if n.startswith("egocross/")]
LAUNCH = re.compile(r"--config_file (launch/accelerate/zero[23]\.yaml)\s*\\?\s*(?:#\s*)?--num_processes (\d+)")


def header(name: str) -> str:
    """The recipe's leading comment block."""
    lines = (RECIPES_DIR / f"{name}.yaml").read_text().splitlines()
    return "\n".join(line for line in lines[:next(i for i, line in enumerate(lines) if not line.startswith("#"))])


def test_every_family_has_its_recipes():
    sizes = {"qwen2_5_vl_7b", "qwen2_5_vl_3b", "qwen3_vl_8b", "qwen3_vl_4b"}
    assert {f"egocross/{a}_{s}{lora}" for a in ("sft", "grpo") for s in sizes for lora in ("", "_lora")} <= set(EGOCROSS)
    assert {"egocross/sft_qwen3_5_9b", "egocross/grpo_qwen3_5_9b"} <= set(EGOCROSS)


@pytest.mark.parametrize("name", EGOCROSS)
def test_the_recipe_keeps_the_papers_settings_and_says_how_to_launch_it(name):
    cfg = compose(name, ["out=/tmp/egoadapt-x"], recipe=True)
    text = header(name)
    launch = LAUNCH.search(text)
    assert launch, f"{name}: no 'accelerate launch --config_file ... --num_processes N' in its header"
    assert (ROOT / launch.group(1)).is_file()
    processes = int(launch.group(2))
    assert f"recipe={name}" in text
    if name.endswith("_lora"):
        parent = name.removesuffix("_lora")
        assert f"As {parent.split('/')[1]}," in text and cfg.model.lora.enabled and cfg.model.freeze_vision
        assert compose(parent, ["out=/tmp/egoadapt-x"], recipe=True).model.path == cfg.model.path
        return
    assert cfg.trainer.learning_rate == 1e-6
    if cfg.algorithm == "sft":
        assert (cfg.trainer.num_train_epochs, cfg.requires_gpu, processes) == (12, "4x H100", 4)
        assert processes * cfg.trainer.per_device_train_batch_size * cfg.trainer.gradient_accumulation_steps == 16
    else:
        assert (cfg.trainer.num_train_epochs, cfg.trainer.beta, cfg.requires_gpu) == (16, 0.04, "8x H100")
        assert processes == 6 and cfg.rollout.engine == "vllm_server"  # + the rollout server and the judge: 8
        assert cfg.rollout.model == cfg.model.path
        assert f"launch/vllm_server.sh {cfg.model.path} 8000" in text


@pytest.mark.parametrize("name", EGOCROSS)
def test_the_pixel_budget_is_whole_merged_patches(name):
    """Qwen2.5-VL merges 28x28 pixels into a token and reads min/max_pixels per frame; Qwen3-VL and Qwen3.5
    merge 32x32 and budget a whole clip (their processor reads no min/max_pixels): a frame cap, 256 tokens a
    frame pair as the Qwen2.5-VL recipes."""
    cfg = compose(name, ["out=/tmp/egoadapt-x"], recipe=True)
    if "Qwen2.5-VL" in cfg.model.path:
        assert cfg.model.min_pixels % (28 * 28) == 0 and cfg.model.max_pixels == 256 * 28 * 28
    else:
        assert re.match(r"Qwen/Qwen3(\.5|-VL)-", cfg.model.path), cfg.model.path
        assert cfg.model.min_pixels is None and cfg.model.max_pixels is None
        assert cfg.frames.max_pixels == 256 * 32 * 32 and cfg.frames.resize == "cap"
