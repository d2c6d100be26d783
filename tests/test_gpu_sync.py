"""benchmarks/gpu/sync_gpu.py, server weight sync at 7B over vLLM's NCCL weight-transfer engine:
its dry run builds, on CPU, the requests the NCCL path sends at full size; without two GPUs the
real run stops at once, saying why."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))

import sync_gpu  # noqa: E402


def test_the_dry_run_builds_the_nccl_requests_at_7b():
    r = sync_gpu.dry_run()
    assert r["backend"] == "nccl" and r["trainer_init_info"]["rank"] == 0 and r["trainer_init_info"]["packed"]
    # the server's worker joins after the trainer (rank 0), with the trainer's wire parameters
    init = r["init_weight_transfer_engine"]["init_info"]
    assert (init["rank_offset"], init["world_size"], init["packed"]) == (1, 2, True)
    assert init["master_address"] == "127.0.0.1" and "nccl_unique_id_b64" not in init
    # every parameter of the 7B, in bf16, announced by checkpoint name and shape
    assert r["parameters"] == 8_292_166_656 and r["bytes"] == 2 * r["parameters"] and r["dtypes"] == ["bfloat16"]
    assert r["tensors"] == 729 and r["first"] == ["model.visual.patch_embed.proj.weight", [1280, 3, 2, 14, 14]]
    assert r["update_request_bytes"] < 100_000  # metadata only: the tensors travel over NCCL


def test_without_two_gpus_the_real_run_stops_at_once(capsys):
    assert sync_gpu.main([]) == 2
    assert "needs 2 CUDA GPUs" in capsys.readouterr().err
