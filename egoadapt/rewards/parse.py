"""Read the answer out of a model's raw output.

Two readers:

- `parse_answer`: the robust reader used for training rewards and diagnostics. It finds
  the first JSON object (fenced or not, with trailing text, or a single-quoted Python
  dict), falls back to free text ("Answer: (B)", "B. scissors", option text), resolves
  a CloseQA answer to exactly one option letter and flags outputs that name several.
- `official_extract`: the benchmark's own extraction, reproduced quirk for quirk
  (`json.loads` of the whole output, else the first non-greedy `{...}` match), used by
  the "official" scoring mode.
"""
from __future__ import annotations

import ast
import bisect
import functools
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from egoadapt.data.schema import LETTERS, QA_TYPES

# Only this much of an output is scanned: the first JSON object of a sane answer is
# near the start, and pathological outputs ("{{{{..." x 1e6) must stay cheap.
MAX_SCAN_CHARS = 20_000
MAX_BRACE_TRIES = 64  # `{` positions tried as the start of a JSON object
MAX_PY_DICT_CHARS = 4_000  # ast.literal_eval is only tried on dicts this small
MAX_RAW_CHARS = 2_000  # Parsed.raw keeps this much of the prediction as written

DEFAULT_OPTION_COUNT = 4


@dataclass(frozen=True)
class Parsed:
    """What a raw output answered.

    prediction: CloseQA: exactly one valid option letter (upper case); OpenQA: the answer
        text. None when there is no valid answer (empty, ambiguous, invalid letter...).
    format_ok: the JSON contract was followed: the whole output (optionally inside a
        ```json fence) is one JSON object whose "prediction" is a string (CloseQA: a single
        option letter).
    letters: CloseQA: every option letter the answer names (several = not a valid choice).
        OpenQA: letters of the options whose text the answer mentions.
    reason: the model's "reason" field, if any.
    source: json | json_nested | json_broken | python | text | none.
    issue: why prediction is None or suspect: empty | no_answer | no_prediction_field |
        ambiguous | invalid_letter | not_string | duplicate_keys | letter_text_mismatch.
    raw: the prediction as written (stringified), before resolving.
    length: characters in the whole output.
    """

    prediction: str | None
    format_ok: bool
    letters: tuple[str, ...] = ()
    reason: str | None = None
    source: str = "none"
    issue: str | None = None
    raw: str | None = None
    length: int = 0


# --------------------------------------------------------------------------- JSON finding

class _Dict(dict):
    """A dict that remembers keys written twice (`{"prediction": "A", "prediction": "B"}`)."""

    duplicates: tuple[str, ...] = ()


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Dict:
    d = _Dict()
    dups = []
    for k, v in pairs:
        if k in d and d[k] != v:
            dups.append(k)
        d[k] = v
    d.duplicates = tuple(dups)
    return d


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook)


def first_json_object(text: str) -> tuple[dict | None, tuple[int, int] | None]:
    """The first `{...}` in `text` that decodes as a JSON object, and its span."""
    text = text[:MAX_SCAN_CHARS]
    start = text.find("{")
    tries = 0
    while start != -1 and tries < MAX_BRACE_TRIES:
        tries += 1
        try:
            obj, end = _DECODER.raw_decode(text, start)
        except (ValueError, RecursionError):
            obj = None
        if isinstance(obj, dict):
            return obj, (start, end)
        start = text.find("{", start + 1)
    return None, None


def _balanced_braces(text: str, start: int) -> int | None:
    """End index (exclusive) of the `{...}` opened at `start`, skipping quoted strings."""
    depth, quote, i = 0, None, start
    limit = min(len(text), start + MAX_PY_DICT_CHARS)
    while i < limit:
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def first_python_dict(text: str) -> tuple[dict | None, tuple[int, int] | None]:
    """The first `{...}` that is a Python dict literal (single quotes, True/None...)."""
    text = text[:MAX_SCAN_CHARS]
    start = text.find("{")
    tries = 0
    while start != -1 and tries < 8:
        tries += 1
        end = _balanced_braces(text, start)
        if end is not None:
            try:
                obj = ast.literal_eval(text[start:end])
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                obj = None
            if isinstance(obj, dict):
                return obj, (start, end)
        start = text.find("{", start + 1)
    return None, None


