"""HTTP with a wall-clock deadline per request, for the judge and the rollout server client.

httpx's timeouts bound each socket operation (connect, one read, one write), not the
request: a server that sends a header byte every few seconds keeps a request alive
forever. `DeadlineClient` runs each request on a private event loop under
`asyncio.wait_for`, so its deadline covers connect, headers and body, and a request that
misses it is cancelled (its connection closed) and raises `httpx.ReadTimeout`. The calls
block and are thread-safe; one client owns one connection pool.
"""
from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import httpx


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
