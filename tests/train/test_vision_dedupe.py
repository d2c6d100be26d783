"""GRPO's per-batch state (`VideoBatch`) and one vision-tower forward per clip (issue 12 item 3,
issue 14 item 4), on real trainers built by `egoadapt train` on the tiny model: the deduplicated
passes give the per-row log-probs and gradients (LM and tower; trained and frozen tower), the
tower runs once per unique clip, and two batches never see each other's clips."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trl.trainer.utils import shuffle_sequence_dict, split_tensor_dict

from egoadapt.cli import main as cli
from egoadapt.train.grpo import VideoGRPOTrainer
from egoadapt.train.video_batch import BatchScope, VideoBatch
from egoadapt.train.vision_dedupe import unwrap
from tests.train import helpers  # noqa: F401  registers the test_length reward (advantages never all zero)

G = 4  # completions per clip
SETTINGS = ("trainer.per_device_train_batch_size=8", f"trainer.num_generations={G}", "trainer.max_completion_length=6",
            "trainer.beta=0.04", "trainer.loss_type=grpo", "trainer.gradient_checkpointing=false", "trainer.max_steps=1",
            "trainer.save_strategy=no", "trainer.report_to=none", "+reward.weights.test_length=1.0")


def build_trainer(model_dir: Path, data_dir: Path, out: Path, *overrides: str) -> VideoGRPOTrainer:
    """The VideoGRPOTrainer `egoadapt train` assembles; its train() call is caught, so it comes back untrained."""
    caught = {}
    original = VideoGRPOTrainer.train
    VideoGRPOTrainer.train = lambda self, *a, **k: caught.setdefault("trainer", self)
    try:
        assert cli(["train", "recipe=demo/tiny_grpo", f"model.path={model_dir}", f"data.root={data_dir}",
                    f"out={out}", f"cache_dir={out.parent / 'input_cache'}", *SETTINGS, *overrides]) == 0
    finally:
        VideoGRPOTrainer.train = original
    trainer = caught["trainer"]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # what train() sets before the first step
    return trainer


def generation_batch(trainer: VideoGRPOTrainer, first_row: int, prompts: int = 2) -> dict:
    """What TRL's `_prepare_inputs` makes of `prompts` dataset rows, each drawn G times."""
    rows = [trainer.train_dataset[first_row + i] for i in range(prompts) for _ in range(G)]
    torch.manual_seed(first_row)
    return trainer._generate_and_score_completions(rows)


def policy_pass(trainer: VideoGRPOTrainer, inputs: dict, dedupe: bool) -> tuple[torch.Tensor, dict]:
    """The policy's loss on `inputs` and the gradient of every parameter that gets one."""
    trainer.vision_dedupe = dedupe
    trainer.model.zero_grad()
    loss = trainer._compute_loss(trainer.model, inputs)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    trainer.model.zero_grad()
    return loss.detach(), grads


def no_grad_pass(trainer: VideoGRPOTrainer, inputs: dict, dedupe: bool, chunk: int) -> torch.Tensor:
    """Log-probs as the old-policy / reference passes compute them: no grad, in chunks of rows."""
    trainer.vision_dedupe = dedupe
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad(), trainer.batch_scope(VideoBatch.of(inputs)):
        logps, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, mask, inputs["completion_ids"].size(1), batch_size=chunk)
    return logps


class TowerCalls:
    """Counts the clips the vision tower encodes (one grid row per clip) while in a `with` block."""

    def __init__(self, trainer):
        self.tower, self.calls, self.clips = trainer.video.family.vision_tower(unwrap(trainer.model)), 0, 0

    def hook(self, module, args, kwargs):
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.calls += 1
        self.clips += grid.size(0)

    def __enter__(self):
        self.handle = self.tower.register_forward_pre_hook(self.hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on the loaded 2-core machines two OpenMP threads stall each other (13 s vs 1 s
    for one generation batch here); restored after this module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, synth_dir, tmp_path_factory):
    return build_trainer(tiny_model_dir, synth_dir, tmp_path_factory.mktemp("dedupe") / "trained")


@pytest.fixture(scope="module")
def frozen(tiny_model_dir, synth_dir, tmp_path_factory):
    return build_trainer(tiny_model_dir, synth_dir, tmp_path_factory.mktemp("dedupe") / "frozen",
                         "model.freeze_vision=true", "vision_dedupe=false")


