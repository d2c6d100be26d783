"""Qwen3-VL (dense and MoE): work in progress (issue 13, helper H2). The class name `Qwen3_VL` is
stable: Qwen3.5's family imports it from here."""
from __future__ import annotations

from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL


class Qwen3_VL(Qwen2_5_VL):
    model_type = "qwen3_vl"
    model_types = ("qwen3_vl", "qwen3_vl_moe")
    vision_keys = ("pixel_values_videos", "video_grid_thw")
