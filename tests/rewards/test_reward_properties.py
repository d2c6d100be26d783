"""Property tests of the training reward on the real test bed's questions and option sets
(hypothesis draws the question, the right option, the other candidate and the phrasing):

- naming the answer and any other candidate, option or not, earns 0;
- negating the answer earns 0;
- the honest answer, in any phrasing the parser accepts, keeps its credit.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from egoadapt.data.schema import LETTERS
from egoadapt.rewards import audit, match
from egoadapt.rewards.scoring import ScoringConfig, Target, score_outputs

TRAINING = ScoringConfig(mode="training")
SETTINGS = settings(max_examples=int(os.environ.get("EGOADAPT_PROPERTY_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOT_OPTIONS = ["hammer", "kitchen", "a red cup", "7", "the far wall", "Dolphin", "walking", "12.5s", "top"]


@lru_cache(maxsize=1)
def questions() -> list[audit.Question]:
    # questions whose option texts are all distinct once normalised (a few real ones repeat an option)
    return [q for q in audit.load_questions(audit.DEFAULT_TESTBED)
            if len({match.normalize_text(o) for o in q.options}) == len(q.options)]


@st.composite
def question_and_answer(draw):
    q = draw(st.sampled_from(questions()))
    i = draw(st.integers(0, len(q.options) - 1))
    return q, i


def target(q: audit.Question, i: int, qa: str) -> Target:
    return Target(qa, LETTERS[i], q.options[i], q.options, q.question, None, q.category, q.question_type)


def reward(output_prediction: str, t: Target, key: str = "prediction") -> float:
    return score_outputs([json.dumps({key: output_prediction, "reason": "r"})], [t], TRAINING)[0].reward


HEDGES = ["{a} or {b}", "{b} or {a}", "{a}, {b}", "{a} and {b}", "{a}/{b}", "most likely {a}, or perhaps {b}",
          "either {a} or {b}", "{a}; {b}", "{a}\n{b}", "{a}. Maybe {b}.", "{a} (or {b})", "{a} and possibly {b}",
          "{a}, maybe {b}", "{b}, {a}", "{a}, {b} and {b}", "It is {a} or {b}.", "{a} as well as {b}",
          "{a} & {b}", "{a} or possibly {b}", "The answer is {a}, or alternatively {b}."]
NEGATIONS = ["not {a}", "definitely not {a}", "it isn't {a}", "it is not {a}", "certainly not {a}",
             "anything but {a}", "NOT {a}", "Not the {a}.", "surely not {a}", "it's not {a}", "never {a}",
             "anything other than {a}", "{b} rather than {a}", "The answer is not {a}."]
HONEST_OPEN = ["{a}", "The answer is {a}.", "The answer is {a} because the frames show it clearly.",
               "I think it is {a}", "Most likely {a}", "**{a}**", "{a}!", "{A}", "{low}", "  {a}  ",
               "It is {a}.", "{a}, based on the video"]
HONEST_CLOSE = ["{L}", "({L})", "Option {L}", "The answer is {L}.", "{L}. {a}", "{L}: {a}", "[{L}]", "{l}",
                "The answer is {L} because the frames show it.", "**{L}**", "{a}", "I choose {L}"]


@SETTINGS
@given(question_and_answer(), st.data())
def test_naming_the_answer_and_another_candidate_earns_nothing(qa_pair, data):
    q, i = qa_pair
    other_options = [o for j, o in enumerate(q.options) if j != i]
    b = data.draw(st.sampled_from(other_options + NOT_OPTIONS))
    if match.normalize_text(b) in match.normalize_text(q.options[i]) or \
            match.normalize_text(q.options[i]) in match.normalize_text(b):
        return  # "battery" inside "battery connector": one text, not two candidates
    shape = data.draw(st.sampled_from(HEDGES))
    text = shape.format(a=q.options[i], b=b)
    assert reward(text, target(q, i, "open")) == 0.0, (q.question, text)
    # CloseQA: the right letter with another letter, or with another candidate's text
    letters = [LETTERS[j] for j in range(len(q.options)) if j != i] + ["E"]
    bl = data.draw(st.sampled_from(letters + [b]))
    close = shape.format(a=LETTERS[i], b=bl)
    assert reward(close, target(q, i, "close")) == 0.0, (q.question, close)


@SETTINGS
@given(question_and_answer(), st.data())
def test_negating_the_answer_earns_nothing(qa_pair, data):
    q, i = qa_pair
    b = data.draw(st.sampled_from([o for j, o in enumerate(q.options) if j != i]))
    shape = data.draw(st.sampled_from(NEGATIONS))
    text = shape.format(a=q.options[i], b=b)
    assert reward(text, target(q, i, "open")) == 0.0, (q.question, text)
    close = shape.format(a=LETTERS[i], b=LETTERS[(i + 1) % len(q.options)])
    assert reward(close, target(q, i, "close")) == 0.0, (q.question, close)
    assert reward(f"definitely not ({LETTERS[i]})", target(q, i, "close")) == 0.0


@SETTINGS
@given(question_and_answer(), st.data())
def test_the_honest_answer_keeps_its_credit_in_any_accepted_phrasing(qa_pair, data):
    q, i = qa_pair
    a = q.options[i]
    shape = data.draw(st.sampled_from(HONEST_OPEN))
    text = shape.format(a=a, A=a.upper(), low=a.lower())
    key = data.draw(st.sampled_from(["prediction", "Prediction", "PREDICTION", "predicton", "prediciton"]))
    assert reward(text, target(q, i, "open"), key) == 1.0, (q.question, text)
    close = data.draw(st.sampled_from(HONEST_CLOSE)).format(L=LETTERS[i], l=LETTERS[i].lower(), a=a)
    assert reward(close, target(q, i, "close"), key) == 1.0, (q.question, close)


@SETTINGS
@given(st.integers(0, 20), st.sampled_from(["{n}", "{w}", "There are {n} tools.", "{w} distinct types",
                                            "I count {w}.", "{n} types of instruments"]))
def test_counts_in_words_or_digits_keep_credit_and_two_counts_earn_nothing(n, shape):
    words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
             "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"]
    t = Target("open", None, str(n), (), "How many distinct types of objects were visible from 0.00s to 10.00s?",
               None, "Counting", "object counting")
    assert reward(shape.format(n=n, w=words[n]), t) == 1.0
    assert reward(f"{n} or {n + 1}", t) == 0.0 and reward(f"{words[n]}, {n + 2}", t) == 0.0
    assert reward(f"not {n}", t) == 0.0
    assert reward(n, t) == 1.0  # a JSON number as the prediction


@SETTINGS
@given(st.floats(0, 100).map(lambda x: round(x, 1)), st.floats(1, 10).map(lambda x: round(x, 1)),
       st.sampled_from(["{s}-{e} seconds", "from {s}s to {e}s", "between {s} and {e} seconds", "{s}s - {e}s"]))
def test_one_time_span_is_one_answer_and_two_earn_nothing(start, width, shape):
    end = round(start + width, 1)
    t = Target("open", None, f"{start}-{end} seconds", (), "When does the dog first interact with the door?",
               None, "Localization", "interaction temporal localization")
    assert reward(shape.format(s=start, e=end), t) == 1.0
    far = round(end + 20, 1)
    assert reward(f"{start}-{end}s or {far}-{far + 3}s", t) == 0.0
    assert reward(f"{start}-{end} seconds, {far}-{far + 3} seconds", t) == 0.0


@SETTINGS
@given(st.sampled_from(["top", "center", "bottom"]), st.sampled_from(["left", "center", "right"]),
       st.sampled_from(["{v}-{h}", "{v} {h}", "the {v} {h} of the view", "{h} {v}", "{V}-{H}"]))
def test_one_region_is_one_answer_and_two_earn_nothing(v, h, shape):
    name = "center" if v == h == "center" else f"{v}-{h}"
    t = Target("open", None, name, (), "In which region of the view was the hook around 2.76s?", None,
               "Localization", "object spatial localization")
    assert reward(shape.format(v=v, h=h, V=v.upper(), H=h.upper()), t) == 1.0
    other = "bottom-right" if (v, h) != ("bottom", "right") else "top-left"
    assert reward(f"{name} or {other}", t) == 0.0 and reward(f"{name}, {other}", t) == 0.0
    assert reward(f"{v} {h} {other.replace('-', ' ')}", t) == 0.0  # no separator: still two regions


@SETTINGS
@given(st.lists(st.sampled_from(["kitchen", "garage", "garden", "bathroom", "office", "street"]), min_size=2,
                max_size=5, unique=True),
       st.sampled_from([", ", " and ", " or ", "; ", " / ", "\n"]))
def test_listing_candidates_on_data_without_options_earns_nothing(candidates, sep):
    """Own-domain JSONL has no options: a list naming the answer among others is still a hedge."""
    t = Target("open", None, candidates[0], (), "Which room is the person in?", None, "Identification", "room")
    assert reward(sep.join(candidates), t) == 0.0
    assert reward(sep.join(reversed(candidates)), t) == 0.0
    assert reward(candidates[0], t) == 1.0
