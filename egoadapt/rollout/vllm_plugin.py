"""egoadapt's vLLM general plugin (entry point group `vllm.general_plugins`, name `egoadapt`).

vLLM calls `register` in every process it starts (API server, engine core, workers), so a
server started with `--weight-transfer-config '{"backend": "egoadapt_gloo"}'` finds the gloo
weight-transfer engine (egoadapt.rollout.gloo_transfer), and loads the models of `MODELS` with
egoadapt's classes (egoadapt.rollout.vllm_models). Registration is by module path: the
engine's module is imported only when a server or a trainer uses it. Safe to call repeatedly.
"""
from __future__ import annotations

BACKEND = "egoadapt_gloo"  # egoadapt.rollout.gloo_transfer.BACKEND
ENGINE_MODULE = "egoadapt.rollout.gloo_transfer"
# architecture -> the egoadapt model class that replaces vLLM's (module:class, imported when a model uses it)
MODELS = {"LlavaOnevisionForConditionalGeneration": "egoadapt.rollout.vllm_models:LlavaOnevision",
          "Qwen3VLMoeForConditionalGeneration": "egoadapt.rollout.vllm_models:Qwen3VLMoe"}


def register() -> None:
    from vllm import ModelRegistry
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory

    for arch, cls in MODELS.items():  # checkpoint names as transformers 5 writes them (egoadapt.rollout.vllm_models)
        ModelRegistry.register_model(arch, cls)

    for factory, cls in ((WeightTransferEngineFactory, "GlooWeightTransferEngine"),
                         (WeightTransferTrainerFactory, "GlooTrainerWeightTransferEngine")):
        try:
            factory.register_engine(BACKEND, ENGINE_MODULE, cls)
        except ValueError:  # registered already (vLLM loads plugins once per process, tests call it again)
            pass
