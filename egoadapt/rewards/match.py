"""Compare a prediction with the reference: letters, text, numbers, time spans, regions.

Pure functions, no I/O. Task-aware scores return None when they do not apply (the
reference or the prediction carries no count / time / region), so the caller can fall
through to the next rule.
"""
from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------- letters & text


def letter_match(prediction: str | None, answer_letter: str | None) -> bool:
    """CloseQA: one resolved option letter equals the reference letter (case-insensitive)."""
    if not prediction or not answer_letter:
        return False
    return prediction.strip().upper() == answer_letter.strip().upper()


_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_text(s: Any) -> str:
    """Lower case, NFKC, punctuation to spaces, articles dropped, whitespace collapsed."""
    s = unicodedata.normalize("NFKC", str(s)).lower()
    s = s.replace("→", " then ").replace("->", " then ")
    s = re.sub(r"(?!(?<=\d)\.(?=\d))[^\w\s]|_", " ", s)  # punctuation out, decimals kept: 2.5 != 25
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str | None, answer: str | None) -> bool:
    """OpenQA: normalized strings are equal (and not empty)."""
    if prediction is None or answer is None:
        return False
    p, a = normalize_text(prediction), normalize_text(answer)
    return bool(a) and p == a


def official_substring(answer: Any, prediction: Any) -> bool | None:
    """The benchmark's shortcut before its judge, branch for branch (eval_gpt_openset.py):

    - an int answer: `prediction == answer or str(answer) in str(prediction)` (so 3 hits "13");
    - a str answer: `answer.lower() in prediction.lower()`; a non-string prediction makes the
      reference raise there: None (its retry loop then records "[ERROR]" with mark 0, no judge);
    - anything else (a float answer): False, the judge decides.
    """
    if isinstance(answer, int):  # bool included, as isinstance does in the reference
        return prediction == answer or str(answer) in str(prediction)
    if isinstance(answer, str):
        if not isinstance(prediction, str):
            return None
        return answer.lower() in prediction.lower()
    return False


def contains_answer(prediction: str, answer: str) -> bool:
    """Training-mode shortcut: the answer occurs as whole words (numbers as whole numbers)."""
    p, a = normalize_text(prediction), normalize_text(answer)
    if not a:
        return False
    return re.search(rf"(?<![\w.]){re.escape(a)}(?![\w]|\.\d)", p) is not None


# --------------------------------------------------------------------------- counting

_NUMBER_WORDS = {
    w: i for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
    )
}
_NUMBER_WORDS.update({"none": 0, "no": 0, "single": 1, "once": 1, "twice": 2, "thrice": 3, "a couple": 2})
_TIME_UNIT = r"(?:s|sec|secs|second|seconds|min|mins|minutes?|fps|%)\b"
NUMBER_WORDS = _NUMBER_WORDS
_NUM_TOKEN = re.compile(rf"(?<![\w.])(\d+(?:\.\d+)?)(?!\.\d)(\s*{_TIME_UNIT})?")
_WORD_TOKEN = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _NUMBER_WORDS), key=len, reverse=True)) + r")\b")


def count_values(text: Any) -> set[float]:
    """Every count a text gives: digits (not times or rates: "10.00s", "25 fps"), else number words."""
    if text is None:
        return set()
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return {float(text)} if math.isfinite(text) else set()
    s = str(text).lower()[:2000]
    values = {float(m.group(1)) for m in _NUM_TOKEN.finditer(s) if not m.group(2)}
    if not values:
        # "no" counts only when it is the whole answer ("no" as a word is too common)
        values = {float(_NUMBER_WORDS[w]) for w in _WORD_TOKEN.findall(s) if w != "no" or s.strip(" .!") == "no"}
    return values


def parse_count(text: Any) -> int | None:
    """The one integer a counting answer gives ("3", "three tools", "3 types"); None if none or several."""
    values = count_values(text)
    if len(values) != 1:
        return None
    (v,) = values
    return int(v) if v.is_integer() else None


