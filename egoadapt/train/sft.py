"""Video SFT: TRL's SFTTrainer as is (the video goes in through `VideoSFTCollator`), with
checkpoints that resume verified (`egoadapt.train.checkpoint`)."""
from __future__ import annotations

from trl import SFTTrainer

from egoadapt.train.checkpoint import VerifiedResumeMixin


class VideoSFTTrainer(VerifiedResumeMixin, SFTTrainer):
    pass
