"""The tiny Qwen2.5-VL loads like a real checkpoint and runs on video, in transformers and vLLM."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from egoadapt.models.tiny import SIZES, build_tiny


def clip_frames(synth_dir, index=0):
    rec = json.loads((synth_dir / "annotations.json").read_text())[index]
    return rec, np.stack([np.array(Image.open(synth_dir / p.lstrip("/"))) for p in rec["video_path"]])


def video_inputs(processor, rec, frames, fps=2.0):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": rec["question_text"]}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    meta = {"fps": fps, "total_num_frames": len(frames), "frames_indices": list(range(len(frames)))}
    return processor(text=[text], videos=[frames], video_metadata=[meta], do_sample_frames=False,
                     return_tensors="pt")


def test_loads_with_auto_classes_and_generates_from_video(tiny_model_dir, synth_dir):
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    config = AutoConfig.from_pretrained(tiny_model_dir)
    assert config.model_type == "qwen2_5_vl"
    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    rec, frames = clip_frames(synth_dir)
    inputs = video_inputs(processor, rec, frames)
    # 8 frames of 56x56: 4 time steps x 2x2 merged patches = 16 video tokens; 2 fps -> 1 s per step
    assert (inputs["input_ids"] == config.video_token_id).sum() == 16
    assert inputs["second_per_grid_ts"].tolist() == [1.0]
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 8 or out[0, -1] == config.text_config.eos_token_id


def test_video_changes_the_output(tiny_model_dir, synth_dir):
    """The vision tower is wired in: different pixels give different logits."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir).eval()
    rec, frames = clip_frames(synth_dir)
    with torch.no_grad():
        a = model(**video_inputs(processor, rec, frames)).logits[0, -1]
        b = model(**video_inputs(processor, rec, 255 - frames)).logits[0, -1]
    assert not torch.allclose(a, b)


def test_tokenizer_has_qwen_special_tokens_and_template(tiny_model_dir):
    from transformers import AutoTokenizer
    from trl.chat_template_utils import qwen2_5_vl_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    for t in ("<|im_start|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    assert tok.chat_template == qwen2_5_vl_chat_template
    text = '{"prediction": "B", "reason": "the grasper is held"} ünïcode 12.5s'
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_build_is_deterministic(tmp_path):
    a, b = build_tiny(tmp_path / "a", seed=3), build_tiny(tmp_path / "b", seed=3)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_unknown_size_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny size 'huge'"):
        build_tiny(tmp_path, size="huge")


@pytest.mark.integration
def test_small_size_parameter_count(tmp_path):
    from safetensors.torch import load_file

    out = build_tiny(tmp_path / "small", size="small")
    n = sum(t.numel() for t in load_file(str(out / "model.safetensors")).values())
    assert 1e6 < n < 10e6
    assert set(SIZES) >= {"micro", "small"}


def test_real_geometry(tiny_model_dir):
    """Small width and depth, the real Qwen2.5-VL-7B's shapes: positions, mRoPE proportions, vision
    patches, merge and window layout (scaled to depth), the processor's patching."""
    from transformers import AutoConfig, AutoProcessor

    from egoadapt.models.tiny import REAL, fullatt_blocks, mrope_section

    assert mrope_section(128) == [16, 24, 24] and fullatt_blocks(32) == [7, 15, 23, 31]  # the real model's
    config = AutoConfig.from_pretrained(tiny_model_dir)
    text, vision = config.text_config, config.vision_config
    assert text.max_position_embeddings == REAL["max_position_embeddings"] == 128000
    head_dim = text.hidden_size // text.num_attention_heads
    assert text.rope_parameters["mrope_section"] == [4, 6, 6] == mrope_section(head_dim)  # 16:24:24 of head_dim
    assert (vision.patch_size, vision.temporal_patch_size, vision.spatial_merge_size, vision.window_size) == (14, 2, 2, 112)
    assert list(vision.fullatt_block_indexes) == fullatt_blocks(vision.depth) == [vision.depth - 1]
    assert fullatt_blocks(4) == [1, 3] and fullatt_blocks(8) == [1, 3, 5, 7]
    vp = AutoProcessor.from_pretrained(tiny_model_dir).video_processor
    assert (vp.patch_size, vp.temporal_patch_size, vp.merge_size, vp.max_video_tokens) == (14, 2, 2, 128000)
    with pytest.raises(ValueError, match="does not scale"):
        mrope_section(20)


def test_an_unknown_tiny_family_is_refused_naming_the_builds(tmp_path):
    from egoadapt.cli import main as cli
    from egoadapt.models.tiny import FAMILIES

    with pytest.raises(SystemExit) as e:
        cli(["model", "tiny", "family=nope", f"out={tmp_path / 'x'}"])
    assert "'nope'" in str(e.value) and all(f in str(e.value) for f in FAMILIES)
    assert not (tmp_path / "x").exists()
