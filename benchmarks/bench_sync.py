"""Server-mode weight sync (rollout=vllm_server): over the weight-transfer engine vs through the disk.

    .venv/bin/python benchmarks/bench_sync.py                   # small (1.4 M) and m120 (~120 M); 5 rounds
    .venv/bin/python benchmarks/bench_sync.py --quick           # 3 rounds
    .venv/bin/python benchmarks/bench_sync.py --streaming       # issue 10's before/after streaming write

transfer vs disk (issue 12, `run`): seconds per `VLLMServerEngine.sync` against a real vLLM server
on 127.0.0.1 started as egoadapt starts rollout servers (VLLMServer: egoadapt's gloo weight-transfer
engine on a CPU), both engines syncing the same model into the same server, alternating round by
round: rollout.sync=transfer (vLLM's start/update/finish requests, each tensor broadcast over
gloo as `iter_weights` yields it) vs rollout.sync=disk (a safetensors folder streamed to disk,
`reload_weights` through /collective_rpc, the folder deleted); each includes the cache resets.
The group's one-off opening (the init request) is reported apart. `m120` is a ~120 M-parameter
Qwen2.5-VL built like the tiny models (random weights).

--streaming (issue 10 item 5): the whole model gathered into one CPU dict and one safetensors file
(before) vs the streaming writer (after): median seconds of a whole sync and the peak RSS the
write adds over the loaded model (each measured in a fresh process, write only), for the plain CPU
model and as under ZeRO-3 or on a GPU, where every tensor reaching the writer is a copy.
`run(quick)` returns the transfer-vs-disk rows, in the form benchmarks/run_all.py collects.
"""
from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from egoadapt.models import tiny  # noqa: E402

EXTRA = {"m120": tiny.TinySize(1024, 8, 32, 8, 4096, 256, 4, 8, 1024)}


def build(size: str, out: Path) -> Path:
    if (out / "config.json").exists():
        return out
    if size in tiny.SIZES:
        return tiny.build_tiny(out, size=size, seed=0)
    tokenizer = tiny.train_tokenizer(EXTRA[size].vocab)
    processor = tiny.build_processor(tokenizer)
    model = tiny.build_model(tokenizer, EXTRA[size], 0)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def engine_video(path: Path):
    """What a rollout engine needs of the inputs (tokenizer, processor): no samples, syncs only."""
    from transformers import AutoProcessor

    from egoadapt.inputs.video import VideoInputs

    return VideoInputs([], AutoProcessor.from_pretrained(path), frames_cfg=None)


def trainer_of(model):
    acc = SimpleNamespace(unwrap_model=lambda m: m, state=SimpleNamespace(deepspeed_plugin=None),
                          is_main_process=True, device=torch.device("cpu"))
    return SimpleNamespace(model_wrapped=model, accelerator=acc, state=SimpleNamespace(global_step=1))


def gathered(model):
    """What `iter_weights` yields under ZeRO-3 (each parameter gathered and cloned), without
    DeepSpeed: on a GPU `.cpu()` copies every tensor the same way."""
    from egoadapt.rollout.weights import iter_weights

    for name, t in iter_weights(model, None):
        yield name, t.clone()


def write_old(model, folder: Path, zero3: bool = False) -> None:
    """The pre-streaming save_weights: one dict of CPU tensors, one save_file."""
    from safetensors.torch import save_file

    from egoadapt.rollout.weights import iter_weights

    folder.mkdir(parents=True, exist_ok=True)
    weights = gathered(model) if zero3 else iter_weights(model, None)
    tensors = {name: t.contiguous().cpu() for name, t in weights}
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(folder / "model.safetensors")


def write_new(model, folder: Path, zero3: bool = False) -> None:
    from egoadapt.rollout.weights import iter_weights, save_weights, weight_specs

    save_weights(gathered(model) if zero3 else iter_weights(model, None), folder, weight_specs(model, None))


def load(path: Path):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(path).eval()


def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_peak(method: str, path: str, zero3: str = "0") -> None:
    """Print the peak RSS (MiB) writing the weights adds over the loaded model: the first write
    of a fresh process, sampled every 2 ms (freed memory stays with the allocator afterwards)."""
    import threading

    model = load(Path(path))
    for p in model.parameters():  # page in weights that are mmapped from the checkpoint
        float(p.sum())
    gc.collect()
    base = top = _rss_mib()
    stop = threading.Event()

    def sample():
        nonlocal top
        while not stop.is_set():
            top = max(top, _rss_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    with tempfile.TemporaryDirectory() as d:
        (write_old if method == "before" else write_new)(model, Path(d) / "w", zero3=zero3 == "1")
        stop.set()
        sampler.join()
    print(json.dumps({"extra_mib": max(0.0, top - base)}))


def peak_extra_mib(method: str, path: Path, zero3: bool = False) -> float:
    out = subprocess.run([sys.executable, __file__, "--child-peak", method, str(path), str(int(zero3))],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])["extra_mib"]


