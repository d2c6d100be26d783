"""LLM judge for OpenQA over any OpenAI-compatible chat endpoint (vLLM, DashScope, ...).

One `Judge` per process. `judge_many` scores a batch with at most `concurrency` requests
in flight, each under a wall-clock deadline (`timeout_s`: connect, headers and body),
retried with exponential backoff on transport errors, 429 and 5xx. A circuit breaker
stops calling a judge that is down (`breaker_failures` transport failures or 5xx in a
row) for `breaker_cooldown_s`, then lets one probe through. Verdicts are cached on disk
(JSONL, appended under flock, so several processes can share one file) keyed by
everything that determines the verdict. A call budget caps spending. Whatever goes wrong,
a request ends as a `Verdict` with a finite mark: failures (breaker skips included),
unparsable replies and budget exhaustion get `fallback_mark`, are counted, and are logged
without the API key. Nothing here raises after construction.

`check_judge_config(cfg.judge)` is the preflight: a judge config that cannot work fails
there, naming the key, before anything loads or is written.

The key is read from the environment variable *named* in the config (`api_key_env`);
only the name is ever stored. It is redacted from every message this module logs.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from egoadapt.configs import CONF_DIR
from egoadapt.net import DeadlineClient, UnfinishedCompletion, backoff_delay, finished_choice, transient
from egoadapt.rewards.parse import first_json_object, first_python_dict

log = logging.getLogger(__name__)

JUDGE_CONF = CONF_DIR / "judge" / "openai.yaml"  # the judge prompt's one copy (judge=openai and those built on it)


@cache
def _judge_conf() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(JUDGE_CONF.read_text(encoding="utf-8"))


def default_prompt() -> str:
    """The EgoCross judge prompt (question, short and detailed reference, prediction -> mark 0-5)."""
    return _judge_conf()["prompt"]


def default_prompt_version() -> str:
    return _judge_conf()["prompt_version"]


PLACEHOLDERS = ("question", "answer", "detailed_answer", "prediction")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")
MAX_MARK = 5.0
MAX_RESPONSE_BYTES = 1_000_000  # a judge reply is a few hundred bytes; refuse floods

# Statuses of a verdict. Only "ok" verdicts are cached.
OK, CACHED, DEDUPED, FAILED, UNPARSABLE, BUDGET = "ok", "cached", "deduped", "failed", "unparsable", "budget_exhausted"
FALLBACK_STATUSES = (FAILED, UNPARSABLE, BUDGET)  # the mark is fallback_mark, not the judge's


def utf8(text: str, exact: bool = False) -> bytes:
    """UTF-8 bytes of any str. Text from JSON files can hold lone surrogates ("\\ud800"),
    which strict UTF-8 refuses: they become "?", or with exact=True (cache keys) stay
    distinct via surrogatepass. Valid text encodes the same either way."""
    return text.encode("utf-8", "surrogatepass" if exact else "replace")


def clean_text(text: str) -> str:
    """`text` with whatever UTF-8 cannot encode replaced (safe to send, log and write)."""
    return utf8(text).decode("utf-8")


@dataclass(frozen=True)
class JudgeRequest:
    question: str
    reference: str  # answer_text
    detailed_reference: str  # detailed_answer ("" if none)
    prediction: str


@dataclass(frozen=True)
class Verdict:
    mark: float  # always finite, in [0, 5]
    status: str  # ok | cached | deduped | failed | unparsable | budget_exhausted
    reason: str = ""

    @property
    def judged(self) -> bool:
        """The mark came from the judge (now or from the cache), not from the fallback."""
        return self.status in (OK, CACHED, DEDUPED)


@dataclass
class JudgeSettings:
    base_url: str
    model: str
    api_key_env: str | None = "EGOADAPT_JUDGE_API_KEY"
    prompt: str = field(default_factory=default_prompt)
    prompt_version: str = field(default_factory=default_prompt_version)
    temperature: float = 0.01
    top_p: float = 0.9
    max_tokens: int = 512
    concurrency: int = 8
    timeout_s: float = 60.0  # wall-clock deadline per attempt: connect + headers + body
    connect_timeout_s: float = 10.0
    retries: int = 3  # extra attempts after the first, for transport errors, 408/409/429/5xx
    backoff_s: float = 1.0
    backoff_max_s: float = 30.0  # also caps a server's Retry-After
    unparsable_retries: int = 0  # extra attempts when the reply holds no readable mark
    cache_path: str | None = None
    max_calls: int | None = None  # HTTP requests this Judge may send (None: unlimited)
    fallback_mark: float = 0.0
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into each request body
    breaker_failures: int = 5  # transport failures / 5xx in a row that open the circuit (0: never)
    breaker_cooldown_s: float = 30.0  # calls skipped while open; then one probe
    max_failure_rate: float | None = 0.1  # eval/score: above this, OpenQA accuracy is unmeasured

    def __post_init__(self) -> None:
        for key in ("base_url", "model"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip() or value == "???":
                raise JudgeConfigError(f"judge.{key} is required (e.g. judge.base_url=http://127.0.0.1:8001/v1 "
                                       "judge.model=NAME), got " + repr(value))
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise JudgeConfigError(f"judge.base_url must be an http(s) URL such as http://127.0.0.1:8001/v1, "
                                   f"got {self.base_url!r}")
        if not isinstance(self.prompt, str):
            raise JudgeConfigError(f"judge.prompt must be a string, got {type(self.prompt).__name__}")
        missing = [p for p in ("answer", "prediction") if "{" + p + "}" not in self.prompt]
        if missing:
            raise JudgeConfigError(f"judge prompt lacks placeholder(s) {missing}; it has {{question}}, "
                                   "{answer}, {detailed_answer}, {prediction} to fill")
        for key in ("api_key_env", "cache_path"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise JudgeConfigError(f"judge.{key} must be a string or null, got {getattr(self, key)!r}")
        if not isinstance(self.extra_body, dict):
            raise JudgeConfigError(f"judge.extra_body must be a mapping, got {self.extra_body!r}")
        _check_number("temperature", self.temperature, low=0)
        _check_number("top_p", self.top_p, high=1, positive=True)
        _check_number("max_tokens", self.max_tokens, integer=True, low=1)
        _check_number("concurrency", self.concurrency, integer=True, low=1)
        _check_number("timeout_s", self.timeout_s, positive=True)
        _check_number("connect_timeout_s", self.connect_timeout_s, positive=True)
        for key in ("retries", "unparsable_retries", "breaker_failures"):
            _check_number(key, getattr(self, key), integer=True, low=0)
        _check_number("max_calls", self.max_calls, integer=True, low=0, optional=True)
        _check_number("backoff_s", self.backoff_s, low=0)
        _check_number("backoff_max_s", self.backoff_max_s, low=0)
        _check_number("breaker_cooldown_s", self.breaker_cooldown_s, positive=True)
        _check_number("fallback_mark", self.fallback_mark, low=0, high=MAX_MARK)
        _check_number("max_failure_rate", self.max_failure_rate, low=0, high=1, optional=True)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> JudgeSettings:
        if "api_key" in cfg:  # never accept a key in config: it would end up on disk
            raise JudgeConfigError("put the judge API key in an environment variable and name it in "
                                   "judge.api_key_env, never in the config (it would be written to disk)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(cfg) - known - {"enabled"})
        if unknown:
            raise JudgeConfigError(f"unknown judge setting(s): {unknown}; known: {sorted(known)}")
        kwargs = {k: v for k, v in cfg.items() if k in known}
        kwargs.setdefault("base_url", None)  # required: __post_init__ says so by name
        kwargs.setdefault("model", None)
        if kwargs.get("extra_body") is None:
            kwargs["extra_body"] = {}
        return cls(**kwargs)


class JudgeConfigError(ValueError):
    """A judge config that cannot work; the message names the key."""


def _check_number(key: str, value: Any, *, integer: bool = False, low: float | None = None,
                  high: float | None = None, positive: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) \
            or not math.isfinite(value):
        raise JudgeConfigError(f"judge.{key} must be {kind}{' or null' if optional else ''}, got {value!r}")
    if positive and value <= 0:
        raise JudgeConfigError(f"judge.{key} must be > 0, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"<= {high}" if low is None else f"in [{low}, {high}]"
        raise JudgeConfigError(f"judge.{key} must be {bounds}, got {value}")


def check_judge_config(cfg: Any) -> JudgeSettings | None:
    """The preflight for a `judge` config node (Hydra or plain mapping): its settings, None
    for no judge (`judge=none`, empty, or enabled: false), or JudgeConfigError naming the
    key. Hydra's `???` placeholders count as missing, never as a URL."""
    if cfg is None:
        return None
    try:
        from omegaconf import DictConfig, OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        if isinstance(cfg, DictConfig):
            missing = [k for k in cfg if OmegaConf.is_missing(cfg, k)]
            if missing and cfg.get("enabled", True) is not False:
                raise JudgeConfigError(f"judge.{missing[0]} is required with this judge (e.g. judge=openai "
                                       "judge.base_url=http://127.0.0.1:8001/v1 judge.model=NAME)")
            try:
                cfg = OmegaConf.to_container(cfg, resolve=True)
            except OmegaConfBaseException as e:
                raise JudgeConfigError(f"judge config: {e}") from None
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise JudgeConfigError(f"judge must be a mapping of settings, got {type(cfg).__name__}")
    cfg = dict(cfg)
    enabled = cfg.get("enabled", True)
    if not isinstance(enabled, bool):
        raise JudgeConfigError(f"judge.enabled must be true or false, got {enabled!r}")
    if not cfg or not enabled:
        return None
    return JudgeSettings.from_mapping(cfg)


