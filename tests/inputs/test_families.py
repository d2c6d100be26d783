"""The model-family seam: the checkpoint's config picks the family (an unknown one is refused in
preflight, naming the known ones), and the Qwen2.5-VL family gives exactly what its processor and
model expect for a clip at EgoCross's real frame geometry."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from egoadapt.cli import main as cli
from egoadapt.data.frames import Clip
from egoadapt.inputs.families import FAMILIES, UnknownFamily, family_class, for_checkpoint
from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL


@pytest.fixture
def foreign_checkpoint(tmp_path):
    """A checkpoint folder of a family egoadapt has no module for."""
    folder = tmp_path / "idefics3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "idefics3"}))
    return folder


def test_the_checkpoints_model_type_picks_the_family(tiny_model_dir):
    assert family_class(str(tiny_model_dir)) is Qwen2_5_VL and FAMILIES["qwen2_5_vl"] is Qwen2_5_VL


def test_an_unknown_family_is_refused_naming_the_known_ones(foreign_checkpoint):
    with pytest.raises(UnknownFamily) as e:
        family_class(str(foreign_checkpoint))
    assert "'idefics3'" in str(e.value) and re.search(r"known families: .*\bqwen2_5_vl\b", str(e.value))


def test_train_refuses_an_unknown_family_in_preflight(foreign_checkpoint, tmp_path, no_model_load):
    with pytest.raises(SystemExit) as e:
        cli(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"model.path={foreign_checkpoint}",
             f"data.root={tmp_path}"])
    assert "'idefics3'" in str(e.value) and "qwen2_5_vl" in str(e.value)
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_eval_refuses_an_unknown_family_in_preflight(foreign_checkpoint, tmp_path, no_model_load):
    from egoadapt.eval.generate import EvalError
    from egoadapt.eval.run import config, preflight

    cfg = config(f"checkpoint={foreign_checkpoint}", "data=synthetic", f"data.root={tmp_path}",
                 f"out={tmp_path / 'eval'}", "qa=close")
    with pytest.raises(EvalError, match=r"known families: .*\bqwen2_5_vl\b"):
        preflight(cfg)


@pytest.fixture(scope="module")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


def real_geometry_clip(frames: int = 12, w: int = 854, h: int = 480, fps: float = 1.0) -> Clip:
    """An EgoCross-sized clip (854x480, 12 frames at 1 fps) of random pixels."""
    rng = np.random.default_rng(0)
    return Clip(rng.integers(0, 256, (frames, h, w, 3), dtype=np.uint8), fps, [k / fps for k in range(frames)],
                list(range(frames)), (0.0, frames / fps))


def test_qwen2_5_vl_family_gives_what_the_processor_gives(tiny_model_dir, processor):
    from egoadapt.inputs.encode import encode_clip

    family = for_checkpoint(str(tiny_model_dir), processor)
    clip = real_geometry_clip()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = processor(text=[text], videos=[clip.frames], video_metadata=[clip.metadata()], do_sample_frames=False,
                     return_tensors="pt", return_mm_token_type_ids=True)
    entry = encode_clip(family, clip)  # what the input cache keeps

    # the prompt: placeholder expansion and the token count from the geometry alone
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    expanded, origin = family.expand(ids, entry)
    assert expanded == full["input_ids"][0].tolist() and len(origin) == len(expanded)
    n = family.num_video_tokens(entry)
    assert n == int((full["input_ids"] == family.video_token_id).sum()) > 0
    assert family.video_token_count(clip.num_frames, 854, 480) == n

    # the model forward: pixels, grid, time step, and the token types its 3-D positions need
    forward = family.forward_inputs([entry])
    assert torch.equal(forward["pixel_values_videos"], full["pixel_values_videos"])
    assert torch.equal(forward["video_grid_thw"], full["video_grid_thw"])
    assert forward["second_per_grid_ts"].tolist() == pytest.approx([2.0])  # temporal patch 2 / 1 fps
    assert torch.equal(family.token_inputs(full["input_ids"])["mm_token_type_ids"], full["mm_token_type_ids"])

    # sampling and vLLM
    vision = {processor.tokenizer.convert_tokens_to_ids(t) for t in ("<|video_pad|>", "<|vision_start|>")}
    assert vision <= set(family.vision_token_ids())
    frames, metadata = family.vllm_video(clip)["video"]
    assert frames is clip.frames and metadata["fps"] == 1.0 and metadata["total_num_frames"] == 12
    assert family.mm_processor_kwargs() == {k: v for k, v in zip(("min_pixels", "max_pixels"),
                                                                 family.pixel_limits()) if v}


@pytest.mark.parametrize("command", ["train", "eval"])
def test_pixel_limits_a_family_ignores_are_refused_in_preflight(command, tmp_path, no_model_load):
    """Qwen3-VL's video processor budgets the whole clip: a per-frame model.max_pixels would silently do
    nothing, so train and eval refuse it before anything loads, naming frames.max_pixels."""
    folder = tmp_path / "qwen3"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    if command == "train":
        with pytest.raises(SystemExit) as e:
            cli(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"model.path={folder}",
                 f"data.root={tmp_path}", "model.max_pixels=200704"])
        message = str(e.value)
    else:
        from egoadapt.eval.generate import EvalError
        from egoadapt.eval.run import config, preflight

        cfg = config(f"checkpoint={folder}", "data=synthetic", f"data.root={tmp_path}", f"out={tmp_path / 'eval'}",
                     "qa=close", "model.max_pixels=200704")
        with pytest.raises(EvalError) as e:
            preflight(cfg)
        message = str(e.value)
    assert "model.max_pixels" in message and "frames.max_pixels" in message and "qwen3_vl" in message
