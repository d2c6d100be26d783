"""One prompt for an engine: what the HF, colocated-vLLM and served-vLLM engines and evaluation take."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RolloutRequest:
    """A sample's prompt, ready to generate from.

    `messages`: the chat messages (a `{"type": "video"}` block; the clip travels by `sample_id`);
    `prompt_ids`: the chat-templated prompt with the video placeholder expanded to the clip's
    real token count, as the trainer scores it; None where the engine tokenizes and processes
    the video itself and nothing compares (vLLM evaluation)."""

    sample_id: str
    messages: list[dict]
    prompt_ids: list[int] | None = None
