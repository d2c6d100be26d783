"""Run every benchmark and write benchmarks/RESULTS.md (`make bench`).

    .venv/bin/python benchmarks/run_all.py            # everything, ~8 min on 2 cores (limit: 15)
    .venv/bin/python benchmarks/run_all.py --quick    # fewer rounds and points, ~3 min
    .venv/bin/python benchmarks/run_all.py --only rollout grpo --out /tmp/partial.md

Each benchmark runs in its own process (`run_all.py --child NAME`), which imports the
benchmark module and calls its `run(quick) -> list[dict]`; the rows come back as JSON.
Separate processes keep one benchmark's vLLM engine, threads and heap out of the next
one's numbers and give each its own peak RSS. A benchmark that fails or passes its time
limit gets a section saying so (with the end of its log) and the others still run.
Logs: .cache/bench_logs/<name>.log.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common

ROOT = common.ROOT
LOGS = ROOT / ".cache" / "bench_logs"


@dataclass(frozen=True)
class Bench:
    name: str
    module: str
    title: str
    compared: str
    command: str  # standalone, what the full run does
    quick: str  # standalone, what --quick does
    limit_s: int  # full run; quick runs get half


BENCHES = (
    Bench("data", "bench_data", "Data: input cache, decord vs PyAV",
          "processed vision inputs read from the on-disk input cache vs decoded and processed again (2nd epoch); "
          "sampling raw videos with decord vs PyAV at 0.5 and 1 fps",
          f"{common.PY} benchmarks/bench_data.py", f"{common.PY} benchmarks/bench_data.py --reps 3 --videos-per-domain 1",
          240),
    Bench("cache", "bench_cache", "Input cache: what it stores, at the 7B pixel budget",
          "bytes per clip and seconds per epoch (read + process into the model's float32 patches) of what the input "
          "cache could store for 12- and 92-frame 854x480 clips at max_pixels 200704: uint8 patches normalised on "
          "read (egoadapt's), float32 patches (before), bf16 patches, uint8 frames with the processor run on read",
          f"{common.PY} benchmarks/bench_cache.py", f"{common.PY} benchmarks/bench_cache.py --clips 2 --no-reference",
          300),
    Bench("zero3", "bench_zero3", "ZeRO-3 on 2 CPU ranks: parameters and memory per rank at load",
          "per rank, once the model has loaded: parameter elements held, private memory and peak RSS over the "
          "micro model's baseline, in units of the model's float32 size (a 139 M-parameter random-init Qwen2.5-VL), "
          "TRL's config built before the model (now) vs after it (before issue 10); and each rank's whole-run peak",
          f"{common.PY} benchmarks/bench_zero3.py", f"{common.PY} benchmarks/bench_zero3.py --hidden 512 --layers 8",
          600),
    Bench("judge", "bench_judge", "Judge: concurrency and verdict cache",
          "judged samples per second with 8 requests in flight vs 1 (stub server with 50 ms latency; vLLM serving "
          "the tiny model, full run only); re-scoring OpenQA answers with a warm verdict cache vs cold",
          f"{common.PY} benchmarks/bench_judge.py", f"{common.PY} benchmarks/bench_judge.py --n 32 --no-vllm", 240),
    Bench("rollout", "bench_rollout", "Rollouts: vLLM colocate vs HF generate",
          "completion tokens per second of egoadapt's VLLMColocateEngine vs HFEngine on the same video prompts, "
          "several batch sizes (tiny micro model; the full run adds the 1.4 M-parameter small model)",
          f"{common.PY} benchmarks/bench_rollout.py", f"{common.PY} benchmarks/bench_rollout.py --quick", 300),
    Bench("grpo", "bench_grpo", "GRPO step: vLLM vs HF rollouts, egoadapt video vs stock TRL images, phases",
          "seconds per GRPO step of `egoadapt train recipe=demo/tiny_grpo` with rollout=vllm_colocate vs rollout=hf, "
          "and egoadapt's video step vs stock `trl.GRPOTrainer` with the same frames as an `images` column; visual "
          "tokens per sample; share of a step per phase",
          f"{common.PY} benchmarks/bench_grpo.py", f"{common.PY} benchmarks/bench_grpo.py --quick", 300),
    Bench("vision_dedupe", "bench_vision_dedupe", "GRPO log-prob passes: one vision-tower forward per clip",
          "seconds for one GRPO step's old-policy, reference and policy (forward + backward) passes with "
          "vision_dedupe=true (the tower once per clip per pass; frozen tower: once per clip per step) vs false "
          "(once per row), G=8, 16-frame clips, trained and frozen tower, micro and small tiny models",
          f"{common.PY} benchmarks/bench_vision_dedupe.py", f"{common.PY} benchmarks/bench_vision_dedupe.py --quick",
          900),
    Bench("sync", "bench_sync", "Server weight sync: weight-transfer engine vs disk",
          "seconds per VLLMServerEngine.sync into a real vLLM CPU server, rollout.sync=transfer (egoadapt's gloo "
          "weight-transfer engine: vLLM's init/start/update/finish requests, tensors broadcast) vs rollout.sync=disk "
          "(safetensors folder + reload_weights), for the 1.4 M-parameter small model and a ~120 M-parameter build",
          f"{common.PY} benchmarks/bench_sync.py", f"{common.PY} benchmarks/bench_sync.py --quick", 600),
    Bench("eval", "bench_eval", "Evaluation: batched vs one-by-one generation",
          "questions per second of the evaluation's generation loop (HF backend), batch 8/16 vs batch 1",
          f"{common.PY} benchmarks/bench_eval.py", f"{common.PY} benchmarks/bench_eval.py --quick", 180),
    Bench("scaling", "bench_scaling", "Scaling: frames per clip and questions",
          "GRPO step time and step memory at 8, 16, 32 and 64 frames per clip; `egoadapt eval` time at 16, 64 and "
          "256 questions",
          f"{common.PY} benchmarks/bench_scaling.py", f"{common.PY} benchmarks/bench_scaling.py --quick", 300),
    Bench("gpu_dry_run", "gpu.bench_gpu", "GPU script, dry run on CPU",
          "benchmarks/gpu/bench_gpu.py --dry-run: the 7B benchmark's code path (random-init Qwen2.5-VL, one GRPO "
          "step, one rollout batch, MFU arithmetic) on a scaled-down config; timings here mean nothing",
          f"{common.PY} benchmarks/gpu/bench_gpu.py --dry-run", f"{common.PY} benchmarks/gpu/bench_gpu.py --dry-run", 240),
    Bench("gpu_rehearsal_dry_run", "gpu.rehearse_gpu", "GPU rehearsal script, dry run on CPU",
          "benchmarks/gpu/rehearse_gpu.py --dry-run: the one-GPU rehearsal of the real job (Qwen2.5-VL-7B config, "
          "SFT and GRPO steps with colocated vLLM on 16, 32 and 91-frame clips) on its tiny twin; proves the code "
          "path, timings here mean nothing",
          f"{common.PY} benchmarks/gpu/rehearse_gpu.py --dry-run", f"{common.PY} benchmarks/gpu/rehearse_gpu.py --dry-run",
          240),
)


# ---------------------------------------------------------------------------- child

def child(name: str, quick: bool, out: str) -> int:
    bench = next(b for b in BENCHES if b.name == name)
    t0 = time.perf_counter()
    module = importlib.import_module(bench.module)
    rows = module.run(quick)
    common.dump(rows, out, wall_s=time.perf_counter() - t0)
    return 0


# ---------------------------------------------------------------------------- parent

def run_one(bench: Bench, quick: bool) -> dict:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{bench.name}.log"
    out = LOGS / f"{bench.name}.json"
    out.unlink(missing_ok=True)
    limit = bench.limit_s // 2 if quick else bench.limit_s
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", bench.name, "--json", str(out)]
    cmd += ["--quick"] if quick else []
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    t0 = time.perf_counter()
    status = "ok"
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=limit)
            if rc != 0:
                status = f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the benchmark's own process group: it and any server it started
            proc.wait()
            status = f"stopped after its {limit} s limit"
    wall = time.perf_counter() - t0
    result = {"status": status, "wall_s": wall, "log": str(log.relative_to(ROOT))}
    if status == "ok" and out.is_file():
        result.update(json.loads(out.read_text()))
    else:
        lines = log.read_text(errors="replace").splitlines()
        result["tail"] = [ln for ln in lines if ln.strip()][-25:]
    return result


def headline(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("kind") == "ab" and r["ratio"]["n"] > 0 and not r["name"].startswith("visual")]


def render(results: dict[str, dict], quick: bool, wall: float, machine: dict, load_after: list[float],
           argv: list[str]) -> str:
    cmd = f"{common.PY} benchmarks/run_all.py" + (" " + " ".join(argv) if argv else "")
    lines = [
        "# egoadapt benchmark results",
        "",
        (f"Written by `{cmd}` (`make bench` runs it without arguments) on "
        f"{dt.datetime.now().strftime('%Y-%m-%d %H:%M')}, {'quick mode, ' if quick else ''}total {wall / 60:.1f} min."),
        "",
        (f"**Machine**: {common.machine_line(machine)}. Load average before {machine['load_avg']}, after "
        f"{[round(x, 2) for x in load_after]} (the machine is shared: other work runs beside these benchmarks)."),
        "",
        ("**Method**: A and B run inside one process, alternating (A B, B A, ...) round after round after warm-up; "
        "each cell is the median of the rounds with [min-max]; *A over B* is how many times better A is than B "
        "(B/A for times, A/B for rates), computed round by round (paired), so drift between rounds cancels; > 1 "
        "means A is better. Every benchmark runs in its own process with one torch thread (see "
        "`benchmarks/common.py: threads`: on two shared cores, two OpenMP threads stall whenever a neighbour takes a "
        "core, which made the same HF generate call 30x slower). GPU numbers: `benchmarks/gpu/README.md`."),
        "",
        "## Summary",
        "",
        "| benchmark | measurement | A | B | A | B | A over B |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for b in BENCHES:
        res = results.get(b.name)
        if res is None:
            continue
        if res["status"] != "ok":
            lines.append(f"| {b.name} | {res['status']} | | | | | |")
            continue
        for r in res["rows"]:
            if r.get("kind") == "table" and "result" in r["columns"]:
                lines.append(f"| {b.name} | {r['name']} | | | | | {r['columns']['result']} |")
        for r in headline(res["rows"]):
            u = r["unit"]
            lines.append(f"| {b.name} | {r['name']} | {r['a']} | {r['b']} | {common.fmt(r['a_stats']['median'])} {u} | "
                         f"{common.fmt(r['b_stats']['median'])} {u} | **{common.fmt(r['ratio']['median'])}x** |")
    growth = []
    for b in BENCHES:
        res = results.get(b.name) or {}
        series: dict[str, list] = {}
        for r in res.get("rows", []):
            if r.get("kind") == "series":
                series.setdefault(r["series"], []).append(r)
        for name, pts in series.items():
            first, last = pts[0], pts[-1]
            growth.append(f"- {b.name}, {name}: {last['point']} {common.fmt(last['stats']['median'])} {last['unit']} vs "
                          f"{first['point']} {common.fmt(first['stats']['median'])} {first['unit']}: "
                          f"**{common.fmt(last['stats']['median'] / first['stats']['median'])}x** the cost")
    if growth:
        lines += ["", "Scaling (last point vs first):", "", *growth]
    for b in BENCHES:
        res = results.get(b.name)
        if res is None:
            continue
        lines += ["", f"## {b.title}", "", f"**Compared**: {b.compared}.", "",
                  (f"**Command**: `{b.quick if quick else b.command}` "
                  f"(standalone), or `{common.PY} benchmarks/run_all.py --only {b.name}`."), ""]
        if res["status"] != "ok":
            lines += [f"**{res['status'].upper()}** after {res['wall_s']:.0f} s; log `{res['log']}`:", "", "```",
                      *res.get("tail", []), "```"]
            continue
        lines += [f"**Run**: {res['wall_s']:.0f} s, peak RSS {res['peak_rss_mib']:.0f} MiB"
                  + (f" (child processes {res['children_peak_rss_mib']:.0f} MiB)" if res.get("children_peak_rss_mib")
                     else "") + ".", "", common.render_rows(res["rows"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer rounds and points (~3 min)")
    ap.add_argument("--only", nargs="+", choices=[b.name for b in BENCHES], help="run only these")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"), help="where to write the results")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child, args.quick, args.json)

    machine = common.machine()
    print(common.machine_line(machine), flush=True)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    for bench in BENCHES:
        if args.only and bench.name not in args.only:
            continue
        print(f"[{time.perf_counter() - t0:5.0f}s] {bench.name} ...", end=" ", flush=True)
        results[bench.name] = res = run_one(bench, args.quick)
        summary = "; ".join(f"{r['name']}: {common.fmt(r['ratio']['median'])}x" for r in headline(res.get("rows", [])))
        print(f"{res['status']} in {res['wall_s']:.0f}s" + (f" | {summary}" if summary else ""), flush=True)
    wall = time.perf_counter() - t0
    shown = (["--quick"] if args.quick else []) + (["--only", *args.only] if args.only else [])
    text = render(results, args.quick, wall, machine, list(os.getloadavg()), shown)
    Path(args.out).write_text(text)
    print(f"wrote {args.out} in {wall / 60:.1f} min")
    return 0 if all(r["status"] == "ok" for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
