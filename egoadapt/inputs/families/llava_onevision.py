"""LLaVA-OneVision: a video is one `<video>` in the chat template; the model takes every frame
resized to the SigLIP tower's 384x384, pools its 27x27 patch features 2x2 (bilinear) to 14x14 and
appends one `image_newline` after the clip, so the placeholder becomes `frames * 196 + 1` `<video>`
tokens whatever the clip's size. No temporal patch (odd frame counts need no padding), no mRoPE
(1-D positions from the attention mask: nothing derived from the token ids), no timestamps.

The model's forward takes a batch of videos as one (B, T, C, H, W) tensor (transformers'
`get_video_features` views it as B*T frames, one newline per video), so only clips of one frame
count stack (`batch_key`). A batch that mixes counts (EgoCross clips have 1 to 91 frames) reaches
the model as precomputed features: the tower runs once per frame count and each row gets its own
clip's tokens (`encoder_outputs`; `VideoInputs.groups`, `train.vision_dedupe.ClipFeatures`), and
HF generation runs one `generate` per frame count.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from egoadapt.data.frames import Clip
from egoadapt.inputs.families.base import VideoFamily
from egoadapt.inputs.patches import PIXELS

VISION_SPECIAL_TOKENS = ("<image>", "<video>")


def frame_pixels(value: Mapping[str, Any]) -> torch.Tensor:
    """`pixel_values_videos` (1, T, C, H, W) as the model takes them (float32): the cache's uint8
    frames normalised per channel on read (`inputs.encode`), as `patches.pixels` does for patches."""
    x = value[PIXELS]
    if x.dtype != torch.uint8:
        return x.float()
    mean, std = value["pixel_mean"].view(-1, 1, 1), value["pixel_std"].view(-1, 1, 1)
    return x.float().sub_(mean).div_(std)


class LlavaOnevision(VideoFamily):
    model_type = "llava_onevision"
    vision_special_tokens = VISION_SPECIAL_TOKENS
    vision_keys = ("pixel_values_videos",)
    # everything `get_video_features` runs between pixels and the LM (as Qwen's `visual` holds its
    # merger): the SigLIP tower, the projector and the newline embedding; live names, then the saved ones
    vision_prefixes = ("model.vision_tower.", "model.multi_modal_projector.", "model.image_newline",
                       "vision_tower.", "multi_modal_projector.", "image_newline")
    odd_frames = "keep"  # no temporal patch: an odd clip is read as it is

    def __init__(self, processor: Any):
        super().__init__(processor)
        self.video_token = getattr(processor, "video_token", "<video>")
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        # the processor's rule (`replace_video_token`): sqrt(num_image_tokens) patches a side, pooled 2x2
        side = math.ceil(int(math.sqrt(int(processor.num_image_tokens))) / 2)
        self.frame_tokens = side * side

    # ------------------------------------------------------------------ clip -> processor inputs
    def process(self, clip: Clip, **kwargs: Any) -> Mapping[str, Any]:
        return self.processor(text=[self.video_token], videos=[clip.frames], do_sample_frames=False,
                              return_tensors="pt", **kwargs)

    def pixel_limits(self) -> tuple[int | None, int | None]:
        size = self.video_processor.size
        get = size.get if isinstance(size, Mapping) else lambda k: getattr(size, k, None)
        pixels = int(get("height")) * int(get("width"))
        return pixels, pixels  # every frame is resized to the tower's square

    def video_token_count(self, num_frames: int, width: int, height: int, fps: float | None = None) -> int:
        """`frames * pooled tokens + 1` (the newline), the frame size and rate aside: every frame becomes 384x384."""
        return num_frames * self.frame_tokens + 1

    # ------------------------------------------------------------------ prompt
    def num_video_tokens(self, vision: Mapping[str, Any]) -> int:
        return int(vision[PIXELS].shape[1]) * self.frame_tokens + 1

    # ------------------------------------------------------------------ model forward
    def forward_inputs(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return {PIXELS: torch.cat([frame_pixels(r) for r in rows])}  # one frame count (`batch_key`)

    def batch_key(self, vision: Mapping[str, Any]) -> int:
        """The frame count: clips stack into the model's (B, T, C, H, W) video tensor only with one T."""
        return int(vision[PIXELS].shape[1])

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        return {}  # 1-D positions: the model derives them itself

    # ------------------------------------------------------------------ vision tower (one pass per clip)
    def vision_tower(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.base_model.vision_tower

    def video_features(self, model: torch.nn.Module, vision: dict[str, torch.Tensor]) -> list[Any]:
        return list(model.get_video_features(vision[PIXELS], return_dict=True).pooler_output)

    def encoder_outputs(self, features: Sequence[Any]) -> dict[str, Any]:
        """One (1, tokens, hidden) tensor: the model flattens the video outputs' first two axes and fills the
        batch's `<video>` tokens in row order, so the rows' clips (each `frames * frame_tokens + 1` tokens,
        any mix of frame counts) follow each other as the rows do."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        return {"mm_encoder_outputs": {"video": BaseModelOutputWithPooling(pooler_output=torch.cat(list(features))[None])}}

    # ------------------------------------------------------------------ vLLM
    def vllm_video(self, clip: Clip) -> dict[str, Any]:
        return {"video": (clip.frames, clip.metadata())}

    def mm_processor_kwargs(self) -> dict[str, Any]:
        return {}  # no pixel budget: every frame is 384x384

    def served_video(self, clip: Clip) -> dict[str, Any]:
        from egoadapt.data.chat_media import video_block

        return video_block(clip)
