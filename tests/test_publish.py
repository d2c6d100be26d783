"""`egoadapt push`: the upload folder holds the final model, its processor and a model card that
huggingface_hub parses, nothing else of the run folder; LoRA runs push merged weights or the
adapter; the upload itself fails clearly when the Hub cannot be reached (offline here)."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from egoadapt.cli import main as cli
from egoadapt.configs import RECIPES_DIR
from tests.eval.eval_helpers import rows, write_eval

REPO = "me/egocross-tiny-sft"


@pytest.fixture
def run_folder(tiny_model_dir, tmp_path):
    """A training run folder as `egoadapt train` leaves it, with everything push must leave out."""
    run = tmp_path / "sft"
    shutil.copytree(tiny_model_dir, run / "final")
    (run / "final" / "training_args.bin").write_bytes(b"args")
    for junk in ("checkpoint-2/optimizer.pt", "checkpoint-2/model.safetensors", "rollout_weights/sync-1/model.safetensors",
                 "wandb/offline-run-1/run-1.wandb", "trainer_state.json"):
        (run / junk).parent.mkdir(parents=True, exist_ok=True)
        (run / junk).write_bytes(b"not for the hub")
    (run / "config.yaml").write_text(
        f"algorithm: sft\nmodel:\n  path: {tiny_model_dir}\ndata:\n  format: egocross\n  annotations: /d/answers.json\n"
        "split:\n  protocol: paper_70_30\n")
    (run / "split.json").write_text(json.dumps({"protocol": "paper_70_30", "train": ["1"], "test": ["2"]}))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  job:\n    config_name: tiny_sft\n  runtime:\n    config_sources:\n"
        f"    - path: {RECIPES_DIR / 'demo'}\n      schema: file\n      provider: main\n")
    split_hash = hashlib.sha256((run / "split.json").read_bytes()).hexdigest()
    write_eval(run / "eval", rows([1, 1, 0, 1], ["surgery"] * 2 + ["animal"] * 2, ["Counting"] * 4), split_hash=split_hash)
    return run


def card_of(folder: Path):
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md")


def test_dry_run_writes_the_model_processor_and_card_only(run_folder, capsys):
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "--dry-run"]) == 0
    out = run_folder / "push"
    assert "not uploaded (dry run)" in capsys.readouterr().out
    model_files = {p.name for p in (run_folder / "final").iterdir()} - {"training_args.bin"}
    assert {p.name for p in out.iterdir()} == model_files | {"README.md"}
    assert (out / "model.safetensors").stat().st_ino == (run_folder / "final" / "model.safetensors").stat().st_ino
    card = card_of(out)
    data = card.data
    assert data.base_model is None  # trained from a local folder: no Hub id to name
    assert data.datasets == ["myuniverse/EgoCross"] and data.pipeline_tag == "video-text-to-text"
    assert {"egoadapt", "sft", "video"} <= set(data.tags) and "lora" not in data.tags
    split_hash = hashlib.sha256((run_folder / "split.json").read_bytes()).hexdigest()
    meta = data.to_dict()["egoadapt"]
    assert meta["recipe"] == "demo/tiny_sft" and meta["split_hash"] == split_hash and meta["weights"] == "full"
    results = {r.metric_name: r for r in data.eval_results}  # model-index, as the Hub reads it
    assert results["accuracy (micro)"].metric_value == pytest.approx(75.0)
    assert results["accuracy (macro over domains)"].metric_value == pytest.approx(75.0)  # 2/2 and 1/2
    assert results["CloseQA accuracy (micro)"].dataset_revision == split_hash
    assert results["accuracy (micro)"].dataset_split == "test"
    text = card.text
    assert "AutoModelForImageTextToText.from_pretrained(model_id" in text and f'model_id = "{REPO}"' in text
    assert '"type": "video"' in text and '"video_url"' in text and f'LLM("{REPO}"' in text  # both usages, with video
    # a second dry run replaces the folder whole
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "dry_run=true", "tags=[surgery]"]) == 0
    assert "surgery" in card_of(out).data.tags


def test_lora_runs_push_merged_weights_or_the_adapter(run_folder, capsys):
    adapter = run_folder / "final" / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/local/base", "r": 4}))
    (adapter / "adapter_model.safetensors").write_bytes(b"adapter")
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "--dry-run"]) == 0
    merged = run_folder / "push"
    assert not (merged / "adapter_config.json").exists() and (merged / "model.safetensors").is_file()
    assert "lora" in card_of(merged).data.tags and "LoRA merged into the base weights" in card_of(merged).text
    # the adapter alone needs its base on the Hub
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "--dry-run", "weights=adapter"]) == 2
    assert "base_model=ORG/NAME" in capsys.readouterr().err
    out = run_folder / "adapter_push"
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "--dry-run", "weights=adapter", f"out={out}",
                "base_model=Qwen/Qwen2.5-VL-7B-Instruct"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= names
    assert not names & {"model.safetensors", "config.json", "training_args.bin"}
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "Qwen/Qwen2.5-VL-7B-Instruct"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "/local/base"
    card = card_of(out)
    assert card.data.base_model == "Qwen/Qwen2.5-VL-7B-Instruct" and card.data.library_name == "peft"


def test_upload_without_the_hub_fails_naming_the_ready_folder(run_folder, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli(["push", f"run={run_folder}", f"repo={REPO}"]) == 2
    err = capsys.readouterr().err
    assert f"upload to {REPO} failed" in err and str(run_folder / "push") in err
    assert (run_folder / "push" / "README.md").is_file()


def test_bad_arguments(run_folder, tmp_path, capsys):
    assert cli(["push", f"run={tmp_path}", f"repo={REPO}", "--dry-run"]) == 2
    assert "no final/ model" in capsys.readouterr().err
    assert cli(["push", f"run={run_folder}", "repo=not a repo", "--dry-run"]) == 2
    assert "expected a Hub model id" in capsys.readouterr().err
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "weights=lora"]) == 2  # the schema's choices
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "weights=adapter", "--dry-run"]) == 2
    assert "not a LoRA run" in capsys.readouterr().err


def test_push_to_hub_from_the_trainer_is_refused(tmp_path, tiny_model_dir):
    with pytest.raises(SystemExit) as e:
        cli(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"model.path={tiny_model_dir}",
             f"data.root={tmp_path}", "trainer.push_to_hub=true"])
    assert "egoadapt push run=" in str(e.value) and "rollout_weights/" in str(e.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.integration
def test_the_cards_transformers_snippet_runs_on_a_video(run_folder, synth_dir, tmp_path, monkeypatch):
    assert cli(["push", f"run={run_folder}", f"repo={REPO}", "--dry-run"]) == 0
    text = card_of(run_folder / "push").text
    code = re.search(r"## Use with transformers\n\n```python\n(.*?)```", text, re.S).group(1)
    code = code.replace(f'"{REPO}"', repr(str(run_folder / "push"))).replace("max_new_tokens=256", "max_new_tokens=4")
    shutil.copy(next(synth_dir.rglob("*.mp4")), tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "model card snippet", "exec"), scope)
    inputs = scope["inputs"]
    assert inputs["pixel_values_videos"].shape[0] > 0 and "mm_token_type_ids" in inputs  # the video reached the model
    assert float(inputs["second_per_grid_ts"][0]) == pytest.approx(2.0)  # sampled at 1 fps, temporal patch 2
    assert scope["output"].shape[1] > inputs["input_ids"].shape[1]
