"""Video inputs for training and generation: one place that turns a sample into model inputs.

`VideoInputs` owns the processor, the frame settings and the on-disk input cache. For a
sample it gives the chat messages (with the clip's real sampling fps in the prompt), the
prompt token ids with the video placeholder expanded to the clip's real number of video
tokens, and the cached vision tensors (compact: uint8 pixels, `egoadapt.inputs.encode`), the
most recently used of them kept in RAM up to `ram_bytes`; `collate` stacks the vision
tensors of rows in the layout the model's forward expects (pixels normalised there), and
`groups` says which rows can be stacked together (the family's `batch_key`).
What is family-specific (placeholder expansion, token counts, forward inputs) is the
checkpoint's `VideoFamily` (`egoadapt.inputs.families`).
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
from egoadapt.data.errors import DataError, Problem
from egoadapt.data.frames import clip_fps, load_clip, on_skip, skip_mode
from egoadapt.data.prompts import build_messages
from egoadapt.data.schema import Sample
from egoadapt.inputs.encode import vision_inputs
from egoadapt.inputs.families import VideoFamily, for_processor
from egoadapt.inputs.qa import prompt_qa
from egoadapt.inputs.request import RolloutRequest

log = logging.getLogger(__name__)


class VideoInputs:
    """`ram_bytes`: bound of the in-RAM store of vision inputs (commands take it from
    `cache_ram_bytes`, conf/cache/default.yaml); None: unbounded. `family`: the checkpoint's model
    family (`egoadapt.inputs.families.for_checkpoint`); None: the family of the checkpoint the
    processor was loaded from."""

    def __init__(self, samples: Iterable[Sample], processor, frames_cfg: Any, prompt_cfg: Any = None,
                 cache: InputCache | None = None, ram_bytes: int | None = None, family: VideoFamily | None = None):
        self.samples = {s.id: s for s in samples}
        self.processor = processor
        self.tokenizer = getattr(processor, "tokenizer", processor)
        self.prompt_cfg = prompt_cfg
        self.cache = cache
        self.family = family or for_processor(processor)
        self.frames_cfg = self.family.frames_config(frames_cfg)  # the family's odd-frame rule over the run's
        self._memory: OrderedDict[str, tuple[dict, int]] = OrderedDict()  # hot rows stay in RAM: (entry, bytes)
        self.ram_bytes = ram_bytes
        self.memory_bytes = 0  # what the RAM store holds now, never more than ram_bytes
        self._fps: dict[str, float] = {}

    # ------------------------------------------------------------------ per sample
    def vision(self, sample_id: str) -> dict[str, Any]:
        """The sample's vision inputs (pixels compact: `egoadapt.inputs.patches.pixels` gives the model's)."""
        hit = self._memory.get(sample_id)
        if hit is not None:
            self._memory.move_to_end(sample_id)
            return hit[0]
        value = vision_inputs(self.samples[sample_id], self.frames_cfg, self.family, self.cache)
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
        return self.family.num_video_tokens(self.vision(sample_id))

    def sampling_fps(self, sample_id: str) -> float:
        """The clip's sampling rate (the prompt states it), from the annotation and at most a video's
        header: building a prompt decodes and processes nothing (`egoadapt.data.frames.clip_fps`)."""
        if sample_id not in self._fps:
            self._fps[sample_id] = clip_fps(self.samples[sample_id], self.frames_cfg)
        return self._fps[sample_id]

    def messages(self, sample_id: str, qa: str) -> list[dict]:
        return build_messages(self.samples[sample_id], qa, self.prompt_cfg, sampling_fps=self.sampling_fps(sample_id))

    def prompt_text(self, messages: list[dict]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                                  **self.family.chat_template_kwargs)

    def expand(self, ids: list[int], sample_id: str) -> tuple[list[int], list[int]]:
        """The prompt's video placeholder expanded for the clip (its real count of video tokens), and
        for each new token the index in `ids` it stands for (`VideoFamily.expand`)."""
        return self.family.expand(ids, self.vision(sample_id))

    def prompt_ids(self, messages: list[dict], sample_id: str) -> list[int]:
        ids = self.tokenizer(self.prompt_text(messages), add_special_tokens=False)["input_ids"]
        return self.expand(ids, sample_id)[0]

    def request(self, sample_id: str, qa: str, tokenize: bool = True) -> RolloutRequest:
        """The sample's prompt for an engine (`qa`: close | open); `tokenize=False` leaves the ids out
        (an engine that tokenizes itself and is compared with nothing)."""
        messages = self.messages(sample_id, prompt_qa(qa))
        return RolloutRequest(sample_id, messages, self.prompt_ids(messages, sample_id) if tokenize else None)

    def clip(self, sample_id: str):
        """Raw frames and metadata (for vLLM, which runs its own processor: `family.vllm_video`)."""
        return load_clip(self.samples[sample_id], self.frames_cfg)

    # ------------------------------------------------------------------ batches
    def collate(self, sample_ids: Iterable[str]) -> dict[str, torch.Tensor]:
        """The model's video inputs for these rows' clips (`VideoFamily.forward_inputs`), which must share
        one `batch_key` (`stackable`)."""
        return self.family.forward_inputs([self.vision(i) for i in sample_ids])

    def groups(self, sample_ids: Sequence[str]) -> list[list[int]]:
        """Positions in `sample_ids` grouped by `VideoFamily.batch_key`, groups and positions in first-seen
        order: each group collates into one model call."""
        if type(self.family).batch_key is VideoFamily.batch_key:  # any mix stacks: read no clip for it
            return [list(range(len(sample_ids)))] if sample_ids else []
        groups: dict[Any, list[int]] = {}
        for i, sample_id in enumerate(sample_ids):
            groups.setdefault(self.family.batch_key(self.vision(sample_id)), []).append(i)
        return list(groups.values())

    def stackable(self, sample_ids: Sequence[str]) -> bool:
        """Whether these rows' clips collate into one model call (else: the tower's outputs per clip,
        `train.vision_dedupe.ClipFeatures`, or one `generate` per group)."""
        return len(self.groups(sample_ids)) <= 1

    def token_inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's inputs derived from token ids (Qwen2.5-VL: `mm_token_type_ids`, without which it
        silently uses 1-D positions): `VideoFamily.token_inputs`."""
        return self.family.token_inputs(input_ids)
