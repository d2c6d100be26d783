"""Rollouts: vLLM (in-process colocate engine) vs HF generate, tokens per second on the same video prompts.

Both engines are egoadapt's own (`egoadapt.rollout.engines`), as GRPO uses them: the same
`VideoInputs` (frames, prompts with the clip's real fps, prompt ids with the real number of
video tokens), sampling at temperature 1.0, one completion per row. EOS is suppressed in
both so every row generates exactly `max_tokens` tokens (equal work; otherwise a random
model's early EOS decides the result). HF reads the processed vision tensors from
egoadapt's input cache; vLLM gets the raw frames and runs its own processor and vision
encoder, and its prefix, encoder and multimodal caches are reset before every call so
repeated prompts earn nothing. Several batch sizes; arms alternate, medians reported.

    .venv/bin/python benchmarks/bench_rollout.py [--quick] [--json FILE]
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

MAX_TOKENS = 64
FRAME_SIZE = 112  # px: 8 frames of a 4 s clip at 2 fps -> 64 video tokens with the tiny processor


def _engines(model_dir: Path, data_dir: Path, sampling: dict):
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from egoadapt.data.load import load_samples
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.rollout.engines import HFEngine, VLLMColocateEngine

    samples = load_samples({"format": "egocross", "annotations": str(data_dir / "annotations.json"),
                            "answers": str(data_dir / "answers.json"), "root": str(data_dir)})
    processor = AutoProcessor.from_pretrained(model_dir)
    processor.tokenizer.padding_side = "left"
    video = VideoInputs(samples, processor, frames_cfg=None)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    hf = HFEngine(video, sampling)
    vllm = VLLMColocateEngine(video, sampling, str(model_dir))
    for e in (hf, vllm):  # fixed-length completions: equal work for both engines
        e.banned = list(e.banned) + [t for t in e.eos_ids if t is not None]
    return samples, video, model, hf, vllm


def _trainer_of(model):
    """What HFEngine.generate needs of a trainer (as in tests/rollout/test_weight_sync.py)."""
    from types import SimpleNamespace

    import torch

    acc = SimpleNamespace(unwrap_model=lambda m: m, state=SimpleNamespace(deepspeed_plugin=None),
                          is_main_process=True, device=torch.device("cpu"))
    return SimpleNamespace(model_wrapped=model, accelerator=acc, args=SimpleNamespace(ds3_gather_for_generation=True))


def _reset_vllm(engine) -> None:
    engine.llm.reset_prefix_cache()
    engine.llm.llm_engine.reset_encoder_cache()
    engine.llm.reset_mm_cache()


def _arm(engine, trainer, requests, counted: list[int]):
    """Completion tokens per second of one generate call (counts kept to check equal work)."""
    def fn():
        t = time.perf_counter()
        out, _ = engine.generate(requests, trainer)
        dt = time.perf_counter() - t
        n = sum(len(c) for c in out)
        counted.append(n)
        return n / dt
    return fn


def measure_model(size: str, tmp: Path, layouts: list[tuple[int, int]], reps: int) -> list[dict]:
    """`layouts`: (prompts, generations) per batch; rows = prompts x generations."""
    model_dir = common.tiny_model(tmp / f"tiny-{size}", size)
    data_dir = common.synth(tmp / "synth", seed=0, videos_per_domain=2, questions_per_video=4, size=FRAME_SIZE,
                            clip_seconds=4.0, sampling_fps=2.0, write_videos=False)
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": None, "max_tokens": MAX_TOKENS}
    t0 = time.perf_counter()
    samples, video, model, hf, vllm = _engines(model_dir, data_dir, sampling)
    vllm_start = time.perf_counter() - t0
    trainer = _trainer_of(model)
    n_params = sum(p.numel() for p in model.parameters())
    rows = []
    for n_prompts, gens in layouts:
        bs = n_prompts * gens
        ids = [s.id for s in samples[:n_prompts] for _ in range(gens)]
        requests = [video.request(i, "close") for i in ids]
        prompt_ids = [r.prompt_ids for r in requests]
        counted: list[int] = []
        res = common.alternate({"vllm": _arm(vllm, None, requests, counted),
                                "hf": _arm(hf, trainer, requests, counted)},
                               reps, warmup=1, between=partial(_reset_vllm, vllm))
        prompt_len = sum(map(len, prompt_ids)) / len(prompt_ids)
        rows.append(common.ab_row(
            f"{size} ({n_params / 1e6:.2f} M params), batch {bs} "
            + (f"({n_prompts} prompts x {gens} generations)" if gens > 1 else "(distinct prompts)"),
            "vLLM colocate", "HF generate",
            res["vllm"], res["hf"], "completion tok/s", True,
            {"prompt tokens/row": round(prompt_len), "video tokens/row": video.num_video_tokens(ids[0]),
             "tokens/row": f"{min(counted) // bs}-{max(counted) // bs}"}))
    rows.append(common.meta(**{f"vLLM engine start ({size})": f"{vllm_start:.1f} s"}))
    vllm.close()
    del vllm, hf, model
    common.release_memory()
    return rows


def run(quick: bool = False) -> list[dict]:
    common.setup()
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    reps = 5 if quick else 7
    layouts = [(1, 1), (4, 1), (16, 1), (4, 4)] if quick else [(1, 1), (4, 1), (16, 1), (32, 1), (4, 4), (4, 8)]
    sizes = ["micro"] if quick else ["micro", "small"]
    rows = [common.meta(workload=f"synthetic clips, {FRAME_SIZE} px frames, 8 frames per clip (2 fps); "
                                 f"{MAX_TOKENS} sampled tokens per row (EOS suppressed), temperature 1.0; "
                                 f"{reps} alternated rounds after 1 warm-up")]
    with tempfile.TemporaryDirectory(prefix="bench_rollout_") as tmp:
        for size in sizes:
            rows += measure_model(size, Path(tmp), layouts, reps)
    ab = [r for r in rows if r.get("kind") == "ab"]
    best = max(ab, key=lambda r: r["ratio"]["median"])
    worst = min(ab, key=lambda r: r["ratio"]["median"])
    grpo = [r for r in ab if "generations" in r["name"]]
    rows.append(common.note(
        f"vLLM over HF ranges from {worst['ratio']['median']:.2f}x ({worst['name']}) to "
        f"{best['ratio']['median']:.2f}x ({best['name']}). On the 0.3 M-parameter model a decode step is "
        "microseconds of math, so both engines are bound by per-step overhead (vLLM's engine loop, HF's "
        "generate loop) and vLLM also re-runs its own processor and vision encoder "
        "on the frames of every request (its caches are reset between calls here; HF reads processed tensors from "
        "egoadapt's input cache)."))
    if grpo:
        rows.append(common.note(
            "In GRPO's layout (several generations of each prompt in one call) vLLM encodes each clip and prefills "
            "each prompt once and shares them across the generations (encoder and prefix caches), where HF repeats "
            "both per row: " + "; ".join(f"{r['name'].split(' (')[0]}, {r['name'].split(' params), ')[-1]}: "
                                        f"{r['ratio']['median']:.2f}x" for r in grpo) + "."))
    small = [r for r in ab if r["name"].startswith("small")]
    if small:
        ahead = [r for r in small if r["ratio"]["median"] > 1]
        rows.append(common.note(
            f"On the 1.4 M-parameter model vLLM is ahead in {len(ahead)} of {len(small)} layouts: once a decode "
            "step costs some math, vLLM's batched decode pulls ahead, most in GRPO's layout (where it also shares "
            "each clip's encoding and each prompt's prefill across the generations). The "
            "regime that decides the choice, 3-7 B parameters on a GPU, is what benchmarks/gpu/ measures."))
    return rows


if __name__ == "__main__":
    sys.exit(common.standalone(run, __doc__))
