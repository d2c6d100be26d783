"""Splits: leak-free by source video, 70/30 per dataset x category where the videos allow it,
byte-identical manifests from a seed, leave-one-domain-out, the support protocol."""
from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from egoadapt.data.errors import DataError
from egoadapt.data.load import load_samples
from egoadapt.data.split import load_split, make_manifest, paper_split
from tests.data.egodata_helpers import TEMPLATE, TESTBED, real_cfg, write_frames, write_json

SEEDS = range(5)


@pytest.fixture(scope="module")
def real():
    return load_samples(real_cfg())


def best_achievable(counts_per_group: list[int], target: float) -> float:
    """Smallest |test - target| any subset of whole groups reaches for one cell on its own."""
    sums = {0}
    for c in counts_per_group:
        sums |= {s + c for s in sums}
    return min(abs(s - target) for s in sums)


def test_no_source_video_on_both_sides(real):
    for seed in SEEDS:
        train, test = paper_split(real, seed)
        assert train | test == {s.id for s in real} and not train & test
        side = {}
        for s in real:
            video = (s.dataset, s.question_id.split("_")[1])  # the source video, from question_id
            side.setdefault(video, set()).add(s.id in test)
        assert all(len(v) == 1 for v in side.values())


def test_each_cell_is_70_30_within_one_question_where_the_videos_allow(real):
    cells = defaultdict(lambda: defaultdict(int))
    for s in real:
        cells[(s.dataset, s.category)][s.group] += 1
    for seed in SEEDS:
        _, test = paper_split(real, seed)
        got = Counter((s.dataset, s.category) for s in real if s.id in test)
        allowed = 0
        for cell, groups in cells.items():
            n = sum(groups.values())
            best = best_achievable(list(groups.values()), 0.3 * n)
            dev = abs(got[cell] - 0.3 * n)
            if best <= 1:
                allowed += 1
                assert dev <= 1, (seed, cell, got[cell], n)
            else:  # e.g. EgoSurgery's 12-question videos: as close as that cell alone could get
                assert dev <= best + 1e-9, (seed, cell, got[cell], n)
        assert allowed == 11  # of 16 cells; the rest have too few, too large videos
        assert 0.27 < len(test) / len(real) < 0.33


def test_manifests_are_byte_identical_and_seeded(real, tmp_path):
    from egoadapt.cli import main

    args = ["data", "split", f"data.annotations={TESTBED}", f"data.answers={TEMPLATE}", "split.seed=7"]
    assert main(args + [f"out={tmp_path / 'a.json'}"]) == 0
    assert main(args + [f"out={tmp_path / 'b.json'}"]) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    m = json.loads((tmp_path / "a.json").read_text())
    assert m["protocol"] == "paper_70_30" and m["seed"] == 7 and len(m["train"]) + len(m["test"]) == 957
    assert len(m["input_hash"]) == 64 and {i["file"] for i in m["inputs"]} == {TESTBED.name, TEMPLATE.name}
    cell = m["counts"]["cells"]["CholecTrack20/Counting"]
    assert cell == {"train": 21, "test": 9, "test_target": 9.0}
    assert sum(c["train"] + c["test"] for c in m["counts"]["cells"].values()) == 957
    # another seed picks other videos
    tests = {frozenset(paper_split(real, seed)[1]) for seed in SEEDS}
    assert len(tests) == len(SEEDS)


def test_lodo_holds_out_exactly_one_domain(real, tmp_path):
    domains = {"surgery": 283, "industry": 245, "extreme_sports": 246, "animal": 183}
    by_id = {s.id: s for s in real}
    for domain, n in domains.items():
        m = make_manifest(real, "lodo", test_domain=domain)
        assert {by_id[i].domain for i in m["test"]} == {domain} and len(m["test"]) == n
        assert {by_id[i].domain for i in m["train"]} == set(domains) - {domain}
        assert len(m["train"]) == 957 - n and m["train_domains"] == sorted(set(domains) - {domain})
    from egoadapt.cli import main

    assert main(["data", "split", f"data.annotations={TESTBED}", "split=lodo", "split.test_domain=animal",
                 f"out={tmp_path / 'l.json'}"]) == 0
    assert main(["data", "split", f"data.annotations={TESTBED}", "split=lodo", "split.test_domain=space",
                 f"out={tmp_path / 'x.json'}"]) == 2