def render_prompt(template: str, request: JudgeRequest) -> str:
    """Fill the placeholders in one pass, so a prediction containing "{answer}" stays literal
    (sequential str.replace would paste the reference into the prediction)."""
    values = {
        "question": request.question,
        "answer": request.reference,
        "detailed_answer": request.detailed_reference,
        "prediction": request.prediction,
    }
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


_MARK_RE = re.compile(r"""["']?mark["']?\s*[:=]\s*["']?(-?\d+(?:\.\d+)?)""", re.IGNORECASE)


def parse_verdict(text: Any) -> tuple[float, str] | None:
    """(mark, reason) from a judge reply, or None when it holds no mark in [0, 5]."""
    if not isinstance(text, str) or not text.strip():
        return None
    obj, _ = first_json_object(text)
    if obj is None or "mark" not in obj:
        obj, _ = first_python_dict(text)
    raw: Any = None
    reason = ""
    if isinstance(obj, dict) and "mark" in obj:
        raw = obj.get("mark")
        reason = str(obj.get("reason", "") or "")
    else:  # e.g. the template's `"mark": 4,  # comment` copied verbatim, which is not JSON
        m = _MARK_RE.search(text[:20_000])
        raw = m.group(1) if m else None
    if isinstance(raw, bool) or raw is None:
        return None
    try:
        mark = float(raw)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(mark) or not (0.0 <= mark <= MAX_MARK):
        return None
    return mark, reason[:2000]


