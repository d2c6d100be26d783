"""Batches whose clips have different frame counts (EgoCross: 1 to 91 frames), on LLaVA-OneVision, whose
forward stacks a batch's videos into one (B, T, C, H, W) tensor: such a batch reaches the model as the
tower's outputs per clip (`VideoFamily.batch_key`, `VideoInputs.groups`, `train.vision_dedupe.ClipFeatures`)
in SFT and GRPO's per-row path, and HF generation runs one `generate` per frame count. Each row gets what its
own forward with its pixels gives; SFT, GRPO with HF rollouts and HF evaluation run with such batches
and train the vision tower. A Qwen batch of the same clips stacks (its forward takes any mix) and keeps
its pixels."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from egoadapt.data.load import load_samples
from egoadapt.inputs.video import VideoInputs
from egoadapt.rollout.engines import HFEngine
from egoadapt.train.collators import CLIPS, VideoSFTCollator
from egoadapt.train.grpo import _WithVideo
from egoadapt.train.vision_dedupe import ClipFeatures
from tests.families.test_matrix import changes, evaluate, train

FAMILY = "llava_onevision"
# 2 clips x 2 generations a batch (the family matrix's GRPO_SMALL draws one clip 4 times: nothing to mix)
GRPO_MIXED = ("trainer.per_device_train_batch_size=4", "trainer.num_generations=2",
              "trainer.max_completion_length=8", "+reward.weights.test_length=1.0")


def frame_count(record_id: int) -> int:
    """1 to 4 frames, in turn by question id (the synthetic set's clips all have 8)."""
    return 1 + record_id % 4


@pytest.fixture(scope="module")
def mixed_dir(synth_dir, tmp_path_factory):
    """The synthetic set with each question's frame list cut to `frame_count` frames (one video's questions
    have 4 different counts, so any batch of a few questions almost surely mixes them)."""
    out = tmp_path_factory.mktemp("mixed") / "synth"
    shutil.copytree(synth_dir, out)
    records = json.loads((out / "annotations.json").read_text())
    for r in records:
        r["video_path"] = r["video_path"][:frame_count(r["id"])]
    (out / "annotations.json").write_text(json.dumps(records))
    return out


def video_inputs(model_dir, data_dir) -> VideoInputs:
    from transformers import AutoProcessor

    samples = load_samples({"format": "egocross", "annotations": str(data_dir / "annotations.json"),
                            "answers": str(data_dir / "answers.json"), "root": str(data_dir)})
    return VideoInputs(samples, AutoProcessor.from_pretrained(model_dir), frames_cfg=None)


def frames(video: VideoInputs, sample_id: str) -> int:
    return int(video.vision(sample_id)["pixel_values_videos"].shape[1])


@pytest.fixture(scope="module")
def llava(family_dirs, mixed_dir):
    """(VideoInputs, float32 model in eval mode, 4 SFT rows whose clips have 3 different frame counts:
    the first and the last share one)."""
    from transformers import AutoModelForImageTextToText

    folder = family_dirs[FAMILY]
    video = video_inputs(folder, mixed_dir)
    first = list(video.samples)[:3]
    last = next(i for i in list(video.samples)[3:] if frames(video, i) == frames(video, first[0]))
    ids = [*first, last]
    assert [frames(video, i) for i in ids].count(frames(video, last)) == 2 and len({frames(video, i) for i in ids}) == 3
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    rows = [{"sample_id": i, "qa": "close", "completion": '{"prediction": "A"}'} for i in ids]
    return video, model, rows


def own_logits(video: VideoInputs, model, batch: dict) -> list[torch.Tensor]:
    """Each row's logits from its own forward with its clip's pixels (its unpadded tokens only)."""
    out = []
    for ids, mask, sample_id in zip(batch["input_ids"], batch["attention_mask"], batch[CLIPS]):
        ids = ids[mask.bool()][None]
        with torch.no_grad():
            out.append(model(input_ids=ids, **video.collate([sample_id]), **video.token_inputs(ids)).logits[0])
    return out


def assert_rows_match(logits: torch.Tensor, batch: dict, expected: list[torch.Tensor]) -> None:
    for row, mask, own in zip(logits, batch["attention_mask"], expected):
        diff = (row[mask.bool()] - own).abs().max().item()
        assert diff < 1e-5, diff


class TowerCalls:
    """The vision tower's calls and the frames it encodes while in a `with` block."""

    def __init__(self, model):
        self.tower, self.calls, self.frames = model.model.vision_tower, 0, 0

    def hook(self, module, args, kwargs):
        self.calls += 1
        self.frames += (args[0] if args else kwargs["pixel_values"]).shape[0]

    def __enter__(self):
        self.handle = self.tower.register_forward_pre_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_a_mixed_batch_gives_each_row_its_own_forward(llava):
    """SFT's way (the collator hands sample ids; their clips' tower outputs, one tower call per frame
    count) and GRPO's per-row way (`_WithVideo` without shared features) give every row the logits of
    its own forward with its pixels."""
    video, model, rows = llava
    batch = VideoSFTCollator(video)(rows)
    assert CLIPS in batch and "pixel_values_videos" not in batch  # 3 frame counts: not stackable
    assert video.groups(batch[CLIPS]) == [[0, 3], [1], [2]]
    expected = own_logits(video, model, batch)
    tokens = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask")}

    features = ClipFeatures(video, detached=False)
    with torch.no_grad(), TowerCalls(model) as tower:
        sft = model(**tokens, **features.model_inputs(model, batch[CLIPS], torch.device("cpu"))).logits
    assert (tower.calls, tower.frames, features.encoded) == (3, sum(frames(video, i) for i in batch[CLIPS]), 4)
    with torch.no_grad():
        per_row = _WithVideo(model, video, batch[CLIPS], None)(**tokens).logits
    assert_rows_match(sft, batch, expected)
    assert_rows_match(per_row, batch, expected)


def test_hf_generation_of_a_mixed_batch_answers_each_request_as_alone(llava):
    video, model, rows = llava
    engine = HFEngine(video, {"temperature": 0.0, "max_tokens": 6})
    requests = [video.request(r["sample_id"], "close") for r in rows]
    together, _ = engine.generate(requests, model)
    alone = [engine.generate([r], model)[0][0] for r in requests]
    assert together == alone and all(together)


def test_a_qwen_batch_of_the_same_clips_stacks_as_pixels(tiny_model_dir, mixed_dir):
    """Qwen's forward takes any mix of clips (flattened patches): one group, the collator's batch as before."""
    video = video_inputs(tiny_model_dir, mixed_dir)
    ids = list(video.samples)[:3]
    assert len({int(video.vision(i)["video_grid_thw"][0, 0]) for i in ids}) > 1  # different temporal lengths
    assert video.groups(ids) == [[0, 1, 2]]
    batch = VideoSFTCollator(video)([{"sample_id": i, "qa": "close", "completion": "A"} for i in ids])
    assert CLIPS not in batch and "pixel_values_videos" in batch and "video_grid_thw" in batch


@pytest.fixture
def groups_seen(monkeypatch) -> list[int]:
    """How many frame-count groups each batch had (`VideoInputs.groups`, recorded as it runs)."""
    seen: list[int] = []
    original = VideoInputs.groups

    def recording(self, sample_ids):
        groups = original(self, sample_ids)
        seen.append(len(groups))
        return groups
    monkeypatch.setattr(VideoInputs, "groups", recording)
    return seen


@pytest.mark.integration
def test_sft_grpo_and_eval_train_on_mixed_batches(family_dirs, mixed_dir, tmp_path, groups_seen):
    """`egoadapt train` (SFT, batches of 4; GRPO, HF rollouts, 2 clips x 2 generations) and `egoadapt eval`
    (HF, batches of 4) on clips of 1 to 4 frames: batches mix frame counts, and the vision tower trains."""
    model = family_dirs[FAMILY]
    sft = train("demo/tiny_sft", model, mixed_dir, tmp_path / "sft", "trainer.max_steps=2",
                "trainer.per_device_train_batch_size=4")
    assert max(groups_seen) > 1, "no SFT batch mixed frame counts"
    assert all(d > 0 for d in changes(FAMILY, model, sft))

    groups_seen.clear()
    grpo = train("demo/tiny_grpo", model, mixed_dir, tmp_path / "grpo", "trainer.max_steps=2", *GRPO_MIXED)
    assert max(groups_seen) > 1, "no GRPO batch mixed frame counts"
    assert changes(FAMILY, model, grpo)[0] > 0, "the vision tower got no gradient from mixed GRPO batches"

    groups_seen.clear()
    evaluate(grpo, mixed_dir, tmp_path / "eval", "batch_size=4")
    assert max(groups_seen) > 1, "no evaluation batch mixed frame counts"
