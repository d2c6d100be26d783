"""The one record every stage reads: a question over a clip, whatever file it came from."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

LETTERS = "ABCDEFGH"

# Primary categories of EgoCross (the four task families).
CATEGORIES = ("Identification", "Localization", "Counting", "Prediction")

# Question types: CloseQA (options, answered by a letter) and OpenQA (free text scored against
# answer_text). The one vocabulary: their names in files and configs, in tables, and in the prompt
# config (the template keys), and what data.qa / eval's qa ask.
CLOSE, OPEN = "close", "open"
QA_TYPES = (CLOSE, OPEN)
QA_NAMES = {CLOSE: "CloseQA", OPEN: "OpenQA"}
PROMPT_KEYS = {CLOSE: "closeqa", OPEN: "openqa"}
QA_MODES = {CLOSE: (CLOSE,), OPEN: (OPEN,), "both": QA_TYPES}


def qa_type(name: Any) -> str:
    """close | open from any of its spellings: close, closeqa, CloseQA, open, openqa, OpenQA."""
    spelled = str(name).strip().lower()
    for qa in QA_TYPES:
        if spelled in (qa, PROMPT_KEYS[qa], QA_NAMES[qa].lower()):
            return qa
    raise ValueError(f"qa must be {' or '.join(repr(q) for q in QA_TYPES)}, got {name!r}")


# Real EgoCross source datasets -> domain. Synthetic datasets carry their domain themselves.
DATASET_DOMAINS = {
    "CholecTrack20": "surgery",
    "EgoSurgery": "surgery",
    "ENIGMA": "industry",
    "ExtrameSportFPV": "extreme_sports",  # sic: spelled so in the release
    "EgoPet": "animal",
}


def has_answer_text(value: Any) -> bool:
    """A usable `answer_text`: a non-blank string or a number (0 is an answer)."""
    if isinstance(value, str):
        return bool(value.strip())
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def answer_as_text(value: Any) -> str | None:
    """`answer_text` as text (a count 3 -> "3"), for prompts, SFT targets and text matching."""
    return None if value is None else str(value)


def answer_to_column(value: Any) -> str | None:
    """A numeric `answer_text` as JSON for a dataset column (Arrow cannot mix str and int in one column);
    None for text. `answer_from_columns` reverses it."""
    return None if value is None or isinstance(value, str) else json.dumps(value)


def answer_from_columns(text: Any, encoded: Any) -> Any:
    """The `answer_text` a dataset row stands for: the JSON number when `answer_json` holds one."""
    if isinstance(encoded, str) and encoded:
        try:
            value = json.loads(encoded)
        except ValueError:
            return text
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    return text


@dataclass(frozen=True)
class FrameSource:
    """Where a sample's pixels come from: a list of frame files or a span of a video file.

    `fps` is the sampling rate of `frames` (frame lists) or the rate to sample `video`
    at (videos). Times are seconds from the start of the video file.
    """

    frames: tuple[str, ...] = ()
    video: str | None = None
    start: float | None = None
    end: float | None = None
    fps: float = 1.0

    @property
    def kind(self) -> str:
        return "video" if self.video else "frames"

    def key(self) -> str:
        """A stable identity for caching (paths, span, fps)."""
        if self.video:
            return f"video:{self.video}:{self.start}:{self.end}:{self.fps}"
        return f"frames:{self.fps}:" + "|".join(self.frames)


@dataclass(frozen=True)
class Sample:
    id: str
    question: str
    frame_source: FrameSource
    options: tuple[str, ...] = ()  # option texts without the "A: " prefix; empty = OpenQA only
    question_id: str = ""
    dataset: str = ""
    domain: str = ""
    category: str = ""  # primary category
    question_type: str = ""
    answer_letter: str | None = None  # None when answers are unknown (e.g. test bed without answers)
    # the reference answer as the file gives it: text, or a JSON number (counts in the answers file);
    # official scoring treats an int as the reference scripts do (`==` or digits in the prediction)
    answer_text: str | int | float | None = None
    detailed_answer: str | None = None
    original_fps: float | None = None
    group: str = ""  # source video: samples sharing it must sit on the same side of a split
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def has_answer(self) -> bool:
        return self.answer_letter is not None or has_answer_text(self.answer_text)

    @property
    def lettered_options(self) -> list[str]:
        return [f"{LETTERS[i]}: {text}" for i, text in enumerate(self.options)]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["frame_source"]["frames"] = list(self.frame_source.frames)
        d["options"] = list(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Sample":
        d = dict(d)
        fs = dict(d.pop("frame_source"))
        fs["frames"] = tuple(fs.get("frames", ()))
        d["options"] = tuple(d.get("options", ()))
        return cls(frame_source=FrameSource(**fs), **d)
