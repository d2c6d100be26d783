"""`egoadapt demo` at CI size: every step runs and leaves its artefacts; a rerun resumes."""
import json

import pytest

from egoadapt.cli import main as cli


@pytest.mark.integration
@pytest.mark.timeout(2700)  # the whole study (~3 min idle); a shared, loaded CI machine took 15+ min
def test_demo_ci_size_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "demo=ci", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    for name in ("base", "sft", "grpo"):
        results = json.loads((out / "eval" / name / "results.json").read_text())
        assert results["counts"]["scored"] > 0
    hashes = {json.loads((out / "eval" / n / "results.json").read_text())["split"]["hash"] for n in ("base", "sft", "grpo")}
    assert len(hashes) == 1  # one split for all three
    assert (out / "compare" / "compare.md").is_file() and (out / "compare" / "accuracy_by_task.png").is_file()
    assert (out / "compare" / "training_curves.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert "grpo_reward_first_quarter" in summary
    assert "GRPO mean reward" in printed and "held-out accuracy" in printed
    # a second run finds every step done and redoes nothing
    assert cli(["demo", "demo=ci", f"out={out}"]) == 0
    assert printed.count("done already") == 0 and capsys.readouterr().out.count("done already") >= 10
