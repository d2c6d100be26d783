"""The QA types a run asks (data.qa / qa: close, open, both) and their prompt names."""
from __future__ import annotations

QA_MODES = {"close": ("close",), "open": ("open",), "both": ("close", "open")}


def qa_modes(name: str) -> tuple[str, ...]:
    try:
        return QA_MODES[name]
    except KeyError:
        raise ValueError(f"data.qa={name!r}: choose close, open or both") from None


def prompt_qa(qa: str) -> str:
    """The prompts module's name for a QA type (closeqa/openqa)."""
    return {"close": "closeqa", "open": "openqa"}.get(qa, qa)
