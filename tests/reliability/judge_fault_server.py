"""Judge servers that misbehave at the socket level, on 127.0.0.1 at a free port.

    trickle_headers  reads the request, then sends its status line and headers one byte
                     every `interval_s`, never finishing them
    trickle_body     sends complete headers (Content-Length: 1000000), then one body byte
                     every `interval_s`
    http_500         answers every request with HTTP 500

`requests` counts the requests that reached it. `close()` drops every connection and
joins every thread it started, so a test leaves nothing behind. `dead_url()` is a URL
where nothing listens (connection refused).
"""
from __future__ import annotations

import socket
import threading

_ENDLESS_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Trickle: " + b"a" * 100_000
_BOOM = b'{"error": "boom"}'
_500 = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
    len(_BOOM), _BOOM)


def dead_url() -> str:
    """A base URL on a port nobody listens on (bound and released: the kernel does not hand
    it out again at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


class FaultServer:
    MODES = ("trickle_headers", "trickle_body", "http_500")

    def __init__(self, mode: str, interval_s: float = 0.2):
        assert mode in self.MODES, mode
        self.mode, self.interval_s = mode, interval_s
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"

    def __enter__(self) -> FaultServer:  # noqa: PYI034
        self._spawn(self._accept)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            socks, threads = list(self._socks), list(self._threads)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in threads:
            t.join(timeout=10)
        for s in [self._listener, *socks]:
            s.close()

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(t)
        t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._socks.append(conn)
            self._spawn(self._serve, conn)

    def _recv(self, conn: socket.socket) -> bytes | None:
        """The next bytes from the client; b"" while it is quiet, None once it (or we) stopped."""
        while not self._stop.is_set():
            try:
                return conn.recv(65536) or None
            except TimeoutError:
                return b""
            except OSError:
                return None
        return None

    def _read_request(self, conn: socket.socket) -> bool:
        """Read one request (headers and Content-Length body); False when the client went away."""
        conn.settimeout(0.1)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self._recv(conn)
            if chunk is None:
                return False
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = self._recv(conn)
            if chunk is None:
                return False
            body += chunk
        return True

    def _trickle(self, conn: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            if self._stop.wait(self.interval_s):
                return
            try:
                conn.sendall(data[i:i + 1])
            except OSError:  # the client gave up: good
                return

    def _serve(self, conn: socket.socket) -> None:
        while self._read_request(conn):
            with self._lock:
                self.requests += 1
            try:
                if self.mode == "http_500":
                    conn.sendall(_500)
                    continue
                if self.mode == "trickle_headers":
                    return self._trickle(conn, _ENDLESS_HEADERS)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
                return self._trickle(conn, b'{"choices": [' + b" " * 999_986)
            except OSError:
                return
