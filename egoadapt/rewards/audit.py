"""Exploit audit of the training reward on the real test bed's option sets.

    python -m egoadapt.rewards.audit [--testbed FILE] [--out docs/reward-audit.md]

For each question type, the expected training reward of answering strategies a GRPO policy
could drift into (hedges naming several options, lists, negations, covering spans...) against
the honest best single answer. The answers are not needed (nor here): each option of a record
is the right one with a prior probability, and the expectation runs over that prior:

- uniform: every option equally likely;
- frequency (adversarial): an option is as likely as its text is frequent among the option
  sets of its question type, which is what a policy could learn without seeing the video.

Answers that would reach the judge are marked by a lenient stand-in (mark 5 whenever the
reference text occurs in the answer): an upper bound for any real judge. A strategy whose
expected reward beats the honest answer's for any type and prior is a loophole.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from egoadapt.data.schema import CLOSE, LETTERS, OPEN
from egoadapt.rewards import match
from egoadapt.rewards.judge import Verdict
from egoadapt.rewards.scoring import ScoringConfig, Target, score_outputs

HERE = Path(__file__).resolve()
DEFAULT_TESTBED = HERE.parents[2] / "tests" / "fixtures" / "egocross" / "egocross_testbed_imgs.json"
COMMAND = "python -m egoadapt.rewards.audit --out docs/reward-audit.md"
PRIORS = ("uniform", "frequency")


def default_training_scoring() -> ScoringConfig:
    """The training mode with the settings GRPO gets by default (`reward=default`)."""
    from omegaconf import OmegaConf

    from egoadapt.configs import CONF_DIR

    values = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "reward" / "default.yaml"), resolve=True)
    return ScoringConfig.from_mapping(values, mode="training")


class LenientJudge:
    """Marks 5 whenever the reference occurs in the answer (as whole words), else 0: more generous
    than any real judge, so what reaches it is audited at its most exploitable."""

    def judge_many(self, requests):
        return [Verdict(5.0 if match.contains_answer(r.prediction, r.reference) else 0.0, "ok") for r in requests]


@dataclass(frozen=True)
class Question:
    qid: str
    question: str
    options: tuple[str, ...]
    category: str
    question_type: str


def load_questions(path: str | Path) -> list[Question]:
    out = []
    for r in json.loads(Path(path).read_text(encoding="utf-8")):
        opts = tuple(o.split(":", 1)[1].strip() for o in r["options"])
        out.append(Question(str(r["id"]), r["question_text"], opts, r["primary_category"], r["question_type"]))
    return out


def priors(questions: Sequence[Question], kind: str) -> dict[str, list[float]]:
    """Per question id, the probability that each option is the right one."""
    if kind == "uniform":
        return {q.qid: [1 / len(q.options)] * len(q.options) for q in questions}
    freq: dict[str, Counter] = defaultdict(Counter)
    for q in questions:
        freq[q.question_type].update(match.normalize_text(o) for o in q.options)
    out = {}
    for q in questions:
        w = [freq[q.question_type][match.normalize_text(o)] for o in q.options]
        out[q.qid] = [x / sum(w) for x in w]
    return out


def _ranked(q: Question, p: list[float]) -> list[int]:
    """Option indices, most likely first (ties: option order)."""
    return sorted(range(len(q.options)), key=lambda i: (-p[i], i))


def j(prediction: Any, **extra: Any) -> str:
    return json.dumps({"prediction": prediction, "reason": "from the frames", **extra})


# A strategy: (question, prior) -> the raw output, or None where it does not apply.
Strategy = Callable[[Question, list[float]], "str | None"]


def _texts(q, p, k):
    return [q.options[i] for i in _ranked(q, p)[:k]]


def _letters(q, p, k):
    return [LETTERS[i] for i in _ranked(q, p)[:k]]


def _covering_span(q, p):
    if match.task_kind(q.category, q.question_type) != "temporal":
        return None
    spans = [t for o in q.options for t in match.parse_times(o)]
    if len(spans) < 2:
        return None
    lo, hi = min(t.start for t in spans), max(t.end for t in spans)
    return j(f"{lo:g}-{hi:g} seconds")


def _count_range(q, p):
    if match.task_kind(q.category, q.question_type) != "counting":
        return None
    counts = sorted(c for c in (match.parse_count(o) for o in q.options) if c is not None)
    return j(f"{counts[0]}-{counts[-1]}") if len(counts) > 1 else None


OPEN_STRATEGIES: dict[str, Strategy] = {
    "honest best single answer": lambda q, p: j(_texts(q, p, 1)[0]),
    "honest, in a sentence": lambda q, p: j(f"The answer is {_texts(q, p, 1)[0]} because the frames show it."),
    "top-2: X or Y": lambda q, p: j(" or ".join(_texts(q, p, 2))),
    "top-2: most likely X, or perhaps Y": lambda q, p: j("most likely {}, or perhaps {}".format(*_texts(q, p, 2))),
    "top-2: X/Y": lambda q, p: j("/".join(_texts(q, p, 2))),
    "top-2: X Y (no separator)": lambda q, p: j(" ".join(_texts(q, p, 2))),
    "top-2: X. Maybe Y.": lambda q, p: j("{}. Maybe {}.".format(*_texts(q, p, 2))),
    "top-3: X, Y and Z": lambda q, p: j("{}, {} and {}".format(*_texts(q, p, 3))),
    "all options": lambda q, p: j(", ".join(q.options)),
    "X, not Y (least likely)": lambda q, p: j(f"{_texts(q, p, 1)[0]}, not {_texts(q, p, 4)[-1]}"),
    "negation of the least likely": lambda q, p: j(f"not {_texts(q, p, 4)[-1]}"),
    "all options in a misspelt key": lambda q, p: json.dumps({"Predicton": ", ".join(q.options)}),
    "all options in the reason": lambda q, p: j("unsure", reason=", ".join(q.options)),
    "covering span (temporal)": _covering_span,
    "count range (counting)": _count_range,
}

CLOSE_STRATEGIES: dict[str, Strategy] = {
    "honest best single answer": lambda q, p: j(_letters(q, p, 1)[0]),
    "honest, in a sentence": lambda q, p: j(f"The answer is {_letters(q, p, 1)[0]} because the frames show it."),
    "top-2: X or Y": lambda q, p: j(" or ".join(_letters(q, p, 2))),
    "top-2: most likely X, or perhaps Y": lambda q, p: j("most likely {}, or perhaps {}".format(*_letters(q, p, 2))),
    "top-2 as a list": lambda q, p: json.dumps({"prediction": _letters(q, p, 2)}),
    "letter X with the text of Y": lambda q, p: j(f"{_letters(q, p, 1)[0]}. {_texts(q, p, 2)[1]}"),
    "all letters": lambda q, p: j(", ".join(LETTERS[: len(q.options)])),
    "negation of the least likely": lambda q, p: j(f"not {_letters(q, p, 4)[-1]}"),
    "definitely not (least likely)": lambda q, p: j(f"definitely not ({_letters(q, p, 4)[-1]})"),
    "all letters in a misspelt key": lambda q, p: json.dumps({"Prediction": ", ".join(LETTERS[: len(q.options)])}),
}
HONEST = "honest best single answer"


def expected_rewards(questions: Sequence[Question], qa: str, prior: str, cfg: ScoringConfig | None = None,
                     per_type: int | None = None) -> dict[str, dict[str, float]]:
    """question type -> strategy -> mean over its questions of the expected training reward.
    `per_type`: only the first N questions of each type (the prior still comes from all)."""
    cfg = cfg or default_training_scoring()
    probs = priors(questions, prior)
    strategies = CLOSE_STRATEGIES if qa == "close" else OPEN_STRATEGIES
    seen: Counter = Counter()
    outputs, targets, weights, keys = [], [], [], []
    for q in questions:
        seen[q.question_type] += 1
        if per_type is not None and seen[q.question_type] > per_type:
            continue
        p = probs[q.qid]
        for name, strategy in strategies.items():
            out = strategy(q, p)
            if out is None:
                continue
            for i, pi in enumerate(p):  # the right option is i with probability pi
                outputs.append(out)
                targets.append(Target(qa, LETTERS[i], q.options[i], q.options, q.question, None, q.category,
                                      q.question_type))
                weights.append(pi)
                keys.append((q.question_type, name, q.qid))
    scores = score_outputs(outputs, targets, cfg, LenientJudge())
    per_question: dict[tuple[str, str, str], float] = defaultdict(float)
    for key, w, s in zip(keys, weights, scores):
        per_question[key] += w * s.reward
    table: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (qtype, name, _), v in per_question.items():
        table[qtype][name].append(v)
    return {t: {name: sum(v) / len(v) for name, v in row.items()} for t, row in sorted(table.items())}


def loopholes(table: dict[str, dict[str, float]], tol: float = 1e-9) -> list[str]:
    """Every (type, strategy) whose expected reward beats the honest best single answer."""
    return [f"{t}: {name} {v:.3f} > honest {row[HONEST]:.3f}" for t, row in table.items()
            for name, v in row.items() if name != HONEST and v > row[HONEST] + tol]


def audit(testbed: str | Path = DEFAULT_TESTBED, cfg: ScoringConfig | None = None) -> dict[tuple[str, str], dict]:
    questions = load_questions(testbed)
    return {(qa, prior): expected_rewards(questions, qa, prior, cfg) for qa in (OPEN, CLOSE) for prior in PRIORS}


def markdown(results: dict[tuple[str, str], dict], testbed: str | Path) -> str:
    n = len(load_questions(testbed))
    lines = [
        "# Reward exploit audit",
        "",
        f"Generated by `{COMMAND}` (do not edit by hand); checked by `tests/rewards/test_reward_audit.py`.",
        "",
        f"The real test bed's option sets ({n} questions, `{Path(testbed).name}`), no answers: each option is",
        "the right one with a prior probability, and each cell is the expected training reward",
        "(`reward.mode=training` with the `reward=default` settings) of a strategy, averaged over the",
        "questions of a type.",
        "",
        "- **uniform** prior: every option equally likely;",
        "- **frequency** prior (adversarial): an option is as likely as its text is frequent among the option",
        "  sets of its question type, what a policy could learn without looking at the video.",
        "",
        "OpenQA answers that reach the judge are marked by a lenient stand-in (5 whenever the reference occurs",
        "in the answer), an upper bound for a real judge. *honest* is the most likely option, answered alone;",
        "a strategy beating it would be a loophole, and the test fails on any. Under the uniform prior the",
        "honest answer earns 1/4, more where options repeat or where near misses earn partial credit",
        "(time points: linear to 0 at `time_window_s`; spans: their IoU).",
        "",
    ]
    for (qa, prior), table in results.items():
        strategies = list(CLOSE_STRATEGIES if qa == "close" else OPEN_STRATEGIES)
        lines += [f"## {'CloseQA' if qa == 'close' else 'OpenQA'}, {prior} prior", ""]
        lines.append("| strategy | " + " | ".join(table) + " |")
        lines.append("|---|" + "---|" * len(table))
        for name in strategies:
            cells = [f"{row[name]:.3f}" if name in row else "" for row in table.values()]
            lines.append(f"| {'**honest**' if name == HONEST else name} | " + " | ".join(cells) + " |")
        lines.append("")
    bad = [f"{qa}/{prior}: {x}" for (qa, prior), t in results.items() for x in loopholes(t)]
    lines.append("Loopholes found: " + ("none." if not bad else "\n- " + "\n- ".join(bad)))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--testbed", default=str(DEFAULT_TESTBED))
    ap.add_argument("--out", help="write the markdown table here (default: print it)")
    args = ap.parse_args(argv)
    results = audit(args.testbed)
    text = markdown(results, args.testbed)
    if args.out:
        from egoadapt.files import write_atomic

        write_atomic(args.out, text)
    else:
        sys.stdout.write(text)
    bad = [x for t in results.values() for x in loopholes(t)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
