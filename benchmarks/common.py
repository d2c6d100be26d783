"""Shared pieces of the benchmarks: A/B alternation, medians and spread, peak memory, the machine.

Every benchmark module has `run(quick: bool) -> list[dict]` (what `run_all.py` calls) and
a standalone `__main__`. A result row is a plain dict (JSON-able) made by one of:

- `ab_row(...)`      A vs B: both arms' raw values, their medians and min-max, and the ratio
                     "A over B" (how many times better A is: B/A for times, A/B for rates),
                     taken pair by pair (run r of A with run r of B) so drift cancels;
- `series_row(...)`  one point of a scaling curve (values, median, spread, extra columns);
- `note(text)`       a reading of the numbers, written by the benchmark from what it measured.

Timing on these machines is noisy (two cores shared with other work): `alternate` runs the
arms in alternating (rotating) order, round after round, after unrecorded warm-up rounds.
"""
from __future__ import annotations

import ctypes
import gc
import importlib.metadata
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
PY = ".venv/bin/python"

Arm = Callable[[], Any]  # returns None (its wall time is recorded) or a number (recorded as is)


# ------------------------------------------------------------------------------- timing

def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(fn: Arm) -> float:
    """The arm's own number when it returns one (a rate, a step time it measured itself),
    else its wall time in seconds."""
    t = time.perf_counter()
    value = fn()
    elapsed = time.perf_counter() - t
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else elapsed


def alternate(arms: Mapping[str, Arm], reps: int, warmup: int = 1,
              between: Callable[[], Any] | None = None) -> dict[str, list[float]]:
    """Run every arm `reps` times, rotating the order each round (A B, B A, ... for two
    arms), after `warmup` unrecorded rounds. `between` runs untimed before each measurement
    (cache resets, gc). Returns the recorded values per arm, in round order."""
    names = list(arms)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + reps):
        k = r % len(names)
        order = names[k:] + names[:k] if r % 2 == 0 or len(names) > 2 else names[::-1]
        for n in order:
            if between is not None:
                between()
            gc.collect()
            v = measure(arms[n])
            if r >= warmup:
                out[n].append(v)
    return out


def summary(values: Sequence[float]) -> dict[str, float]:
    v = [float(x) for x in values]
    if not v:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


# ------------------------------------------------------------------------------- rows

def ab_row(name: str, a: str, b: str, a_values: Sequence[float], b_values: Sequence[float], unit: str,
           higher_is_better: bool, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An A vs B measurement. `ratio` = how many times better A is than B, per round pair."""
    pairs = list(zip(a_values, b_values))
    ratios = [(x / y if higher_is_better else y / x) if x and y else float("nan") for x, y in pairs]
    return {"kind": "ab", "name": name, "a": a, "b": b, "unit": unit, "higher_is_better": higher_is_better,
            "a_values": list(a_values), "b_values": list(b_values), "ratio_values": ratios,
            "a_stats": summary(a_values), "b_stats": summary(b_values), "ratio": summary(ratios),
            "extra": dict(extra or {})}


def series_row(series: str, point: str, values: Sequence[float], unit: str,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "series", "series": series, "point": point, "unit": unit, "values": list(values),
            "stats": summary(values), "extra": dict(extra or {})}


def table_row(name: str, columns: Mapping[str, Any]) -> dict[str, Any]:
    """A row of a plain table (e.g. the share of a step per phase)."""
    return {"kind": "table", "name": name, "columns": dict(columns)}


def note(text: str) -> dict[str, Any]:
    return {"kind": "note", "text": text}


def meta(**kw: Any) -> dict[str, Any]:
    """Section facts a benchmark states about itself (workload, settings)."""
    return {"kind": "meta", **kw}


# ------------------------------------------------------------------------------- memory

def peak_rss_mib(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), MiB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0  # KiB on Linux


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory() -> None:
    """Hand freed heap back to the OS, so the next RSS baseline is honest."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


class RSSPeak:
    """Peak RSS above the RSS at entry, sampled every `interval` seconds by a thread:
    the extra memory a block of work needed (after `release_memory`)."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.base = self.peak = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> Self:
        release_memory()
        self.base = self.peak = rss_mib()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())

    @property
    def extra_mib(self) -> float:
        return self.peak - self.base


# ------------------------------------------------------------------------------- phases

class Phases:
    """Exclusive wall time per named phase, by wrapping methods (class or instance attributes).

    Nested phases are subtracted from their parents, so the phases of a step add up to at
    most the step. `wrap(owner, "method", "phase", skip_inside=("loss",))` records nothing
    when called inside one of the `skip_inside` phases (it then counts to the outer one)."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [phase, start, child_time]
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, attr: str, phase: str, skip_inside: Sequence[str] = ()) -> None:
        own = attr in vars(owner)  # else inherited: undo by deleting the override
        original = getattr(owner, attr)
        phases = self

        def wrapper(*args, **kwargs):
            if any(f[0] in skip_inside for f in phases._stack):
                return original(*args, **kwargs)
            frame = [phase, time.perf_counter(), 0.0]
            phases._stack.append(frame)
            try:
                return original(*args, **kwargs)
            finally:
                phases._stack.pop()
                total = time.perf_counter() - frame[1]
                phases.totals[phase] = phases.totals.get(phase, 0.0) + total - frame[2]
                phases.calls[phase] = phases.calls.get(phase, 0) + 1
                if phases._stack:
                    phases._stack[-1][2] += total

        wrapper.__wrapped__ = original
        self._undo.append((owner, attr, original if own else None))
        setattr(owner, attr, wrapper)

    def reset(self) -> None:
        self.totals, self.calls = {}, {}

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            if original is None:
                delattr(owner, attr)
            else:
                setattr(owner, attr, original)
        self._undo.clear()


