"""Video GRPO's per-batch state: one object made per generation batch, travelling with its rows.

TRL scores a generation batch in `_generate_and_score_completions` (rollout, old-policy and
reference log-probs), then shuffles and splits it, and computes the policy's log-probs on each
slice in `_compute_loss`, once per iteration (num_iterations), possibly with an evaluation
batch scored in between. A `VideoBatch` holds what those passes need to know: the dataset rows
(each row's clip) and, with a frozen vision tower, each clip's tower output. It rides in TRL's
batch dict (`video_batch`: the same object on every row, so it survives TRL's shuffling and
splitting, beside `video_row`: each row's index into `rows`), so a slice always finds its own
batch and nothing is left on the trainer between batches. The callbacks TRL makes with rows
only (the rollout function, the log-prob passes) see it through `BatchScope`, set for exactly
one call.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from egoadapt.train.vision_dedupe import ClipFeatures


@dataclass(frozen=True, eq=False)
class VideoBatch:
    rows: tuple[Mapping[str, Any], ...]  # the dataset rows of the generation batch, in TRL's order
    frozen: ClipFeatures | None = None  # frozen tower: each clip's output, for every pass on these rows
    order: tuple[int, ...] | None = None  # the rows of one pass (`select`); None: all, in order

    @property
    def sample_ids(self) -> list[str]:
        return [self.rows[i]["sample_id"] for i in (range(len(self.rows)) if self.order is None else self.order)]

    def select(self, video_row: torch.Tensor) -> VideoBatch:
        """The batch as one pass sees it: rows `video_row` (indices into `rows`), in that order."""
        return replace(self, order=tuple(int(i) for i in video_row.tolist()))

    def columns(self, device: torch.device) -> dict[str, Any]:
        """What goes into TRL's batch dict, one entry per row."""
        return {"video_row": torch.arange(len(self.rows), device=device), "video_batch": [self] * len(self.rows)}

    @staticmethod
    def of(inputs: Mapping[str, Any]) -> VideoBatch:
        """The batch a slice of TRL's batch dict came from, restricted to the slice's rows."""
        batches = {id(b): b for b in inputs["video_batch"]}
        if len(batches) != 1:
            raise RuntimeError(f"a training slice mixes rows of {len(batches)} generation batches")
        return next(iter(batches.values())).select(inputs["video_row"])


class BatchScope:
    """The `VideoBatch` the current call works on: set by `with scope(batch):` for that block only."""

    def __init__(self):
        self._batch: VideoBatch | None = None

    @contextlib.contextmanager
    def __call__(self, batch: VideoBatch) -> Iterator[VideoBatch]:
        if self._batch is not None:
            raise RuntimeError("a video batch is already in scope: scopes do not nest")
        self._batch = batch
        try:
            yield batch
        finally:
            self._batch = None

    @property
    def current(self) -> VideoBatch | None:
        return self._batch
