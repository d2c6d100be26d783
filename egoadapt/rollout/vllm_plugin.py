"""egoadapt's vLLM general plugin (entry point group `vllm.general_plugins`, name `egoadapt`).

vLLM calls `register` in every process it starts (API server, engine core, workers), so a
server started with `--weight-transfer-config '{"backend": "egoadapt_gloo"}'` finds the gloo
weight-transfer engine (egoadapt.rollout.gloo_transfer). Registration is by module path: the
engine's module is imported only when a server or a trainer uses it. Safe to call repeatedly.
"""
from __future__ import annotations

BACKEND = "egoadapt_gloo"  # egoadapt.rollout.gloo_transfer.BACKEND
ENGINE_MODULE = "egoadapt.rollout.gloo_transfer"


def register() -> None:
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory

    for factory, cls in ((WeightTransferEngineFactory, "GlooWeightTransferEngine"),
                         (WeightTransferTrainerFactory, "GlooTrainerWeightTransferEngine")):
        try:
            factory.register_engine(BACKEND, ENGINE_MODULE, cls)
        except ValueError:  # registered already (vLLM loads plugins once per process, tests call it again)
            pass