# ------------------------------------------------------------------------------- machine

def _version(dist: str) -> str:
    for name in (dist, f"{dist}-cpu"):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load and the versions that matter, for RESULTS.md."""
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], check=False, capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    ram = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 0
    versions = {d: _version(d) for d in ("torch", "transformers", "trl", "vllm", "accelerate", "decord", "av")}
    return {"cpu": model, "cores": cores, "ram_gib": round(ram, 1), "python": platform.python_version(),
            "platform": platform.platform(), "load_avg": [round(x, 2) for x in os.getloadavg()],
            "torch_threads": threads(), "versions": versions}


def machine_line(m: Mapping[str, Any] | None = None) -> str:
    m = m or machine()
    v = m["versions"]
    return (f"{m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM; Python {m['python']}, torch {v['torch']}, "
            f"transformers {v['transformers']}, trl {v['trl']}, vllm {v['vllm']}; {m['torch_threads']} torch "
            f"thread(s) per benchmark process")


# ------------------------------------------------------------------------------- rendering

def fmt(x: float, unit: str = "") -> str:
    if math.isnan(x):
        return "n/a"
    a = abs(x)
    s = f"{x:.0f}" if a >= 1000 else f"{x:.1f}" if a >= 100 else f"{x:.2f}" if a >= 1 else f"{x:.3f}"
    return s


def fmt_stat(s: Mapping[str, float]) -> str:
    if not s.get("n"):
        return "n/a"
    if s["n"] == 1:
        return fmt(s["median"])
    return f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]"


def render_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown for one benchmark's rows: an A/B table, series tables, plain tables, notes."""
    parts: list[str] = []
    metas = [r for r in rows if r.get("kind") == "meta"]
    for m in metas:
        parts.append("; ".join(f"{k}: {v}" for k, v in m.items() if k != "kind"))
    ab = [r for r in rows if r.get("kind") == "ab"]
    if ab:
        extra_keys = sorted({k for r in ab for k in r["extra"]})
        head = ["measurement", "A", "B", "unit", "A median [min-max]", "B median [min-max]",
                "A over B, x (paired median [min-max])", "n", *extra_keys]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---|" + "---:|" * 4 + "---|" * len(extra_keys)]
        for r in ab:
            unit = r["unit"] + (" (higher is better)" if r["higher_is_better"] else " (lower is better)")
            cells = [r["name"], r["a"], r["b"], unit, fmt_stat(r["a_stats"]), fmt_stat(r["b_stats"]),
                     f"**{fmt(r['ratio']['median'])}** [{fmt(r['ratio']['min'])}-{fmt(r['ratio']['max'])}]",
                     str(r["a_stats"]["n"]), *[str(r["extra"].get(k, "")) for k in extra_keys]]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    series: dict[str, list] = {}
    for r in rows:
        if r.get("kind") == "series":
            series.setdefault(r["series"], []).append(r)
    for name, pts in series.items():
        extra_keys = list(dict.fromkeys(k for r in pts for k in r["extra"]))
        base = pts[0]["stats"]["median"]
        head = ["point", f"{name}: median [min-max] ({pts[0]['unit']})", "n", "x first point", *extra_keys]
        lines = [f"**{name}**", "", "| " + " | ".join(head) + " |", "|---|---:|---:|---:|" + "---:|" * len(extra_keys)]
        for r in pts:
            rel = r["stats"]["median"] / base if base else float("nan")
            lines.append("| " + " | ".join([r["point"], fmt_stat(r["stats"]), str(r["stats"]["n"]), fmt(rel),
                                            *[_cell(r["extra"].get(k, "")) for k in extra_keys]]) + " |")
        parts.append("\n".join(lines))
    tables = [r for r in rows if r.get("kind") == "table"]
    if tables:
        keys = list(dict.fromkeys(k for r in tables for k in r["columns"]))
        lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
        for r in tables:
            lines.append("| " + r["name"] + " | " + " | ".join(_cell(r["columns"].get(k, "")) for k in keys) + " |")
        parts.append("\n".join(lines))
    notes = [r["text"] for r in rows if r.get("kind") == "note"]
    if notes:
        parts.append("\n".join(f"- {t}" for t in notes))
    return "\n\n".join(parts)


