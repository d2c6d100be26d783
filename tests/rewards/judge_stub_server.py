"""A small real HTTP server speaking OpenAI's /v1/chat/completions, for judge fault tests
and the judge benchmark. Its behaviour is set by attributes and may change mid-run:

    latency_s      seconds each request sleeps before answering
    mode           ok | garbage | http_500 | http_401_echo | bad_body | drop
    fail_first     answer HTTP 503 to this many requests first (retry tests)
    abort_first    then answer this many with a partial reply the server gave up on (HTTP 200,
                   finish_reason "abort": what a stopping vLLM server returns)
    mark_for       prompt -> mark (default: 5 if the prediction equals the reference, else 1)

It counts requests, tracks the most requests in flight at once, and records the
Authorization headers it saw. `kill()` makes it drop in-flight and new connections.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _default_mark(prompt: str) -> int:
    ref = re.search(r"Correct ground truth: (.*)", prompt)
    pred = re.search(r"Predicted Answer: (.*)", prompt)
    return 5 if ref and pred and ref.group(1).strip() == pred.group(1).strip() else 1


class StubJudgeServer:
    def __init__(self, latency_s: float = 0.0, mode: str = "ok", fail_first: int = 0, abort_first: int = 0,
                 mark_for: Callable[[str], int] = _default_mark):
        self.latency_s = latency_s
        self.mode = mode
        self.fail_first = fail_first
        self.abort_first = abort_first
        self.mark_for = mark_for
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.auth_headers: list[str] = []
        self.dead = False
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> StubJudgeServer:
        self._thread.start()
        return self

    def kill(self) -> None:
        """Stop listening and drop every connection, like a crashed server."""
        self.dead = True
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StubJudgeServer:  # noqa: PYI034
        return self.start()

    def __exit__(self, *exc) -> None:
        if not self.dead:
            self.kill()

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers + body in two sends wait on delayed ACKs (~40 ms)

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("Authorization", "")
                with stub._lock:
                    stub.requests += 1
                    n = stub.requests
                    stub.in_flight += 1
                    stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
                    stub.auth_headers.append(auth)
                try:
                    deadline = time.monotonic() + stub.latency_s
                    while time.monotonic() < deadline and not stub.dead:
                        time.sleep(0.005)
                    if stub.dead or stub.mode == "drop":
                        self.close_connection = True
                        self.connection.close()
                        return
                    if n <= stub.fail_first:
                        return self._send(503, b'{"error": "warming up"}')
                    if stub.mode == "http_500":
                        return self._send(500, b'{"error": "boom"}')
                    if stub.mode == "http_401_echo":  # the worst server: echoes the key back
                        return self._send(401, json.dumps({"error": f"invalid key {auth}"}).encode())
                    if stub.mode == "bad_body":
                        return self._send(200, b"<html>not json</html>", "text/html")
                    prompt = body["messages"][-1]["content"]
                    if stub.mode == "garbage":
                        content = "reason onj t asss tim A B) -person deo cle B)"
                    else:
                        content = json.dumps({"mark": stub.mark_for(prompt), "reason": "stub verdict"})
                    aborted = n <= stub.fail_first + stub.abort_first
                    if aborted:
                        content = content[:7]  # cut mid-generation, as a stopping server returns it
                    reply = {"id": f"stub-{n}", "object": "chat.completion", "model": body.get("model"),
                             "choices": [{"index": 0, "finish_reason": "abort" if aborted else "stop",
                                          "message": {"role": "assistant", "content": content}}]}
                    self._send(200, json.dumps(reply).encode())
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

        return Handler
