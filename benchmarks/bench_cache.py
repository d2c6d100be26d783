"""Input-cache storage at the 7B recipes' pixel budget: bytes per clip and seconds per epoch.

What the input cache could keep for a clip, each read back into the float32 patches the
model takes (`pixel_values_videos`):

- float32 patches: the processor's output as is (what the cache stored before issue 10);
- bf16 patches, cast to float32 on read;
- the resized uint8 frames (T, H, W, 3), the processor run on read;
- uint8 patches: the resized frames in the processor's patch layout (processor run with
  rescale and normalise off), rescaled and normalised on read (one multiply-add per value):
  what `egoadapt.inputs.encode` stores.

Clips are 854x480 frames (12 and 92 per clip: a typical and the longest EgoCross test-bed
clip, at 1 fps), processed at `model.max_pixels=200704` (Qwen2.5-VL-7B recipes) by the tiny
model's processor, which has the real patch, merge and temporal sizes. An epoch reads every
clip once from a cache folder (in the OS page cache after the first round, as on a node whose
RAM holds the cache) and turns it into model input.

    .venv/bin/python benchmarks/bench_cache.py [--clips 3] [--reps 3] [--no-reference]

`run(quick)` is what benchmarks/run_all.py (`make bench`) calls; the numbers are in
benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

WIDTH, HEIGHT = 854, 480
MIN_PIXELS, MAX_PIXELS = 3136, 200704  # egoadapt/conf/model/qwen2_5_vl_7b.yaml
LENGTHS = (12, 92)
FORMATS = ("uint8 patches", "float32 patches", "bf16 patches", "uint8 frames")


def build_processor():
    from egoadapt.models.tiny import build_processor as tiny_processor
    from egoadapt.models.tiny import train_tokenizer

    processor = tiny_processor(train_tokenizer(512))
    processor.video_processor.size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    return processor


def make_clip(frames: int, seed: int):
    """A Clip of `frames` 854x480 frames: blocky noise (content does not change these costs)."""
    import numpy as np

    from egoadapt.data.frames import Clip

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (frames, HEIGHT // 8 + 1, WIDTH // 8 + 1, 3), dtype=np.uint8)
    pixels = np.ascontiguousarray(np.repeat(np.repeat(small, 8, 1), 8, 2)[:, :HEIGHT, :WIDTH])
    return Clip(frames=pixels, fps=1.0, timestamps=[float(i) for i in range(frames)], indices=list(range(frames)),
                span=(0.0, float(frames)))


def full_pixels(processor, frames, metadata) -> dict:
    out = processor(text=["<|vision_start|><|video_pad|><|vision_end|>"], videos=[frames], video_metadata=[metadata],
                    do_sample_frames=False, return_tensors="pt")
    return {"pixel_values_videos": out["pixel_values_videos"], "video_grid_thw": out["video_grid_thw"]}


def resized_frames(patches, grid, patch: int = 14, merge: int = 2, temporal: int = 2):
    """The processor's resized uint8 frames (T, H, W, 3), undoing its patch layout."""
    gt, gh, gw = (int(v) for v in grid[0])
    x = patches.view(gt, gh // merge, gw // merge, merge, merge, 3, temporal, patch, patch)
    x = x.permute(0, 6, 1, 3, 7, 2, 4, 8, 5)  # t, tp, h1, m, p, w1, m, p, channel
    return x.reshape(gt * temporal, gh * patch, gw * patch, 3).contiguous()


def read(path) -> dict:
    """An entry's tensors, read whole as the input cache reads them (one read, then parse)."""
    from safetensors.torch import load

    return load(Path(path).read_bytes())


def measure(clips: int = 3, reps: int = 3, reference: bool = True) -> tuple[list, list, dict]:
    """([(length, arm name -> seconds per epoch per round)], [(length, format, bytes per clip, max error)], info)."""
    import common
    import torch
    from safetensors.torch import save_file

    from egoadapt.data.cache import InputCache
    from egoadapt.inputs.encode import encode_clip
    from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL
    from egoadapt.inputs.patches import pixels

    t0 = time.perf_counter()
    processor = build_processor()
    timings, sizes = [], []
    with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
        root = Path(tmp)
        cache = InputCache(root / "cache")
        for length in LENGTHS:
            readers: dict[str, list[Callable[[], torch.Tensor]]] = {f: [] for f in FORMATS}
            originals = []
            for c in range(clips):
                clip = make_clip(length, seed=1000 * length + c)
                meta = clip.metadata()
                full = full_pixels(processor, clip.frames, meta)
                ref = full["pixel_values_videos"]
                base = root / f"{length}_{c}"
                save_file({"p": ref.contiguous()}, f"{base}.f32.safetensors")
                save_file({"p": ref.to(torch.bfloat16).contiguous()}, f"{base}.bf16.safetensors")
                compact = encode_clip(Qwen2_5_VL(processor), clip)
                save_file({"f": resized_frames(compact["pixel_values_videos"], compact["video_grid_thw"])},
                          f"{base}.frames.safetensors")
                key = f"{length:03d}{c:061d}"
                cache.put(key, compact)

                def f32(p=f"{base}.f32.safetensors"):
                    return read(p)["p"]

                def bf16(p=f"{base}.bf16.safetensors"):
                    return read(p)["p"].float()

                def frames(p=f"{base}.frames.safetensors", meta=meta):
                    f = read(p)["f"].numpy()
                    return full_pixels(processor, f, {**meta, "width": f.shape[2], "height": f.shape[1]})[
                        "pixel_values_videos"]

                def u8(key=key):
                    return pixels(cache.get(key))

                for name, fn in zip(FORMATS, (u8, f32, bf16, frames)):
                    readers[name].append(fn)
                if c == 0:
                    files = {"float32 patches": f"{base}.f32.safetensors", "bf16 patches": f"{base}.bf16.safetensors",
                             "uint8 frames": f"{base}.frames.safetensors", "uint8 patches": cache.path(key)}
                    for name, fn in zip(FORMATS, (u8, f32, bf16, frames)):
                        got = fn()
                        err = (got - ref).abs().max().item() if got.shape == ref.shape else float("nan")
                        sizes.append((length, name, Path(files[name]).stat().st_size, err, tuple(ref.shape)))
                originals.append((clip.frames, meta))

            arms = {name: (lambda fns=fns: [fn() for fn in fns]) for name, fns in readers.items()}
            if reference:
                arms["no cache (processor on the 854x480 frames)"] = lambda originals=originals: [
                    full_pixels(processor, f, m) for f, m in originals]
            timings.append((length, common.alternate(arms, reps=reps, warmup=1)))
    return timings, sizes, {"setup_s": time.perf_counter() - t0, "clips": clips, "reps": reps}


def rows_from(timings, sizes, info) -> list[dict]:
    import common

    rows = [common.meta(workload=f"{info['clips']} clips each of {' and '.join(map(str, LENGTHS))} frames at "
                                 f"{WIDTH}x{HEIGHT}, max_pixels {MAX_PIXELS} (7B recipes), tiny processor (real "
                                 f"patch/merge/temporal sizes); an epoch reads every clip of one length once; "
                                 f"{info['reps']} alternated rounds after a warm-up round")]
    f32 = {length: b for length, name, b, _, _ in sizes if name == "float32 patches"}
    for length, name, b, err, shape in sizes:
        rows.append(common.table_row(f"{length} frames: {name}", {
            "MB per clip": b / 1e6, "x float32": b / f32[length],
            "max abs error vs the processor": "exact" if err == 0 else f"{err:.1e}",
            "patches": f"{shape[0]} x {shape[1]}"}))
    for length, values in timings:
        for other in list(values)[1:]:
            rows.append(common.ab_row(f"{length}-frame clips: one epoch ({info['clips']} clips), read + process",
                                      FORMATS[0], other, values[FORMATS[0]], values[other], "s", False))
    return rows


def notes(rows: list[dict], sizes) -> list[dict]:
    import common

    by = {(length, name): (b, err) for length, name, b, err, _ in sizes}
    ab = {(r["name"].split("-")[0], r["b"]): r["ratio"]["median"] for r in rows if r.get("kind") == "ab"}
    f32, u8 = "float32 patches", "uint8 patches"
    text = (f"Bytes per clip, float32 patches (before) -> uint8 patches: 12 frames {by[(12, f32)][0] / 1e6:.1f} -> "
            f"{by[(12, u8)][0] / 1e6:.1f} MB, 92 frames {by[(92, f32)][0] / 1e6:.0f} -> {by[(92, u8)][0] / 1e6:.0f} MB "
            f"(**{by[(92, f32)][0] / by[(92, u8)][0]:.2f}x** fewer); bf16 patches take half of float32, uint8 frames "
            "the same bytes as uint8 patches. The default RAM store (`cache_ram_bytes`, 2 GiB per process) holds "
            f"{2**31 // by[(12, u8)][0]} 12-frame or {2**31 // by[(92, u8)][0]} 92-frame clips of uint8 patches "
            f"({2**31 // by[(12, f32)][0]} or {2**31 // by[(92, f32)][0]} of float32); the rest is read from the disk "
            "cache.")
    speed = "; ".join(
        f"{length} frames: {ab[(length, f32)]:.2f}x float32's speed, {ab[(length, 'bf16 patches')]:.2f}x bf16's, "
        f"{ab[(length, 'uint8 frames')]:.2f}x uint8 frames'" for length in ("12", "92") if (length, f32) in ab)
    choice = (f"egoadapt stores uint8 patches: the fewest bytes, and what is read back is the processor's output bit "
              f"for bit (bf16 is off by up to {by[(92, 'bf16 patches')][1]:.1e}), since the stored values are the "
              "processor's own resized uint8 pixels and the read applies its fused rescale-and-normalise (a subtract "
              "and a divide per value). Read + process per epoch, uint8 patches vs the others (> 1: faster): "
              f"{speed}. uint8 frames hold the same bytes but run the processor's normalise and patch reshuffle "
              "on every read.")
    return [common.note(text), common.note(choice)]


def run(quick: bool = False) -> list[dict]:
    """For benchmarks/run_all.py: rows in benchmarks/common.py's format."""
    import common

    common.setup()
    timings, sizes, info = measure(clips=2 if quick else 3, reps=3, reference=not quick)
    rows = rows_from(timings, sizes, info)
    return rows + notes(rows, sizes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=3, help="clips of each length")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-reference", action="store_true", help="skip the no-cache arm (the processor on raw frames)")
    args = ap.parse_args(argv)
    import common

    common.setup()
    t0 = time.perf_counter()
    timings, sizes, info = measure(args.clips, args.reps, not args.no_reference)
    rows = rows_from(timings, sizes, info)
    print(common.render_rows(rows + notes(rows, sizes)))
    print(f"\ntotal {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
