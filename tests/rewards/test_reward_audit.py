"""The exploit audit (egoadapt.rewards.audit) on the real test bed's option sets: no answering
strategy earns more expected training reward than the honest best single answer, for any
question type, under the uniform and the adversarial frequency prior."""
from __future__ import annotations

from pathlib import Path

import pytest

from egoadapt.rewards import audit
from egoadapt.rewards.scoring import ScoringConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "reward-audit.md"


@pytest.fixture(scope="module")
def questions():
    qs = audit.load_questions(audit.DEFAULT_TESTBED)
    assert len(qs) == 957 and len({q.question_type for q in qs}) == 15
    return qs


@pytest.mark.parametrize("qa", ["open", "close"])
@pytest.mark.parametrize("prior", audit.PRIORS)
def test_no_strategy_beats_the_honest_answer(questions, qa, prior):
    table = audit.expected_rewards(questions, qa, prior, per_type=6)
    assert len(table) == 15
    assert audit.loopholes(table) == []
    for qtype, row in table.items():
        assert row[audit.HONEST] > 0.2, qtype  # the honest answer does earn: the audit is not vacuous
        assert row["all options"] == 0.0 if qa == "open" else row["all letters"] == 0.0
        assert row["negation of the least likely"] == 0.0 and row["top-2: X or Y"] == 0.0


def test_the_audit_finds_the_official_rules_loophole(questions):
    """The benchmark's own rule as a reward pays for listing every option: the audit says so."""
    table = audit.expected_rewards(questions, "open", "uniform", ScoringConfig(mode="official"), per_type=3)
    found = audit.loopholes(table)
    assert any("all options" in x for x in found) and any("top-3" in x for x in found)


@pytest.mark.integration
def test_the_full_audit_is_clean_and_matches_the_docs():
    results = audit.audit()
    assert [x for t in results.values() for x in audit.loopholes(t)] == []
    assert DOC.read_text() == audit.markdown(results, audit.DEFAULT_TESTBED), \
        f"docs/reward-audit.md is stale: regenerate it with `{audit.COMMAND}`"