_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


def _only_object(text: str, span: tuple[int, int]) -> bool:
    """True when nothing but whitespace (or a ``` fence around it) surrounds the object."""
    stripped = text.strip()
    m = _FENCE.match(stripped)
    inner = m.group(1).strip() if m else stripped
    obj_text = text[span[0]:span[1]]
    return inner == obj_text.strip()


# --------------------------------------------------------------------------- the prediction field

PREDICTION_FIELD = "prediction"  # the answer contract's key; the reference scripts read exactly this one


def _edit_distance(a: str, b: str, limit: int) -> int:
    """Levenshtein distance, stopping early once every path exceeds `limit`."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        if min(cur) > limit:
            return limit + 1
        prev = cur
    return prev[-1]


@functools.lru_cache(maxsize=4096)
def _near_prediction(key: str) -> bool:
    k = re.sub(r"[^a-z]", "", key.lower())
    return 7 <= len(k) <= 13 and _edit_distance(k, PREDICTION_FIELD, 2) <= 2


def is_prediction_key(key: Any, official: bool = False) -> bool:
    """THE rule for which key of an answer dict holds the answer.

    official: exactly "prediction" (the reference scripts' `.get("prediction", "")`).
    training (and diagnostics): "prediction" in any case, with separators, or misspelt by at most
    two edits ("Prediction", "PREDICTION", "predicton", "prediciton", "predictions"). Other keys
    ("answer", "reason", "pred") never count, so the reason can never stand in for the answer.
    """
    if not isinstance(key, str):
        return False
    if official or key == PREDICTION_FIELD:
        return key == PREDICTION_FIELD
    return len(key) <= 40 and _near_prediction(key)


def prediction_values(obj: dict, official: bool = False) -> list[Any]:
    """The values of every key of `obj` that counts as the prediction field (see is_prediction_key)."""
    return [v for k, v in obj.items() if is_prediction_key(k, official)]


def _find_prediction_dict(obj: dict, depth: int = 2) -> dict | None:
    """A dict carrying the prediction field: `obj` itself or a nested one ({"answer": {"prediction": "B"}})."""
    if prediction_values(obj):
        return obj
    if depth == 0:
        return None
    for v in obj.values():
        if isinstance(v, dict):
            found = _find_prediction_dict(v, depth - 1)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- letters

def _valid_letters(options: list[str] | tuple[str, ...] | None) -> str:
    n = len(options) if options else DEFAULT_OPTION_COUNT
    return LETTERS[: max(1, min(n, len(LETTERS)))]


_WRAP_CHARS = " \t\r\n*_`\"'“”‘’"

# "B", "(b)", "[B]", "B.", "B:", "Option B", "option (B)."
_ONE_LETTER = re.compile(r"(?:option|choice|answer)?\s*[\(\[]?\s*([A-Za-z])\s*[\)\]]?\s*[.:;!]?", re.IGNORECASE)
# "A or B", "A, B, C and D", "A/B", "(A) (C)"
# Separators are mutually exclusive (punctuation / or-and / bare spaces) so a failing
# match cannot backtrack exponentially; inputs are also capped at _SHORT chars.
_LETTER_LIST = re.compile(
    r"(?:options?\s+)?[\(\[]?[A-Ha-h][\)\]]?"
    r"(?:(?:\s*[,/&|;]\s*|\s+(?:or|and)\s+|\s+)(?:options?\s+)?[\(\[]?[A-Ha-h][\)\]]?)+[.!]?",
    re.IGNORECASE,
)
_SHORT = 200
# A letter that opens the answer and is followed by a delimiter: "B. scissors", "(B) scissors", "B:\n..."
_LEADING_TAG = re.compile(r"^[\(\[]\s*([A-Ha-h])\s*[\)\]]|^([A-Ha-h])\s*(?:[.:)\]](?![A-Za-z]\.)|\s-\s|\n)"
                          r"|^([A-H])\s+(?:is|would\s+be|should\s+be|seems)\b")  # "B is correct"
# A letter named after a cue word: "Answer: (B)", "the answer is B", "option C", "I choose D"
# Cue words in any case; the letter upper case, or lower case only before punctuation or
# the end ("the answer is a cat" names no letter, "answer: b." does).
_CUE_TAG = re.compile(
    r"\b(?i:answer|option|choice|prediction|letter|choose|select|pick|go\s+with)\s*"
    r"(?i:is|would\s+be|should\s+be|:|=|-)?\s*:?\s*[\(\[]?\s*"
    r"([A-H]|[a-h](?=\s*$|\s*[.)\]:,;]))\s*[\)\]]?(?![A-Za-z])",
)
_PAREN_TAG = re.compile(r"[\(\[]([A-H])[\)\]]")


def _dedupe(xs) -> tuple[str, ...]:
    return tuple(dict.fromkeys(xs))


def normalize_option_text(s: str) -> str:
    """Lower case, punctuation to spaces, arrows kept as words: for option-text matching."""
    s = s.lower().replace("→", " then ").replace("->", " then ")
    s = re.sub(r"[^0-9a-z.]+", " ", s)
    s = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", s)  # keep decimal points only
    return " ".join(s.split())


def mentioned_options(text: str, options, ignore: str = "") -> list[int]:
    """Indices of options whose text occurs in `text` as whole words.

    An option mentioned only inside a longer mentioned option ("decontact the battery"
    inside "decontact the battery connector") does not count. Options whose text occurs
    in `ignore` (the question) do not count either: naming the cat in "the cat plays
    with the ball" is not listing candidates.
    """
    if not options:
        return []
    hay = f" {normalize_option_text(text[:MAX_SCAN_CHARS])} "
    ignore_norm = f" {normalize_option_text(ignore)} " if ignore else ""
    needles: dict[int, str] = {}
    for i, opt in enumerate(options):
        needle = f" {normalize_option_text(str(opt))} "
        if needle.strip() and not (ignore_norm and needle in ignore_norm):
            needles[i] = needle
    # Overlapping finds: " a " in " a a " occurs twice, sharing a space.
    spans = {i: [(m.start(), m.start() + len(n)) for m in re.finditer(f"(?={re.escape(n)})", hay)]
             for i, n in needles.items()}
    kept = []
    for i, own in spans.items():
        if not own:
            continue
        longer = [s for j, n in needles.items() if j != i and len(n) > len(needles[i]) and needles[i] in n
                  for s in spans[j]]
        if not longer:
            kept.append(i)
            continue
        longer.sort()
        starts = [s for s, _ in longer]
        reach = list(itertools.accumulate((e for _, e in longer), max))  # furthest end among spans starting <= k
        for s, e in own:
            k = bisect.bisect_right(starts, s) - 1
            if k < 0 or reach[k] < e:  # some mention of i lies outside every longer mention
                kept.append(i)
                break
    return sorted(kept)


def resolve_letters(value: str, options=None) -> tuple[tuple[str, ...], str | None]:
    """The option letters a CloseQA answer names, and an issue code.

    Exactly one letter and issue None is a valid choice. Several letters is "ambiguous".
    """
    valid = _valid_letters(options)
    s = value.strip(_WRAP_CHARS)
    if not s:
        return (), "empty"
    s_short = s[:MAX_SCAN_CHARS]

    m = _ONE_LETTER.fullmatch(s_short) if len(s_short) <= _SHORT else None
    if m:
        letter = m.group(1).upper()
        return (letter,), (None if letter in valid else "invalid_letter")

    if len(s_short) <= _SHORT and _LETTER_LIST.fullmatch(s_short):
        core = re.sub(r"\boptions?\b|\bor\b|\band\b", " ", s_short, flags=re.IGNORECASE)
        letters = _dedupe(c.upper() for c in re.findall(r"[A-Za-z]", core))
        return _check(letters, valid)

    tags: list[str] = []
    m = _LEADING_TAG.match(s_short)
    if m:
        tags.append((m.group(1) or m.group(2) or m.group(3)).upper())
    tags += [x.upper() for x in _CUE_TAG.findall(s_short)]
    tags += [x for x in _PAREN_TAG.findall(s_short)]
    letters = _dedupe(tags)

    text_hits = [LETTERS[i] for i in mentioned_options(s_short, options)] if options else []
    if len(letters) == 1:
        # "B. hook" while B is "scissors": the letter is the answer, the text is flagged.
        rest_hits = [h for h in text_hits if h != letters[0]]
        letters_ok, issue = _check(letters, valid)
        if issue is None and rest_hits and letters[0] not in text_hits:
            issue = "letter_text_mismatch"
        return letters_ok, issue
    if letters:
        return _check(letters, valid)

    # No letter at all: the answer may be an option's text ("scissors").
    if options:
        norm = normalize_option_text(s_short)
        exact = [LETTERS[i] for i, o in enumerate(options) if normalize_option_text(str(o)) == norm]
        if len(exact) == 1:
            return (exact[0],), None
        if text_hits:
            return _check(tuple(text_hits), valid)
    return (), "no_answer"


def _check(letters: tuple[str, ...], valid: str) -> tuple[tuple[str, ...], str | None]:
    if not letters:
        return (), "no_answer"
    if len(letters) > 1:
        return letters, "ambiguous"
    return letters, (None if letters[0] in valid else "invalid_letter")


# --------------------------------------------------------------------------- main reader

# A field cut short or mangled: `{"prediction": "B"` (no closing brace); the key is checked by is_prediction_key.
_BROKEN_FIELD = re.compile(r"""["']([^"'\n]{1,30})["']\s*:\s*["']([^"'\n]{0,500})["']""")
_ANY_FIELD = re.compile(r"""\{\s*["'][^"'\n]{1,30}["']\s*:""")
_OPEN_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:answer|prediction)\s*[:：-]\s*", re.IGNORECASE)


def _as_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        parts = [_as_text(v) for v in value]
        return ", ".join(p for p in parts if p)
    return None


def _broken_field(text: str) -> str | None:
    for m in _BROKEN_FIELD.finditer(text[:MAX_SCAN_CHARS]):
        if is_prediction_key(m.group(1)):
            return m.group(2)
    return None


def parse_answer(text: Any, options=None, qa: str = "close") -> Parsed:
    """Parse one raw model output. Never raises; `text` may be anything.

    The answer is the prediction field only (`is_prediction_key`); an answer dict without one
    answers nothing (issue no_prediction_field): its reason never stands in. Free text is read
    as the answer only when the output holds no answer dict at all."""
    if qa not in QA_TYPES:
        raise ValueError(f"qa must be {' or '.join(repr(q) for q in QA_TYPES)}, got {qa!r}")
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    length = len(text)
    if not text.strip():
        return Parsed(None, False, source="none", issue="empty", length=length)

    obj, span = first_json_object(text)
    source = "json"
    if obj is None:
        obj, span = first_python_dict(text)
        source = "python"
    strict_json = source == "json"

    raw_value: Any = None
    reason: str | None = None
    has_pred = False
    duplicates = False
    if obj is not None:
        holder = _find_prediction_dict(obj)
        if holder is None:
            return Parsed(None, False, (), None, source, "no_prediction_field", None, length)
        if holder is not obj:
            source = "json_nested"
        values = prediction_values(holder)
        raw_value = values[0]
        r = holder.get("reason")
        reason = r if isinstance(r, str) else (None if r is None else str(r))
        has_pred = True
        duplicates = (any(v != raw_value for v in values[1:])
                      or any(is_prediction_key(k) for k in getattr(holder, "duplicates", ())))

    if not has_pred:
        broken = _broken_field(text)
        if broken is not None:  # JSON cut short or mangled: `{"prediction": "B"` (no closing brace)
            source, raw_value, has_pred = "json_broken", broken, True
        elif _ANY_FIELD.search(text[:MAX_SCAN_CHARS]):  # a broken answer dict without its prediction
            return Parsed(None, False, (), None, "json_broken", "no_prediction_field", None, length)
        else:  # No JSON at all: the whole output is the answer text.
            source = "text"
            raw_value = text[:MAX_SCAN_CHARS]
            if qa == "open":
                raw_value = _OPEN_PREFIX.sub("", raw_value, count=1)

    value = _as_text(raw_value)
    not_string = has_pred and not isinstance(raw_value, str)
    contract = (
        has_pred and strict_json and source == "json" and isinstance(raw_value, str)
        and PREDICTION_FIELD in obj and len(prediction_values(obj)) == 1
        and not duplicates and _only_object(text, span)
    )

    if value is None or not value.strip():
        issue = "not_string" if (value is None and has_pred and raw_value is not None) else "empty"
        return Parsed(None, False, (), reason, source, issue, None, length)

    if qa == "close":
        letters, issue = resolve_letters(value, options)
        if duplicates:
            issue = "duplicate_keys"
        prediction = letters[0] if (len(letters) == 1 and issue in (None, "letter_text_mismatch")) else None
        format_ok = contract and re.fullmatch(r"[A-Ha-h]", value.strip()) is not None and issue is None
        if issue is None and not_string:
            issue = "not_string"
        return Parsed(prediction, format_ok, letters, reason, source, issue, value[:MAX_RAW_CHARS], length)

    answer = value.strip()
    hits = tuple(LETTERS[i] for i in mentioned_options(answer, options)) if options else ()
    issue = "duplicate_keys" if duplicates else ("not_string" if not_string else None)
    return Parsed(answer if not duplicates else None, contract, hits, reason, source, issue, value[:MAX_RAW_CHARS],
                  length)


# --------------------------------------------------------------------------- official

def _official_first_braces(text: str) -> str | None:
    r"""What `re.search(r"\{[\s\S]*?\}", text)` matches (the first `{` up to the first `}`
    after it), in linear time: the regex is quadratic on "{{{{..." without a `}`."""
    start = text.find("{")
    if start == -1:
        return None
    end = text.find("}", start)
    return None if end == -1 else text[start:end + 1]


def official_extract(text: Any, qa: str = "close") -> tuple[Any, Any]:
    """(prediction, reason) exactly as the EgoCross reference scripts read them.

    The reference tries `json.loads(output)`, else the first non-greedy `{...}` match
    (so a nested object is cut at its first `}`), and takes `.get("prediction", "")`.
    For CloseQA it calls `.lower()` on the prediction inside the first try, so a
    non-string prediction there falls through to the regex. Anything that fails gives "".
    """
    text = text if isinstance(text, str) else ("" if text is None else str(text))
    try:
        obj = json.loads(text)
        pred, reason = obj.get(PREDICTION_FIELD, ""), obj.get("reason", "")
        if qa == "close":
            pred.lower()
        return pred, reason
    except Exception:  # noqa: BLE001, S110 - the reference falls back on any error
        pass
    first = _official_first_braces(text)
    if first is not None:
        try:
            obj = json.loads(first)
            return obj.get(PREDICTION_FIELD, ""), obj.get("reason", "")
        except Exception:  # noqa: BLE001, S110
            pass
    return "", ""
