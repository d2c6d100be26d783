"""`data.*` from a Hub dataset repo, offline, on a real huggingface_hub cache layout
(datasets--OWNER--NAME/{blobs,refs/main,snapshots/REV}) built from the real test-bed file."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from egoadapt.data.errors import DataError
from egoadapt.data.hub import parse
from tests.data.egodata_helpers import TEMPLATE, TESTBED, need_real

REPO = "egotest/EgoCross"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
N = 6  # test-bed records in the fixture repo


def add_file(cache: Path, rel: str, data: bytes) -> Path:
    """One file as huggingface_hub stores it: a blob named by its hash, linked from the snapshot."""
    repo = cache / f"datasets--{REPO.replace('/', '--')}"
    blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = repo / "snapshots" / COMMIT / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return link


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory) -> Path:
    need_real()
    cache = tmp_path_factory.mktemp("hf") / "hub"
    records = json.loads(TESTBED.read_text())[:N]
    add_file(cache, "egocross_testbed/egocross_testbed_imgs.json", json.dumps(records).encode())
    template = [r for r in json.loads(TEMPLATE.read_text()) if r["id"] in {rec["id"] for rec in records}]
    add_file(cache, "submission_template.json", json.dumps(template).encode())
    for rec in records[:-1]:  # the last record's frames are not in the cache
        for path in rec["video_path"]:
            img = Image.new("RGB", (64, 48), (rec["id"] * 20 % 255, 90, 40))
            tmp = cache.parent / "frame"
            img.save(tmp, format="PNG" if path.endswith(".png") else "JPEG")
            add_file(cache, path.lstrip("/"), tmp.read_bytes())
    return cache


def egoadapt(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache), "HF_HOME": str(cache.parent / "home")}
    return subprocess.run([sys.executable, "-m", "egoadapt.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


ANN = f"data.annotations=hf://datasets/{REPO}/egocross_testbed/egocross_testbed_imgs.json"
ANSWERS = f"data.answers=hf://{REPO}/submission_template.json"  # no type: a dataset repo


def test_validate_reads_annotations_answers_and_frames_from_the_hub_cache(hub_cache):
    r = egoadapt(hub_cache, "data", "validate", ANN, ANSWERS, f"data.root=hf://datasets/{REPO}")
    # every file came from the cache; the one record whose frames are not cached is named
    assert f"{N} samples loaded, 0 records skipped" in r.stdout, r.stdout + r.stderr
    assert "with question_id: 6" in r.stdout
    missing = [ln for ln in r.stdout.splitlines() if "not found" in ln]
    last = json.loads(TESTBED.read_text())[N - 1]
    assert len(missing) == 1 and f"record {last['id']}" in missing[0] and COMMIT in missing[0], r.stdout
    assert r.returncode == 1


def test_split_from_the_hub_needs_no_frames(hub_cache, tmp_path):
    out = tmp_path / "split.json"
    r = egoadapt(hub_cache, "data", "split", ANN, ANSWERS, "data.root=hf://datasets/egotest/EgoCross",
                 "split.protocol=lodo", "split.test_domain=surgery", f"out={out}")
    assert r.returncode == 0, r.stderr
    manifest = json.loads(out.read_text())
    assert manifest["counts"]["train"] + manifest["counts"]["test"] == N
    assert [i["file"] for i in manifest["inputs"]] == ["egocross_testbed_imgs.json", "submission_template.json"]


def test_a_repo_not_in_the_cache_offline_is_named(hub_cache):
    r = egoadapt(hub_cache, "data", "validate", "data.annotations=hf://datasets/egotest/Nope/x.json")
    assert r.returncode == 2
    assert "hf://datasets/egotest/Nope/x.json" in r.stderr and "HF_HUB_OFFLINE=1" in r.stderr, r.stderr


def test_uri_forms():
    assert parse("hf://o/n/a/b.json", "f").repo_type == "dataset"
    p = parse("hf://datasets/o/n@v1/a/b.json", "f")
    assert (p.repo_id, p.revision, p.path) == ("o/n", "v1", "a/b.json")
    assert parse("hf://models/o/m/config.json", "f").repo_type == "model"
    with pytest.raises(DataError, match="data.annotations"):
        parse("hf://datasets/", "data.annotations")
