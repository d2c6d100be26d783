"""One bad input never ends a run: `data validate`, `train` and `eval` as a user runs them, on a
synthetic set where a few samples are corrupted (a truncated JPEG, a 2000x4 frame, a missing
frame file) on each side of the split.

With `frames.on_error=skip` each command finishes, names the bad samples with their reason
and trains or evaluates the rest; with the default (`raise`) the first bad sample ends the
run with one line naming file, record and field, before any model is loaded where the frame
headers already show it.
"""
import json
from pathlib import Path

import pytest

from egoadapt.cli import main as cli
from tests.train.helpers import train

pytestmark = pytest.mark.integration

DAMAGES = ("truncated", "wide", "missing")
KINDS = {"truncated": "bad_frame", "wide": "bad_aspect", "missing": "missing_frame"}


def damage(frame: Path, how: str) -> None:
    from PIL import Image

    if how == "truncated":  # header intact, image data cut short: only decoding shows it
        data = frame.read_bytes()
        frame.write_bytes(data[: len(data) * 2 // 3])
        assert Image.open(frame).size == (56, 56)  # so eval's guard at generation time is what skips it
    elif how == "wide":  # what the Qwen2.5-VL processor refuses (aspect ratio over 200:1)
        Image.new("RGB", (2000, 4), (90, 90, 90)).save(frame, "JPEG")
    else:
        frame.unlink()


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """(data root, split manifest, {sample id: damage}) with three damaged samples per side."""
    from egoadapt.data.synthetic import SynthConfig, generate

    root = generate(SynthConfig(out=str(tmp_path_factory.mktemp("messy")), seed=3, videos_per_domain=2,
                                questions_per_video=3, write_videos=False), progress=False)
    manifest = root / "split.json"
    assert cli(["data", "split", "data=synthetic", f"data.root={root}", f"out={manifest}"]) == 0
    sides = json.loads(manifest.read_text())
    records = {str(r["id"]): r for r in json.loads((root / "annotations.json").read_text())}
    bad = {}
    for side in ("train", "test"):
        for sid, how in zip(map(str, sides[side]), DAMAGES):
            damage(root / records[sid]["video_path"][1].lstrip("/"), how)
            bad[sid] = how
    return root, manifest, bad


def ids_of(bad: dict, side_ids) -> dict:
    return {i: bad[i] for i in map(str, side_ids) if i in bad}


def test_validate_names_every_damaged_sample(messy, capsys):
    root, _, bad = messy
    args = ["data", "validate", "data=synthetic", f"data.root={root}"]
    assert cli(args) == 1  # frame headers: missing and too-wide frames
    out = capsys.readouterr().out
    for sid, how in bad.items():  # (a missing file is named in field 'video_path', with the count missing)
        assert (f"record {sid}: field 'video_path" in out) == (how != "truncated"), (sid, how)
    assert cli([*args, "validate.decode=true"]) == 1  # decoding also finds the truncated ones
    out = capsys.readouterr().out
    assert f"{len(bad)} samples have unusable frames" in out and "Traceback" not in out
    for sid in bad:
        assert f"record {sid}: field 'video_path" in out


@pytest.mark.parametrize("recipe, extra", [
    ("demo/tiny_sft", ()),
    ("demo/tiny_grpo", ("trainer.num_generations=4", "trainer.max_completion_length=8")),
])
def test_train_skips_damaged_samples_and_trains_the_rest(tiny_model_dir, messy, tmp_path, recipe, extra):
    root, manifest, bad = messy
    train_ids = [str(i) for i in json.loads(manifest.read_text())["train"]]
    out = train(recipe, tiny_model_dir, root, tmp_path / "run", f"split.manifest={manifest}",
                "frames.on_error=skip", "trainer.max_steps=2", "trainer.per_device_train_batch_size=4", *extra)
    assert (out / "final" / "model.safetensors").is_file()
    skipped = [json.loads(x) for x in (out / "skipped_samples.jsonl").read_text().splitlines()]
    want = ids_of(bad, train_ids)
    assert {s["id"]: s["kind"] for s in skipped} == {i: KINDS[how] for i, how in want.items()}
    assert all(s["field"] == "video_path[1]" and s["file"] in s["reason"] for s in skipped)
    log = (out / "train.log").read_text()
    assert f"left out {len(want)} of {len(train_ids)} training samples" in log
    assert f"({len(train_ids) - len(want)} samples)" in log  # the rest make the dataset


def test_train_raises_naming_the_sample_before_the_model_loads(tiny_model_dir, messy, tmp_path):
    root, manifest, bad = messy
    with pytest.raises(SystemExit) as e:
        cli(["train", "recipe=demo/tiny_sft", f"model.path={tiny_model_dir}", f"data.root={root}",
             f"out={tmp_path / 'run'}", f"split.manifest={manifest}", f"cache_dir={tmp_path / 'cache'}",
             "trainer.max_steps=1"])
    msg = str(e.value)
    assert msg.startswith("egoadapt train: ") and "field 'video_path[1]'" in msg
    assert any(f"record {i}: " in msg for i in bad) and "Traceback" not in msg
    assert not (tmp_path / "run" / "final").exists()


def eval_args(model, root, manifest, out, *extra):
    return ["eval", f"checkpoint={model}", "data=synthetic", f"data.root={root}", f"split.manifest={manifest}",
            f"out={out}", "qa=close", "batch_size=4", "generation.max_new_tokens=4", "progress=false",
            f"cache_dir={out.parent / 'cache'}", "bootstrap.resamples=50", *extra]


def test_eval_skips_damaged_samples_and_scores_the_rest(tiny_model_dir, messy, tmp_path, capsys):
    root, manifest, bad = messy
    test_ids = [str(i) for i in json.loads(manifest.read_text())["test"]]
    want = ids_of(bad, test_ids)
    out = tmp_path / "ev"
    assert cli(eval_args(tiny_model_dir, root, manifest, out, "frames.on_error=skip")) == 0
    printed = capsys.readouterr().out
    assert f"{len(want)} skipped for their input" in printed

    preds = {p["id"]: p for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}
    assert set(preds) == set(test_ids)
    for sid, p in preds.items():
        if sid in want:  # a record with the reason, so resuming does not try it again
            assert p["skipped"] and p["output"] == "" and p["kind"] == KINDS[want[sid]]
            assert f"record {sid}: field 'video_path[1]'" in p["reason"]
        else:  # the rest were generated
            assert not p.get("skipped") and p["completion_tokens"] > 0
    res = json.loads((out / "results.json").read_text())
    assert res["counts"]["skipped"] == len(want) and res["counts"]["scored"] == len(test_ids)
    assert {s["id"] for s in res["skipped"]} == set(want)
    scores = {r["id"]: r for r in map(json.loads, (out / "scores.jsonl").read_text().splitlines())}
    assert all(not scores[i]["correct"] and scores[i]["issue"] == "input_skipped" for i in want)
    assert f"{len(want)} questions were skipped for unusable input" in (out / "results.md").read_text()

    # a rerun resumes: nothing left to generate, the skipped items are not retried
    assert cli(eval_args(tiny_model_dir, root, manifest, out, "frames.on_error=skip")) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["timing"]["generated"] == 0 and res["counts"]["skipped"] == len(want)


def test_eval_raises_naming_the_sample_by_default(tiny_model_dir, messy, tmp_path, capsys):
    root, manifest, bad = messy
    out = tmp_path / "ev"
    assert cli(eval_args(tiny_model_dir, root, manifest, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("egoadapt eval: ") and "field 'video_path[1]'" in err and "Traceback" not in err
    assert any(f"record {i}: " in err for i in bad)
