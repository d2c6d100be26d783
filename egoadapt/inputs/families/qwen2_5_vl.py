"""Qwen2.5-VL: a video is `<|vision_start|><|video_pad|><|vision_end|>` in the chat template, one
`<|video_pad|>` per merged patch (`t*h*w / merge^2`) in the model's input; time enters as mRoPE's
temporal step (`second_per_grid_ts` = temporal_patch_size / fps, from the clip's metadata), and
the model builds 3-D positions only when `mm_token_type_ids` marks the video tokens (2), laid out
after a video as Qwen and vLLM lay them (`mrope_layout`: transformers 5.19 departs from it)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from egoadapt.data.frames import Clip
from egoadapt.inputs.families import mrope_layout
from egoadapt.inputs.families.base import VideoFamily
from egoadapt.inputs.patches import pixels

VISION_SPECIAL_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>")


class Qwen2_5_VL(VideoFamily):
    model_type = "qwen2_5_vl"
    vision_special_tokens = VISION_SPECIAL_TOKENS
    vision_keys = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
    # the transformers model class whose positions after a video are re-laid as Qwen's and vLLM's
    # ("module:Class"; None: the family's own layout already matches)
    rope_model: ClassVar[str | None] = "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl:Qwen2_5_VLModel"

    def __init__(self, processor: Any):
        super().__init__(processor)
        if self.rope_model:
            mrope_layout.bind(self.rope_model)
        self.video_token = getattr(processor, "video_token", "<|video_pad|>")
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        self.merge = int(getattr(self.video_processor, "merge_size", 2)) ** 2

    # ------------------------------------------------------------------ clip -> processor inputs
    def process(self, clip: Clip, **kwargs: Any) -> Mapping[str, Any]:
        return self.processor(text=[f"<|vision_start|>{self.video_token}<|vision_end|>"], videos=[clip.frames],
                              video_metadata=[clip.metadata()], do_sample_frames=False, return_tensors="pt", **kwargs)

    def pixel_limits(self) -> tuple[int | None, int | None]:
        vp = self.video_processor
        size = getattr(vp, "size", None) or {}
        get = size.get if isinstance(size, Mapping) else lambda k: getattr(size, k, None)
        lo = get("shortest_edge") or getattr(vp, "min_pixels", None)
        hi = get("longest_edge") or getattr(vp, "max_pixels", None)
        return (int(lo) if lo else None), (int(hi) if hi else None)

    def video_token_count(self, num_frames: int, width: int, height: int, fps: float | None = None) -> int:  # noqa: ARG002
        """By Qwen2VLVideoProcessor's resize and patchify rule (`smart_resize`, `t*h*w / merge^2`)."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        vp = self.video_processor
        patch, merge, temporal = int(vp.patch_size), int(vp.merge_size), int(vp.temporal_patch_size)
        factor = patch * merge
        min_pixels, max_pixels = self.pixel_limits()
        min_pixels, max_pixels = min_pixels or 56 * 56, max_pixels or 28 * 28 * 1280  # smart_resize's defaults
        if getattr(vp, "cap_pixels_per_frame", None):  # each frame's share of the total-video budget
            total = int(int(getattr(vp, "max_video_tokens", 128000)) * factor * factor * 0.9)
            max_pixels = max(min(max_pixels, total * temporal // num_frames), int(min_pixels * 1.05))
        h, w = smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
        grid_t = (num_frames + (-num_frames % temporal)) // temporal
        return grid_t * (h // patch) * (w // patch) // (merge * merge)

    # ------------------------------------------------------------------ prompt
    def num_video_tokens(self, vision: Mapping[str, Any]) -> int:
        return int(vision["video_grid_thw"].prod()) // self.merge

    # ------------------------------------------------------------------ model forward
    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        out = {"pixel_values_videos": torch.cat([pixels(r) for r in rows]),
               "video_grid_thw": torch.cat([r["video_grid_thw"] for r in rows])}
        if all("second_per_grid_ts" in r for r in rows):
            out["second_per_grid_ts"] = torch.cat([torch.as_tensor(r["second_per_grid_ts"]).reshape(-1) for r in rows])
        return out

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        # transformers 5.x computes 3-D mRoPE positions only when this is passed (2 marks video tokens)
        return {"mm_token_type_ids": (input_ids == self.video_token_id).long() * 2}

    # ------------------------------------------------------------------ vLLM
    def vllm_video(self, clip: Clip) -> dict[str, Any]:
        return {"video": (clip.frames, clip.metadata())}  # a bare array fails: vLLM needs the metadata

    def mm_processor_kwargs(self) -> dict[str, Any]:
        lo, hi = self.pixel_limits()
        return {k: v for k, v in (("min_pixels", lo), ("max_pixels", hi)) if v}

    def served_video(self, clip: Clip) -> dict[str, Any]:
        from egoadapt.data.chat_media import video_block

        return video_block(clip)  # an mp4 at the clip's sampling fps: the server decodes exactly its frames
