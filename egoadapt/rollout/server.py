"""Start and stop a vLLM OpenAI-compatible server as a child process (judge or rollout engine).

Used by the tests, the benchmarks and the demo, so all three run a real server the same
way: bound to 127.0.0.1 on a free port, started with a deadline, health-checked, and
always stopped (the whole process group) on exit.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


class _PortTaken(Exception):
    pass


OPEN_PATHS = ("/health",)  # what a key-guarded server still answers without the key


async def require_api_key(request, call_next):
    """vLLM `--middleware egoadapt.rollout.server.require_api_key`: with VLLM_API_KEY set,
    every path but /health needs `Authorization: Bearer <key>`. vLLM's own `--api-key`
    guards only /v1, /v2, /inference and /cohere, not dev mode's /collective_rpc (which runs
    any worker method), /reset_* or /sleep; launch/vllm_server.sh adds this whenever a key
    is set."""
    import hashlib
    import hmac

    key = os.environ.get("VLLM_API_KEY", "")
    path = request.url.path.removeprefix(request.scope.get("root_path", "") or "")
    if key and request.method != "OPTIONS" and path not in OPEN_PATHS:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        ok = scheme.lower() == "bearer" and hmac.compare_digest(hashlib.sha256(given.encode()).digest(),
                                                                hashlib.sha256(key.encode()).digest())
        if not ok:
            from starlette.responses import JSONResponse

            return JSONResponse({"error": "Unauthorized"}, status_code=401)
    return await call_next(request)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VLLMServer:
    model: str
    served_model_name: str = "judge"
    host: str = "127.0.0.1"
    port: int = 0
    max_model_len: int = 2048
    kv_cache_bytes: int = 512 * 1024**2
    dev_mode: bool = True  # exposes POST /collective_rpc, used for weight reloads in server mode
    trl: bool = False  # `trl vllm-serve` (TRL's rollout protocol) instead of `vllm serve`
    api_key_env: str | None = None  # serve with the key in this variable (all paths guarded but /health)
    # dev mode: the weight-transfer engine rollout.sync=transfer joins ("auto": nccl with CUDA, else
    # egoadapt_gloo, registered by egoadapt's vLLM plugin); None: none (weights reach it by disk only)
    weight_transfer: str | None = "auto"
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    startup_timeout: float = 240.0
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        bindir = Path(sys.executable).parent
        if self.trl:
            return [str(bindir / "trl"), "vllm-serve", "--model", self.model, "--host", self.host,
                    "--port", str(self.port), "--max_model_len", str(self.max_model_len),
                    "--enforce_eager", "true", *self.extra_args]
        return [str(bindir / "vllm"), "serve", self.model, "--host", self.host, "--port", str(self.port),
                "--served-model-name", self.served_model_name, "--max-model-len", str(self.max_model_len),
                "--kv-cache-memory-bytes", str(self.kv_cache_bytes), "--enforce-eager",
                "--max-num-seqs", "16", *self._rollout_args(), *self._auth_args(), *self.extra_args]

    def _rollout_args(self) -> list[str]:
        # a rollout server (dev mode) takes the trainer's pixel limits with each request and returns
        # the log-probs of the distribution it sampled from (TRL's importance-sampling correction)
        if not self.dev_mode:
            return []
        args = ["--trust-request-mm-kwargs", "--logprobs-mode", "processed_logprobs"]
        if self.weight_transfer:
            backend = self.weight_transfer
            if backend == "auto":
                import torch

                backend = "nccl" if torch.cuda.is_available() else "egoadapt_gloo"
            args += ["--weight-transfer-config", json.dumps({"backend": backend})]
        return args

    def _auth_args(self) -> list[str]:
        return ["--middleware", "egoadapt.rollout.server.require_api_key"] if self.api_key_env else []

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def start(self) -> "VLLMServer":
        if self.process is not None:
            return self
        auto_port = not self.port
        for attempt in range(3 if auto_port else 1):
            self.port = self.port if not auto_port else free_port()
            try:
                return self._start_once()
            except _PortTaken:
                # the free port was taken between our probe and vLLM's bind (another suite,
                # another server): pick a new one rather than fail the run
                if not auto_port or attempt == 2:
                    raise RuntimeError(f"vLLM server for {self.model}: port {self.port} is taken") from None

    def _start_once(self) -> "VLLMServer":
        env = dict(os.environ)
        if self.dev_mode:
            env["VLLM_SERVER_DEV_MODE"] = "1"
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, self.kv_cache_bytes // 1024**3)))
        if self.api_key_env:
            if not os.environ.get(self.api_key_env):
                raise RuntimeError(f"VLLMServer(api_key_env={self.api_key_env!r}): the variable is not set")
            env["VLLM_API_KEY"] = os.environ[self.api_key_env]  # read by vLLM and by require_api_key
        log_start = self.log_path.stat().st_size if self.log_path and self.log_path.exists() else 0
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                if self.log_path and b"address already in use" in self.log_path.read_bytes()[log_start:].lower():
                    raise _PortTaken()
                raise RuntimeError(f"vLLM server for {self.model} exited during start-up"
                                   + (f"; see {self.log_path}" if self.log_path else ""))
            if self.healthy() and self._serves_our_model():
                return self
            time.sleep(1.0)
        self.stop()
        raise TimeoutError(f"vLLM server for {self.model} not healthy after {self.startup_timeout:.0f} s")

    def _serves_our_model(self) -> bool:
        """The server on our port is ours, not one that took the port first (its bind then fails)."""
        if self.trl:
            return self.process is not None and self.process.poll() is None
        try:
            req = urllib.request.Request(f"{self.base_url}/models", headers=self._headers())
            with urllib.request.urlopen(req, timeout=5) as r:
                return any(m.get("root") == self.model for m in json.loads(r.read()).get("data", []))
        except (OSError, ValueError):
            return False

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