def count_score(prediction: Any, answer: Any, tolerance: int = 0) -> float | None:
    """1.0 when the counts differ by at most `tolerance`, else 0.0; None if either has no count."""
    truth, pred = parse_count(answer), parse_count(prediction)
    if truth is None or pred is None:
        return None
    return 1.0 if abs(pred - truth) <= tolerance else 0.0


# --------------------------------------------------------------------------- temporal


@dataclass(frozen=True)
class Interval:
    start: float
    end: float

    @property
    def is_point(self) -> bool:
        return self.end == self.start

    @property
    def mid(self) -> float:
        return (self.start + self.end) / 2


_T = r"(\d+:\d{1,2}(?:\.\d+)?|\d+(?:\.\d+)?)"  # 12.5 or 0:12.5 (m:ss)
_UNIT = r"\s*(?:s|sec|secs|second|seconds)?\b\.?"
_SPAN = re.compile(rf"(?:from|between)?\s*{_T}{_UNIT}\s*(?:-|–|—|to|and|until|till)\s*{_T}{_UNIT}", re.IGNORECASE)
# whole numbers only: "at 6.2s" is one point, not 6 and 2
_POINT = re.compile(rf"(?<![\d.:]){_T}\s*(?:s|sec|secs|second|seconds)\b|(?:at|around|about|approximately)\s+{_T}(?![\d.:])",
                    re.IGNORECASE)


def _seconds(token: str) -> float:
    if ":" in token:
        minutes, secs = token.split(":", 1)
        return int(minutes) * 60 + float(secs)
    return float(token)


def time_matches(text: str) -> list[tuple[Interval, int, int]]:
    """Each span ("2.0s - 4.5s", "from 2 to 4.5 seconds") and point ("5.7s", "at 0:05") in `text`,
    with where it is (character offsets), in order."""
    found: list[tuple[Interval, int, int]] = []
    for m in _SPAN.finditer(text):
        a, b = _seconds(m.group(1)), _seconds(m.group(2))
        found.append((Interval(min(a, b), max(a, b)), m.start(), m.end()))
    taken = [(s, e) for _, s, e in found]
    for m in _POINT.finditer(text):
        if any(x <= m.start() < y for x, y in taken):
            continue
        t = _seconds(m.group(1) or m.group(2))
        found.append((Interval(t, t), m.start(), m.end()))
    return sorted(found, key=lambda x: x[1])


def parse_times(text: Any) -> list[Interval]:
    """Spans ("2.0s - 4.5s", "from 2 to 4.5 seconds") and points ("5.7s", "at 0:05") in text."""
    if text is None:
        return []
    return list(dict.fromkeys(t for t, _, _ in time_matches(str(text)[:2000])))


def parse_interval(text: Any) -> Interval | None:
    """The one span or point a time answer gives; None if none or several."""
    times = parse_times(text)
    return times[0] if len(times) == 1 else None


def iou(a: Interval, b: Interval) -> float:
    inter = max(0.0, min(a.end, b.end) - max(a.start, b.start))
    union = max(a.end, b.end) - min(a.start, b.start)
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class TemporalResult:
    score: float  # in [0, 1]
    correct: bool


def temporal_score(
    prediction: Any,
    answer: Any,
    iou_threshold: float = 0.5,
    tolerance_s: float = 1.0,
    window_s: float = 5.0,
) -> TemporalResult | None:
    """Span vs span: IoU (correct at >= iou_threshold). Otherwise point distance between
    midpoints: correct within tolerance_s, score falling linearly to 0 at window_s."""
    truth, pred = parse_interval(answer), parse_interval(prediction)
    if truth is None or pred is None:
        return None
    if not truth.is_point and not pred.is_point:
        v = iou(pred, truth)
        return TemporalResult(v, v >= iou_threshold)
    dist = abs(pred.mid - truth.mid)
    # A wide predicted span around a point answer must not buy credit: its width counts as error.
    if truth.is_point and not pred.is_point:
        dist += (pred.end - pred.start) / 2
    score = max(0.0, 1.0 - dist / window_s) if window_s > 0 else float(dist == 0)
    return TemporalResult(score, dist <= tolerance_s)


