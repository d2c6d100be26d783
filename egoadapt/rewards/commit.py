"""Does a prediction commit to exactly one answer? Training mode asks this before any match or
judge call, for every question type, whether or not the other candidates are options.

    c = commitment("most likely hook, or perhaps scissors", qa="open", options=..., answer="hook")
    c.issue -> "hedge"; c.head -> "most likely hook, or perhaps scissors"

A prediction earns nothing (issue) when it
- names two candidates: option texts, option letters (CloseQA), the reference answer, or two
  counts / time spans / regions for those tasks ("3 or 4", "2-4s, 6-8s", "top left, center");
- holds a disjunction anywhere ("X or Y", "X/Y", "either", "alternatively"): hedge;
- lists several answers in its head, known or not ("kitchen, garage and garden",
  "hook; maybe scissors"): hedge;
- negates anything ("not X", "definitely not X", "it isn't X", "anything but X"): negation.

Words the question itself uses are not the model's hedging: "fully or partially visible" or "NOT
visible" copied from the question are skipped, and options the question names are not
candidates. Text that is an option or the reference answer is one candidate whatever it holds
("left or right side", "not visible").

The head is the answer before any justification ("X because ...", "X. It is ..."): only the head
is matched and judged, and the list rule reads only the head; the rest is still checked for
other candidates, disjunctions and negations, so a hedge cannot hide after a full stop.
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from egoadapt.data.schema import LETTERS
from egoadapt.rewards import match

MAX_CHARS = 4_000  # longer predictions are refused by length before this runs

_TOKEN = re.compile(r"\d+(?:\.\d+)?[A-Za-z]*|[A-Za-z]+|\n|[^\sA-Za-z0-9]")
_KEPT_PUNCT = {",", ";", "/", "&", "+", "|", ".", "!", "?", "\n"}  # other punctuation is dropped ("top-left")
_ARTICLES = {"a", "an", "the"}
NEGATIONS = {"not", "never", "neither", "nor", "none", "except", "excluding", "without", "wrong", "incorrect",
             "false", "unlikely", "no", "nope"}
_NEGATION_PAIRS = {("other", "than"), ("rather", "than"), ("instead", "of"), ("anything", "but")}
DISJUNCTIONS = {"or", "either", "alternatively", "otherwise", "vs", "versus", "/", "whether"}
_LIST_WORDS = {",", ";", "&", "+", "|", "\n", "and", "plus", "maybe", "perhaps", "possibly", "also"}
_LIST_PHRASES = (("as", "well", "as"), ("along", "with"), ("together", "with"), ("in", "addition", "to"))
_TAIL_HEDGES = {"maybe", "perhaps", "possibly"}  # opening a later sentence: "X. Maybe Y."
_SEQUENCE_WORDS = {",", "and", "\n", ";", "/"}  # stand for "then" (→) inside a sequence answer: "walk, left, run"
_JUSTIFY = {"because", "since", "due", "given", "so", "which", "reason", "reasoning", "explanation"}
_SENTENCE_END = {".", "!", "?"}
# Words that carry no answer of their own: a segment made only of them is not a second answer.
_FILLER = set("""
answer answers final prediction predicted option choice letter correct best closest most likely probably
definitely certainly clearly surely obviously is are was were be been being would will should could can
it its this that these those there here i me my we our you think believe guess say says said
seems seem seemed appears appear appeared looks look looked like sure confident
to of in on at from by with for into onto based video clip segment frames frame footage image images view
shown seen observed visible opinion overall well yes ok okay so what s d ll re ve m
do does did has have had one the a an then as
held hold holds holding use uses used using tool object item thing action activity animal sport instrument
performed performing happening doing done main displayed being currently type kind
""".split())


@dataclass(frozen=True)
class Commitment:
    head: str  # the answer before any justification: what is matched and judged
    core: str  # the head without spans copied from the question: what counts / times / regions are read from
    issue: str | None  # hedge | negation | None
    candidates: tuple[str, ...] = ()  # the distinct candidates named (option letters, "answer", typed values)
    free_words: int = 0  # head words that are neither a candidate, filler nor the question's own
    question_named: tuple[str, ...] = ()  # options the question itself names ("cat" in "what is the cat...?")


@dataclass(frozen=True)
class _Tok:
    text: str  # lower case
    raw: str
    start: int
    end: int


def _tokens(text: str) -> list[_Tok]:
    out = []
    for m in _TOKEN.finditer(text):
        raw = m.group()
        low = raw.lower()
        if not low[0].isalnum() and low not in _KEPT_PUNCT:
            continue
        if low == "t" and out and out[-1].text.endswith("n"):  # isn't, don't, can't -> not
            out[-1] = _Tok(out[-1].text[:-1], out[-1].raw, out[-1].start, out[-1].end)
            low = "not"
        out.append(_Tok(low, raw, m.start(), m.end()))
    return out


@functools.lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    """Lower-case tokens without articles: the unit option texts and echoes are compared in."""
    return tuple(t.text for t in _tokens(_prepare(text)) if t.text not in _ARTICLES)


def _prepare(text: str) -> str:
    s = unicodedata.normalize("NFKC", text[:MAX_CHARS])
    return s.replace("→", " then ").replace("->", " then ").replace("’", "'")


@functools.lru_cache(maxsize=65536)
def _stem(w: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            return w[: -len(suffix)]
    return w


def commitment(value: str, *, qa: str, options: Sequence[Any] = (), answer: Any = None, question: str = "",
               kind: str | None = None) -> Commitment:
    """Decide whether `value` (the prediction field's text) commits to exactly one answer."""
    text = _prepare(value)
    toks = [t for t in _tokens(text) if t.text not in _ARTICLES or _is_letter_ref(t, qa)]
    words = [t.text for t in toks]
    n = len(toks)

    # ---- candidates: option texts (longest first), the reference answer, CloseQA letters
    q_words = _words(question)
    q_text = f" {' '.join(q_words)} "
    answer_words = _words(str(answer)) if answer is not None and str(answer).strip() else ()
    needles: list[tuple[tuple[str, ...], str]] = []
    for i, opt in enumerate(options):
        w = _words(str(opt))
        if w and w == answer_words:
            answer_words = ()  # the answer is this option: one candidate, by its letter
        if w:  # an option the question names ("?B") is no candidate where it plays its part in the question
            needles.append((w, ("?" if f" {' '.join(w)} " in q_text else "") + LETTERS[i]))
    if answer_words:
        needles.append((answer_words, ("?" if f" {' '.join(answer_words)} " in q_text else "") + "answer"))
    needles.sort(key=lambda x: -len(x[0]))
    cand: list[str | None] = [None] * n
    i = 0
    while i < n:
        for w, cid in needles:
            if _same_words(words[i:i + len(w)], w, kind == "sequence"):
                for k in range(i, i + len(w)):
                    cand[k] = cid
                i += len(w)
                break
        else:
            if _is_letter_ref(toks[i], qa) and toks[i].raw in LETTERS:  # "E" of four options is a candidate too
                cand[i] = toks[i].raw
            i += 1

    # ---- echoes of the question: bigrams it contains (neither word a candidate)
    q_bigrams = set(zip(q_words, q_words[1:]))
    q_trigrams = set(zip(q_words, q_words[1:], q_words[2:]))
    echo = [False] * n
    for k in range(n - 1):
        if cand[k] is None and cand[k + 1] is None and (words[k], words[k + 1]) in q_bigrams:
            echo[k] = echo[k + 1] = True
    q_stems = {_stem(w) for w in q_words}

    if qa == "open" and kind in _TYPED:
        _mark_typed(text, toks, cand, echo, kind, options, answer)

    def live(k: int) -> bool:
        return cand[k] is None and not echo[k]

    # ---- the head: up to the first justification or sentence end after some answer content;
    # justifications ("because ...", up to the sentence end) are exempt from the negation and
    # disjunction checks, later sentences are not
    cut = n
    justified = [False] * n
    in_reason = False
    for k in range(n):
        w = words[k]
        if w in _SENTENCE_END and k + 1 < n and toks[k + 1].start == toks[k].end and w == ".":
            continue  # "e.g", "approx.5": not a sentence end
        starts = (w in _JUSTIFY or w in _SENTENCE_END) and live(k)
        if starts and cut == n and any(cand[j] or (live(j) and words[j] not in _FILLER and not _is_punct(words[j]))
                                       for j in range(k)):
            cut = k
        if w in _SENTENCE_END:
            in_reason = False
        elif w in _JUSTIFY and live(k) and k >= cut:
            in_reason = True
        justified[k] = in_reason
    head = text[: toks[cut].start] if cut < n else text
    head = head.strip()

    # ---- core: the head without the question's own phrases (its time window, "not visible", ...)
    core_parts, last = [], 0
    for k in range(cut):
        if echo[k]:
            core_parts.append(text[last:toks[k].start])
            last = toks[k].end
    core_parts.append(text[last:toks[cut].start] if cut < n else text[last:])
    core = " ".join(p.strip() for p in core_parts if p.strip())

    named = tuple(dict.fromkeys(c for c in cand if c and c[0] != "?"))
    question_named = tuple(dict.fromkeys(c[1:] for c in cand[:cut] if c and c[0] == "?"))
    free = [k for k in range(cut) if live(k) and not _is_punct(words[k]) and words[k] not in _FILLER
            and _stem(words[k]) not in q_stems]

    def verdict(issue: str | None, extra: tuple[str, ...] = ()) -> Commitment:
        return Commitment(head, core, issue, named + extra, len(free), question_named)

    # ---- negation anywhere (not inside an option, the answer, or the question's own "NOT visible")
    for k in range(n):
        if cand[k] or justified[k]:
            continue
        w = words[k]
        nxt = words[k + 1] if k + 1 < n else ""
        if w in NEGATIONS:
            if w in ("no", "none") and kind == "counting":
                continue  # "no tools": a count of zero
            if (w, nxt) in q_bigrams and cand[k + 1] is None:
                continue  # the question's own "NOT visible"
            return verdict("negation")
        if (w, nxt) in _NEGATION_PAIRS and (w, nxt) not in q_bigrams:
            return verdict("negation")

    # ---- two candidates anywhere; a disjunction anywhere
    if len(named) > 1:
        return verdict("hedge")
    for k in range(n):
        if cand[k] or justified[k]:
            continue
        if k > cut and words[k] in _TAIL_HEDGES:
            return verdict("hedge")  # "X. Maybe Y."
        if words[k] not in DISJUNCTIONS:
            continue
        if 0 < k < n - 1 and cand[k - 1] is None and cand[k + 1] is None:
            if (words[k - 1], words[k], words[k + 1]) in q_trigrams:
                continue  # the question's own "fully or partially visible"
            if words[k] == "/" and words[k - 1].isdigit() and words[k + 1].isdigit():
                continue  # 1/2: a fraction
        return verdict("hedge")

    # ---- several answers listed in the head
    joined = {k for k in range(cut) for phrase in _LIST_PHRASES
              if tuple(words[k:k + len(phrase)]) == phrase and all(live(j) for j in range(k, k + len(phrase)))}
    inside = {j for k in joined for phrase in _LIST_PHRASES if tuple(words[k:k + len(phrase)]) == phrase
              for j in range(k + 1, k + len(phrase))}
    free_set = set(free) - inside
    answers: set[str] = set()
    free_segments = 0
    seg_cands: set[str] = set()
    seg_free = False
    for k in range(cut + 1):
        end = k == cut
        if end or k in joined or (live(k) and words[k] in _LIST_WORDS):
            named_here = {c for c in seg_cands if c[0] != "?"}
            if named_here:
                answers |= named_here
            elif seg_free:
                free_segments += 1
            elif seg_cands:  # a question-named option standing alone: "hook, cat"
                answers |= {c[1:] for c in seg_cands}
            seg_cands, seg_free = set(), False
            continue
        if cand[k]:
            seg_cands.add(cand[k])
        elif k in free_set:
            seg_free = True
    if len(answers) + free_segments > 1:
        return verdict("hedge")
    return verdict(None)


def _same_words(got: list[str], want: tuple[str, ...], sequence: bool) -> bool:
    if len(got) != len(want):
        return False
    return all(g == w or sequence and w == "then" and g in _SEQUENCE_WORDS for g, w in zip(got, want))


def _is_punct(w: str) -> bool:
    return not any(c.isalnum() for c in w)


def _is_letter_ref(t: _Tok, qa: str) -> bool:
    """An option letter as written in CloseQA: a single capital ("B", "(B)"), not the article "a"."""
    return qa == "close" and len(t.raw) == 1 and t.raw.isalpha() and t.raw.isupper()


_TYPED = ("counting", "temporal", "spatial")
_RATE_UNITS = {"s", "sec", "secs", "second", "seconds", "min", "mins", "minute", "minutes", "fps", "%", "percent"}
_HANDS = {"hand", "hands", "side"}


def _typed_id(text: str, kind: str) -> str | None:
    """The one count / time / region a text gives, as a candidate id; None if none or several."""
    if kind == "counting":
        values = match.count_values(text)
        return f"count:{next(iter(values)):g}" if len(values) == 1 else None
    if kind == "temporal":
        times = match.parse_times(text)
        return f"time:{times[0].start:g}-{times[0].end:g}" if len(times) == 1 else None
    regions = match.region_values(text)
    return "region:{}-{}".format(*next(iter(regions))) if len(regions) == 1 else None


def _mark_typed(text: str, toks: list[_Tok], cand: list, echo: list, kind: str, options, answer) -> None:
    """OpenQA counting / temporal / spatial: every count, time or region is a candidate ("3 or 4" names
    two), the same one as an option or the answer giving that value; the question's own (its time
    window) is not."""
    same: dict[str, str] = {}
    for cid, t in [*((LETTERS[i], str(o)) for i, o in enumerate(options)), ("answer", str(answer))]:
        typed = _typed_id(t, kind) if t.strip() and t != "None" else None
        if typed:
            same[cid] = typed
    for k, c in enumerate(cand):
        if c and c.lstrip("?") in same:
            cand[k] = same[c.lstrip("?")]
    n = len(toks)
    if kind == "temporal":
        for interval, start, end in match.time_matches(text):
            ks = [k for k in range(n) if start <= toks[k].start < end]
            if ks and not any(echo[k] for k in ks):
                for k in ks:
                    cand[k] = cand[k] or f"time:{interval.start:g}-{interval.end:g}"
        return
    k = 0
    while k < n:
        w = toks[k].text
        if cand[k] or echo[k]:
            k += 1
            continue
        if kind == "counting":
            nxt = toks[k + 1].text if k + 1 < n else ""
            if re.fullmatch(r"\d+(?:\.\d+)?", w) and nxt not in _RATE_UNITS:
                cand[k] = f"count:{float(w):g}"
            elif w in match.NUMBER_WORDS and w != "no" or w == "no" and n == 1:
                cand[k] = f"count:{match.NUMBER_WORDS[w]:g}"
            k += 1
            continue
        run = k  # spatial: a run of region words is one region ("top left", "upper-left")
        while run < n and toks[run].text in match.REGION_WORDS and not cand[run] and not echo[run]:
            run += 1
        if run == k:
            k += 1
            continue
        if run < n and toks[run].text in _HANDS and toks[run - 1].text in ("left", "right"):
            k = run  # "left hand": a hand, not a region
            continue
        words = [toks[j].text for j in range(k, run)]
        region = match.region_of(words)
        for j in range(k, run):  # contradictory ("top bottom"): each word its own candidate, so two
            cand[j] = "region:{}-{}".format(*region) if region else f"region:?{toks[j].text}"
        k = run
