"""`egoadapt data export`: a split's sides as a datasets.DatasetDict (loaded back with `datasets`),
as ms-swift's JSONL and as LLaMA-Factory's sharegpt JSONL + dataset_info.json (their documented
layouts: ms-swift "Custom dataset", LLaMA-Factory data/README.md "Multimodal Video Dataset")."""
from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from egoadapt.cli import main

SYNTH = ["data=synthetic"]


@pytest.fixture(scope="module")
def split(synth_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split") / "lodo.json"
    assert main(["data", "split", *SYNTH, f"data.root={synth_dir}", "split=lodo", "split.test_domain=animal",
                 f"out={out}"]) == 0
    return out


def export(synth_dir, split, out, *args) -> dict:
    assert main(["data", "export", *SYNTH, f"data.root={synth_dir}", f"split={split}", f"out={out}", *args]) == 0
    return json.loads(split.read_text())


def test_hf_dataset_dict_loads_back(synth_dir, split, tmp_path):
    from datasets import load_from_disk

    manifest = export(synth_dir, split, tmp_path / "hf", "format=hf", "qa=both")
    dd = load_from_disk(str(tmp_path / "hf"))
    assert set(dd) == {"train", "test"}
    for side in ("train", "test"):  # every question asked both ways (all synthetic ones have options)
        assert len(dd[side]) == 2 * len(manifest[side])
        assert sorted(set(dd[side]["id"]), key=int) == sorted(manifest[side], key=int)
    row = next(r for r in dd["train"] if r["qa"] == "closeqa")
    assert json.loads(row["target"])["prediction"] == row["answer_letter"]
    assert row["options"][0] in row["prompt"] and row["frames"] and all(Path(f).is_file() for f in row["frames"])
    assert row["video"] is None and row["fps"] > 0
    assert {r["domain"] for r in dd["test"]} == {"animal"} and "animal" not in set(dd["train"]["domain"])


def test_swift_jsonl_has_messages_and_one_mp4_per_video_tag(synth_dir, split, tmp_path):
    from datasets import load_dataset

    manifest = export(synth_dir, split, tmp_path / "swift", "format=swift")
    lines = [json.loads(x) for x in (tmp_path / "swift" / "train.jsonl").read_text().splitlines()]
    assert len(lines) == len(manifest["train"])
    for rec in lines:
        roles = [m["role"] for m in rec["messages"]]
        assert roles[-2:] == ["user", "assistant"] and set(roles) <= {"system", "user", "assistant"}
        user = rec["messages"][roles.index("user")]["content"]
        assert user.startswith("<video>") and user.count("<video>") == len(rec["videos"]) == 1
    video = Path(lines[0]["videos"][0])
    assert video.suffix == ".mp4" and video.parent == tmp_path / "swift" / "videos"
    with av.open(str(video)) as c:  # the clip as the frames config samples it, at its sampling rate
        assert c.streams.video[0].frames >= 1
    # ms-swift loads the file through `datasets`' JSON builder
    assert load_dataset("json", data_files=str(tmp_path / "swift" / "test.jsonl"), split="train").num_rows == \
        len(manifest["test"])


def test_llamafactory_sharegpt_and_dataset_info(synth_dir, split, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "lf"
    manifest = export(synth_dir, split, out, "format=llamafactory", "name=egox")
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"egox_train", "egox_test"}
    for side in ("train", "test"):
        entry = info[f"egox_{side}"]
        assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages", "videos": "videos"}
        assert entry["tags"]["role_tag"] == "role" and entry["tags"]["user_tag"] == "user"
        ds = load_dataset("json", data_files=str(out / entry["file_name"]), split="train")
        assert ds.num_rows == len(manifest[side])
        for rec in ds:
            turns = [m for m in rec["messages"] if m["role"] != "system"]
            # user/assistant alternate, starting with the user (LLaMA-Factory's rule for sharegpt)
            assert [m["role"] for m in turns] == ["user", "assistant"]
            assert turns[0]["content"].count("<video>") == len(rec["videos"]) == 1
            frames = rec["videos"][0]  # a video given as its frames (LLaMA-Factory reads nested images)
            assert isinstance(frames, list) and all(Path(f).is_file() for f in frames)


def test_video_spans_need_mp4_for_llamafactory(synth_dir, tmp_path, capsys):
    jsonl = ["data=jsonl", f"data.annotations={synth_dir}/videos.jsonl"]
    split = tmp_path / "split.json"
    assert main(["data", "split", *jsonl, "split=lodo", "split.test_domain=animal", f"out={split}"]) == 0
    assert main(["data", "export", *jsonl, f"split={split}", f"out={tmp_path / 'a'}", "format=llamafactory"]) == 2
    assert "use media=mp4" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(["data", "export", *jsonl, f"split={split}", f"out={tmp_path / 'b'}", "format=llamafactory",
                 "media=mp4", "frames.max_frames=4"]) == 0
    rec = json.loads((tmp_path / "b" / "train.jsonl").read_text().splitlines()[0])
    with av.open(rec["videos"][0]) as c:
        assert c.streams.video[0].frames == 4


def test_bad_export_config_is_refused(synth_dir, split, tmp_path, capsys):
    assert main(["data", "export", *SYNTH, f"data.root={synth_dir}", f"split={split}", f"out={tmp_path}/x",
                 "format=alpaca"]) == 2  # refused by the config check, before anything loads
    assert "format must be one of hf, swift, llamafactory" in capsys.readouterr().err
    assert main(["data", "export", *SYNTH, f"data.root={synth_dir}", f"split={split}", f"out={tmp_path}/y",
                 "format=swift", "media=frames"]) == 2
    assert "format=swift needs media=mp4" in capsys.readouterr().err
