"""The QA types a run asks (data.qa / qa: close, open, both) and their prompt names."""
from __future__ import annotations

from egoadapt.data.schema import PROMPT_KEYS, QA_MODES


def qa_modes(name: str) -> tuple[str, ...]:
    try:
        return QA_MODES[name]
    except KeyError:
        raise ValueError(f"data.qa={name!r}: choose {', '.join(QA_MODES)}") from None


def prompt_qa(qa: str) -> str:
    """The prompts module's name for a QA type (closeqa/openqa)."""
    return PROMPT_KEYS.get(qa, qa)
