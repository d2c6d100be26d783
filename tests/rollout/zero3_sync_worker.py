"""One rank of tests/rollout/test_weight_sync.py's ZeRO-3 check (run under torchrun, 2 ranks).

    zero3_sync_worker.py MODEL_DIR OUT_DIR [lora]

Partitions the tiny model with DeepSpeed ZeRO-3 (CPU, gloo), streams it with the server sync's
writer (`iter_weights` + `save_weights` with `weight_specs`, rank 0 writing, every rank taking
part in the gathers) and, on rank 0, compares the file with the unpartitioned model (LoRA:
merged with PEFT's own merge_and_unload). Writes OUT_DIR/result.json.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import deepspeed
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText

from egoadapt.rollout.weights import iter_weights, save_weights, weight_specs

model_dir, out, lora = sys.argv[1], Path(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "lora"
deepspeed.init_distributed(dist_backend="gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = AutoModelForImageTextToText.from_pretrained(model_dir)
if lora:
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero: make the adapters matter
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
else:
    expected = {k: v.clone() for k, v in model.state_dict().items()}

config = {"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 1, "zero_allow_untested_optimizer": True,
          "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0}}
engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), config=config)
module = engine.module
held = sum(p.ds_tensor.numel() for p in module.parameters() if hasattr(p, "ds_tensor"))
total = sum(p.ds_numel for p in module.parameters() if hasattr(p, "ds_numel"))
accelerator = SimpleNamespace(unwrap_model=lambda m: m.module, state=SimpleNamespace(
    deepspeed_plugin=SimpleNamespace(zero_stage=3)), is_main_process=rank == 0)
weights = iter_weights(engine, accelerator)
if rank == 0:
    save_weights(weights, out / "w", weight_specs(engine, accelerator))
else:
    for _ in weights:  # the gathers are collective
        pass
dist.barrier()
if rank == 0:
    got = load_file(str(out / "w" / "model.safetensors"))
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    differ = sorted(n for n in set(got) & set(expected) if not torch.allclose(got[n], expected[n], atol=1e-6))
    (out / "result.json").write_text(json.dumps({"held": held, "total": total, "missing": missing,
                                                 "unexpected": unexpected, "differ": differ, "n": len(got)}))
dist.barrier()
dist.destroy_process_group()
