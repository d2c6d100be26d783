"""`backend=openai`: the evaluated model behind any OpenAI-compatible chat endpoint (a vLLM
server, GPT-4.1, Gemini's OpenAI-compatible endpoint, ...).

Each question is one `POST {openai.base_url}/chat/completions` with the prompt every backend
gets (conf/prompt, with the clip's real sampling fps) and the clip's frames, sent as one
image per frame (`openai.send=images`, as the paper sends them to GPT-4.1 and Gemini 2.5 Pro)
or as one mp4 (`openai.send=video`, as the vLLM server rollout engine does):
`egoadapt.data.chat_media`. Decoding comes from `generation` (max_new_tokens, temperature,
top_p; top_k only when set, since hosted APIs refuse it).

A batch's requests go out together, at most `openai.concurrency` in flight, each under a
wall-clock deadline and retried on transport errors, 408/409/429 and 5xx with backoff
(`egoadapt.net`, the judge's and the rollout client's policy). A question whose request still
fails, or is refused (4xx), comes back as `Failed`: the run goes on, the question gets no
prediction line, is counted and listed in results.json, and the next run of the same command
asks it again. After `breaker_failures` failures in a row the endpoint is taken as down and
requests fail at once for `breaker_cooldown_s`, then one probe (the judge's circuit breaker),
so a dead endpoint costs seconds, not a timeout per question.

The API key is read from the environment variable named by `openai.api_key_env`, never from
the config; the frame clip is decoded and encoded before any request is sent, so a clip that
fails (a DataError) is handled by the caller like any backend's (frames.on_error).
"""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from egoadapt.data.schema import Sample
from egoadapt.eval.generate import EvalError, Failed, Item

log = logging.getLogger(__name__)

SEND = ("images", "video")
MAX_RESPONSE_BYTES = 20_000_000


