"""`egoadapt demo`: its data pieces (source domain, blank frames, challenge files) and, at CI size,
every step end to end with its artefacts; a rerun resumes."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from egoadapt.cli import main as cli


def synth(tmp_path, name, *args):
    out = tmp_path / name
    assert cli(["data", "synth", f"out={out}", "write_videos=false", *args]) == 0
    return out, json.loads((out / "annotations.json").read_text()), json.loads((out / "answers.json").read_text())


def test_source_domain_only_when_asked_and_its_own_objects(tmp_path):
    _, targets, _ = synth(tmp_path, "t", "videos_per_domain=1")
    assert {r["domain"] for r in targets} == {"surgery", "industry", "extreme_sports", "animal"}
    _, source, _ = synth(tmp_path, "s", "videos_per_domain=1", "domains=[daily_life]")
    assert {r["dataset"] for r in source} == {"SynthDaily"}
    held = next(r for r in source if r["question_type"] == "held object identification")
    assert held["options"] == ["A: cup", "B: phone", "C: key", "D: book"]  # none of a target domain's words


def test_blank_frames_keep_the_questions_and_show_nothing(tmp_path):
    seen, recs, answers = synth(tmp_path, "seen", "videos_per_domain=1", "seed=3")
    blind, blind_recs, blind_answers = synth(tmp_path, "blind", "videos_per_domain=1", "seed=3", "blank_frames=true")
    assert blind_recs == recs and blind_answers == answers  # the same questions, frame paths and answers
    frame = recs[0]["video_path"][0].lstrip("/")
    assert np.unique(np.array(Image.open(blind / frame))).size <= 3  # grey (JPEG may round a level)
    assert np.array(Image.open(seen / frame)).std() > 10


def test_challenge_files_are_a_loadable_support_set_test_bed_and_template(tmp_path):
    from egoadapt.data.load import load_samples
    from egoadapt.demo.challenge import write_challenge

    root, recs, answers = synth(tmp_path, "target", "videos_per_domain=4", "domains=[surgery,industry]")
    manifest = tmp_path / "split.json"
    assert cli(["data", "split", "data=synthetic", f"data.root={root}", f"out={manifest}"]) == 0
    counts = write_challenge(root, manifest, tmp_path / "ch", per_domain=3, seed=0)
    split = json.loads(manifest.read_text())
    assert counts == {"support": 6, "testbed": len(split["test"])}
    support = load_samples({"format": "support", "annotations": str(tmp_path / "ch" / "support.json"),
                            "root": None, "fps": 2.0})
    by_qid = {a["question_id"]: a for a in answers}
    assert sorted(s.domain for s in support) == ["industry"] * 3 + ["surgery"] * 3
    train = {str(i) for i in split["train"]}
    for s in support:  # from the train side, answered as the answers file says, frames on disk
        source = next(a for a in answers if a["question_id"] == s.question_id)
        assert str(source["id"]) in train and s.answer_letter == by_qid[s.question_id]["correct_option_letter"]
        assert all(Path(p).is_file() for p in s.frame_source.frames)
    template = json.loads((tmp_path / "ch" / "template.json").read_text())
    assert sorted(str(t["id"]) for t in template) == sorted(str(i) for i in split["test"])
    assert all(t["answer"] == "" for t in template)


@pytest.mark.integration
@pytest.mark.timeout(2700)  # ~30 small steps (a few minutes idle); a loaded shared machine takes far longer
def test_demo_ci_size_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "demo=ci", f"out={out}"]) == 0
    printed = capsys.readouterr().out
    for model in ("base", "sft_s0", "grpo_s0"):
        for on in ("source", "target", "unseen", "blind"):
            assert json.loads((out / "eval" / model / on / "results.json").read_text())["counts"]["scored"] > 0
    hashes = {json.loads((out / "eval" / m / "target" / "results.json").read_text())["split"]["hash"]
              for m in ("base", "sft_s0", "grpo_s0")}
    assert len(hashes) == 1  # one split for all three
    for on in ("source", "target", "unseen", "blind", "testbed"):
        assert (out / "compare" / on / "compare.json").is_file()
    testbed = json.loads((out / "challenge" / "testbed" / "annotations.json").read_text())
    for name in ("base", "sft_support", "grpo_support"):
        submission = json.loads((out / "challenge" / f"{name}.json").read_text())
        assert [r["id"] for r in submission] == [r["id"] for r in testbed]
    assert (out / "figures" / "table3.png").is_file() and (out / "figures" / "training_curves.png").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["table3"]) >= {"surgery", "animal (left out)", "daily_life (source)"}
    assert "reward" in summary["grpo_curves"] and "frac_reward_zero_std" in summary["grpo_curves"]
    assert summary["budgets"]["grpo_s0"]["completions"] == summary["budgets"]["grpo_s0"]["questions_seen"] * 4
    report = (out / "report.md").read_text()
    for heading in ("Domain shift", "Table 3", "Verdicts", "Budgets", "Shortcut checks", "Per QA type"):
        assert heading in report
    # the second seed: trained like the first, evaluated where the spread is measured (seed_sets: target)
    assert sorted(p.name for p in (out / "eval" / "grpo_s1").iterdir()) == ["target"]
    for method in ("sft", "grpo"):
        assert (out / "compare" / "target" / f"{method}_seeds" / "compare.json").is_file()
    assert "run-to-run spread, SFT" in report and "run-to-run spread, GRPO" in report
    target_qa = {json.loads(line)["qa"] for line in (out / "eval" / "base" / "target" / "predictions.jsonl").open()}
    assert target_qa == {"close", "open"}  # target_qa: both (the other sets ask CloseQA)
    assert "egoadapt train recipe=demo/tiny_grpo" in printed and "paired bootstrap" in printed
    # a second run finds every step done and redoes nothing
    assert cli(["demo", "demo=ci", f"out={out}"]) == 0
    again = capsys.readouterr().out
    steps = [line for line in again.splitlines() if line.startswith("== ")]
    assert "done already" not in printed and len(steps) >= 30 and all("done already" in line for line in steps)