# --------------------------------------------------------------------------- spatial regions

_VERTICAL = {"top": "top", "upper": "top", "bottom": "bottom", "lower": "bottom"}
_HORIZONTAL = {"left": "left", "right": "right"}
_CENTER = {"center", "centre", "middle", "central", "centered", "centred"}
_REGION_WORD = re.compile(
    r"\b(top|upper|bottom|lower|left|right|center|centre|middle|central|centered|centred)\b"
)
_HAND = re.compile(r"\b(left|right)[\s-]+(hand|hands|side of the (?:body|patient))\b")


REGION_WORDS = frozenset(_VERTICAL) | frozenset(_HORIZONTAL) | frozenset(_CENTER)


def region_of(words: list[str]) -> tuple[str, str] | None:
    """(vertical, horizontal) of region words in order ("top", "left"); None if contradictory."""
    return _region_from_words(words)


def _region_from_words(words: list[str]) -> tuple[str, str] | None:
    v = {_VERTICAL[w] for w in words if w in _VERTICAL}
    h = {_HORIZONTAL[w] for w in words if w in _HORIZONTAL}
    if len(v) > 1 or len(h) > 1:
        return None
    if not v and not h and not any(w in _CENTER for w in words):
        return None
    return (v.pop() if v else "center", h.pop() if h else "center")


def parse_region(text: Any) -> tuple[str, str] | None:
    """(vertical, horizontal) of a 3x3 region name: "upper-left", "top left", "left top",
    "center-right", "middle" -> ("center", "center"). None if none or contradictory."""
    if text is None:
        return None
    s = _HAND.sub(" ", str(text).lower()[:2000])
    words = _REGION_WORD.findall(s)
    return _region_from_words(words) if words else None


_REGION_SPLIT = re.compile(r"\bor\b|\band\b|\bthen\b|\bvs\b|[,;/&|+\n]")


def region_values(text: Any) -> set[tuple[str, str]]:
    """Every region a text names, one per phrase between separators; a phrase naming two
    verticals or two horizontals ("top bottom left") counts as two regions."""
    if text is None:
        return set()
    s = _HAND.sub(" ", str(text).lower()[:2000])
    found: set[tuple[str, str]] = set()
    for phrase in _REGION_SPLIT.split(s):
        words = _REGION_WORD.findall(phrase)
        if not words:
            continue
        region = _region_from_words(words)
        if region is None:  # contradictory: top and bottom, or left and right, in one phrase
            found |= {("contradictory", w) for w in words}
        else:
            found.add(region)
    return found


def region_match(prediction: Any, answer: Any) -> bool | None:
    truth, pred = parse_region(answer), parse_region(prediction)
    if truth is None or pred is None:
        return None
    return truth == pred


# --------------------------------------------------------------------------- task routing


def task_kind(category: str | None, question_type: str | None) -> str | None:
    """Which task-aware rule applies: counting | temporal | spatial | sequence | None.

    sequence (action sequences: "Walk → Left → Run") has no score of its own; it tells the
    training mode that commas and "then" order one answer rather than list several."""
    qt = (question_type or "").lower()
    cat = (category or "").lower()
    if "count" in qt or cat == "counting":
        return "counting"
    if "temporal" in qt:
        return "temporal"
    if "spatial" in qt or "region" in qt:
        return "spatial"
    if "sequence" in qt:
        return "sequence"
    return None


def finite(x: Any, default: float = 0.0) -> float:
    """A float that is never NaN/inf (rewards must stay finite)."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) else default
