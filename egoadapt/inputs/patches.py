"""Stored vision inputs back to what the model takes: the cache keeps the processor's resized
frames as uint8 patches plus the per-channel mean and std (`egoadapt.inputs.encode`); `pixels`
applies them on read. Its own module so model families (which collate pixels) and the encoder
(which stores them) share it without importing each other."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

PIXELS = "pixel_values_videos"


def pixels(value: Mapping[str, Any]) -> torch.Tensor:
    """`pixel_values_videos` as the model takes them (float32): stored uint8 patches rescaled and
    normalised per channel, the processor's last step (a patch holds channel, time, row, column)."""
    x = value[PIXELS]
    if x.dtype != torch.uint8:  # stored as the processor gave it
        return x.float()
    n = x.shape[0]
    mean, std = value["pixel_mean"].view(1, -1, 1), value["pixel_std"].view(1, -1, 1)
    return x.view(n, mean.shape[1], -1).float().sub_(mean).div_(std).view(n, -1)