def assert_grads_match(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_trained_tower_dedupe_matches_per_row(trained):
    assert not trained.tower_frozen and trained.vision_dedupe  # on by default (conf/train.yaml)
    inputs = generation_batch(trained, 0)
    assert len(set(VideoBatch.of(inputs).sample_ids)) == 2
    # old-policy / reference style: chunks of 3 rows, so a clip's rows span chunks
    torch.testing.assert_close(no_grad_pass(trained, inputs, True, 3), no_grad_pass(trained, inputs, False, 3),
                               rtol=1e-5, atol=1e-6)
    loss_dedupe, grads_dedupe = policy_pass(trained, inputs, True)
    loss_rows, grads_rows = policy_pass(trained, inputs, False)
    torch.testing.assert_close(loss_dedupe, loss_rows, rtol=1e-5, atol=1e-7)
    assert any(".visual." in n for n in grads_rows) and any("language_model" in n for n in grads_rows)
    assert max(g.abs().max().item() for n, g in grads_rows.items() if ".visual." in n) > 0
    assert_grads_match(grads_dedupe, grads_rows)


def test_trained_tower_runs_once_per_clip_per_pass(trained):
    inputs = generation_batch(trained, 2)
    for dedupe, clips in ((True, 2), (False, 2 * G)):
        with TowerCalls(trained) as tower:
            policy_pass(trained, inputs, dedupe)
        assert (tower.calls, tower.clips) == (1, clips)
    with TowerCalls(trained) as tower:
        no_grad_pass(trained, inputs, True, 3)  # chunks [0:3] [3:6] [6:8]: clip 2 first needed by the second
    assert (tower.calls, tower.clips) == (2, 2)


def test_frozen_tower_is_encoded_once_per_batch(frozen):
    assert frozen.tower_frozen and frozen.ref_model is not None
    assert not frozen.vision_dedupe  # the command line's vision_dedupe=false reached the trainer
    assert VideoBatch.of(generation_batch(frozen, 2)).frozen is None
    frozen.vision_dedupe = True
    inputs = generation_batch(frozen, 0)  # the rollout, then the reference pass encodes the 2 clips
    batch = VideoBatch.of(inputs)
    assert batch.frozen is not None and batch.frozen.encoded == 2
    with TowerCalls(frozen) as tower:
        loss_dedupe, grads_dedupe = policy_pass(frozen, inputs, True)
        policy_pass(frozen, inputs, True)  # a second iteration on the same batch (num_iterations=2)
        no_grad_pass(frozen, inputs, True, 3)
    assert tower.calls == 0 and batch.frozen.encoded == 2
    loss_rows, grads_rows = policy_pass(frozen, inputs, False)
    torch.testing.assert_close(loss_dedupe, loss_rows, rtol=1e-5, atol=1e-7)
    assert not any(".visual." in n for n in grads_rows) and any("language_model" in n for n in grads_rows)
    assert_grads_match(grads_dedupe, grads_rows)
    torch.testing.assert_close(no_grad_pass(frozen, inputs, True, 3), no_grad_pass(frozen, inputs, False, 8),
                               rtol=1e-5, atol=1e-6)


def test_interleaved_batches_keep_their_own_clips(trained):
    """Batch A is generated, batch B (other clips) is generated in between, A's slices are then scored:
    they see A's clips, as before B; shuffled and split as TRL does, each row keeps its clip."""
    trained.vision_dedupe = True
    a = generation_batch(trained, 0)
    clips_a = set(VideoBatch.of(a).sample_ids)
    loss_before = trained._compute_loss(trained.model, a).detach()
    logps_a = no_grad_pass(trained, a, True, 8)
    assert trained.batch_scope.current is None  # nothing left in scope between calls
    b = generation_batch(trained, 4)
    assert not clips_a & set(VideoBatch.of(b).sample_ids)
    seen = []
    original = trained.video.collate
    trained.video.collate = lambda ids: seen.extend(ids) or original(ids)
    try:
        torch.testing.assert_close(trained._compute_loss(trained.model, a).detach(), loss_before)
    finally:
        trained.video.collate = original
    assert seen and set(seen) <= clips_a

    torch.manual_seed(1)
    shuffled = shuffle_sequence_dict(a)
    halves = split_tensor_dict(shuffled, 2)
    order = shuffled["video_row"].tolist()
    for k, half in enumerate(halves):
        assert VideoBatch.of(half).sample_ids == [VideoBatch.of(a).sample_ids[i] for i in order[4 * k:4 * k + 4]]
        torch.testing.assert_close(no_grad_pass(trained, half, True, 4), logps_a[order[4 * k:4 * k + 4]],
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(RuntimeError, match="mixes rows of 2 generation batches"):
        VideoBatch.of({"video_batch": a["video_batch"][:1] + b["video_batch"][:1], "video_row": torch.arange(2)})


def test_scope_is_one_batch_for_one_block():
    scope = BatchScope()
    batch = VideoBatch(rows=({"sample_id": "x"},))
    with scope(batch):
        assert scope.current is batch
        with pytest.raises(RuntimeError, match="do not nest"), scope(batch):
            pass
    assert scope.current is None
    with pytest.raises(ValueError), scope(batch):
        raise ValueError("a failing pass")
    assert scope.current is None


def test_lora_on_the_tower_dedupe_matches_per_row(tiny_model_dir, synth_dir, tmp_path):
    """LoRA adapters in the tower train through the shared output; the reference pass (adapters
    disabled, PEFT's way to the base model) encodes with the base tower. LoRA dropout off: with it,
    the rows of a clip share one dropout mask in the tower instead of drawing one each."""
    lora = build_trainer(tiny_model_dir, synth_dir, tmp_path / "lora", "model.lora.enabled=true", "model.lora.r=4",
                         "model.lora.dropout=0")
    assert not lora.tower_frozen and lora.ref_model is None
    inputs = generation_batch(lora, 0)  # its reference log-probs: adapters off, tower deduplicated
    with lora.model.disable_adapter():
        ref_rows = no_grad_pass(lora, inputs, False, 8)
    torch.testing.assert_close(inputs["ref_per_token_logps"], ref_rows, rtol=1e-5, atol=1e-6)
    loss_dedupe, grads_dedupe = policy_pass(lora, inputs, True)
    loss_rows, grads_rows = policy_pass(lora, inputs, False)
    torch.testing.assert_close(loss_dedupe, loss_rows, rtol=1e-5, atol=1e-7)
    assert any(".visual." in n and "lora_" in n for n in grads_rows)
    assert_grads_match(grads_dedupe, grads_rows)
