"""Video inputs for training and generation: one place that turns a sample into model inputs.

`VideoInputs` owns the processor, the frame settings and the on-disk input cache. For a
sample it gives the chat messages (with the clip's real sampling fps in the prompt), the
prompt token ids with the video placeholder expanded to the clip's real number of video
tokens, and the cached vision tensors (compact: uint8 pixels, `egoadapt.inputs.encode`), the
most recently used of them kept in RAM up to `ram_bytes`; `collate` stacks the vision
tensors of any rows in the layout Qwen2.5-VL's forward expects (pixels normalised there).
SFT, GRPO (generation and every log-prob pass) and evaluation all use it, so the model sees
the same pixels and the same time axis in each of them.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from egoadapt.data.cache import InputCache, entry_bytes
from egoadapt.data.frames import clip_fps, load_clip, on_skip, skip_mode
from egoadapt.data.errors import DataError, Problem
from egoadapt.data.prompts import build_messages
from egoadapt.data.schema import Sample
from egoadapt.inputs.encode import pixels, vision_inputs
from egoadapt.inputs.qa import prompt_qa
from egoadapt.inputs.request import RolloutRequest

VIDEO_TENSORS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
log = logging.getLogger(__name__)


class VideoInputs:
    """`ram_bytes`: bound of the in-RAM store of vision inputs (commands take it from
    `cache_ram_bytes`, conf/cache/default.yaml); None: unbounded."""

    def __init__(self, samples: Iterable[Sample], processor, frames_cfg: Any, prompt_cfg: Any = None,
                 cache: InputCache | None = None, ram_bytes: int | None = None):
        self.samples = {s.id: s for s in samples}
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.frames_cfg = frames_cfg
        self.prompt_cfg = prompt_cfg
        self.cache = cache
        self.video_token = getattr(processor, "video_token", "<|video_pad|>")
        self.video_token_id = self.tokenizer.convert_tokens_to_ids(self.video_token)
        self.merge = getattr(processor.video_processor, "merge_size", 2) ** 2
        self._memory: OrderedDict[str, tuple[dict, int]] = OrderedDict()  # hot rows stay in RAM: (entry, bytes)
        self.ram_bytes = ram_bytes
        self.memory_bytes = 0  # what the RAM store holds now, never more than ram_bytes
        self._fps: dict[str, float] = {}

    # ------------------------------------------------------------------ per sample
    def vision(self, sample_id: str) -> dict[str, Any]:
        """The sample's vision inputs (pixels compact: `egoadapt.inputs.encode.pixels` gives the model's)."""
        hit = self._memory.get(sample_id)
        if hit is not None:
            self._memory.move_to_end(sample_id)
            return hit[0]
        value = vision_inputs(self.samples[sample_id], self.frames_cfg, self.processor, self.cache)
        size = entry_bytes(value)
        if self.ram_bytes is None or size <= self.ram_bytes:  # an entry over the whole budget is not kept
            self._memory[sample_id] = (value, size)
            self.memory_bytes += size
            while self.ram_bytes is not None and self.memory_bytes > self.ram_bytes:
                self.memory_bytes -= self._memory.popitem(last=False)[1][1]
        return value

    def warm(self, samples: Sequence[Sample], rank: int = 0, world_size: int = 1, progress: bool = True) -> int:
        """Fill the disk cache with this rank's share of the clips (rank r: clips r, r + world_size, ...),
        a progress bar on rank 0; returns how many clips this rank processed. Run on every rank, then a
        barrier, then `usable` reads every clip from the disk. Bad clips are left for `usable` to meet
        (on every rank alike). Without a disk cache, nothing to share: returns 0."""
        from tqdm.auto import tqdm

        if self.cache is None or not self.cache.enabled:
            return 0
        skip_mode(self.frames_cfg)  # a bad on_error value fails here, before any clip
        share, before = list(samples)[rank::world_size], self.cache.misses
        for s in tqdm(share, desc=f"input cache ({world_size} rank{'s' * (world_size > 1)})", unit="clip",
                      disable=not progress or rank != 0):
            try:
                self.vision(s.id)  # into the disk cache, and this rank's RAM store (within its budget)
            except DataError:
                continue
        done = self.cache.misses - before
        log.info("input cache: rank %d of %d processed %d clips (its share: %d of %d; the rest were cached)",
                 rank, world_size, done, len(share), len(samples))
        return done

    def usable(self, samples: Sequence[Sample]) -> tuple[list[Sample], list[Problem]]:
        """(samples whose frames load and process, problems of the others), checked up front: each
        sample's vision inputs are computed (and cached) here. A bad sample raises its FrameError,
        or with frames.on_error=skip is left out and logged (`on_skip`)."""
        skip_mode(self.frames_cfg)  # a bad on_error value fails here, not at the first bad sample
        kept, skipped = [], []
        for s in samples:
            try:
                self.vision(s.id)
            except DataError as e:
                skipped.append(on_skip(e, self.frames_cfg))
                continue
            kept.append(s)
        return kept, skipped

    def num_video_tokens(self, sample_id: str) -> int:
        return int(self.vision(sample_id)["video_grid_thw"].prod()) // self.merge

    def sampling_fps(self, sample_id: str) -> float:
        """The clip's sampling rate (the prompt states it), from the annotation and at most a video's
        header: building a prompt decodes and processes nothing (`egoadapt.data.frames.clip_fps`)."""
        if sample_id not in self._fps:
            self._fps[sample_id] = clip_fps(self.samples[sample_id], self.frames_cfg)
        return self._fps[sample_id]

    def messages(self, sample_id: str, qa: str) -> list[dict]:
        return build_messages(self.samples[sample_id], qa, self.prompt_cfg, sampling_fps=self.sampling_fps(sample_id))

    def prompt_text(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def expand(self, ids: list[int], sample_id: str) -> list[int]:
        """Replace the single video placeholder by the clip's real count of video tokens."""
        n = self.num_video_tokens(sample_id)
        out: list[int] = []
        for t in ids:
            out.extend([t] * n if t == self.video_token_id else [t])
        return out

    def prompt_ids(self, messages: list[dict], sample_id: str) -> list[int]:
        ids = self.tokenizer(self.prompt_text(messages), add_special_tokens=False)["input_ids"]
        return self.expand(ids, sample_id)

    def request(self, sample_id: str, qa: str, tokenize: bool = True) -> RolloutRequest:
        """The sample's prompt for an engine (`qa`: close | open); `tokenize=False` leaves the ids out
        (an engine that tokenizes itself and is compared with nothing)."""
        messages = self.messages(sample_id, prompt_qa(qa))
        return RolloutRequest(sample_id, messages, self.prompt_ids(messages, sample_id) if tokenize else None)

    def clip(self, sample_id: str):
        """Raw frames and metadata (for vLLM, which runs its own processor)."""
        return load_clip(self.samples[sample_id], self.frames_cfg)

    # ------------------------------------------------------------------ batches
    def collate(self, sample_ids: Iterable[str]) -> dict[str, torch.Tensor]:
        rows = [self.vision(i) for i in sample_ids]
        out = {"pixel_values_videos": torch.cat([pixels(r) for r in rows]),
               "video_grid_thw": torch.cat([r["video_grid_thw"] for r in rows])}
        if all("second_per_grid_ts" in r for r in rows):
            out["second_per_grid_ts"] = torch.cat([torch.as_tensor(r["second_per_grid_ts"]).reshape(-1)
                                                   for r in rows])
        return out

    def mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Qwen2.5-VL computes 3-D mRoPE positions only when this is passed (2 marks video tokens)."""
        return (input_ids == self.video_token_id).long() * 2
