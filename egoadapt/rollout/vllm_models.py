"""vLLM model classes that read the weight names transformers 5 gives, registered by egoadapt's
vLLM plugin (`egoadapt.rollout.vllm_plugin`) under the architecture they extend.

LLaVA-OneVision: transformers 5 flattens `SiglipVisionModel` (its `vision_model.` level is dropped
on load) and does not put it back on save, so a checkpoint it writes, and the trainer's live
parameter names a weight sync sends, name the tower `vision_tower.embeddings...` where the hub's
checkpoints and vLLM's model say `vision_tower.vision_model.embeddings...`. The subclass adds that
level back; hub names pass unchanged.
"""
from __future__ import annotations

import re

from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration
from vllm.model_executor.models.utils import WeightsMapper

SIGLIP_FLAT = re.compile(r"^((?:model\.)?vision_tower\.)(?!vision_model\.)")


class LlavaOnevision(LlavaOnevisionForConditionalGeneration):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_regex={SIGLIP_FLAT: r"\1vision_model."}) \
        | LlavaOnevisionForConditionalGeneration.hf_to_vllm_mapper
