"""Score raw model outputs against references: the one code path behind GRPO rewards and
`egoadapt score`.

Two modes:

official  reproduces the EgoCross reference scripts. CloseQA: the first JSON object's
          "prediction" equals the letter (case-insensitive, no other leniency). OpenQA:
          the answer inside the prediction scores mark 5 with no judge call (an int answer
          by the reference's integer rule), a non-string prediction against a text answer
          scores 0 (where the reference raises), otherwise the judge's mark; correct iff
          mark >= 4.
training  closes the loopholes a policy would learn to exploit: only an output committing
          to exactly one answer earns (rewards.commit: hedges, negations and lists earn
          nothing, decided before any judge call), empty or over-long answers earn nothing,
          the substring shortcut needs the answer alone, and answers with an exact form
          (counts, times, regions) are scored by task-aware rules before any judge is asked.

Rewards are in [0, 1]: CloseQA 0/1; OpenQA mark / 5, or the task-aware score.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from egoadapt.data.schema import CLOSE, LETTERS, OPEN, QA_TYPES, answer_from_columns, qa_type
from egoadapt.rewards import match
from egoadapt.rewards.commit import commitment
from egoadapt.rewards.judge import Judge, JudgeRequest, Verdict
from egoadapt.rewards.parse import MAX_RAW_CHARS, Parsed, official_extract, parse_answer

MODES = ("official", "training")


@dataclass(frozen=True)
class ScoringConfig:
    mode: str = "training"
    judge_pass_mark: float = 4.0  # correct iff mark >= this (official: 4)
    count_tolerance: int = 0
    iou_threshold: float = 0.5
    time_tolerance_s: float = 1.0
    time_window_s: float = 5.0
    max_output_chars: int = 4000  # training: longer outputs earn nothing
    max_prediction_chars: int = 300  # training: longer OpenQA answers earn nothing
    task_aware: bool = True  # training: counting / temporal / spatial rules for OpenQA

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"scoring mode must be one of {MODES}, got {self.mode!r}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None, **overrides: Any) -> ScoringConfig:
        """From a `reward` config node; keys that are not scoring settings (weights...) are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in dict(cfg or {}).items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _strip_letter_prefix(options: Sequence[Any]) -> tuple[str, ...]:
    """["A: 4", "B: 3"] -> ("4", "3"); plain option texts pass through."""
    texts = [str(o) for o in options]
    prefixed = all(len(t) >= 2 and t[0] == LETTERS[i] and t[1] == ":" for i, t in enumerate(texts))
    return tuple(t[2:].strip() for t in texts) if prefixed and texts else tuple(texts)


