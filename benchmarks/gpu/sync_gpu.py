"""Server weight sync at 7B over vLLM's NCCL weight-transfer engine vs through the disk (issue 12).

    python benchmarks/gpu/sync_gpu.py                 # 2+ GPUs: trainer on cuda:0, a vLLM server on cuda:1
    python benchmarks/gpu/sync_gpu.py --dry-run       # anywhere: the NCCL requests at 7B, built and not sent

The trainer holds Qwen2.5-VL-7B at full size (benchmarks/gpu/qwen2_5_vl_7b.py, random bf16
weights) on cuda:0; a vLLM server (egoadapt.rollout.server.VLLMServer, `load_format=dummy`,
`--weight-transfer-config '{"backend": "nccl"}'`) serves the same config on cuda:1. Each round
`VLLMServerEngine.sync` pushes the whole model with rollout.sync=transfer (vLLM's NCCL trainer
engine: init once, then start / update / finish, the tensors broadcast from cuda:0) and with
rollout.sync=disk (a safetensors folder under --weights-dir, reload_weights), alternating; it
prints one JSON line per round and a summary with the median seconds and disk/transfer ratio.
NCCL cannot place two ranks of one group on one GPU ("Duplicate GPU detected"), so a single
GPU stops at once (exit 2) saying so; `--dry-run` builds the init and update requests the NCCL
path sends at 7B (meta tensors: no memory) and prints them, without a server or a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))


def seven_b(meta: bool, cuda: bool = False):
    """The 7B's config and a model of it: on the meta device (shapes only) or random bf16 on cuda:0."""
    import torch
    from qwen2_5_vl_7b import config_for
    from transformers import Qwen2_5_VLForConditionalGeneration

    from egoadapt.models.tiny import train_tokenizer

    tokenizer = train_tokenizer(1024)
    config = config_for(tokenizer)
    torch.manual_seed(0)
    with torch.device("meta" if meta else "cuda:0" if cuda else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=torch.bfloat16)
    return tokenizer, config, model


def dry_run() -> dict:
    """The requests of one NCCL sync at 7B (trainer rank 0, one server worker), as sent."""
    from egoadapt.rollout import transfer

    _, _, model = seven_b(meta=True)
    source = transfer.TrainerWeights(model, None)
    info = transfer.init_info("nccl", "127.0.0.1", 29555, world_size=2)
    req = transfer.planned_requests(info, source)
    update = req["update_weights"]["update_info"]
    return {"event": "nccl_requests", "backend": info.backend, "trainer_init_info": {
        "master_address": info.master_address, "master_port": info.master_port, "world_size": info.world_size,
        "rank": info.rank, "packed": info.packed},
        "init_weight_transfer_engine": req["init_weight_transfer_engine"], "tensors": len(update["names"]),
        "parameters": sum(p.numel() for p in model.parameters()), "bytes": req["bytes"],
        "dtypes": sorted(set(update["dtype_names"])), "first": [update["names"][0], update["shapes"][0]],
        "update_request_bytes": len(json.dumps(req["update_weights"]))}


def measure(rounds: int, weights_dir: Path) -> int:
    import torch

    from egoadapt.models.tiny import build_processor
    from egoadapt.rollout.engines import VLLMServerEngine
    from egoadapt.rollout.server import VLLMServer

    tokenizer, config, model = seven_b(meta=False, cuda=True)
    folder = Path(tempfile.mkdtemp(prefix="sync-7b-"))
    config.save_pretrained(folder)  # no weights: the server starts from dummy ones, the first sync fills them
    build_processor(tokenizer).save_pretrained(folder)
    trainer = SimpleNamespace(model_wrapped=model, state=SimpleNamespace(global_step=0), accelerator=SimpleNamespace(
        unwrap_model=lambda m: m, state=SimpleNamespace(deepspeed_plugin=None), is_main_process=True))
    video = SimpleNamespace(tokenizer=tokenizer, processor=None)
    server = VLLMServer(str(folder), served_model_name="policy", weight_transfer="nccl", kv_cache_bytes=8 * 1024**3,
                        extra_args=["--load-format", "dummy"], log_path=folder / "server.log", startup_timeout=900)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or ",".join(map(str, range(torch.cuda.device_count())))
    os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[1]  # the server's GPU; ours is taken already
    try:
        server.start()
    finally:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    times: dict[str, list[float]] = {"transfer": [], "disk": []}
    with server:
        engines = {s: VLLMServerEngine(video, {"max_tokens": 4, "temperature": 0.0}, server.base_url, "policy",
                                       weights_dir, sync=s) for s in times}
        try:
            for r in range(rounds + 1):  # round 0 opens the group and warms up: not counted
                for s in (list(times) if r % 2 else list(times)[::-1]):
                    trainer.state.global_step = r
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    engines[s].sync(trainer)
                    dt = time.perf_counter() - t
                    print(json.dumps({"event": "sync", "round": r, "sync": s, "seconds": round(dt, 3)}), flush=True)
                    if r:
                        times[s].append(dt)
        finally:
            for e in engines.values():
                e.close()
    med = {s: statistics.median(v) for s, v in times.items()}
    print(json.dumps({"event": "summary", "parameters": sum(p.numel() for p in model.parameters()),
                      "transfer_s": round(med["transfer"], 3), "disk_s": round(med["disk"], 3),
                      "disk_over_transfer": round(med["disk"] / med["transfer"], 2), "rounds": rounds}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="build the 7B NCCL requests on CPU, send nothing")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--weights-dir", default=None, help="the disk sync's folder (default: a temporary one)")
    a = ap.parse_args(argv)
    if a.dry_run:
        print(json.dumps(dry_run()), flush=True)
        return 0
    import torch

    if torch.cuda.device_count() < 2:
        print(f"sync_gpu.py: needs 2 CUDA GPUs (found {torch.cuda.device_count()}): NCCL cannot put the trainer and the "
              "server's worker on one GPU. Use --dry-run to check the requests.", file=sys.stderr)
        return 2
    return measure(a.rounds, Path(a.weights_dir or tempfile.mkdtemp(prefix="sync-7b-weights-")))


if __name__ == "__main__":
    sys.exit(main())
