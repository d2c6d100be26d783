"""`egoadapt compare`: numbers of a hand-computed case, the split guard, sweeps, plots."""
from __future__ import annotations

import json
from math import comb

import pytest

from egoadapt import cli
from tests.eval.eval_helpers import rows, write_eval

DOMAINS = ["d1"] * 5 + ["d2"] * 5
CATS = ["Identification", "Counting"] * 5
BASE = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0]  # 4/10; d1 2/5, d2 2/5
SFT = [1, 1, 1, 0, 1, 1, 1, 0, 0, 0]   # 6/10: 3 gains, 1 loss; d1 4/5, d2 2/5
GRPO = [1] * 10                        # 10/10: 6 gains, no loss
B = 20000


def cell(result, qa, domain, category, stat="micro"):
    return next(r for r in result["table"] if (r["qa"], r["domain"], r["category"], r["stat"]) ==
                (qa, domain, category, stat))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    return {name: write_eval(root / name, rows(c, DOMAINS, CATS)) for name, c in
            (("base", BASE), ("sft", SFT), ("grpo", GRPO))}


def test_hand_computed_case(runs, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["compare", str(runs["base"]), str(runs["sft"]), str(runs["grpo"]), f"out={out}",
                   f"bootstrap.resamples={B}"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in res["runs"]] == ["base", "sft", "grpo"] and res["baseline"] == "base"
    overall = cell(res, "close", "all", "all")
    assert {k: v["accuracy"] for k, v in overall["runs"].items()} == pytest.approx(
        {"base": 0.4, "sft": 0.6, "grpo": 1.0})
    assert "base" not in overall["deltas"]
    sft, grpo = overall["deltas"]["sft"], overall["deltas"]["grpo"]
    assert sft["n_paired"] == 10 and sft["delta"] == pytest.approx(0.2)
    # the exact paired-bootstrap distribution (tests/eval/test_eval_stats.py): 2.5% -0.2, 97.5% 0.6, p 0.4258
    assert (sft["delta_ci_low"], sft["delta_ci_high"]) == pytest.approx((-0.2, 0.6))
    assert sft["p_value"] == pytest.approx(0.4258, abs=0.015)
    # grpo: d = six 1s and four 0s, so the resampled mean is Binomial(10, 0.6) / 10
    assert grpo["delta"] == pytest.approx(0.6)
    cdf = [sum(comb(10, j) * 0.6 ** j * 0.4 ** (10 - j) for j in range(k + 1)) for k in range(11)]
    lo = next(k for k in range(11) if cdf[k] >= 0.025) / 10  # 0.3 (CDF 0.0123 -> 0.0548)
    hi = next(k for k in range(11) if cdf[k] >= 0.975) / 10  # 0.9 (CDF 0.9536 -> 0.9940)
    assert (grpo["delta_ci_low"], grpo["delta_ci_high"]) == pytest.approx((lo, hi))
    assert grpo["p_value"] < 0.002  # only an all-zero resample (0.4^10) reaches |d* - 0.6| >= 0.6
    # per domain and macro
    d1 = cell(res, "close", "d1", "all")
    assert d1["runs"]["sft"]["accuracy"] == pytest.approx(0.8) and d1["deltas"]["sft"]["delta"] == pytest.approx(0.4)
    assert cell(res, "close", "d2", "all")["deltas"]["sft"]["delta"] == pytest.approx(0.0)
    assert cell(res, "close", "d2", "all")["deltas"]["sft"]["p_value"] == 1.0
    # McNemar's exact test beside the bootstrap: sft 3 gains / 1 loss, grpo 6 gains / 0 losses
    assert (sft["mcnemar_gains"], sft["mcnemar_losses"]) == (3, 1)
    assert sft["mcnemar_p"] == pytest.approx(10 / 16)  # P(X <= 1) + P(X >= 3), X ~ Binomial(4, 1/2)
    assert grpo["mcnemar_p"] == pytest.approx(2 / 2 ** 6)
    assert cell(res, "close", "d2", "all")["deltas"]["sft"]["mcnemar_p"] == 1.0  # no question differs
    macro = cell(res, "close", "all", "all", "macro")
    assert macro["runs"]["sft"]["accuracy"] == pytest.approx(0.6)
    assert macro["deltas"]["sft"]["delta"] == pytest.approx((0.4 + 0.0) / 2)
    counting = cell(res, "close", "all", "Counting")  # even ids: base 1/5 (id 6)... hand count below
    want_base = sum(c for i, c in enumerate(BASE) if CATS[i] == "Counting") / 5
    want_sft = sum(c for i, c in enumerate(SFT) if CATS[i] == "Counting") / 5
    assert counting["runs"]["base"]["accuracy"] == pytest.approx(want_base)
    assert counting["deltas"]["sft"]["delta"] == pytest.approx(want_sft - want_base)
    # the files people read
    md = (out / "compare.md").read_text()
    assert "| overall (micro) | 10 | 40.0 [" in md and "+20.0 [-20.0, +60.0] p=0.4" in md
    assert ", McNemar p=0.625 |" in md  # not significant: no star
    assert "+60.0 [+30.0, +90.0] p=0.000, McNemar p=0.031 *" in md
    header = (out / "compare.csv").read_text().splitlines()[0]
    assert "sft.delta" in header and "grpo.p_value" in header and "base.delta" not in header
    assert "grpo.mcnemar_p" in header
    for png in ("accuracy_by_domain.png", "accuracy_by_task.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Comparison: base vs sft vs grpo" in capsys.readouterr().out


def test_runs_as_a_hydra_list_and_labels(runs, tmp_path):
    out = tmp_path / "out"
    rc = cli.main(["compare", f"runs=[{runs['base']},{runs['grpo']}]", "labels=[before,after]", f"out={out}",
                   "plots=false", "bootstrap.resamples=100"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    assert [r["label"] for r in res["runs"]] == ["before", "after"]
    assert not (out / "accuracy_by_domain.png").exists()
    with pytest.raises(SystemExit, match="not both"):
        cli.main(["compare", str(runs["base"]), f"runs=[{runs['sft']}]", f"out={out}"])


def test_refuses_mismatched_splits(runs, tmp_path, capsys):
    other = write_eval(tmp_path / "other_split", rows(SFT, DOMAINS, CATS), split_hash="f" * 64)
    out = tmp_path / "out"
    rc = cli.main(["compare", str(runs["base"]), str(other), f"out={out}"])
    assert rc != 0
    err = capsys.readouterr().err
    assert "different splits" in err and "allow_mismatched_splits=true" in err
    assert not (out / "compare.json").exists()
    rc = cli.main(["compare", str(runs["base"]), str(other), f"out={out}", "allow_mismatched_splits=true",
                   "plots=false", "bootstrap.resamples=100"])
    assert rc == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["same_split"] is False
    assert "different splits" in (out / "compare.md").read_text()


def test_bad_inputs(tmp_path, capsys):
    assert cli.main(["compare", str(tmp_path / "missing"), f"out={tmp_path / 'o'}"]) == 2
    (tmp_path / "empty").mkdir()
    assert cli.main(["compare", str(tmp_path / "empty"), f"out={tmp_path / 'o'}"]) == 2
    assert "no results.json" in capsys.readouterr().err
    assert cli.main(["compare", f"out={tmp_path / 'o'}"]) == 2


def make_sweep(root, specs):
    """A multirun folder: job i with overrides and an evaluation at <job>/<sub>/results.json."""
    for job, (overrides, correct, sub) in enumerate(specs):
        d = root / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        if correct is not None:
            write_eval(d / sub, rows(correct, DOMAINS, CATS))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def test_sweep_is_ranked_with_swept_values(tmp_path):
    sweep = make_sweep(tmp_path / "multirun", [
        (["recipe=demo/tiny_grpo", "trainer.learning_rate=1e-5", "trainer.beta=0.0"], BASE, "eval"),
        (["recipe=demo/tiny_grpo", "trainer.learning_rate=1e-4", "trainer.beta=0.0"], GRPO, "eval"),
        (["recipe=demo/tiny_grpo", "trainer.learning_rate=1e-4", "trainer.beta=0.04"], SFT, "final/eval_out"),
        (["recipe=demo/tiny_grpo", "trainer.learning_rate=1e-3", "trainer.beta=0.04"], None, "eval"),  # not evaluated
    ])
    out = tmp_path / "out"
    assert cli.main(["compare", str(sweep), f"out={out}", "bootstrap.resamples=100", "plots=false"]) == 0
    res = json.loads((out / "sweep.json").read_text())
    assert res["swept"] == ["trainer.beta", "trainer.learning_rate"]  # recipe is the same everywhere
    assert [j["job"] for j in res["jobs"]] == ["1", "2", "0"]
    assert [j["metric"] for j in res["jobs"]] == pytest.approx([1.0, 0.6, 0.4])
    assert res["jobs"][0]["overrides"] == {"trainer.beta": "0.0", "trainer.learning_rate": "1e-4"}
    assert res["missing"] == ["3"]
    md = (out / "sweep.md").read_text()
    assert "| 1 | 1 | 0.0 | 1e-4 | 100.0 |" in md
    cmp = json.loads((out / "compare.json").read_text())  # the jobs side by side too, job 0 first
    assert [r["label"] for r in cmp["runs"]] == ["job 0", "job 1", "job 2"]
    # another metric: d2's accuracy ranks job 1 first, then 0 and 2 (tied at 2/5, stable order)
    assert cli.main(["compare", str(sweep), f"out={out}", "metric=close/d2/all/micro", "plots=false",
                     "bootstrap.resamples=100"]) == 0
    res = json.loads((out / "sweep.json").read_text())
    assert [j["job"] for j in res["jobs"]] == ["1", "0", "2"]
    assert cli.main(["compare", str(sweep), f"out={out}", "metric=bleu"]) == 2
