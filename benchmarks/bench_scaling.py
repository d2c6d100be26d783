"""Scaling: how cost grows with work.

1. GRPO step time and extra memory as frames per clip grow (8, 16, 32, 64): one synthetic
   set of 32 s clips at 2 fps (64 frames, 112 px), `frames.max_frames=N` thins them
   uniformly, so each point sees the same clips at N frames; video tokens grow with N.
   Trainers are built by `egoadapt train recipe=demo/tiny_grpo rollout=hf` (as in
   bench_grpo: 8 completions of 32 tokens per step, beta 0.04); blocks of steps rotate
   between the four points, the first step of each block is dropped. Memory: peak RSS
   during a block above the RSS before it (freed heap returned to the OS first, sampled
   every 2 ms), the largest over blocks.
2. Evaluation time as questions grow (16, 64, 256): `egoadapt.eval.run.evaluate` (what
   `egoadapt eval` runs: load, generate with the HF backend in batches of 8, score,
   bootstrap, write results) with `limit=N`, greedy, 32 new tokens, warm input cache.

    .venv/bin/python benchmarks/bench_scaling.py [--quick] [--json FILE]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_grpo
import common

FRAMES = (8, 16, 32, 64)
QUESTIONS = (16, 64, 256)


def grpo_frames(tmp: Path, steps: int, blocks: int) -> list[dict]:
    model_dir = common.tiny_model(tmp / "tiny", "micro")
    data_dir = common.synth(tmp / "synth64", seed=0, videos_per_domain=1, questions_per_video=4,
                            size=bench_grpo.FRAME_SIZE, clip_seconds=32.0, sampling_fps=2.0, write_videos=False)
    phases = common.Phases()
    trainers, timers = {}, {}
    for n in FRAMES:
        tr = bench_grpo.egoadapt_trainer(model_dir, data_dir, tmp / f"grpo{n}", "rollout=hf", f"frames.max_frames={n}")
        timers[n] = bench_grpo.step_timer(phases)
        tr.add_callback(timers[n])
        trainers[n] = tr
    sample_ids = list(dict.fromkeys(trainers[8].train_dataset["sample_id"]))
    memory = {n: 0.0 for n in FRAMES}
    names = list(FRAMES)
    for b in range(blocks):
        for n in names[b % len(names):] + names[:b % len(names)]:
            timers[n].first_of_blocks.add(len(timers[n].steps))
            trainers[n].args.max_steps = steps
            with common.RSSPeak() as peak:
                trainers[n].train()
            memory[n] = max(memory[n], peak.extra_mib)
    rows = []
    for n in FRAMES:
        video = trainers[n].video
        tokens = sum(video.num_video_tokens(s) for s in sample_ids) / len(sample_ids)
        frames = int(video.vision(sample_ids[0])["num_frames"])
        prompt = sum(len(video.prompt_ids(video.messages(s, "closeqa"), s)) for s in sample_ids) / len(sample_ids)
        step_times = [s[0] for s in timers[n].kept()]
        rows.append(common.series_row("GRPO step vs frames per clip", f"{n} frames", step_times, "s/step", {
            "frames (sampled fps)": f"{frames} ({frames / 32:g} fps)", "video tokens/sample": round(tokens),
            "prompt tokens/sample": round(prompt), "step memory above baseline (MiB)": round(memory[n], 1)}))
    return rows


def eval_questions(tmp: Path, rounds: int) -> list[dict]:
    from egoadapt.eval.run import config, evaluate

    model_dir = common.tiny_model(tmp / "tiny", "micro")
    data_dir = common.synth(tmp / "synth256", seed=0, videos_per_domain=8, questions_per_video=8, size=56,
                            clip_seconds=4.0, sampling_fps=2.0, write_videos=False)
    runs = iter(range(10**6))

    def arm(n: int):
        def fn():
            cfg = config(f"checkpoint={model_dir}", "data=synthetic", f"data.root={data_dir}",
                         f"out={tmp / f'eval-{next(runs)}'}", f"limit={n}", "qa=close", "batch_size=8",
                         "generation.max_new_tokens=32", "progress=false", f"cache_dir={tmp / 'eval_cache'}",
                         "model.dtype=float32", "model.attn_implementation=sdpa")
            t = time.perf_counter()
            res = evaluate(cfg)
            assert res["counts"]["predictions"] == n, res["counts"]
            return time.perf_counter() - t
        return fn

    res = common.alternate({n: arm(n) for n in QUESTIONS}, rounds, warmup=1)  # warm-up fills the input cache
    rows = []
    for n in QUESTIONS:
        med = common.summary(res[n])["median"]
        rows.append(common.series_row("egoadapt eval time vs questions", f"{n} questions", res[n], "s",
                                      {"ms/question": round(1000 * med / n, 1), "x questions": n // QUESTIONS[0]}))
    return rows


def run(quick: bool = False) -> list[dict]:
    common.setup()
    steps, blocks = (3, 2) if quick else (4, 4)
    rounds = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench_scaling_") as tmp_:
        tmp = Path(tmp_)
        rows = grpo_frames(tmp, steps, blocks)
        rows += eval_questions(tmp, rounds)
    rows.insert(0, common.meta(workload=(
        f"GRPO: tiny Qwen2.5-VL micro, {bench_grpo.BATCH} completions x {bench_grpo.COMPLETION} tokens per step, "
        f"{blocks} rotated blocks of {steps} steps per point; eval: 56 px clips of 8 frames, batch 8, "
        f"{rounds} rotated rounds after a warm-up")))
    g = [r for r in rows if r.get("kind") == "series" and r["series"].startswith("GRPO")]
    e = [r for r in rows if r.get("kind") == "series" and r["series"].startswith("egoadapt eval")]
    gt = g[-1]["stats"]["median"] / g[0]["stats"]["median"]
    tok = g[-1]["extra"]["video tokens/sample"] / g[0]["extra"]["video tokens/sample"]
    mem = (g[-1]["extra"]["step memory above baseline (MiB)"], g[0]["extra"]["step memory above baseline (MiB)"])
    et = e[-1]["stats"]["median"] / e[0]["stats"]["median"]
    per_q = [r["extra"]["ms/question"] for r in e]
    rows.append(common.note(
        f"GRPO: 8x the frames ({tok:.0f}x the video tokens) costs {gt:.1f}x the step time and {mem[0]:.0f} vs "
        f"{mem[1]:.0f} MiB of step memory: the vision tower and every LM pass (generation prefill, old/ref "
        "log-probs, loss, backward) grow with the prompt, generation's per-token overhead does not. At 7B the "
        "token-proportional part should dominate, so expect growth close to linear in frames plus attention's "
        "quadratic term at long contexts; benchmarks/gpu/ (--frames 16 vs 32) measures it."))
    rows.append(common.note(
        f"Eval: 16x the questions costs {et:.1f}x the time ({per_q[0]:.0f} -> {per_q[-1]:.0f} ms per question): "
        "a fixed part (loading the model and processor, writing results) is spread over more questions, the rest "
        "grows linearly."))
    return rows


if __name__ == "__main__":
    sys.exit(common.standalone(run, __doc__))
