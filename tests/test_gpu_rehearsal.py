"""benchmarks/gpu/rehearse_gpu.py, the real job's rehearsal on one GPU (Qwen2.5-VL-7B at full
size): its dry run takes the same code path on CPU and prints every figure as JSON lines;
without CUDA the real run stops at once, saying why."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu" / "rehearse_gpu.py"


def test_without_a_gpu_the_real_run_stops_at_once(tmp_path):
    out = tmp_path / "rehearsal.jsonl"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "no CUDA GPU" in proc.stderr and "--dry-run" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not out.exists()
    assert time.perf_counter() - t0 < 120  # torch's import, nothing heavier


def test_the_7b_config_is_the_published_one():
    sys.path.insert(0, str(SCRIPT.parent))
    import torch
    from qwen2_5_vl_7b import config_for
    from transformers import Qwen2_5_VLForConditionalGeneration

    from egoadapt.models.tiny import train_tokenizer

    tok = train_tokenizer(1024)
    config = config_for(tok)
    t, v = config.text_config, config.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, t.intermediate_size,
            t.vocab_size, t.max_position_embeddings) == (3584, 28, 28, 4, 18944, 152064, 128000)
    assert t.rope_parameters["mrope_section"] == [16, 24, 24] and t.rope_parameters["rope_theta"] == 1e6
    assert (v.depth, v.hidden_size, v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.window_size,
            v.fullatt_block_indexes) == (32, 1280, 14, 2, 2, 112, [7, 15, 23, 31])
    assert config.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 8.29
    tiny = config_for(tok, tiny=True)  # the dry run's twin keeps what decides shapes
    assert tiny.text_config.max_position_embeddings == 128000 and tiny.vision_config.window_size == 112
    assert tiny.text_config.rope_parameters["mrope_section"] == [4, 6, 6]  # head_dim 32, 16:24:24 scaled


@pytest.mark.integration
def test_the_dry_run_prints_every_figure(tmp_path):
    out = tmp_path / "dry.jsonl"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    records = [json.loads(line) for line in lines]  # stdout holds JSON lines only
    assert out.read_text().splitlines() == lines
    events = [r["event"] for r in records]
    assert events == ["start", "model", *["clip"] * 3, *["sft_step"] * 3, *["sft"] * 3, "vllm_start",
                      *["grpo_step"] * 3, *["grpo"] * 3, "summary", "end"]
    by = {r["event"]: r for r in records}
    assert by["model"]["max_position_embeddings"] == 128000
    clips = [r for r in records if r["event"] == "clip"]
    assert [c["frames"] for c in clips] == [16, 32, 91]  # the test bed's real lengths (91: its longest)
    assert [c["grid_thw"][0] for c in clips] == [8, 16, 46]  # frame pairs: 91 frames pad to 92
    assert all(c["video_tokens"] > 0 and c["cache_bytes"] > 0 for c in clips)
    assert by["vllm_start"]["prompt_tokens_match"] is True  # vLLM's token count of each clip is the trainer's
    assert by["vllm_start"]["max_model_len"] >= max(c["prompt_tokens"] for c in clips)
    for r in records:
        if r["event"] in ("sft_step", "grpo_step"):
            assert r["step_s"] > 0 and r["train_tflop"] > 0 and r["train_mfu"] > 0 and r["peak_memory_gib"] > 0
        if r["event"] == "grpo_step":
            assert r["rollout_samples_per_s"] > 0 and r["sync_s"] > 0  # weights synced into vLLM every step
            assert r["completion_tokens"] == 16 and math.isclose(r["rows"] / r["rollout_s"],
                                                                 r["rollout_samples_per_s"], rel_tol=0.01)
    summary = by["summary"]
    assert set(summary["grpo_train_mfu"]) == set(summary["sft_train_mfu"]) == {"16", "32", "91"}
    assert all(v > 0 for v in summary["rollout_samples_per_s"].values())
    assert by["end"]["within_budget"] is True and by["start"]["mode"] == "dry-run"
