"""Prompts: CloseQA/OpenQA wording from config, video block first, no None keys, SFT targets."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from egoadapt.data.errors import DataError
from egoadapt.data.prompts import (
    build_messages,
    default_prompt_cfg,
    prompt_text,
    target_text,
)
from egoadapt.data.schema import FrameSource, Sample


def sample(**kw) -> Sample:
    base = {"id": "13", "question": "At what timestamp does the surgeon first grasp the bag?",
            "options": ("5.7s", "3.1s", "11.3s", "18.6s"), "dataset": "CholecTrack20", "domain": "surgery",
            "category": "Localization", "question_type": "action temporal localization", "answer_letter": "B",
            "answer_text": "3.1s", "detailed_answer": "The grasp starts at about 3.1 s.", "original_fps": 25.0,
            "frame_source": FrameSource(frames=("a.jpg", "b.jpg"), fps=0.5)}
    base.update(kw)
    return Sample(**base)


def no_none(obj) -> bool:
    if isinstance(obj, dict):
        return all(v is not None and no_none(v) for v in obj.values())
    if isinstance(obj, list):
        return all(no_none(v) for v in obj)
    return True


def test_closeqa_prompt():
    text = prompt_text(sample(), "closeqa")
    assert "Question: At what timestamp does the surgeon first grasp the bag?" in text
    assert "A: 5.7s\nB: 3.1s\nC: 11.3s\nD: 18.6s" in text
    assert "recorded at 25 fps" in text and "sampled at 0.5 fps" in text
    assert '{"prediction": "<the letter of the correct option>", "reason": "<a short explanation>"}' in text
    assert "in seconds" not in text  # the options carry the times
    assert "{" + "question}" not in text and "\n\n" not in text


def test_openqa_prompt_has_no_options():
    text = prompt_text(sample(), "openqa")
    assert "A: 5.7s" not in text and "Options" not in text and '"prediction": "<your answer>"' in text
    assert "Give times in seconds" in text  # temporal localization asks for seconds


def test_time_hint_only_for_temporal_localization():
    spatial = sample(question_type="object spatial localization", question="Where is the hook?")
    assert "in seconds" not in prompt_text(spatial, "openqa")
    assert "in seconds" not in prompt_text(spatial, "closeqa")


def test_without_original_fps_and_with_a_capped_rate():
    text = prompt_text(sample(original_fps=None), "closeqa", sampling_fps=0.25)
    assert "sampled from the video at 0.25 fps" in text or "sampled at 0.25 fps" in text
    assert "recorded at" not in text


def test_messages_video_block_first_and_no_none_keys():
    msgs = build_messages(sample(), "closeqa")
    assert [m["role"] for m in msgs] == ["user"]
    assert msgs[0]["content"][0] == {"type": "video"}
    assert msgs[0]["content"][1]["type"] == "text" and set(msgs[0]["content"][1]) == {"type", "text"}
    assert no_none(msgs)
    cfg = OmegaConf.merge(default_prompt_cfg(), {"system": "You watch first-person video."})
    msgs = build_messages(sample(), "openqa", cfg)
    assert msgs[0] == {"role": "system", "content": [{"type": "text", "text": "You watch first-person video."}]}
    assert no_none(msgs)


def test_wording_comes_from_config():
    cfg = OmegaConf.merge(default_prompt_cfg(), {"closeqa": "Q: {question}\n{options}\n{time_hint}\nJSON {\"x\": 1}"})
    text = prompt_text(sample(question_type="sport identification"), "closeqa", cfg)
    assert text == 'Q: At what timestamp does the surgeon first grasp the bag?\nA: 5.7s\nB: 3.1s\nC: 11.3s\nD: 18.6s\n' \
                   'JSON {"x": 1}'


def test_targets_are_the_json_answer():
    assert json.loads(target_text(sample(), "closeqa")) == {"prediction": "B",
                                                            "reason": "The grasp starts at about 3.1 s."}
    assert json.loads(target_text(sample(), "openqa"))["prediction"] == "3.1s"
    cfg = OmegaConf.merge(default_prompt_cfg(), {"target_reason": "none"})
    assert json.loads(target_text(sample(), "closeqa", cfg)) == {"prediction": "B", "reason": ""}
    with pytest.raises(DataError, match="data.answers"):
        target_text(sample(answer_letter=None, answer_text=None), "closeqa")
    with pytest.raises(DataError, match="CloseQA needs options"):
        prompt_text(sample(options=()), "closeqa")


def test_chat_template_renders_one_video_and_processor_agrees(tiny_model_dir, tmp_path):
    from transformers import AutoProcessor

    from egoadapt.data.frames import load_clip
    from egoadapt.data.prompts import build_messages
    from tests.data.egodata_helpers import write_frames

    processor = AutoProcessor.from_pretrained(tiny_model_dir)
    paths = write_frames(tmp_path / "q", 4)
    s = sample(frame_source=FrameSource(frames=tuple(paths), fps=1.0))
    clip = load_clip(s)
    msgs = build_messages(s, "closeqa", sampling_fps=clip.fps)
    text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.count("<|vision_start|><|video_pad|><|vision_end|>") == 1 and "<|image_pad|>" not in text
    assert text.index("<|video_pad|>") < text.index("Question:")
    out = processor(text=[text], videos=[clip.frames], video_metadata=[clip.metadata()], do_sample_frames=False,
                    return_tensors="pt")
    merge = processor.video_processor.merge_size ** 2
    assert (out["input_ids"] == processor.video_token_id).sum() == out["video_grid_thw"].prod() // merge
    assert out["second_per_grid_ts"].tolist() == [2.0]
