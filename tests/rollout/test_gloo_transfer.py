"""egoadapt's gloo weight-transfer engine without a server: the plugin registers it with vLLM's
factories, and its group moves every dtype bit for bit (tests/rollout/test_weight_sync.py runs it
against a real vLLM server)."""
from __future__ import annotations

import threading
from importlib.metadata import entry_points

import pytest
import torch


def test_the_vllm_plugin_registers_both_sides():
    from vllm.distributed.weight_transfer.factory import WeightTransferEngineFactory, WeightTransferTrainerFactory

    from egoadapt.rollout import gloo_transfer
    from egoadapt.rollout.vllm_plugin import register

    plugin = {e.name: e.value for e in entry_points(group="vllm.general_plugins")}
    assert plugin.get("egoadapt") == "egoadapt.rollout.vllm_plugin:register"  # vLLM loads it in every process
    register()
    register()  # vLLM may load plugins more than once
    assert WeightTransferEngineFactory._registry["egoadapt_gloo"]() is gloo_transfer.GlooWeightTransferEngine
    assert WeightTransferTrainerFactory._registry["egoadapt_gloo"]() is gloo_transfer.GlooTrainerWeightTransferEngine


def test_the_group_broadcasts_every_dtype_bit_for_bit():
    from egoadapt.rollout.gloo_transfer import broadcast, open_group
    from egoadapt.rollout.transfer import free_port

    g = torch.Generator().manual_seed(0)
    sent = [torch.randn(3, 5, generator=g).to(torch.bfloat16), torch.randn(7, generator=g),
            torch.randint(-9, 9, (2, 2), generator=g), torch.rand(4, generator=g) > 0.5, torch.tensor(2.5).half()]
    got, errors = [], []
    port = free_port("127.0.0.1")

    def worker():
        try:
            group = open_group("127.0.0.1", port, 1, 2, timeout_s=60)
            for t in sent:
                buf = torch.empty(t.shape, dtype=t.dtype)
                broadcast(group, buf)
                got.append(buf)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    thread = threading.Thread(target=worker)
    thread.start()
    group = open_group("127.0.0.1", port, 0, 2, timeout_s=60)
    for t in sent:
        broadcast(group, t.clone())
    thread.join(60)
    assert not errors and len(got) == len(sent)
    assert all(a.dtype == b.dtype and torch.equal(a, b) for a, b in zip(got, sent))


def test_an_update_request_must_be_consistent():
    from egoadapt.rollout.gloo_transfer import GlooWeightTransferUpdateInfo

    with pytest.raises(ValueError, match="2 names, 1 dtype_names and 2 shapes"):
        GlooWeightTransferUpdateInfo(names=["a", "b"], dtype_names=["float32"], shapes=[[1], [2]])
