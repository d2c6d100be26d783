"""vLLM model classes that read the weight names transformers 5 gives, registered by egoadapt's
vLLM plugin (`egoadapt.rollout.vllm_plugin`) under the architecture they extend.

LLaVA-OneVision: transformers 5 flattens `SiglipVisionModel` (its `vision_model.` level is dropped
on load) and does not put it back on save, so a checkpoint it writes, and the trainer's live
parameter names a weight sync sends, name the tower `vision_tower.embeddings...` where the hub's
checkpoints and vLLM's model say `vision_tower.vision_model.embeddings...`. The subclass adds that
level back; hub names pass unchanged.

Qwen3-VL MoE: the hub's checkpoints store the fused experts transposed (`gate_up_proj` [E, hidden,
2 x expert width], `down_proj` [E, expert width, hidden]), which transformers 5.19 transposes on load
and does not transpose back on save (its reverse `Transpose(check_dims=True)` sees the model's own
shape); so a checkpoint it writes, and a weight sync of the trainer's parameters, come in its own
layout, which vLLM's loader refuses. The subclass puts them in the hub's layout by shape.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from vllm.model_executor.models.llava_onevision import LlavaOnevisionForConditionalGeneration
from vllm.model_executor.models.qwen3_vl_moe import Qwen3VLMoeForConditionalGeneration
from vllm.model_executor.models.utils import WeightsMapper

SIGLIP_FLAT = re.compile(r"^((?:model\.)?vision_tower\.)(?!vision_model\.)")


class LlavaOnevision(LlavaOnevisionForConditionalGeneration):
    hf_to_vllm_mapper = WeightsMapper(orig_to_new_regex={SIGLIP_FLAT: r"\1vision_model."}) \
        | LlavaOnevisionForConditionalGeneration.hf_to_vllm_mapper


class Qwen3VLMoe(Qwen3VLMoeForConditionalGeneration):
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        text = self.config.text_config
        hidden, width = int(text.hidden_size), int(text.moe_intermediate_size)
        # transformers' own layout -> the hub's, told apart by shape (a square one cannot be: refused)
        own = {"mlp.experts.gate_up_proj": (2 * width, hidden), "mlp.experts.down_proj": (hidden, width)}

        def hub_layout(named):
            for name, w in named:
                shape = next((s for suffix, s in own.items() if name.endswith(suffix)), None)
                if shape is not None and shape[0] == shape[1]:
                    raise ValueError(f"{name}: fused experts of a square shape {tuple(w.shape)} cannot be told "
                                     "apart from the hub's transposed layout")
                yield (name, w.transpose(1, 2)) if shape is not None and tuple(w.shape[1:]) == shape else (name, w)
        return super().load_weights(hub_layout(weights))