def setup(size: str, work: Path) -> tuple:
    """(checkpoint path, its model in memory, parameter count, MiB of weights, engine video inputs)."""
    path = build(size, work / size)
    model = load(path)
    for p in model.parameters():  # page in weights that are mmapped from the checkpoint
        float(p.sum())
    n_params = sum(p.numel() for p in model.parameters())
    mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    return path, model, n_params, mib, engine_video(path)


def measure(size: str, rounds: int, work: Path) -> dict:
    from egoadapt.rollout.engines import VLLMServerEngine
    from egoadapt.rollout.server import VLLMServer

    path, model, n_params, file_mib, video = setup(size, work)
    with VLLMServer(str(path), served_model_name="policy", log_path=work / f"{size}.server.log") as server:
        engine = VLLMServerEngine(video, {"max_tokens": 4, "temperature": 0.0}, server.base_url, "policy",
                                  work / f"{size}.weights")
        try:
            before, after = [], []
            for _ in range(rounds):
                start = time.perf_counter()  # before: same folder every time
                write_old(model, work / f"{size}.old")
                r = engine._post(f"{engine.root}/collective_rpc", json={"method": "reload_weights", "kwargs": {
                    "weights_path": str(work / f"{size}.old"), "is_checkpoint_format": True}})
                r.raise_for_status()
                for cache in ("reset_prefix_cache", "reset_encoder_cache", "reset_mm_cache"):
                    engine._post(f"{engine.root}/{cache}").raise_for_status()
                before.append(time.perf_counter() - start)
                start = time.perf_counter()
                engine.sync(trainer_of(model))
                after.append(time.perf_counter() - start)
        finally:
            engine.close()
    return {"size": size, "parameters": n_params, "file_mib": round(file_mib, 1),
            "sync_s_before": round(statistics.median(before), 3), "sync_s_after": round(statistics.median(after), 3),
            "write_peak_extra_mib_before": round(peak_extra_mib("before", path), 1),
            "write_peak_extra_mib_after": round(peak_extra_mib("after", path), 1),
            "zero3_write_peak_extra_mib_before": round(peak_extra_mib("before", path, zero3=True), 1),
            "zero3_write_peak_extra_mib_after": round(peak_extra_mib("after", path, zero3=True), 1), "rounds": rounds}


def transfer_vs_disk(size: str, rounds: int, work: Path) -> dict:
    import common

    from egoadapt.rollout.engines import VLLMServerEngine
    from egoadapt.rollout.server import VLLMServer

    path, model, n_params, mib, video = setup(size, work)
    trainer = trainer_of(model)
    with VLLMServer(str(path), served_model_name="policy", log_path=work / f"{size}.server.log",
                    startup_timeout=600) as server:
        engines = {sync: VLLMServerEngine(video, {"max_tokens": 4, "temperature": 0.0}, server.base_url, "policy",
                                          work / f"{size}.weights", sync=sync) for sync in ("transfer", "disk")}
        try:
            init_s = common.timed(lambda: engines["transfer"].sync(trainer))  # opens the group, then a first sync
            values = common.alternate({s: (lambda e=e: e.sync(trainer)) for s, e in engines.items()}, reps=rounds)
        finally:
            for e in engines.values():
                e.close()
    return common.ab_row(f"server weight sync, {size} ({n_params / 1e6:.1f} M parameters, {mib:.0f} MiB)",
                         "transfer", "disk", values["transfer"], values["disk"], "s", higher_is_better=False,
                         extra={"parameters": n_params, "weights_mib": round(mib, 1),
                                "first_transfer_sync_with_group_opening_s": round(init_s, 3)})


def run(quick: bool = False) -> list[dict]:
    import common

    common.setup()
    rounds = 3 if quick else 5
    rows = [common.meta(workload="VLLMServerEngine.sync of the whole model into a real vLLM CPU server on 127.0.0.1, "
                                 f"{rounds} alternating rounds after one warm-up round",
                        transfer="rollout.sync=transfer: egoadapt_gloo weight-transfer engine (vLLM's init / start / "
                                 "update / finish requests, tensors broadcast over gloo)",
                        disk="rollout.sync=disk: safetensors folder + reload_weights via /collective_rpc")]
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as d:
        rows += [transfer_vs_disk(s, rounds, Path(d)) for s in ("small", "m120")]
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--streaming", action="store_true", help="issue 10's before/after streaming write instead")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--sizes", nargs="+", default=["micro", "small", "m120"], help="--streaming: model sizes")
    ap.add_argument("--rounds", type=int, default=3, help="--streaming: rounds")
    ap.add_argument("--child-peak", nargs=3, metavar=("METHOD", "PATH", "ZERO3"))
    a = ap.parse_args()
    if a.child_peak:
        return child_peak(*a.child_peak)
    if a.streaming:
        with tempfile.TemporaryDirectory(prefix="bench-sync-") as d:
            for size in a.sizes:
                print(json.dumps(measure(size, a.rounds, Path(d))), flush=True)
        return None
    import common

    common.standalone(run, __doc__, ["--quick"] * a.quick + (["--json", a.json] if a.json else []))


if __name__ == "__main__":
    main()
