"""Data-layer ratio benchmarks on a synthetic EgoCross set (A/B alternated, medians).

1. Input cache on vs off over a second epoch: every sample's processor vision inputs, read
   from the on-disk cache (filled by a first epoch) vs read frames + run the processor.
2. Video sampling with decord vs PyAV at 0.5 and 1 fps over the synthetic raw videos.

    .venv/bin/python benchmarks/bench_data.py [--reps 5] [--size 224] [--max-pixels 50176]
        [--processor DIR]   # a real Qwen2.5-VL processor folder; default: the tiny one built here

Recorded (2 CPU cores, AMD EPYC, Python 3.11, torch 2.13.0+cpu, transformers 5.19.0,
decord 0.6.0, av 18.1.0; tiny Qwen2.5-VL processor with max_pixels 224*224; 48 questions,
8 s clips, 224 px frames; `python benchmarks/bench_data.py`):

    | benchmark                                   | A        | B         | A (s) | B (s) | B / A |
    |---------------------------------------------|----------|-----------|------:|------:|------:|
    | input cache, 2nd epoch (frame lists)        | cache on | cache off | 0.159 | 2.597 | 16.30 |
    | video sampling at 0.5 fps (48 clips of 8 s) | decord   | PyAV      | 1.748 | 1.767 |  1.01 |
    | video sampling at 1 fps (48 clips of 8 s)   | decord   | PyAV      | 1.771 | 1.775 |  1.00 |

    (an earlier run, PyAV with FFmpeg's default threads: 1.08 and 1.17.) Sampling time barely
    moves between 0.5 and 1 fps: per clip it is dominated by opening the file and seeking from
    the key frame before the span (x264's default GOP is 250 frames), not by the frames kept.
    Whole run ~75 s including generating the set (~15 s).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def alternate(a: Callable[[], object], b: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median seconds of a and b, run A B / B A alternately so drift hits both alike."""
    ta, tb = [], []
    for r in range(reps):
        if r % 2 == 0:
            ta.append(timed(a))
            tb.append(timed(b))
        else:
            tb.append(timed(b))
            ta.append(timed(a))
    return statistics.median(ta), statistics.median(tb)


def build_processor(path: str | None, max_pixels: int):
    from transformers import AutoProcessor

    if path:
        return AutoProcessor.from_pretrained(path)
    from egoadapt.models.tiny import build_processor as tiny_processor
    from egoadapt.models.tiny import train_tokenizer

    processor = tiny_processor(train_tokenizer(512))
    processor.video_processor.size = {"shortest_edge": 56 * 56, "longest_edge": max_pixels}
    return processor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=224, help="synthetic frame side in pixels")
    ap.add_argument("--max-pixels", type=int, default=224 * 224, help="tiny processor's per-frame pixel cap")
    ap.add_argument("--processor", default=None, help="a Qwen2.5-VL processor folder (default: tiny, built here)")
    ap.add_argument("--videos-per-domain", type=int, default=2)
    args = ap.parse_args(argv)

    import logging

    logging.disable(logging.WARNING)
    import warnings

    warnings.filterwarnings("ignore")
    from egoadapt.data.cache import InputCache, vision_inputs
    from egoadapt.data.frames import load_clip
    from egoadapt.data.load import load_samples
    from egoadapt.data.synthetic import SynthConfig, generate

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        out = generate(SynthConfig(out=f"{tmp}/synth", seed=0, videos_per_domain=args.videos_per_domain,
                                   questions_per_video=6, size=args.size, clip_seconds=8.0, sampling_fps=1.0,
                                   video_fps=8.0), progress=False)
        frames = load_samples({"format": "egocross", "annotations": f"{out}/annotations.json", "root": str(out)})
        videos = load_samples({"format": "jsonl", "annotations": f"{out}/videos.jsonl"})
        processor = build_processor(args.processor, args.max_pixels)
        setup_s = time.perf_counter() - t0

        rows = []
        cache = InputCache(f"{tmp}/cache")
        for s in frames:  # epoch 1 fills the cache
            vision_inputs(s, {}, processor, cache)

        def epoch(c: InputCache | None) -> Callable[[], None]:
            return lambda: [vision_inputs(s, {}, processor, c) for s in frames]

        on, off = alternate(epoch(cache), epoch(None), args.reps)
        rows.append(("input cache, 2nd epoch (frame lists -> processor inputs)", "cache on", "cache off", on, off))

        for fps in (0.5, 1.0):
            def sample(backend: str, fps: float = fps) -> Callable[[], None]:
                cfg = {"backend": backend, "fps": fps}
                return lambda: [load_clip(s, cfg) for s in videos]

            dec, pyav = alternate(sample("decord"), sample("pyav"), args.reps)
            rows.append((f"video sampling at {fps:g} fps ({len(videos)} clips of 8 s)", "decord", "PyAV", dec, pyav))

    print(f"# bench_data: {len(frames)} questions, {args.size}px frames, {args.reps} reps (medians), "
          f"setup {setup_s:.1f}s\n")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; processor "
          f"{args.processor or f'tiny (max_pixels {args.max_pixels})'}\n")
    print("| benchmark | A | B | A median (s) | B median (s) | B / A |")
    print("|---|---|---|---:|---:|---:|")
    for name, a, b, ta, tb in rows:
        print(f"| {name} | {a} | {b} | {ta:.3f} | {tb:.3f} | {tb / ta:.2f} |")
    print(f"\ntotal {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
