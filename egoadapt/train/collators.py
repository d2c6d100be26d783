"""Video SFT collator: frames as a video with their real fps, loss on the assistant turn only."""
from __future__ import annotations

from typing import Any

import torch
from trl.chat_template_utils import get_training_chat_template

from egoadapt.data.errors import DataError
from egoadapt.data.frames import on_skip
from egoadapt.inputs.qa import prompt_qa
from egoadapt.inputs.video import VideoInputs

# the batch key holding the rows' sample ids when their clips do not stack into one model call
# (`VideoInputs.stackable`): `VideoSFTTrainer` turns them into the tower's outputs per clip
CLIPS = "video_sample_ids"


class VideoSFTCollator:
    """Tokenizes prompt + JSON answer with TRL's training chat template (its `{% generation %}`
    markers give the assistant mask), expands the video placeholder to the clip's real token
    count and attaches the cached vision tensors and the token-derived inputs (Qwen2.5-VL:
    `mm_token_type_ids`, for 3-D mRoPE), all through the model family (`VideoInputs.family`).
    A batch whose clips do not stack (LLaVA-OneVision's different frame counts) carries its sample
    ids under `CLIPS` instead of pixels: the tower runs in the trainer (`VideoSFTTrainer`)."""

    def __init__(self, video: VideoInputs, max_length: int | None = None):
        self.video = video
        self.tokenizer = video.tokenizer
        self.max_length = max_length
        template = self.tokenizer.chat_template or video.processor.chat_template
        self.template = get_training_chat_template(video.processor) or template
        self.pad_id = self.tokenizer.pad_token_id

    def encode(self, row: dict[str, Any]) -> tuple[list[int], list[int]]:
        prompt = self.video.messages(row["sample_id"], prompt_qa(row["qa"]))
        conversation = prompt + [{"role": "assistant", "content": [{"type": "text", "text": row["completion"]}]}]
        enc = self.tokenizer.apply_chat_template(conversation, chat_template=self.template, tokenize=True,
                                                 return_dict=True, return_assistant_tokens_mask=True)
        ids, mask = enc["input_ids"], enc["assistant_masks"]
        if not any(mask):
            raise ValueError("the training chat template marked no assistant tokens; check the model's template")
        out_ids, origin = self.video.expand(ids, row["sample_id"])  # the model family places the video tokens
        labels = [ids[i] if mask[i] else -100 for i in origin]
        if self.max_length and len(out_ids) > self.max_length:
            raise ValueError(f"sample {row['sample_id']}: {len(out_ids)} tokens exceed max_length={self.max_length}; "
                             "lower frames.max_frames / model.max_pixels or raise trainer.max_length")
        return out_ids, labels

    def usable(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows whose clips still process. All were checked before training (`usable_samples`), but
        a file can change under a run: with frames.on_error=skip such a row leaves the batch, logged."""
        kept, error = [], None
        for r in rows:
            try:
                self.video.vision(r["sample_id"])
                kept.append(r)
            except DataError as e:
                on_skip(e, self.video.frames_cfg)
                error = e
        if not kept:
            raise error  # a batch with no row left: nothing to train on
        return kept

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = self.usable(rows)
        encoded = [self.encode(r) for r in rows]
        width = max(len(ids) for ids, _ in encoded)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(encoded):  # right padding
            input_ids[i, :len(ids)] = torch.tensor(ids)
            labels[i, :len(lab)] = torch.tensor(lab)
            attention[i, :len(ids)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
                 **self.video.token_inputs(input_ids)}
        sample_ids = [r["sample_id"] for r in rows]
        if self.video.stackable(sample_ids):
            batch.update(self.video.collate(sample_ids))
        else:
            batch[CLIPS] = sample_ids
        return batch
