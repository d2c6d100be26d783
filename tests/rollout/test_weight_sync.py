"""vLLM rollout engines really receive the trainer's new weights (colocated and served)."""
from types import SimpleNamespace

import pytest
import torch

from egoadapt.data.load import load_samples
from egoadapt.inputs.video import VideoInputs
from egoadapt.rollout.engines import HFEngine, VLLMColocateEngine, VLLMServerEngine

GREEDY = {"temperature": 0.0, "max_tokens": 8}


def setup(model_dir, synth_dir, n=3):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    samples = load_samples({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                            "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})[:n]
    video = VideoInputs(samples, processor, frames_cfg=None)
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    return video, model, [video.request(s.id, "close") for s in samples]


def sharpen(model, seed=1):
    """A deterministic 'training step' big enough to change greedy outputs decisively."""
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        for name, p in model.named_parameters():
            if "lm_head" in name or "embed_tokens" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5).mul_(3.0)


def trainer_of(model):
    acc = SimpleNamespace(unwrap_model=lambda m: m, state=SimpleNamespace(deepspeed_plugin=None),
                          is_main_process=True, device=torch.device("cpu"))
    return SimpleNamespace(model_wrapped=model, accelerator=acc, args=SimpleNamespace(ds3_gather_for_generation=True))


def hf_greedy(video, model, requests):
    return HFEngine(video, GREEDY).generate(requests, trainer_of(model))[0]


def check_engine_follows_trainer(engine, video, model, requests):
    before, _ = engine.generate(requests, None)
    # a random model's logits are flat (top tokens within 0.05 nats): the engine and the trainer
    # agree on the first token; numerics differ in the vision tower (vLLM's kernels vs torch)
    assert [b[:1] for b in before] == [h[:1] for h in hf_greedy(video, model, requests)]
    sharpen(model)
    stale, _ = engine.generate(requests, None)
    assert stale == before  # nothing reaches the engine without a sync
    engine.sync(trainer_of(model))
    after, logprobs = engine.generate(requests, None)
    assert after != before
    assert after == hf_greedy(video, model, requests)  # decisive logits: every token agrees
    assert all(len(lp) == len(c) for lp, c in zip(logprobs, after))


@pytest.mark.integration
def test_vllm_colocate_receives_new_weights(tiny_model_dir, synth_dir):
    video, model, requests = setup(tiny_model_dir, synth_dir)
    engine = VLLMColocateEngine(video, GREEDY, str(tiny_model_dir))
    check_engine_follows_trainer(engine, video, model, requests)


@pytest.mark.server
def test_vllm_server_receives_new_weights(tiny_model_dir, synth_dir, tmp_path, monkeypatch):
    """Served with an API key (every path guarded, dev mode's included), the trainer's weights
    reach the server through a fresh folder per sync, old folders deleted once loaded."""
    import secrets

    import httpx

    from egoadapt.rollout.server import VLLMServer

    monkeypatch.setenv("EGOADAPT_TEST_VLLM_KEY", secrets.token_hex(8))
    video, model, requests = setup(tiny_model_dir, synth_dir)
    weights = tmp_path / "weights"
    with VLLMServer(str(tiny_model_dir), served_model_name="policy", log_path=tmp_path / "server.log",
                    api_key_env="EGOADAPT_TEST_VLLM_KEY") as server:
        engine = VLLMServerEngine(video, GREEDY, server.base_url, "policy", weights,
                                  api_key_env="EGOADAPT_TEST_VLLM_KEY")
        try:
            check_engine_follows_trainer(engine, video, model, requests)
            first = engine.synced_dir
            assert [p.name for p in weights.iterdir()] == [first.name] and (first / "model.safetensors").is_file()
            # the next step: another folder, the previous one gone, the server follows again
            hf_before = hf_greedy(video, model, requests)
            sharpen(model, seed=2)
            hf_after = hf_greedy(video, model, requests)
            assert hf_after != hf_before
            engine.sync(trainer_of(model))
            assert engine.synced_dir != first and not first.exists()
            assert [p.name for p in weights.iterdir()] == [engine.synced_dir.name]
            assert engine.generate(requests, None)[0] == hf_after
            assert engine.counters["syncs"] == 2 and engine.counters["failures"] == 0
        finally:
            engine.close()
        # without the key: dev endpoints refused too (vLLM's own --api-key guards /v1 only)
        bare = {"method": "reload_weights", "kwargs": {"weights_path": str(tmp_path), "is_checkpoint_format": True}}
        assert httpx.post(f"{server.root_url}/collective_rpc", json=bare, timeout=30).status_code == 401
        assert httpx.post(f"{server.root_url}/reset_prefix_cache", timeout=30).status_code == 401
        assert httpx.get(f"{server.base_url}/models", timeout=30).status_code == 401
        assert httpx.get(f"{server.root_url}/health", timeout=30).status_code == 200


@pytest.mark.integration
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_zero3_weights_stream_whole_and_merged(tiny_model_dir, tmp_path, lora):
    """Under ZeRO-3 on 2 ranks, the server sync's writer (one parameter gathered at a time;
    LoRA merged per layer) writes exactly the unpartitioned model's weights."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from egoadapt.rollout.server import free_port

    repo = Path(__file__).resolve().parents[2]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(repo / ".cache" / "torch_extensions"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()),
                           str(repo / "tests" / "rollout" / "zero3_sync_worker.py"), str(tiny_model_dir), str(tmp_path),
                           *(["lora"] if lora else [])], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["held"] < result["total"]  # really partitioned
    assert result["missing"] == [] and result["unexpected"] == [] and result["differ"] == [], result
