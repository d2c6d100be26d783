"""The rollout server's client and the servers' preflight, against small local HTTP servers:
retries with backoff, rollouts that fail for good stop the step (counted), preflight waits for
late servers and fails naming the URL and what to start, the launcher binds privately and
guards dev mode, weights are written streaming. No vLLM here (tests/rollout/test_weight_sync.py
has the real server)."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from egoadapt.net import ServerUnavailable, wait_for_server
from egoadapt.rollout.engines import RolloutError, VLLMServerEngine
from egoadapt.rollout.weights import save_weights
from tests.reliability.judge_fault_server import dead_url
from tests.rollout.test_weight_sync import GREEDY, setup

REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = {"retries": 2, "backoff_s": 0.01, "backoff_max_s": 0.05}


class StubServer:
    """OpenAI-ish server on 127.0.0.1: GET /v1/models lists `models` (or answers
    `models_status`); POST /v1/chat/completions answers `fail_status` to the first `fail_first`
    requests (all of them when fail_first < 0), then three tokens. Records Authorization headers."""

    def __init__(self, models=("policy",), models_status=200, fail_first=0, fail_status=503,
                 refuse_mm_kwargs=False):
        self.models, self.models_status = list(models), models_status
        self.refuse_mm_kwargs = refuse_mm_kwargs  # as vLLM without --trust-request-mm-kwargs
        self.bodies: list[dict] = []
        self.fail_first, self.fail_status = fail_first, fail_status
        self.chat_requests = 0
        self.auth: list[str] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                stub.auth.append(self.headers.get("Authorization", ""))
                if self.path == "/v1/models":
                    return self._send(stub.models_status, {"object": "list", "data": [
                        {"id": m, "object": "model"} for m in stub.models]})
                if self.path == "/collective_rpc":
                    return self._send(405, {"detail": "Method Not Allowed"})
                self._send(404, {"detail": "Not Found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.auth.append(self.headers.get("Authorization", ""))
                stub.bodies.append(body)
                if stub.refuse_mm_kwargs and "mm_processor_kwargs" in body:
                    return self._send(400, {"error": {"message": "Per-request mm_processor_kwargs are disabled by "
                                                      "default ... (parameter=mm_processor_kwargs)", "code": 400}})
                with stub._lock:
                    stub.chat_requests += 1
                    n = stub.chat_requests
                if stub.fail_first < 0 or n <= stub.fail_first:
                    return self._send(stub.fail_status, {"error": "unavailable"})
                self._send(200, {"choices": [{"token_ids": [200, 201, 202], "logprobs": {"content": [
                    {"logprob": -0.5}, {"logprob": -0.25}, {"logprob": -0.125}]}}]})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def rollout_inputs(tiny_model_dir, synth_dir):
    video, _, requests = setup(tiny_model_dir, synth_dir, n=3)
    return video, requests


def engine_for(url, video, tmp_path, **kw):
    return VLLMServerEngine(video, GREEDY, url, "policy", tmp_path / "weights", timeout=10, **{**FAST_RETRY, **kw})


# ------------------------------------------------------------------ retries

def test_transient_errors_are_retried_and_the_key_is_sent(rollout_inputs, tmp_path, monkeypatch):
    video, requests = rollout_inputs
    monkeypatch.setenv("EGOADAPT_TEST_ROLLOUT_KEY", "s3cret")
    with StubServer(fail_first=2) as stub:  # two 503s, then answers
        engine = engine_for(stub.base_url, video, tmp_path, api_key_env="EGOADAPT_TEST_ROLLOUT_KEY")
        try:
            completions, logprobs = engine.generate(requests, None)
        finally:
            engine.close()
    assert completions == [[200, 201, 202]] * 3 and logprobs == [[-0.5, -0.25, -0.125]] * 3
    assert engine.counters["retries"] == 2 and engine.counters["failures"] == 0
    assert stub.chat_requests == 5 and set(stub.auth) == {"Bearer s3cret"}


def test_the_runs_pixel_limits_travel_with_each_rollout_or_the_server_is_named(rollout_inputs, tmp_path, caplog):
    video, requests = rollout_inputs
    with StubServer() as trusting:
        engine = engine_for(trusting.base_url, video, tmp_path)
        engine.generate(requests, None)
        engine.close()
    assert engine.mm_processor_kwargs and all(b["mm_processor_kwargs"] == engine.mm_processor_kwargs
                                              for b in trusting.bodies)
    with StubServer(refuse_mm_kwargs=True) as strict:  # a server started without --trust-request-mm-kwargs
        engine = engine_for(strict.base_url, video, tmp_path)
        completions, _ = engine.generate(requests, None)
        engine.generate(requests, None)
        engine.close()
    assert completions == [[200, 201, 202]] * 3 and engine.counters["failures"] == 0
    assert engine.mm_processor_kwargs == {} and "--trust-request-mm-kwargs" in caplog.text
    assert not any("mm_processor_kwargs" in b for b in strict.bodies[-3:])  # the next step asks without them


@pytest.mark.parametrize("how", ["http_500", "refused"])
def test_a_rollout_that_keeps_failing_stops_the_step_counted(rollout_inputs, tmp_path, how):
    video, requests = rollout_inputs
    if how == "refused":
        engine = engine_for(dead_url(), video, tmp_path)
        stub = None
    else:
        stub = StubServer(fail_first=-1, fail_status=500).__enter__()
        engine = engine_for(stub.base_url, video, tmp_path)
    try:
        with pytest.raises(RolloutError) as err:
            engine.generate(requests, None)
    finally:
        engine.close()
        if stub is not None:
            stub.__exit__()
    msg = str(err.value)
    assert "3 of 3 rollouts" in msg and engine.base_url in msg and "cannot lose a row" in msg
    assert engine.counters["failures"] == 3 and engine.counters["retries"] == 3 * FAST_RETRY["retries"]
    if stub is not None:
        assert stub.chat_requests == 3 * (FAST_RETRY["retries"] + 1)


def test_a_client_error_is_not_retried(rollout_inputs, tmp_path):
    video, requests = rollout_inputs
    with StubServer(fail_first=-1, fail_status=400) as stub:
        engine = engine_for(stub.base_url, video, tmp_path)
        try:
            with pytest.raises(RolloutError, match="HTTPStatusError"):
                engine.generate(requests[:1], None)
        finally:
            engine.close()
    assert stub.chat_requests == 1 and engine.counters["retries"] == 0


# ------------------------------------------------------------------ preflight

def test_preflight_waits_for_a_server_that_comes_up_late():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the port is ours; connecting is refused until it listens
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    stub = StubServer()
    stub.httpd.server_close()
    stub.httpd = ThreadingHTTPServer(sock.getsockname(), stub.httpd.RequestHandlerClass, bind_and_activate=False)
    stub.httpd.socket = sock
    stub.thread = threading.Thread(target=stub.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def start_later():
        time.sleep(1.0)
        stub.httpd.server_activate()
        stub.__enter__()

    later = threading.Thread(target=start_later)
    later.start()
    try:
        wait_for_server(url, wait_s=120, what="the rollout server", start_hint="x", model="policy", poll_s=0.2,
                        dev_mode=True)
    finally:
        later.join()
        stub.__exit__()
    assert stub.auth  # it was asked


def test_preflight_fails_naming_the_url_and_what_to_start(tiny_model_dir, synth_dir, tmp_path):
    from egoadapt.cli import compose
    from egoadapt.train.run import TrainConfigError, check_servers

    rollout, judge = dead_url(), dead_url()
    cfg = compose("demo/tiny_grpo", [f"model.path={tiny_model_dir}", f"data.root={synth_dir}", f"out={tmp_path}",
                                     "rollout=vllm_server", f"rollout.base_url={rollout}", "rollout.model=policy",
                                     "judge=vllm_local", f"judge.base_url={judge}", "server_wait_s=1"], recipe=True)
    with pytest.raises(TrainConfigError) as err:
        check_servers(cfg)
    msg = str(err.value)
    assert rollout in msg and "not answering after waiting 1 s" in msg
    assert f"Start it: launch/vllm_server.sh policy {rollout.split(':')[2].split('/')[0]}" in msg
    with StubServer(models=["policy"]) as up:  # the rollout server is up: the judge is what is missing
        cfg.rollout.base_url = up.base_url
        with pytest.raises(TrainConfigError) as err:
            check_servers(cfg)
    msg = str(err.value)
    assert judge in msg and "the judge (judge.base_url)" in msg
    assert f"VLLM_DEV_MODE=0 launch/vllm_server.sh Qwen/Qwen2.5-7B-Instruct {judge.split(':')[2].split('/')[0]}" in msg


@pytest.mark.parametrize("case", ["wrong_model", "needs_key", "bad_key"])
def test_preflight_names_what_is_wrong_with_a_server_that_answers(case, monkeypatch):
    monkeypatch.setenv("EGOADAPT_TEST_JUDGE_KEY", "wrong")
    status = 200 if case == "wrong_model" else 401
    with StubServer(models=["other-model"], models_status=status) as stub:
        with pytest.raises(ServerUnavailable) as err:
            wait_for_server(stub.base_url, wait_s=30, what="the judge (judge.base_url)", start_hint="x",
                            model="judge-model", api_key="wrong" if case == "bad_key" else "",
                            api_key_env="EGOADAPT_TEST_JUDGE_KEY")
    msg = str(err.value)
    assert stub.base_url in msg
    if case == "wrong_model":
        assert "other-model" in msg and "judge-model" in msg
    elif case == "needs_key":
        assert "wants an API key" in msg and "EGOADAPT_TEST_JUDGE_KEY" in msg
    else:
        assert "not one it accepts" in msg and "wrong" not in msg.replace("judge", "")


# ------------------------------------------------------------------ the launcher

def launcher(env: dict, *args: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "EGOADAPT_DRY"))}
    return subprocess.run(["bash", "launch/vllm_server.sh", "org/model", "8123", *args], cwd=REPO,
                          env={**clean, "EGOADAPT_DRY_RUN": "1", **env}, capture_output=True, text=True, timeout=30)


def test_launcher_binds_loopback_by_default_in_dev_mode():
    proc = launcher({})
    assert proc.returncode == 0, proc.stderr
    assert "--host 127.0.0.1" in proc.stdout and proc.stdout.startswith("VLLM_SERVER_DEV_MODE=1")
    assert "--middleware" not in proc.stdout


def test_launcher_starts_a_weight_transfer_engine_in_dev_mode_only():
    import shutil

    default = launcher({})  # nccl where nvidia-smi lists a GPU, else the gloo engine
    assert default.returncode == 0, default.stderr
    backend = "egoadapt_gloo" if shutil.which("nvidia-smi") is None else ""
    assert f"""--weight-transfer-config {{"backend": "{backend}""" in default.stdout
    nccl = launcher({"VLLM_WEIGHT_TRANSFER": "nccl"})
    assert """--weight-transfer-config {"backend": "nccl"}""" in nccl.stdout
    assert "--weight-transfer-config" not in launcher({"VLLM_WEIGHT_TRANSFER": "none"}).stdout
    assert "--weight-transfer-config" not in launcher({"VLLM_DEV_MODE": "0"}).stdout  # a judge: no dev endpoints
    wrong = launcher({"VLLM_WEIGHT_TRANSFER": "ipc"})
    assert wrong.returncode == 2 and "choose nccl, egoadapt_gloo or none" in wrong.stderr


def test_launcher_refuses_dev_mode_on_another_interface_without_a_key():
    proc = launcher({"VLLM_HOST": "0.0.0.0"})
    assert proc.returncode == 2 and "refusing" in proc.stderr and "VLLM_API_KEY" in proc.stderr
    assert proc.stdout == ""


def test_launcher_with_a_key_guards_every_path():
    proc = launcher({"VLLM_HOST": "0.0.0.0", "VLLM_API_KEY": "k3y"})
    assert proc.returncode == 0, proc.stderr
    assert "--host 0.0.0.0" in proc.stdout and "--middleware egoadapt.rollout.server.require_api_key" in proc.stdout
    assert "k3y" not in proc.stdout  # the key stays in the environment, off the command line


def test_launcher_judge_without_dev_mode_may_bind_anywhere():
    proc = launcher({"VLLM_HOST": "0.0.0.0", "VLLM_DEV_MODE": "0"}, "--tensor-parallel-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("VLLM_SERVER_DEV_MODE=0") and proc.stdout.rstrip().endswith("--tensor-parallel-size 2")


def test_require_api_key_guards_dev_endpoints(monkeypatch):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from egoadapt.rollout.server import require_api_key

    app = FastAPI()  # what vLLM's server is; `--middleware` registers a function as below
    for path in ("/health", "/collective_rpc", "/v1/models"):
        app.add_api_route(path, lambda: "ok", methods=["GET", "POST"])
    app.middleware("http")(require_api_key)
    client = TestClient(app)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert client.post("/collective_rpc").status_code == 200  # no key configured: nothing to guard with
    monkeypatch.setenv("VLLM_API_KEY", "k3y")
    assert client.get("/health").status_code == 200
    for path in ("/collective_rpc", "/v1/models"):
        assert client.post(path).status_code == 401
        assert client.post(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.post(path, headers={"Authorization": "Bearer k3y"}).status_code == 200


# ------------------------------------------------------------------ streaming weights

def test_weights_are_written_streaming_and_read_back_exactly(tmp_path):
    shapes = [("a", (3, 4), torch.float32), ("b", (5,), torch.bfloat16), ("c", (), torch.float16),
              ("d", (2, 2), torch.int64), ("e", (7,), torch.bfloat16)]
    g = torch.Generator().manual_seed(0)
    expected, refs = {}, []

    def stream():
        for name, shape, dtype in shapes:
            # every tensor the writer got is gone before it asks for the next: one at a time
            assert all(r() is None for r in refs), f"the writer still holds a tensor when asking for {name}"
            t = (torch.randn(shape, generator=g) * 100).to(dtype)
            expected[name] = t.clone()
            refs.append(weakref.ref(t))
            yield name, t
            del t

    save_weights(stream(), tmp_path / "w", [(n, s, d) for n, s, d in shapes])
    got = load_file(str(tmp_path / "w" / "model.safetensors"))
    assert set(got) == set(expected)
    for name, t in expected.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t)
    assert not (tmp_path / "w" / "model.safetensors.tmp").exists()


def test_weights_out_of_step_with_the_header_fail(tmp_path):
    with pytest.raises(ValueError, match="out of step"):
        save_weights(iter([("a", torch.zeros(2))]), tmp_path / "w", [("a", (3,), torch.float32)])
    assert not (tmp_path / "w" / "model.safetensors").exists()
