"""Qwen3.5, dense (`qwen3_5`) and MoE (`qwen3_5_moe`): its checkpoints ship Qwen3-VL's processor
(`Qwen3VLProcessor`, `Qwen3VLVideoProcessor`), so a clip's video input, its timestamps-as-text
expansion, token counts and mRoPE positions are Qwen3-VL's. What differs is the tower's output: a
Qwen3.5 tower has no deepstack (its merged features are all the language model takes), so a clip's
precomputed features are the base seam's plain `pooler_output`. (The language model is a hybrid of
Gated DeltaNet and full attention layers; nothing of that reaches the video input.)

Its chat template (4B and larger) opens the answer with `<think>\n` (it reasons first); egoadapt's answer
contract wants the JSON at once, so prompts are rendered with `enable_thinking=False` (the template's
own switch: the prompt then ends `<think>\n\n</think>\n\n`, the empty block SFT's training template
puts before each answer)."""
from __future__ import annotations

from egoadapt.inputs.families.base import VideoFamily
from egoadapt.inputs.families.qwen3_vl import Qwen3_VL


class Qwen3_5(Qwen3_VL):
    model_type = "qwen3_5"
    model_types = ("qwen3_5", "qwen3_5_moe")
    chat_template_kwargs = {"enable_thinking": False}

    # no deepstack: one merged feature tensor per clip, handed back as `pooler_output`
    video_features = VideoFamily.video_features
    encoder_outputs = VideoFamily.encoder_outputs