def test_support_protocol_trains_on_the_support_set(real, tmp_path):
    frames = write_frames(tmp_path / "frames" / "CholecTrack20" / "VID110" / "q", 2)
    recs = [{"messages": [{"role": "user", "content": f"<image><image>Q{i}?\nA: x\nB: y"},
                          {"role": "assistant", "content": "A"}], "images": frames, "domain": d}
            for i, d in enumerate(["surgery", "industry", "animal"])]
    support = write_json(tmp_path / "support.json", recs)
    from egoadapt.cli import main

    out = tmp_path / "s.json"
    assert main(["data", "split", f"data.annotations={TESTBED}", f"data.answers={TEMPLATE}", "split=support",
                 f"split.support.annotations={support}", f"out={out}"]) == 0
    m = json.loads(out.read_text())
    assert m["train"] == ["support-0", "support-1", "support-2"] and len(m["test"]) == 957
    assert m["shared_source_videos"] == ["CholecTrack20/VID110"]  # reported: the support frames come from it
    sup = load_samples({"format": "support", "annotations": str(support)})
    assert [s.id for s in load_split(out, sup, "train")] == m["train"]
    assert main(["data", "split", f"data.annotations={TESTBED}", "split=support", f"out={out}"]) == 2


def test_load_split_reads_manifest_sides(real, tmp_path):
    from egoadapt.data.split import write_manifest

    m = make_manifest(real, "paper_70_30", seed=1)
    write_manifest(m, tmp_path / "m.json")
    test = load_split(tmp_path / "m.json", real, "test")
    assert [s.id for s in test] == m["test"] and all(s.id not in set(m["train"]) for s in test)
    with pytest.raises(DataError, match="not in the loaded data"):
        load_split(tmp_path / "m.json", real[:100], "train")
    with pytest.raises(DataError, match="not found"):
        load_split(tmp_path / "nope.json", real, "train")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DataError, match="not a split manifest"):
        load_split(tmp_path / "bad.json", real, "train")


def test_synthetic_split_keeps_videos_whole(synth_dir):
    samples = load_samples({"format": "egocross", "annotations": str(synth_dir / "annotations.json"),
                            "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})
    m = make_manifest(samples, "paper_70_30", seed=0)
    test = set(m["test"])
    sides = defaultdict(set)
    for s in samples:
        sides[s.group].add(s.id in test)
    assert all(len(v) == 1 for v in sides.values()) and 0 < len(test) < len(samples)
    assert m["counts"]["test_groups"] + m["counts"]["train_groups"] == 8


def test_build_split_from_configs(real, tmp_path):
    from omegaconf import OmegaConf

    from egoadapt.cli import compose
    from egoadapt.data.split import build_split, write_manifest

    cfg = compose("data_split", [f"data.annotations={TESTBED}", f"data.answers={TEMPLATE}", "split.seed=2"])
    manifest, pool = build_split(cfg.data, cfg.split)
    assert manifest == make_manifest(real, "paper_70_30", seed=2, inputs=manifest["inputs"])
    write_manifest(manifest, tmp_path / "m.json")
    again, _ = build_split(cfg.data, OmegaConf.merge(cfg.split, {"manifest": str(tmp_path / "m.json"), "seed": 9}))
    assert again == manifest  # an existing manifest wins over the seed
    assert [s.id for s in load_split(tmp_path / "m.json", pool, "test")] == manifest["test"]
