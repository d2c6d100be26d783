"""`egoadapt eval` resumes after a crash without generating finished questions again, repairs a
torn last line, and refuses to mix predictions made with other settings."""
from __future__ import annotations

import json

import pytest

from egoadapt import cli
from egoadapt.eval import generate, run
from egoadapt.eval.generate import EvalError, Item, PredictionsLog


def eval_args(model, data, out, *extra):
    return ["eval", f"checkpoint={model}", "data=synthetic", f"data.root={data}", f"out={out}", "backend=hf",
            "generation.max_new_tokens=8", "batch_size=4", "limit=6", "progress=false",
            f"cache_dir={out.parent / 'cache'}", "bootstrap.resamples=100", *extra]


def test_resume_after_a_crash(tiny_model_dir, synth_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev"
    real = generate.HFBackend.generate
    asked: list[list[Item]] = []

    def crash_on_third_batch(self, items):
        asked.append(list(items))
        if len(asked) == 3:
            raise RuntimeError("killed")
        return real(self, items)

    monkeypatch.setattr(generate.HFBackend, "generate", crash_on_third_batch)
    with pytest.raises(RuntimeError, match="killed"):
        cli.main(eval_args(tiny_model_dir, synth_dir, out))
    preds = out / "predictions.jsonl"
    before = preds.read_bytes()
    assert len(before.splitlines()) == 8  # two finished batches of 4
    assert not (out / "results.json").exists()
    with open(preds, "ab") as f:  # killed in the middle of writing the third batch
        f.write(b'{"id": "3", "qa": "open", "out')

    asked.clear()
    monkeypatch.setattr(generate.HFBackend, "generate", lambda self, items: asked.append(list(items)) or
                        real(self, items))
    assert cli.main(eval_args(tiny_model_dir, synth_dir, out)) == 0
    # only the 4 unfinished items were generated: the 3rd batch, OpenQA of samples 3-6
    assert [(i.id, i.qa) for b in asked for i in b] == [(str(k), "open") for k in range(3, 7)]
    after = preds.read_bytes()
    assert after.startswith(before)  # earlier lines kept byte for byte, the torn line cut off
    lines = [json.loads(x) for x in after.splitlines()]
    keys = [(r["id"], r["qa"]) for r in lines]
    assert len(keys) == len(set(keys)) == 12
    assert set(keys) == {(str(k), q) for k in range(1, 7) for q in ("close", "open")}
    assert all(isinstance(r["output"], str) and r["batch_size"] == 4 and r["seconds"] >= 0 for r in lines)
    res = json.loads((out / "results.json").read_text())
    assert res["counts"]["predictions"] == res["counts"]["scored"] == 12
    assert (res["timing"]["already_done"], res["timing"]["generated"]) == (8, 4)

    # finished: a rerun generates nothing and does not even load the model
    monkeypatch.setattr(run, "make_backend", lambda *a: pytest.fail("the model was loaded again"))
    assert cli.main(eval_args(tiny_model_dir, synth_dir, out)) == 0
    assert preds.read_bytes() == after
    again = json.loads((out / "results.json").read_text())
    assert again["table"] == res["table"]

    # other generation settings: refused, the folder is left alone
    capsys.readouterr()
    assert cli.main(eval_args(tiny_model_dir, synth_dir, out, "generation.max_new_tokens=9")) == 2
    assert "generation differ" in capsys.readouterr().err
    assert preds.read_bytes() == after


def test_predictions_log_repairs_only_the_last_line(tmp_path):
    log = PredictionsLog(tmp_path / "p.jsonl")
    log.append([{"id": 1, "qa": "close", "output": "a"}, {"id": 2, "qa": "close", "output": "b"}])
    with open(log.path, "a") as f:
        f.write('{"id": 3, "qa": "close", "output": "c"\n')  # complete line, broken JSON: a torn write
    assert list(log.load()) == [Item("1", "close"), Item("2", "close")]
    assert log.path.read_text().count("\n") == 2
    log.append([{"id": 3, "qa": "open", "output": "c"}])
    assert len(log.load()) == 3
    text = log.path.read_text().splitlines()
    log.path.write_text("\n".join([text[0], "garbage", *text[1:]]) + "\n")  # damage in the middle: an error
    with pytest.raises(EvalError, match=r"p.jsonl:2"):
        log.load()


def test_config_errors_before_any_loading(tmp_path, capsys):
    base = ["eval", f"out={tmp_path / 'o'}", f"data.annotations={tmp_path / 'a.json'}"]
    assert cli.main([*base[:1], *base[2:]]) == 2
    assert "checkpoint=PATH" in capsys.readouterr().err
    assert cli.main([*base, f"checkpoint={tmp_path}"]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert cli.main([*base, "checkpoint=org/model", "backend=tgi"]) == 2
    assert "backend='tgi'" in capsys.readouterr().err
    assert cli.main([*base, "checkpoint=org/model", f"submission.template={tmp_path / 't.json'}"]) == 2
    assert "submission.out" in capsys.readouterr().err
