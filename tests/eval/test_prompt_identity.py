"""As a user runs it: a plain evaluation and a domain-context one (prompt.domain_context.surgery)
on the tiny model; every predictions.jsonl line carries the exact prompt text; results.json
records the prompt's identity; compare refuses to mix the two unless told; a misspelt domain and
a resume with another context are refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from egoadapt import cli
from egoadapt.data.load import load_samples
from egoadapt.data.prompts import prompt_text

CONTEXT = "The video is filmed by a surgeon during an operation."
pytestmark = pytest.mark.integration


def eval_args(model, data, out, *extra):
    return ["eval", f"checkpoint={model}", "data=synthetic", f"data.root={data}", f"out={out}", "qa=close",
            "generation.max_new_tokens=4", "limit=16", "progress=false", "cache_dir=null", "bootstrap.resamples=50", *extra]


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def evals(tiny_model_dir, synth_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("evals")
    assert cli.main(eval_args(tiny_model_dir, synth_dir, root / "plain")) == 0
    assert cli.main(eval_args(tiny_model_dir, synth_dir, root / "context", f"prompt.domain_context.surgery='{CONTEXT}'")) == 0
    return root


def test_predictions_record_the_exact_prompt(evals, synth_dir):
    from egoadapt.cli import compose

    samples = {s.id: s for s in load_samples(compose("eval", ["data=synthetic", f"data.root={synth_dir}"]).data)}
    plain, context = jsonl(evals / "plain" / "predictions.jsonl"), jsonl(evals / "context" / "predictions.jsonl")
    assert len(plain) == len(context) == 16  # limit=16: surgery questions first, then industry ones
    for p, c in zip(plain, context):
        s = samples[p["id"]]
        assert p["prompt"] == prompt_text(s, "closeqa")  # the synthetic clips keep their rate
        assert c["prompt"] == (f"{CONTEXT}\n{p['prompt']}" if s.domain == "surgery" else p["prompt"])
        assert "system" not in p
    assert {samples[c["id"]].domain for c in context if c["prompt"].startswith(CONTEXT)} == {"surgery"}
    assert {samples[c["id"]].domain for c in context} == {"surgery", "industry"}


def test_results_record_the_prompt_and_compare_refuses_to_mix(evals, tmp_path, capsys):
    plain = json.loads((evals / "plain" / "results.json").read_text())["config"]["prompt"]
    context = json.loads((evals / "context" / "results.json").read_text())["config"]["prompt"]
    assert plain["name"] == context["name"] == "default"
    assert plain["domain_context"] == {} and context["domain_context"] == {"surgery": CONTEXT}
    assert plain["sha256"] != context["sha256"]

    runs = [str(evals / "plain"), str(evals / "context")]
    assert cli.main(["compare", *runs, f"out={tmp_path / 'refused'}"]) != 0
    err = capsys.readouterr().err
    assert "different prompts" in err and "surgery context" in err and "allow_mismatched_prompts=true" in err
    assert not (tmp_path / "refused" / "compare.json").exists()

    assert cli.main(["compare", *runs, f"out={tmp_path / 'ablation'}", "allow_mismatched_prompts=true",
                     "plots=false", "bootstrap.resamples=50"]) == 0
    result = json.loads((tmp_path / "ablation" / "compare.json").read_text())
    assert result["same_prompt"] is False
    assert [r["prompt"]["domain_context"] for r in result["runs"]] == [{}, {"surgery": CONTEXT}]
    assert "**Different prompts**" in (tmp_path / "ablation" / "compare.md").read_text()


def test_a_misspelt_domain_and_a_resume_with_another_context_are_refused(evals, tiny_model_dir, synth_dir, tmp_path,
                                                                          capsys):
    assert cli.main(eval_args(tiny_model_dir, synth_dir, tmp_path / "typo", "+prompt.domain_context.surgical=x")) == 2
    err = capsys.readouterr().err
    assert "prompt.domain_context.surgical" in err and "surgery" in err
    assert cli.main(eval_args(tiny_model_dir, synth_dir, evals / "plain", f"prompt.domain_context.surgery='{CONTEXT}'")) == 2
    assert "prompt" in capsys.readouterr().err
