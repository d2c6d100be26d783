"""ZeRO-3 on 2 CPU ranks: parameters and memory per rank once the model has loaded, vs its full size.

Launches `egoadapt train recipe=demo/tiny_sft` for one step on 2 ranks with DeepSpeed ZeRO-3
(`launch/accelerate/zero3.yaml --num_processes 2`: zero3_init_flag, gloo). Each rank logs, right after the
model has loaded, the parameter elements it holds, its peak RSS so far and its private and
file-backed resident memory (`egoadapt.train.run.log_param_share`). Two orders:

- now: TRL's config (and with it transformers' HfDeepSpeedConfig) exists before the model
  loads, so `from_pretrained` builds it under DeepSpeed's zero.Init, partitioned;
- before issue 10: the model loaded before that config existed (emulated by hiding the
  HfDeepSpeedConfig while `load_model` runs; nothing else changes), so every rank loaded
  all of it and DeepSpeed partitioned it only later, in `deepspeed.initialize`.

Models: the micro tiny model (0.27 M parameters: imports, data and processor alone) and a
random-init Qwen2.5-VL of the same geometry with ~140 M parameters (530 MiB in float32, so
the parameters show in RSS). What the model costs a rank is its figure minus the micro
model's; the ratio to the model's full float32 size is what matters for 8 ranks each loading
a 7B model. Launches run with MALLOC_MMAP_THRESHOLD_=131072, so that memory freed by large
temporary tensors goes back to the OS and RSS tracks live memory (glibc's default adaptive
threshold keeps freed blocks and adds a few hundred MiB of noise at this size).

    .venv/bin/python benchmarks/bench_zero3.py [--hidden 768] [--layers 16]

`run(quick)` is what benchmarks/run_all.py (`make bench`) calls; the numbers are in
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
LINE = re.compile(r"rank (\d) holds (\d+) of (\d+) parameter elements after load \(\S+; ZeRO-3 init (\w+)\); "
                  r"peak RSS (\d+) MiB \(now (\d+) MiB private, (\d+) MiB file-backed\)")
NOW, BEFORE = "config first (now)", "model first (before)"
# the command as `-m egoadapt.cli` runs it, plus each rank's whole-run peak RSS printed at exit;
# MODEL_FIRST=1 loads the model as if TRL's config did not exist yet (the comparison)
ENTRY = """import atexit, os, resource, sys
atexit.register(lambda: print(f"rank {os.environ.get('RANK')} whole-run peak RSS "
                              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB", flush=True))
if os.environ.get("MODEL_FIRST") == "1":
    import egoadapt.models.loading as loading
    from transformers.integrations import deepspeed as hf_ds
    load = loading.load_model
    def model_first(*args, **kwargs):
        ref, hf_ds._hf_deepspeed_config_weak_ref = hf_ds._hf_deepspeed_config_weak_ref, None
        try:
            return load(*args, **kwargs)
        finally:
            hf_ds._hf_deepspeed_config_weak_ref = ref
    loading.load_model = model_first
from egoadapt.cli import main
sys.exit(main())
"""
WHOLE = re.compile(r"rank (\d) whole-run peak RSS (\d+) MiB")


def build_big(folder: Path, hidden: int, layers: int) -> Path:
    from egoadapt.models.tiny import TinySize, build_model, build_processor, train_tokenizer

    tokenizer = train_tokenizer(1024)
    size = TinySize(hidden=hidden, layers=layers, heads=hidden // 32, kv_heads=hidden // 128,
                    ffn=4 * hidden, vision_hidden=128, vision_depth=2, vision_heads=4, vocab=1024)
    build_model(tokenizer, size, seed=0).save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    return folder


def launch(entry: Path, model_first: bool, model: Path, data: Path, out: Path) -> list[tuple]:
    """[(rank, elements held, total, ZeRO-3 init, peak RSS, private, file-backed, whole-run peak RSS)]."""
    args = [ACCELERATE, "launch", "--config_file", "launch/accelerate/zero3.yaml", "--num_processes", "2", str(entry), "train",
            "recipe=demo/tiny_sft", f"model.path={model}", f"data.root={data}", f"out={out}",
            f"cache_dir={out.parent / 'cache'}", "trainer.max_steps=1", "trainer.per_device_train_batch_size=1",
            "trainer.save_strategy=no", "data.train_limit=4", "trainer.logging_steps=1"]
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions"), "HF_HUB_OFFLINE": "1",
           "WANDB_MODE": "offline", "MALLOC_MMAP_THRESHOLD_": "131072", "MODEL_FIRST": str(int(model_first))}
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"launch failed:\n{log[-3000:]}")
    whole = {int(r): int(m) for r, m in WHOLE.findall(log)}
    found = sorted((int(r), int(a), int(b), on, *map(int, rest), whole.get(int(r), -1))
                   for r, a, b, on, *rest in LINE.findall(log))
    if [f[0] for f in found] != [0, 1]:
        raise RuntimeError(f"no per-rank parameter lines in the log:\n{log[-3000:]}")
    return found


def measure(hidden: int = 768, layers: int = 16) -> tuple[dict, dict]:
    """{(loader, model): per-rank rows}, info."""
    from egoadapt.data.synthetic import SynthConfig, generate
    from egoadapt.models.tiny import build_tiny

    t0 = time.perf_counter()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_zero3_") as tmp:
        tmp = Path(tmp)
        models = {"micro": build_tiny(tmp / "micro", size="micro", seed=0), "big": build_big(tmp / "big", hidden, layers)}
        data = generate(SynthConfig(out=str(tmp / "synth"), seed=0, videos_per_domain=1, questions_per_video=4),
                        progress=False)
        (tmp / "entry.py").write_text(ENTRY)
        setup_s = time.perf_counter() - t0
        for loader, name in ((NOW, "micro"), (NOW, "big"), (BEFORE, "big")):
            results[(loader, name)] = launch(tmp / "entry.py", loader == BEFORE, models[name], data,
                                             tmp / f"{len(results)}_{name}")
    return results, {"setup_s": setup_s, "wall_s": time.perf_counter() - t0}


def rows_from(results: dict, info: dict) -> list[dict]:
    import common

    total = {name: rows[0][2] for (_, name), rows in results.items()}
    full = 4 * total["big"] / 2**20  # MiB, float32
    base = {r[0]: r for r in results[(NOW, "micro")]}
    out = [common.meta(workload=f"egoadapt train recipe=demo/tiny_sft, 1 step, ZeRO-3 on 2 CPU ranks (gloo); micro "
                                f"model {total['micro'] / 1e6:.2f} M parameters (the baseline), big model "
                                f"{total['big'] / 1e6:.0f} M ({full:.0f} MiB float32); setup {info['setup_s']:.0f} s, "
                                f"launches {info['wall_s'] - info['setup_s']:.0f} s")]
    ratios: dict[str, dict[str, float]] = {}
    for (loader, name), rows in results.items():
        for rank, held, n, _on, peak, private, mapped, whole in rows:
            cols = {"parameters held": f"{held:,} of {n:,}", "fraction": held / n,
                    "peak RSS at load (MiB)": float(peak), "private at load (MiB)": float(private),
                    "file-backed at load (MiB)": float(mapped), "whole-run peak RSS (MiB)": float(whole)}
            if name == "big":
                b = base[rank]
                x = {"peak": (peak - b[4]) / full, "private": (private - b[5]) / full, "whole": (whole - b[7]) / full}
                cols.update({"peak at load, x model": x["peak"], "private at load, x model": x["private"],
                             "whole-run peak, x model": x["whole"]})
                r = ratios.setdefault(loader, dict.fromkeys(x, 0.0))
                for k in x:
                    r[k] = max(r[k], x[k])
            out.append(common.table_row(f"{loader}, {name} model, rank {rank}", cols))
    held = {k: max(r[1] / r[2] for r in results[(k, "big")]) for k in (NOW, BEFORE)}
    n, b = ratios[NOW], ratios[BEFORE]
    out.append(common.note(
        f"Each of the 2 ranks holds **{held[NOW]:.3f}** of the parameters once the model has loaded (loaded before "
        f"TRL's config: {held[BEFORE]:.3f}, the whole model on every rank until `deepspeed.initialize`). Over the micro "
        f"baseline, worst rank, in units of the model's float32 size: private memory after load **{n['private']:.2f}x** "
        f"(the rank's partition), peak RSS during load {n['peak']:.2f}x. That peak is rank 0's, which fills every "
        "partition from the checkpoint and reads all of it through mmap: file-backed pages (the OS page cache, one "
        "copy per node, reclaimable) that count in its RSS; rank 1 peaks at "
        f"{min((r[4] - base[r[0]][4]) / full for r in results[(NOW, 'big')]):.2f}x. Model-first shows "
        f"{b['private']:.2f}x private after load only because transformers leaves the parameters on the "
        "checkpoint's mmap until they are first touched; the whole model is then on every rank when DeepSpeed "
        f"partitions it. Whole 1-step run: {n['whole']:.2f}x (before: {b['whole']:.2f}x), the same in both orders: "
        "training state (gathered layers, gradients, Adam moments of the partition) and the final save, which "
        "gathers the whole model."))
    return out


def run(quick: bool = False) -> list[dict]:
    """For benchmarks/run_all.py: rows in benchmarks/common.py's format."""
    import common

    common.setup()
    results, info = measure(*((512, 8) if quick else (768, 16)))
    return rows_from(results, info)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=768, help="the big model's width (a multiple of 128)")
    ap.add_argument("--layers", type=int, default=16, help="the big model's depth")
    args = ap.parse_args(argv)
    import common

    common.setup()
    results, info = measure(args.hidden, args.layers)
    print(common.render_rows(rows_from(results, info)))
    print(f"\ntotal {info['wall_s']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