# --------------------------------------------------------------------------- cache


class VerdictCache:
    """Append-only JSONL of verdicts, shared by threads and processes.

    Each record is one line written with a single `write` under an exclusive flock; a
    miss re-reads whatever other processes appended since the last read. A torn last line
    (a crash mid-write) is skipped.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(os.path.expanduser(str(path)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._marks: dict[str, tuple[float, str]] = {}
        self._offset = 0
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # only complete lines
        for line in data[:end].splitlines():
            try:
                rec = json.loads(line)
                self._marks[rec["key"]] = (float(rec["mark"]), str(rec.get("reason", "")))
            except (ValueError, KeyError, TypeError):
                continue
        self._offset += end

    def get(self, key: str) -> tuple[float, str] | None:
        with self._lock:
            hit = self._marks.get(key)
            if hit is None:
                self._refresh()
                hit = self._marks.get(key)
            return hit

    def put(self, key: str, mark: float, reason: str, meta: Mapping[str, Any]) -> None:
        line = json.dumps({"key": key, "mark": mark, "reason": reason, **meta}, ensure_ascii=False) + "\n"
        data = utf8(line)
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, data)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            self._marks[key] = (mark, reason)

    def __len__(self) -> int:
        return len(self._marks)


# --------------------------------------------------------------------------- judge


class CircuitBreaker:
    """closed --(`threshold` failures in a row)--> open: calls are refused for `cooldown_s`
    --> half-open: one probe call, the other callers wait (up to `probe_wait_s`) for its
    outcome; its success closes the circuit, its failure opens it again. Any reply from the
    server that is not a 5xx counts as a success (it is up)."""

    def __init__(self, threshold: int, cooldown_s: float, probe_wait_s: float = 0.0, clock=time.monotonic):
        self.threshold, self.cooldown_s, self.probe_wait_s, self._clock = threshold, cooldown_s, probe_wait_s, clock
        self._lock = threading.Condition()
        self._in_a_row = 0
        self._opened_at: float | None = None  # None: closed
        self._probing = False
        self.opens = 0  # times opened since the last success (0: closed)
        self.down_since: float | None = None  # when it first opened in this outage

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def down_for(self) -> float:
        """Seconds since the circuit first opened in this outage (0 when closed)."""
        return 0.0 if self.down_since is None else self._clock() - self.down_since

    def allow(self) -> bool:
        give_up = time.monotonic() + self.probe_wait_s
        with self._lock:
            while True:
                if self._opened_at is None:
                    return True
                if self._clock() - self._opened_at < self.cooldown_s:
                    return False
                if not self._probing:
                    self._probing = True  # half-open: this caller is the probe
                    return True
                wait = give_up - time.monotonic()  # a probe is out: its outcome decides
                if wait <= 0:
                    return False
                self._lock.wait(wait)

    def release(self) -> None:
        """A call allowed by `allow` that never reached the server: let another probe go."""
        with self._lock:
            self._probing = False
            self._lock.notify_all()

    def record(self, ok: bool) -> bool:
        """Note an attempt's outcome; True when this failure (re)opened the circuit."""
        with self._lock:
            self._lock.notify_all()  # callers waiting on a probe
            if ok:
                self._in_a_row, self._opened_at, self._probing, self.opens, self.down_since = 0, None, False, 0, None
                return False
            self._in_a_row += 1
            if not self.threshold:
                return False
            if self._probing or (self._opened_at is None and self._in_a_row >= self.threshold):
                self._probing = False
                self._opened_at = self._clock()
                self.down_since = self.down_since or self._opened_at
                self.opens += 1
                return True
            return False


