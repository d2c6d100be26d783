"""Video SFT: TRL's SFTTrainer (the video goes in through `VideoSFTCollator`), with checkpoints
that resume verified (`egoadapt.train.checkpoint`).

A batch whose clips do not stack into one model call (`VideoInputs.stackable`: LLaVA-OneVision's
clips of different frame counts) comes from the collator as sample ids; `compute_loss` (TRL's
seam) turns them into the tower's outputs per clip (`train.vision_dedupe.ClipFeatures`: one
tower call per group of stackable clips), in the step's autograd graph when the tower trains,
and leaves the loss to TRL's own code. A stackable batch carries its pixels and passes as is.
"""
from __future__ import annotations

from trl import SFTTrainer

from egoadapt.train.checkpoint import VerifiedResumeMixin
from egoadapt.train.collators import CLIPS
from egoadapt.train.vision_dedupe import ClipFeatures, tower_trains


class VideoSFTTrainer(VerifiedResumeMixin, SFTTrainer):
    """`data_collator`: a `VideoSFTCollator` (its `VideoInputs` encodes the clips of a batch it hands
    over as sample ids)."""

    def compute_loss(self, model, inputs, *args, **kwargs):
        if CLIPS in inputs:
            inputs = self.with_clip_features(model, inputs)
        return super().compute_loss(model, inputs, *args, **kwargs)

    def with_clip_features(self, model, inputs: dict) -> dict:
        """`inputs` with the sample ids under `CLIPS` replaced by the model inputs of their clips' tower outputs."""
        video = self.data_collator.video
        inputs = dict(inputs)
        sample_ids = inputs.pop(CLIPS)
        features = ClipFeatures(video, detached=not tower_trains(model, video))
        return {**inputs, **features.model_inputs(model, sample_ids, inputs["input_ids"].device)}