@dataclass(frozen=True)
class Target:
    """What an output is scored against."""

    qa: str  # close | open
    answer_letter: str | None = None
    answer_text: str | int | float | None = None  # a number as the answers file gives it (official: int rule)
    options: tuple[str, ...] = ()
    question: str = ""
    detailed_answer: str | None = None
    category: str = ""
    question_type: str = ""

    @classmethod
    def from_sample(cls, sample: Any, qa: str = "close") -> Target:
        """From an `egoadapt.data.schema.Sample`."""
        return cls(
            qa=qa_type(qa), answer_letter=sample.answer_letter, answer_text=sample.answer_text,
            options=tuple(sample.options), question=sample.question,
            detailed_answer=sample.detailed_answer, category=sample.category,
            question_type=sample.question_type,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Target:
        """From one dataset row (TRL reward kwargs). `qa` defaults to close when the row has
        options and a letter, else open."""
        options = _strip_letter_prefix(row.get("options") or ())
        letter = row.get("answer_letter")
        answer_text = answer_from_columns(row.get("answer_text"), row.get("answer_json"))
        if answer_text is None and letter and options:
            idx = LETTERS.find(str(letter).strip().upper())
            if 0 <= idx < len(options):
                answer_text = options[idx]
        qa = qa_type(row.get("qa") or (CLOSE if (options and letter) else OPEN))
        return cls(
            qa=qa, answer_letter=None if letter is None else str(letter),
            answer_text=answer_text if isinstance(answer_text, (str, int, float, type(None))) else str(answer_text),
            options=options,
            question=str(row.get("question") or ""), detailed_answer=row.get("detailed_answer"),
            category=str(row.get("category") or ""), question_type=str(row.get("question_type") or ""),
        )


@dataclass
class Score:
    qa: str
    prediction: str | None  # what was scored: the letter (close) or the answer text (open)
    format_ok: bool
    correct: bool
    reward: float  # in [0, 1], never NaN
    method: str  # letter | exact | substring | counting | temporal | spatial | judge | reference_error | none
    issue: str | None = None  # why it earned nothing: empty | ambiguous | too_long | lists_candidates | ...
    mark: float | None = None  # judge mark 0-5 (official substring shortcut: 5)
    judge_status: str | None = None  # ok | cached | deduped | failed | unparsable | budget_exhausted | unjudged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def zero_credit(self) -> str | None:
        """Why this output earned nothing (its issue, else "wrong"); None when it earned something."""
        return None if self.reward > 0 else (self.issue or "wrong")


# Why an output earns nothing, as the GRPO logs count them per step (zero_credit/<reason>); any
# other issue (judge faults, ...) is counted as "other".
ZERO_CREDIT_REASONS = ("hedge", "negation", "empty", "no_answer", "no_prediction_field", "not_string", "invalid_letter",
                       "duplicate_keys", "too_long", "wrong_candidate", "wrong", "unjudged")


def _pred_str(value: Any) -> str | None:
    if value is None or value == "":
        return None if value is None else ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --------------------------------------------------------------------------- per-mode rules
# Each rule returns either a finished Score or a (Score-so-far, JudgeRequest) pair whose
# mark is filled in after the batch's judge calls.

def _official(output: str, t: Target, cfg: ScoringConfig, parsed: Parsed):
    if t.qa == "close":
        pred, _ = official_extract(output, "close")
        ok = isinstance(pred, str) and t.answer_letter is not None and pred.lower() == t.answer_letter.lower()
        return Score("close", _pred_str(pred), parsed.format_ok, ok, float(ok), "letter",
                     None if ok else (parsed.issue or "wrong"))
    pred, _ = official_extract(output, "open")
    hit = match.official_substring(t.answer_text, pred)
    if hit is None:  # the reference raises on `.lower()` of a non-string: 5 retries, then "[ERROR]", mark 0
        return Score("open", _pred_str(pred), parsed.format_ok, False, 0.0, "reference_error", "not_string", mark=0.0)
    if hit:
        return Score("open", _pred_str(pred), parsed.format_ok, True, 1.0, "substring", mark=5.0)
    score = Score("open", _pred_str(pred), parsed.format_ok, False, 0.0, "judge")
    return score, _judge_request(t, str(pred))  # the reference's prompt holds str(prediction)


# Parse issues that mean the output named several answers: one name in training mode.
_HEDGE_ISSUES = {"ambiguous", "letter_text_mismatch"}


def _training(output: str, t: Target, cfg: ScoringConfig, parsed: Parsed):
    def nothing(issue: str, method: str = "none") -> Score:
        return Score(t.qa, parsed.prediction, parsed.format_ok, False, 0.0, method, issue)

    if parsed.length > cfg.max_output_chars or len(parsed.raw or "") >= MAX_RAW_CHARS:
        return nothing("too_long")
    if parsed.issue == "duplicate_keys":
        return nothing("duplicate_keys")
    kind = match.task_kind(t.category, t.question_type) if cfg.task_aware else None
    if t.qa == "close":
        if parsed.raw:  # a hedge or negation is named as such even where no single letter was read
            c = commitment(parsed.raw, qa="close", options=t.options, answer=t.answer_text, question=t.question,
                           kind=kind)
            if c.issue:
                return nothing(c.issue, "letter")
        if parsed.prediction is None or parsed.issue in _HEDGE_ISSUES:
            return nothing("hedge" if parsed.issue in _HEDGE_ISSUES else (parsed.issue or "no_answer"), "letter")
        ok = match.letter_match(parsed.prediction, t.answer_letter)
        return Score("close", parsed.prediction, parsed.format_ok, ok, float(ok), "letter",
                     None if ok else (parsed.issue or "wrong"))

    pred = parsed.prediction
    if not pred or not pred.strip():
        return nothing(parsed.issue or "empty")
    if len(pred) > cfg.max_prediction_chars:
        return nothing("too_long")
    if t.answer_text is None:
        return nothing("no_reference")
    # One answer or nothing: hedges, negations and lists are decided here, before any judge call.
    c = commitment(pred, qa="open", options=t.options, answer=t.answer_text, question=t.question, kind=kind)
    if c.issue:
        return nothing(c.issue)
    head = c.head
    if match.exact_match(head, t.answer_text):
        return Score("open", pred, parsed.format_ok, True, 1.0, "exact")

    if kind == "counting":
        v = match.count_score(c.core, t.answer_text, cfg.count_tolerance)
        if v is not None:
            return Score("open", pred, parsed.format_ok, v >= 1.0, v, "counting")
    elif kind == "temporal":
        r = match.temporal_score(c.core, t.answer_text, cfg.iou_threshold, cfg.time_tolerance_s, cfg.time_window_s)
        if r is not None:
            return Score("open", pred, parsed.format_ok, r.correct, match.finite(r.score), "temporal")
    elif kind == "spatial":
        hit = match.region_match(c.core, t.answer_text)
        if hit is not None:
            return Score("open", pred, parsed.format_ok, hit, float(hit), "spatial")

    named = [x for x in c.candidates if x == "answer" or x in LETTERS] or list(c.question_named)
    answer_norm = match.normalize_text(t.answer_text)
    names_answer = any(x == "answer" or (LETTERS.index(x) < len(t.options)  # duplicate option texts: any copy
                                         and match.normalize_text(t.options[LETTERS.index(x)]) == answer_norm)
                       for x in named)
    if named and not names_answer:  # one candidate, not the answer: wrong without asking the judge
        return nothing("wrong_candidate")
    if names_answer and c.free_words == 0:  # the answer, in words that add nothing else
        return Score("open", pred, parsed.format_ok, True, 1.0, "substring", mark=5.0)
    return Score("open", pred, parsed.format_ok, False, 0.0, "judge"), _judge_request(t, head)


def _judge_request(t: Target, prediction: str) -> JudgeRequest:
    return JudgeRequest(
        question=t.question, reference=str(t.answer_text if t.answer_text is not None else ""),
        detailed_reference=str(t.detailed_answer or ""), prediction=prediction,
    )


def _apply_verdict(score: Score, verdict: Verdict | None, cfg: ScoringConfig) -> Score:
    if verdict is None:  # no judge configured: the answer stays unscored (counted in summaries)
        score.judge_status = "unjudged"
        score.issue = score.issue or "unjudged"
        return score
    mark = match.finite(verdict.mark)
    score.mark = mark
    score.judge_status = verdict.status
    score.reward = match.finite(mark / 5.0)
    score.correct = verdict.judged and mark >= cfg.judge_pass_mark
    if not verdict.judged:
        score.issue = f"judge_{verdict.status}"
    return score


# --------------------------------------------------------------------------- entry point

def score_outputs(
    outputs: Sequence[Any],
    targets: Sequence[Target],
    cfg: ScoringConfig | None = None,
    judge: Judge | None = None,
) -> list[Score]:
    """Score a batch. Judge calls for the whole batch run concurrently (and deduplicated).
    Never raises on model output; never returns a NaN reward."""
    cfg = cfg or ScoringConfig()
    if len(outputs) != len(targets):
        raise ValueError(f"{len(outputs)} outputs but {len(targets)} targets")
    rule = _official if cfg.mode == "official" else _training
    scores: list[Score] = []
    pending: list[tuple[int, JudgeRequest]] = []
    parses: dict[tuple, Parsed] = {}
    for i, (out, t) in enumerate(zip(outputs, targets)):
        text = out if isinstance(out, str) else ("" if out is None else str(out))
        if t.qa not in QA_TYPES:
            raise ValueError(f"target {i}: qa must be 'close' or 'open', got {t.qa!r}")
        key = (text, t.options, t.qa)  # one parse per output and option set (a GRPO group, the audit's priors)
        parsed = parses.get(key)
        if parsed is None:
            parsed = parses[key] = parse_answer(text, t.options or None, t.qa)
        result = rule(text, t, cfg, parsed)
        if isinstance(result, tuple):
            score, request = result
            pending.append((i, request))
        else:
            score = result
        scores.append(score)
    if pending:
        verdicts = judge.judge_many([r for _, r in pending]) if judge is not None else [None] * len(pending)
        for (i, _), v in zip(pending, verdicts):
            _apply_verdict(scores[i], v, cfg)
    for s in scores:
        s.reward = min(1.0, max(0.0, match.finite(s.reward)))
    return scores