def check_openai_config(cfg: Any) -> None:
    """Preflight of the `openai` node for backend=openai: EvalError naming the key."""
    for key in ("base_url", "model"):
        value = cfg.get(key) if cfg is not None else None
        if not isinstance(value, str) or not value.strip():
            raise EvalError(f"backend=openai needs openai.{key} (e.g. openai.base_url=http://127.0.0.1:8000/v1 "
                            f"openai.model=NAME), got {value!r}")
    url = urlsplit(cfg.base_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise EvalError(f"openai.base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, "
                        f"got {cfg.base_url!r}")
    if cfg.send not in SEND:
        raise EvalError(f"openai.send={cfg.send!r}: choose images (one image per frame) or video (one mp4)")


def openai_identity(cfg: Any) -> dict[str, Any]:
    """What decides the answers besides the prompt, frames and decoding: the model and how the
    frames travel (not the URL: the same model may be served elsewhere on a rerun)."""
    from omegaconf import DictConfig, OmegaConf

    plain = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    return {k: plain.get(k) for k in ("model", "send", "image_format", "jpeg_quality")} | {
        "extra_body": plain.get("extra_body") or {}}


class OpenAIBackend:
    """Turns items into output texts through a chat endpoint (the `Backend` interface of
    `egoadapt.eval.generate`: `name`, `generate(items)`, `close()`)."""

    name = "openai"

    def __init__(self, samples: Mapping[str, Sample], frames_cfg: Any, prompt_cfg: Any, settings: Mapping[str, Any],
                 generation: Mapping[str, Any]):
        from egoadapt.net import DeadlineClient
        from egoadapt.rewards.judge import CircuitBreaker

        self.samples, self.frames_cfg, self.prompt_cfg = samples, frames_cfg, prompt_cfg
        self.s = dict(settings)
        self.url = self.s["base_url"].rstrip("/") + "/chat/completions"
        env = self.s.get("api_key_env")
        self._key = os.environ.get(env, "") if env else ""
        if env and not self._key:
            log.info("backend=openai: environment variable %s is not set; sending no API key", env)
        self.http = DeadlineClient(timeout_s=float(self.s["timeout_s"]),
                                   connect_timeout_s=float(self.s["connect_timeout_s"]),
                                   max_connections=int(self.s["concurrency"]), max_response_bytes=MAX_RESPONSE_BYTES,
                                   headers={"Authorization": f"Bearer {self._key}"} if self._key else None)
        self.breaker = CircuitBreaker(int(self.s["breaker_failures"]), float(self.s["breaker_cooldown_s"]),
                                      probe_wait_s=float(self.s["timeout_s"]) + 5)
        self.pool = ThreadPoolExecutor(int(self.s["concurrency"]), thread_name_prefix="eval-openai")
        self.sampling = {"max_tokens": int(generation["max_new_tokens"]),
                         "temperature": float(generation["temperature"]), "top_p": float(generation["top_p"])}
        if generation.get("top_k"):
            self.sampling["top_k"] = int(generation["top_k"])
        self.counters = {"requests": 0, "retries": 0, "failures": 0, "breaker_skips": 0}
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, cfg: Any, samples: Sequence[Sample]) -> OpenAIBackend:
        from omegaconf import OmegaConf

        check_openai_config(cfg.openai)
        return cls({s.id: s for s in samples}, cfg.frames, cfg.prompt, OmegaConf.to_container(cfg.openai, resolve=True),
                   OmegaConf.to_container(cfg.generation, resolve=True))

    # ------------------------------------------------------------------ requests
    def request(self, item: Item) -> tuple[dict[str, Any], dict[str, str]]:
        """(the request body, the text asked for predictions.jsonl) of one item; raises the clip's
        DataError before anything is sent."""
        from egoadapt.data.chat_media import chat_messages, image_blocks, video_block
        from egoadapt.data.frames import load_clip
        from egoadapt.data.prompts import asked_text, build_messages
        from egoadapt.inputs.qa import prompt_qa

        sample = self.samples[item.id]
        clip = load_clip(sample, self.frames_cfg)
        media = [video_block(clip)] if self.s["send"] == "video" else \
            image_blocks(clip, self.s.get("image_format", "jpeg"), int(self.s.get("jpeg_quality", 95)))
        messages = build_messages(sample, prompt_qa(item.qa), self.prompt_cfg, sampling_fps=clip.fps)
        body = {"model": self.s["model"], "messages": chat_messages(messages, media), **self.sampling,
                **dict(self.s.get("extra_body") or {})}
        return body, asked_text(messages)

    def generate(self, items: Sequence[Item]) -> list[tuple[str, int, dict[str, Any]] | Failed]:
        """(output text, completion tokens, {prompt, prompt_tokens, finish_reason}) or Failed per item."""
        requests = [self.request(it) for it in items]  # every clip first: a bad one fails before any request
        answers = self.pool.map(self._ask, [body for body, _ in requests])
        return [a if isinstance(a, Failed) else (a[0], a[1], {**asked, **a[2]})
                for a, (_, asked) in zip(answers, requests)]

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] += n

    def _ask(self, body: dict[str, Any]) -> tuple[str, int, dict[str, Any]] | Failed:
        from egoadapt.net import RetriesExhausted, UnfinishedCompletion, finished_choice, request_with_retries

        if not self.breaker.allow():
            self._count("breaker_skips")
            return self._failed("not sent: the endpoint is taken as down after "
                                f"{self.s['breaker_failures']} failures in a row (circuit open)")
        self._count("requests")
        try:
            r = request_with_retries(self.http, "POST", self.url, json=body, retries=int(self.s["retries"]),
                                     backoff_s=float(self.s["backoff_s"]),
                                     backoff_max_s=float(self.s["backoff_max_s"]),
                                     on_retry=lambda _: self._count("retries"))
        except RetriesExhausted as e:
            self.breaker.record(False)
            return self._failed(self._redact(str(e)))
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.record(True)  # it answered: up
        if r.status_code >= 400:  # refused (400, 401, 404...): retrying now would not help
            return self._failed(f"HTTP {r.status_code}: {r.content[:300].decode('utf-8', 'replace')}")
        try:
            reply = r.json()
            choice = finished_choice(reply)
            text = message_text(choice["message"].get("content"))
        except UnfinishedCompletion as e:  # partial text: no prediction, a rerun asks again
            return self._failed(str(e))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            return self._failed(f"malformed response ({type(e).__name__}): "
                                f"{r.content[:300].decode('utf-8', 'replace')}")
        usage = reply.get("usage") or {}
        extra = {"prompt_tokens": usage.get("prompt_tokens"), "finish_reason": choice.get("finish_reason")}
        return text, int(usage.get("completion_tokens") or 0), extra

    def _failed(self, reason: str) -> Failed:
        self._count("failures")
        n = self.counters["failures"]
        if n <= 5 or n % 100 == 0:
            log.warning("backend=openai: request failed (#%d; the question gets no prediction and a rerun asks it "
                        "again): %s", n, reason)
        return Failed(reason)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()


def message_text(content: Any) -> str:
    """A chat message's text: a string, null (a refusal: no text), or a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise TypeError(f"message content is a {type(content).__name__}")

