"""HTTP with a wall-clock deadline per request, for the judge and the rollout server client.

httpx's timeouts bound each socket operation (connect, one read, one write), not the
request: a server that sends a header byte every few seconds keeps a request alive
forever. `DeadlineClient` runs each request on a private event loop under
`asyncio.wait_for`, so its deadline covers connect, headers and body, and a request that
misses it is cancelled (its connection closed) and raises `httpx.ReadTimeout`. The calls
block and are thread-safe; one client owns one connection pool.

`transient`, `backoff_delay` and `request_with_retries` are the one retry policy of
egoadapt's HTTP clients (the judge, the rollout server client, the server preflight):
transport errors, 408/409/429 and 5xx are retried with jittered exponential backoff that a
server's Retry-After can lengthen; anything else is an answer.
"""
from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

# vLLM's finish reasons for a generation the server gave up on (requests aborted when it shuts down or
# cancels them, an engine error): a 200 whose partial text is no answer, and worth another try
UNFINISHED = ("abort", "error")


class UnfinishedCompletion(RuntimeError):
    """A chat completion the server gave up on (`UNFINISHED`)."""


def finished_choice(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    """The first choice of an OpenAI-style chat completion; UnfinishedCompletion when the server gave it up."""
    choice = reply["choices"][0]
    if choice.get("finish_reason") in UNFINISHED:
        raise UnfinishedCompletion(f"the server gave the generation up (finish_reason {choice['finish_reason']!r})")
    return choice


def transient(status: int) -> bool:
    """An HTTP status worth retrying: request timeout, conflict, rate limit, server error."""
    return status in (408, 409, 429) or status >= 500


def backoff_delay(attempt: int, backoff_s: float, backoff_max_s: float, retry_after: str | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (0-based): backoff_s x 2^attempt, capped at
    backoff_max_s, jittered down to half; a server's Retry-After (seconds) lengthens it, within
    the cap."""
    delay = min(backoff_max_s, backoff_s * (2 ** attempt)) * (0.5 + random.random() / 2)
    if retry_after:
        try:
            delay = max(delay, min(float(retry_after), backoff_max_s))
        except ValueError:
            pass
    return delay


class RetriesExhausted(httpx.HTTPError):
    """Every attempt of a request failed with a transport error or a transient status."""

    def __init__(self, message: str, attempts: int, last: str):
        super().__init__(message)
        self.attempts, self.last = attempts, last


def request_with_retries(client: DeadlineClient, method: str, url: str, *, retries: int, backoff_s: float,
                         backoff_max_s: float, on_retry: Callable[[str], None] | None = None,
                         **kwargs: Any) -> httpx.Response:
    """The first response whose status is not transient (2xx, or a 4xx the caller judges),
    retrying transport errors and transient statuses `retries` times; then RetriesExhausted.
    `on_retry(last_error)` is called before each retry."""
    last = "no attempt"
    for attempt in range(retries + 1):
        retry_after = None
        try:
            resp = client.request(method, url, **kwargs)
        except httpx.TransportError as e:  # refused, reset, timeouts, the deadline
            last = f"{type(e).__name__}: {e}"
        else:
            if not transient(resp.status_code):
                return resp
            last = f"HTTP {resp.status_code}: {resp.content[:200].decode('utf-8', 'replace')!r}"
            retry_after = resp.headers.get("retry-after")
        if attempt < retries:
            if on_retry is not None:
                on_retry(last)
            time.sleep(backoff_delay(attempt, backoff_s, backoff_max_s, retry_after))
    raise RetriesExhausted(f"{method} {url}: gave up after {retries + 1} attempts; last error: {last}",
                           retries + 1, last)


class DeadlineClient:
    def __init__(self, base_url: str = "", *, headers: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                 connect_timeout_s: float | None = None, max_connections: int = 16,
                 max_response_bytes: int | None = None):
        self.timeout_s = float(timeout_s)
        self.max_response_bytes = max_response_bytes
        connect = self.timeout_s if connect_timeout_s is None else min(connect_timeout_s, self.timeout_s)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="http-deadline", daemon=True)
        self._thread.start()
        self._client = httpx.AsyncClient(
            base_url=base_url, headers=dict(headers or {}),
            timeout=httpx.Timeout(self.timeout_s, connect=connect),  # per operation; the deadline is below
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    def request(self, method: str, url: str, *, timeout_s: float | None = None, **kwargs: Any) -> httpx.Response:
        """A fully read response, or an httpx.TransportError (httpx.ReadTimeout at the deadline)."""
        if self._loop.is_closed():
            raise RuntimeError("DeadlineClient is closed")
        deadline = self.timeout_s if timeout_s is None else float(timeout_s)
        coro = self._bounded(method, url, deadline, kwargs)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._client.aclose(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    async def _bounded(self, method: str, url: str, deadline: float, kwargs: dict) -> httpx.Response:
        try:
            return await asyncio.wait_for(self._fetch(method, url, kwargs), deadline)
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout(f"no complete reply within {deadline:g} s (connect, headers and body)") from None

    async def _fetch(self, method: str, url: str, kwargs: dict) -> httpx.Response:
        cap = self.max_response_bytes
        async with self._client.stream(method, url, **kwargs) as resp:
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if cap is not None and len(body) > cap:
                    raise httpx.ReadError(f"response larger than {cap} bytes")
        # the body is decoded already: drop content-encoding so the copy is not decoded twice
        headers = [(k, v) for k, v in resp.headers.multi_items() if k.lower() != "content-encoding"]
        return httpx.Response(resp.status_code, headers=headers, content=bytes(body), request=resp.request)


class ServerUnavailable(RuntimeError):
    """A server a run needs is not answering, or answers in a way the run cannot use."""


def wait_for_server(base_url: str, *, wait_s: float, what: str, start_hint: str, model: str | None = None,
                    api_key: str = "", api_key_env: str | None = None, dev_mode: bool = False,
                    poll_s: float = 2.0, request_timeout_s: float = 10.0) -> None:
    """Wait up to `wait_s` until the OpenAI-compatible server at `base_url` answers
    `GET /models` (with the API key, when there is one) listing `model`; with `dev_mode`, also
    that it has vLLM's `/collective_rpc` (weight reloads). Raises ServerUnavailable naming the
    URL and `start_hint` (what to start), or what is wrong with the server that answers."""
    import logging

    log = logging.getLogger(__name__)
    base_url = base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    key_hint = f"the environment variable {api_key_env}" if api_key_env else "an API key variable"
    deadline = time.monotonic() + float(wait_s)
    next_note = time.monotonic() + 30.0
    last = "no attempt"
    client = DeadlineClient(timeout_s=request_timeout_s, headers=headers, max_connections=1,
                            max_response_bytes=10_000_000)
    try:
        while True:
            left = deadline - time.monotonic()
            try:
                r = client.get(f"{base_url}/models", timeout_s=max(0.5, min(request_timeout_s, left)))
            except httpx.TransportError as e:
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if r.status_code in (401, 403):
                    raise ServerUnavailable(
                        f"{what} at {base_url} refused the request (HTTP {r.status_code}): "
                        + (f"the API key in {api_key_env} is not one it accepts" if api_key else
                           f"it wants an API key; export it in {key_hint}"))
                if r.status_code == 200:
                    _check_listing(r, base_url, what, model)
                    if dev_mode:
                        _check_dev_mode(client, base_url, what)
                    return
                if r.status_code == 404:  # no model listing here (some hosted APIs): it answers, enough
                    return
                last = f"HTTP {r.status_code}: {r.content[:200].decode('utf-8', 'replace')!r}"
                if not transient(r.status_code):
                    raise ServerUnavailable(f"{what} at {base_url} answers GET /models with {last}")
            now = time.monotonic()
            if now >= deadline:
                raise ServerUnavailable(f"{what} at {base_url} is not answering after waiting {wait_s:g} s "
                                        f"(last error: {last}). Start it: {start_hint}")
            if now >= next_note:
                log.info("waiting for %s at %s (%.0f s left; last error: %s)", what, base_url, deadline - now, last)
                next_note = now + 30.0
            time.sleep(max(0.0, min(poll_s, deadline - now)))
    finally:
        client.close()


def _check_listing(r: httpx.Response, base_url: str, what: str, model: str | None) -> None:
    try:
        served = [m.get("id") for m in r.json().get("data") or [] if isinstance(m, dict)]
    except (ValueError, AttributeError):
        return  # not a listing we can read: the server answers, enough
    if model is not None and served and model not in served:
        raise ServerUnavailable(f"{what} at {base_url} serves {served}, not {model!r}: start it with that model "
                                "(launch/vllm_server.sh serves it under its own name) or set the model name "
                                "to one it serves")


def _check_dev_mode(client: DeadlineClient, base_url: str, what: str) -> None:
    root = base_url.removesuffix("/v1")
    try:
        r = client.get(f"{root}/collective_rpc")  # POST-only: 405 when present, 404 when dev mode is off
    except httpx.TransportError:
        return  # it answered /models a moment ago; the first sync will say more
    if r.status_code == 404:
        raise ServerUnavailable(f"{what} at {base_url} has no /collective_rpc, which weight syncs need: start it "
                                "with VLLM_SERVER_DEV_MODE=1 (launch/vllm_server.sh does)")
