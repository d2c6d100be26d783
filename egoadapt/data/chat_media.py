"""A clip as OpenAI chat content, for models behind a chat endpoint (a vLLM server, a hosted API).

`video_block`: the clip as one mp4 `video_url` data URL encoded at its sampling fps, which a
vLLM server decodes back to exactly its frames (the server rollout engine and `backend=openai
openai.send=video`). `image_blocks`: one `image_url` data URL per frame, the way the paper
sends frames to GPT-4.1 and Gemini 2.5 Pro (`openai.send=images`); the frame repeated to make
the count even for Qwen's temporal pairs is left out, since images are not paired.
`chat_messages` turns egoadapt's messages (`egoadapt.data.prompts.build_messages`: a bare
`{"type": "video"}` block before the text) into the chat format with that content in its place.
"""
from __future__ import annotations

import base64
import io
from typing import Any

from egoadapt.data.frames import Clip

IMAGE_FORMATS = {"jpeg": "image/jpeg", "png": "image/png"}


def data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def video_block(clip: Clip) -> dict[str, Any]:
    from egoadapt.data.mp4 import encode_mp4

    return {"type": "video_url", "video_url": {"url": data_url("video/mp4", encode_mp4(clip.frames, clip.fps))}}


def image_blocks(clip: Clip, image_format: str = "jpeg", jpeg_quality: int = 95) -> list[dict[str, Any]]:
    from PIL import Image

    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    blocks = []
    for frame in clip.frames[:clip.num_frames - clip.padded]:
        buf = io.BytesIO()
        options = {"quality": int(jpeg_quality)} if image_format == "jpeg" else {}
        Image.fromarray(frame).save(buf, format=image_format.upper(), **options)
        blocks.append({"type": "image_url", "image_url": {"url": data_url(IMAGE_FORMATS[image_format],
                                                                          buf.getvalue())}})
    return blocks


def chat_messages(messages: list[dict], media: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[system (its text)?, user: media blocks, then the user's text blocks]."""
    system = [b["text"] for m in messages if m["role"] == "system" for b in m["content"] if b.get("type") == "text"]
    texts = [b for m in messages if m["role"] == "user" for b in m["content"] if b.get("type") == "text"]
    return ([{"role": "system", "content": system[0]}] if system else []) + [
        {"role": "user", "content": [*media, *texts]}]
