"""An eval folder is bound to its checkpoint and data, and has one writer at a time.

Predictions are keyed by question id; reusing them for another annotations file or for
retrained weights would score one model's answers as another's, silently."""
from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from egoadapt import cli
from egoadapt.files import exclusive


def eval_args(model, data, out, *extra):
    return ["eval", f"checkpoint={model}", "data=synthetic", f"data.root={data}", f"out={out}", "backend=hf",
            "generation.max_new_tokens=4", "batch_size=4", "limit=4", "qa=close", "progress=false",
            f"cache_dir={out.parent / 'cache'}", "bootstrap.resamples=20", *extra]


@pytest.fixture()
def evaluated(tiny_model_dir, synth_dir, tmp_path):
    """A copy of the tiny model and of the data, evaluated once into tmp/ev."""
    model, data, out = tmp_path / "model", tmp_path / "data", tmp_path / "ev"
    shutil.copytree(tiny_model_dir, model)
    shutil.copytree(synth_dir, data)
    assert cli.main(eval_args(model, data, out)) == 0
    return model, data, out


def test_other_annotations_are_refused_until_fresh(evaluated, capsys):
    model, data, out = evaluated
    ann = data / "annotations.json"
    records = json.loads(ann.read_text())
    records[0]["question"] = "A different question with the same id?"
    ann.write_text(json.dumps(records))
    capsys.readouterr()
    assert cli.main(eval_args(model, data, out)) == 2
    assert "data differ" in capsys.readouterr().err
    assert cli.main(eval_args(model, data, out, "fresh=true")) == 0


def test_retrained_weights_in_the_same_folder_are_refused(evaluated, capsys):
    model, data, out = evaluated
    weights = load_file(str(model / "model.safetensors"))
    save_file({k: v * 0.5 for k, v in weights.items()}, str(model / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    assert cli.main(eval_args(model, data, out)) == 2
    assert "weights differ" in capsys.readouterr().err


def test_unchanged_rerun_resumes(evaluated):
    model, data, out = evaluated
    before = (out / "predictions.jsonl").read_bytes()
    assert cli.main(eval_args(model, data, out)) == 0
    assert (out / "predictions.jsonl").read_bytes() == before  # nothing generated again


def test_a_second_writer_fails_at_once(evaluated, capsys):
    model, data, out = evaluated
    with exclusive(out, "a test holding the folder"):
        capsys.readouterr()
        assert cli.main(eval_args(model, data, out)) == 2
        err = capsys.readouterr().err
        assert "in use by pid" in err
    assert cli.main(eval_args(model, data, out)) == 0  # released with its holder