class _Budget(Exception):
    pass


class _Failure(Exception):
    pass


_COUNTERS = ("requests", "calls", "cache_hits", "deduped", "judged", "failures", "unparsable",
             "budget_exhausted", "retries", "fallbacks", "breaker_opens", "breaker_skips")


class Judge:
    """Thread-safe; create one per process and reuse it (it owns a connection pool and threads)."""

    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        self._key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        if settings.api_key_env and not self._key:
            # fine for a local vLLM; a hosted API will answer 401 (counted and logged as failures)
            log.info("judge: environment variable %s is not set; sending no API key", settings.api_key_env)
        headers = {"Authorization": f"Bearer {self._key}", "Content-Type": "application/json"} if self._key \
            else {"Content-Type": "application/json"}
        s = settings
        self._client = DeadlineClient(s.base_url.rstrip("/"), headers=headers, timeout_s=s.timeout_s,
                                      connect_timeout_s=s.connect_timeout_s, max_connections=s.concurrency,
                                      max_response_bytes=MAX_RESPONSE_BYTES)
        # callers wait for a probe as long as it can take (its deadline), plus slack for a busy machine
        self._breaker = CircuitBreaker(s.breaker_failures, s.breaker_cooldown_s, probe_wait_s=s.timeout_s + 5)
        self._pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="judge")
        self._cache = VerdictCache(s.cache_path) if s.cache_path else None
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(_COUNTERS, 0)
        self._logged: dict[str, int] = {}
        self._template_hash = hashlib.sha256(s.prompt.encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, cfg: Any) -> Judge | None:
        """A Judge from a Hydra `judge` node; None for `judge: none` (empty or enabled: false).
        Raises JudgeConfigError for a config that cannot work (see check_judge_config)."""
        settings = check_judge_config(cfg)
        return cls(settings) if settings is not None else None

    # -- public -------------------------------------------------------------------------

    @property
    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def key(self, request: JudgeRequest) -> str:
        """Cache key: everything that determines the verdict, never the API key."""
        s = self.settings
        ident = [s.model, s.prompt_version, self._template_hash, s.temperature, s.top_p, s.max_tokens,
                 request.question, request.reference, request.detailed_reference, request.prediction]
        return hashlib.sha256(utf8(json.dumps(ident, ensure_ascii=False), exact=True)).hexdigest()

    def judge(self, request: JudgeRequest) -> Verdict:
        return self.judge_many([request])[0]

    def judge_many(self, requests: Iterable[JudgeRequest]) -> list[Verdict]:
        """One verdict per request, in order. Identical requests cost one call."""
        requests = list(requests)
        self._count("requests", len(requests))
        keys = [self.key(r) for r in requests]
        verdicts: list[Verdict | None] = [None] * len(requests)
        first_of: dict[str, int] = {}
        todo: list[int] = []
        for i, k in enumerate(keys):
            hit = self._cache.get(k) if self._cache else None
            if hit is not None:
                self._count("cache_hits")
                verdicts[i] = Verdict(hit[0], CACHED, hit[1])
            elif k in first_of:
                self._count("deduped")
            else:
                first_of[k] = i
                todo.append(i)
        futures = {i: self._pool.submit(self._judge_one, requests[i], keys[i]) for i in todo}
        for i, fut in futures.items():
            try:
                verdicts[i] = fut.result()
            except Exception as e:  # noqa: BLE001 - a bug here must not kill training
                verdicts[i] = self._fallback(FAILED, f"internal error {type(e).__name__}: {e}")
        for i, k in enumerate(keys):
            if verdicts[i] is None:
                src = verdicts[first_of[k]]
                verdicts[i] = Verdict(src.mark, DEDUPED if src.judged else src.status, src.reason)
        return verdicts  # type: ignore[return-value]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def __enter__(self) -> Judge:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        s = self.settings
        return f"Judge(model={s.model!r}, base_url={s.base_url!r}, prompt_version={s.prompt_version!r})"

    # -- internals ----------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _warn(self, kind: str, message: str) -> None:
        # First few of each kind, then every 100th: a dead server must not flood the log.
        with self._lock:
            n = self._logged[kind] = self._logged.get(kind, 0) + 1
        if n <= 5 or n % 100 == 0:
            log.warning("judge %s (#%d): %s", kind, n, self._redact(message))

    def _fallback(self, status: str, message: str) -> Verdict:
        self._count({FAILED: "failures", UNPARSABLE: "unparsable", BUDGET: "budget_exhausted"}[status])
        self._count("fallbacks")
        self._warn(status, f"{message}; using fallback mark {self.settings.fallback_mark}")
        return Verdict(float(self.settings.fallback_mark), status, "")

    def _reserve_call(self) -> None:
        with self._lock:
            cap = self.settings.max_calls
            if cap is not None and self._counters["calls"] >= cap:
                raise _Budget()
            self._counters["calls"] += 1

    def _backoff(self, attempt: int, retry_after: str | None = None) -> None:
        time.sleep(backoff_delay(attempt, self.settings.backoff_s, self.settings.backoff_max_s, retry_after))

    def _request(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        """One POST under a wall-clock deadline of timeout_s (connect, headers and body)."""
        resp = self._client.post("/chat/completions", content=body)
        return resp.status_code, resp.headers, resp.content

    def _note(self, ok: bool, error: str) -> None:
        """Tell the breaker how an attempt went; say so loudly each time it opens."""
        b, s = self._breaker, self.settings
        if not b.record(ok):
            return
        self._count("breaker_opens")
        why = f"{s.breaker_failures} failures in a row" if b.opens == 1 else \
            f"probe failed; down for {b.down_for():.0f} s, opened {b.opens} times"
        log.warning("judge circuit OPEN at %s (%s): skipping judge calls for %g s, then one probe; skipped "
                    "judgments count as failures (fallback mark %s). Last error: %s",
                    s.base_url, why, s.breaker_cooldown_s, s.fallback_mark, self._redact(error))

    def _post(self, prompt: str) -> str:
        """The reply text of one chat completion, with retries. Raises _Failure or _Budget."""
        s = self.settings
        body = utf8(json.dumps({
            "model": s.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
            **s.extra_body,
        }, ensure_ascii=False))
        last = "no attempt"
        for attempt in range(s.retries + 1):
            if not self._breaker.allow():  # down: skip at once, also between retries
                self._count("breaker_skips")
                raise _Failure("call skipped: the judge circuit is open (judge down)"
                               + (f"; last error: {last}" if attempt else ""))
            if attempt:
                self._count("retries")
            retry_after = None
            try:
                self._reserve_call()
                status, headers, raw = self._request(body)
            except httpx.TransportError as e:  # connect refused, timeouts, resets, deadline
                last = f"{type(e).__name__}: {e}"
                self._note(False, last)
            except BaseException:  # budget spent, or a bug: this attempt says nothing about the server
                self._breaker.release()
                raise
            else:
                self._note(status < 500, f"HTTP {status}")
                text = raw[:200].decode("utf-8", "replace")
                if status == 200:
                    try:
                        content = finished_choice(json.loads(raw))["message"]["content"]
                    except UnfinishedCompletion as e:  # its partial text is no verdict: ask again
                        last = str(e)
                    except (ValueError, KeyError, IndexError, TypeError) as e:
                        last = f"malformed response body ({type(e).__name__}): {text!r}"
                    else:
                        return clean_text(content) if isinstance(content, str) else ""
                elif transient(status):
                    last = f"HTTP {status}: {text!r}"
                    retry_after = headers.get("retry-after")
                else:  # 400/401/403/404...: retrying will not help
                    raise _Failure(f"HTTP {status}: {text!r}")
            if attempt < s.retries:
                self._backoff(attempt, retry_after)
        raise _Failure(f"gave up after {s.retries + 1} attempts; last error: {last}")

    def _judge_one(self, request: JudgeRequest, key: str) -> Verdict:
        s = self.settings
        prompt = render_prompt(s.prompt, request)
        reply = ""
        for _ in range(s.unparsable_retries + 1):
            try:
                reply = self._post(prompt)
            except _Budget:
                return self._fallback(BUDGET, f"call budget of {s.max_calls} spent")
            except _Failure as e:
                return self._fallback(FAILED, str(e))
            parsed = parse_verdict(reply)
            if parsed is not None:
                mark, reason = parsed
                self._count("judged")
                if self._cache is not None:
                    try:
                        self._cache.put(key, mark, reason, {"model": s.model, "prompt_version": s.prompt_version})
                    except OSError as e:
                        self._warn("cache_write", f"{type(e).__name__}: {e}")
                return Verdict(mark, OK, reason)
        return self._fallback(UNPARSABLE, f"no mark in reply {reply[:200]!r}")


def settings_dict(judge: Judge | None) -> dict[str, Any] | None:
    """What a run may record about its judge (no key, only the variable's name)."""
    if judge is None:
        return None
    d = asdict(judge.settings)
    d.pop("prompt", None)
    d["prompt_sha"] = judge._template_hash
    return d
