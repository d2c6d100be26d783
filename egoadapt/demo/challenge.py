"""The demo's challenge files, cut from a synthetic set and its split manifest.

The EgoCross challenge gives entrants a support set (a few questions per domain, in the
chat format `egoadapt.data.support` reads) and a test bed without answers, and scores a
submission file filled from a template. The demo plays that out on synthetic data:
`support.json` takes `per_domain` questions per domain from the manifest's train side,
`testbed/annotations.json` (+ `answers.json`) is the test side in the test-bed format, and
`template.json` the submission template (`{id, question_id, dataset, answer: ""}`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from egoadapt.data.synthetic import write_json

IMAGE_MARK = "<image>"


def support_record(record: dict, answer: dict, root: Path) -> dict:
    frames = [str(root / p.lstrip("/")) for p in record["video_path"]]
    text = IMAGE_MARK * len(frames) + record["question_text"] + "\n" + "\n".join(record["options"])
    return {
        "id": f"support-{record['id']}", "question_id": answer["question_id"], "dataset": record["dataset"],
        "domain": record["domain"], "primary_category": record["primary_category"],
        "question_type": record["question_type"], "sampling_fps": record["sampling_fps"],
        "messages": [{"role": "user", "content": text},
                     {"role": "assistant", "content": answer["correct_option_letter"]}],
        "images": frames,
    }


def write_challenge(root: Path, manifest: Path, out: Path, per_domain: int, seed: int) -> dict:
    """Writes out/{support.json, testbed/annotations.json, testbed/answers.json, template.json}."""
    records = json.loads((root / "annotations.json").read_text())
    answers = {a["id"]: a for a in json.loads((root / "answers.json").read_text())}
    split = json.loads(manifest.read_text())
    train, test = {str(i) for i in split["train"]}, {str(i) for i in split["test"]}
    rng = np.random.default_rng(seed)
    support = []
    for domain in sorted({r["domain"] for r in records}):
        pool = [r for r in records if r["domain"] == domain and str(r["id"]) in train]
        if len(pool) < per_domain:
            raise ValueError(f"challenge: {domain} has {len(pool)} training questions, fewer than {per_domain}")
        picked = sorted(rng.choice(len(pool), per_domain, replace=False))
        support += [support_record(pool[i], answers[pool[i]["id"]], root) for i in picked]
    testbed = [r for r in records if str(r["id"]) in test]
    out.mkdir(parents=True, exist_ok=True)
    (out / "testbed").mkdir(exist_ok=True)
    write_json(out / "support.json", support)
    write_json(out / "testbed" / "annotations.json", testbed)
    write_json(out / "testbed" / "answers.json", [answers[r["id"]] for r in testbed])
    write_json(out / "template.json", [{"id": r["id"], "question_id": answers[r["id"]]["question_id"],
                                        "dataset": r["dataset"], "answer": ""} for r in testbed])
    return {"support": len(support), "testbed": len(testbed)}