def _cell(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------- entry points

THREADS_ENV = "EGOADAPT_BENCH_THREADS"


def threads() -> int:
    """torch threads per benchmark process: 1 unless EGOADAPT_BENCH_THREADS says otherwise.

    Two OpenMP threads on two shared cores stall at every parallel region whenever another
    process holds a core: HF generate on the tiny model measured 0.22 s per batch with one
    thread and 6-9 s with two while a neighbour ran. The tiny model gains nothing from
    intra-op parallelism, and one thread keeps A/B ratios meaningful on a busy machine."""
    return max(1, int(os.environ.get(THREADS_ENV, "1")))


def setup() -> None:
    """Before any benchmark work: one torch thread (see `threads`), library chatter off."""
    n = threads()
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    import torch

    torch.set_num_threads(n)  # before vLLM starts: its CPU worker turns set_num_threads into a no-op
    quiet()


def quiet() -> None:
    """Keep library chatter (progress bars, warnings, info logs) out of benchmark output."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def dump(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike, **info: Any) -> None:
    Path(path).write_text(json.dumps({"rows": list(rows), "peak_rss_mib": peak_rss_mib(),
                                      "children_peak_rss_mib": peak_rss_mib(children=True), **info}, indent=1))


def standalone(run: Callable[[bool], list[dict]], doc: str | None, argv: list[str] | None = None) -> int:
    """`python benchmarks/bench_<name>.py [--quick] [--json FILE]`: run it, print its table."""
    import argparse

    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and points (what run_all --quick uses)")
    ap.add_argument("--json", default=None, help="also write the raw rows here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.quick)
    wall = time.perf_counter() - t0
    print(machine_line() + "\n")
    print(render_rows(rows))
    print(f"\nwall {wall:.0f} s, peak RSS {peak_rss_mib():.0f} MiB")
    if args.json:
        dump(rows, args.json, wall_s=wall)
    return 0


def tiny_model(folder: str | os.PathLike, size: str = "micro") -> Path:
    """The tiny Qwen2.5-VL, built once per folder."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        from egoadapt.models.tiny import build_tiny

        build_tiny(folder, size=size, seed=0)
    return folder


def synth(folder: str | os.PathLike, **kw: Any) -> Path:
    """A synthetic EgoCross set, built once per folder (kw: SynthConfig fields)."""
    folder = Path(folder)
    if not (folder / "annotations.json").is_file():
        from egoadapt.data.synthetic import SynthConfig, generate

        generate(SynthConfig(out=str(folder), **kw), progress=False)
    return folder


if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
