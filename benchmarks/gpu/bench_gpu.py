"""One GRPO step and one rollout batch of a randomly initialised Qwen2.5-VL-7B (or 3B) at full size.

No download: the model is built from a `Qwen2_5_VLConfig` with the 7B's sizes (28 layers,
hidden 3584, 28 heads / 4 KV heads, MLP 18944, vocab 152064; vision tower 32 blocks of
1280 with full attention in blocks 7/15/23/31) and random bf16 weights; throughput does
not depend on weight values. The tokenizer and processor are the tiny builder's
(`egoadapt.models.tiny`: a locally trained BPE with Qwen's special tokens, ~650 tokens)
with Qwen's patching (14 px patches, 2x2 merge, 2-frame temporal patches) and the pixel
limit set to the frame size; the config keeps the real 152064-row vocabulary, so the
embedding, LM head and logits cost what they cost in the real model (token ids above the
tokenizer's are sampled and decode to nothing). vLLM loads the same config with
`load_format="dummy"` (random weights, no files).

Measured (everything through egoadapt's own code: VideoInputs, the rollout engines,
VideoGRPOTrainer on TRL's GRPOTrainer, with the video in every log-prob pass):

- rollout batch: `prompts x generations` rows of `frames` frames each, `completion` sampled
  tokens per row (EOS suppressed: fixed work), with HF generate and/or vLLM colocated:
  completion tokens/s;
- GRPO step (rollout engine of `--grpo-rollout`, beta 0.04 so the reference model runs,
  loss dapo, gradient checkpointing, bf16): seconds per step (median of `--steps`, after a
  warm-up step), tokens/s, peak GPU memory, and MFU = model FLOPs of the step (every
  forward and backward actually run, counted from the rows each pass saw: 2 N per token
  forward, x3 with backward, plus attention and the vision tower per row) / (step time x
  GPUs x the card's dense bf16 peak).

    # one GPU (a 7B full fine-tune needs an H200's 141 GB, or ZeRO-3 with CPU offload on an H100):
    python benchmarks/gpu/bench_gpu.py --frames 16
    # eight GPUs, ZeRO-3 (see README.md):
    accelerate launch --config_file launch/accelerate/zero3.yaml --num_processes 8 benchmarks/gpu/bench_gpu.py --frames 32
    # anywhere, to prove the code path on a scaled-down config (CPU):
    python benchmarks/gpu/bench_gpu.py --dry-run

Writes a JSON record (`--json`, default benchmarks/gpu/results/<card>x<gpus>-<size>-<frames>f.json)
and prints a markdown table to paste into benchmarks/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parents[1]))
import common


@dataclass(frozen=True)
class Size:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tie: bool
    mrope: tuple[int, int, int]
    v_depth: int
    v_hidden: int
    v_ffn: int
    v_heads: int
    v_fullatt: tuple[int, ...]


SIZES = {  # from the released Qwen2.5-VL configs
    "7b": Size(3584, 28, 28, 4, 18944, 152064, False, (16, 24, 24), 32, 1280, 3420, 16, (7, 15, 23, 31)),
    "3b": Size(2048, 36, 16, 2, 11008, 151936, True, (16, 24, 24), 32, 1280, 3420, 16, (7, 15, 23, 31)),
    # the dry run: the same architecture, tiny widths (head_dim 32 for vLLM's CPU attention), a vocabulary still
    # larger than the tokenizer's (sampled ids above it decode to nothing) but not 152064: off Triton devices TRL's
    # chunked log-prob scores every position over the whole vocabulary, seconds per pass on a CPU
    "dry": Size(128, 2, 4, 2, 256, 8192, False, (4, 6, 6), 2, 64, 128, 2, (1,)),
}

PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "H800": 989.4, "GH200": 989.4, "B200": 2250.0, "A100": 312.0,
                    "A800": 312.0, "L40S": 362.0, "A10": 125.0}  # dense, SXM parts


# ------------------------------------------------------------------------------ model and data

def qwen_config(size: Size, tokenizer):
    from transformers import Qwen2_5_VLConfig

    from egoadapt.models.tiny import QWEN_SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": size.vocab, "hidden_size": size.hidden, "intermediate_size": size.ffn,
            "num_hidden_layers": size.layers, "num_attention_heads": size.heads,
            "num_key_value_heads": size.kv_heads, "max_position_embeddings": 128000,
            "max_window_layers": size.layers, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(size.mrope)},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"], "tie_word_embeddings": size.tie,
        },
        vision_config={
            "depth": size.v_depth, "hidden_size": size.v_hidden, "intermediate_size": size.v_ffn,
            "num_heads": size.v_heads, "out_hidden_size": size.hidden, "patch_size": 14, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "window_size": 112, "fullatt_block_indexes": list(size.v_fullatt),
            "tokens_per_second": 2, "hidden_act": "silu", "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=size.tie,
    )


def model_folder(out: Path, size: Size, frame_size: int):
    """config.json + tokenizer/processor, no weights (vLLM: load_format=dummy). Returns (folder, processor, config)."""
    from egoadapt.models.tiny import build_processor, train_tokenizer

    processor = build_processor(train_tokenizer(1024))
    limits = {"shortest_edge": 56 * 56, "longest_edge": frame_size * frame_size}
    processor.video_processor.size = dict(limits)
    processor.image_processor.size = dict(limits)
    for p in (processor.video_processor, processor.image_processor):
        p.min_pixels, p.max_pixels = limits["shortest_edge"], limits["longest_edge"]
    processor.tokenizer.padding_side = "left"
    config = qwen_config(size, processor.tokenizer)
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    processor.save_pretrained(out)
    return out, processor, config


def random_model(config, dtype, device: str, attn: str):
    """Random weights (bf16 on the GPU); under ZeRO-3 built inside deepspeed.zero.Init by transformers."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.integrations import is_deepspeed_zero3_enabled

    torch.manual_seed(0)
    if is_deepspeed_zero3_enabled():
        return Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    with torch.device(device):
        return Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)


def synthetic(out: Path, frames: int, frame_size: int) -> list:
    from accelerate import PartialState

    from egoadapt.data.load import load_samples

    state = PartialState()
    if state.is_main_process:
        common.synth(out, seed=0, videos_per_domain=1, questions_per_video=4, size=frame_size,
                     clip_seconds=frames / 2.0, sampling_fps=2.0, write_videos=False)
    state.wait_for_everyone()
    return load_samples({"format": "egocross", "annotations": str(out / "annotations.json"),
                         "answers": str(out / "answers.json"), "root": str(out)})


# ------------------------------------------------------------------------------ FLOPs

@dataclass
class FlopModel:
    lm: int  # LM matmul parameters (no input embedding), lm_head included
    vision_blocks: int
    vision_merger: int
    layers: int
    hidden: int
    v_layers_full: int
    v_layers_window: int
    v_hidden: int
    window_patches: int = 64  # 112 px window / 14 px patches, squared

    @classmethod
    def of(cls, config, model) -> FlopModel:
        lm = vb = vm = 0
        for name, p in model.named_parameters():
            n = p.numel() if not hasattr(p, "ds_numel") else p.ds_numel
            if ".visual." in f".{name}":
                if ".merger." in name:
                    vm += n
                elif ".blocks." in name:
                    vb += n
            elif "embed_tokens" not in name:
                lm += n
        if config.tie_word_embeddings:
            lm += config.text_config.vocab_size * config.text_config.hidden_size
        v = config.vision_config
        full = len(v.fullatt_block_indexes)
        return cls(lm, vb, vm, config.text_config.num_hidden_layers, config.text_config.hidden_size, full,
                   v.depth - full, v.hidden_size)

    def vision_forward(self, patches: int) -> float:
        """One video through the vision tower: blocks on every patch, merger on merged tokens, attention
        over each window (most blocks) or the whole video (full-attention blocks)."""
        attention = 4 * self.v_hidden * patches * (self.v_layers_full * patches
                                                   + self.v_layers_window * self.window_patches)
        return 2 * self.vision_blocks * patches + 2 * self.vision_merger * patches / 4 + attention

    def lm_forward(self, tokens: int) -> float:
        """One causal sequence through the LM: 2 N per token plus attention (causal: half of S^2)."""
        return 2 * self.lm * tokens + 2 * self.layers * self.hidden * tokens * tokens


def count_passes(flops: FlopModel, video, totals: dict[str, float]):
    """Wrap TRL's log-prob passes to add the FLOPs of every row they run (x3 when a backward follows)."""
    import torch

    from egoadapt.rollout.engines import HFEngine, VLLMColocateEngine
    from egoadapt.train.grpo import VideoGRPOTrainer

    def patches_of(sid: str) -> int:
        return int(video.vision(sid)["video_grid_thw"].prod())

    def row_flops(sid: str, tokens: int) -> float:
        return flops.vision_forward(patches_of(sid)) + flops.lm_forward(tokens)

    original = VideoGRPOTrainer._get_per_token_logps_and_entropies

    def logps(self, model, input_ids, attention_mask, *args, **kwargs):
        batch = self.batch_scope.current
        rows = batch.sample_ids if batch is not None else []
        lengths = attention_mask.sum(-1).tolist()
        mult = 3.0 if torch.is_grad_enabled() else 1.0
        # the tower's work: every row's clip, or (vision_dedupe) each clip once per pass, once per step when frozen
        clips = list(dict.fromkeys(rows)) if self.vision_dedupe else rows
        if batch is not None and batch.frozen is not None:
            clips = [c for c in clips if c not in batch.frozen]
        work = sum(flops.lm_forward(int(n)) for n in lengths) + sum(flops.vision_forward(patches_of(c)) for c in clips)
        totals["train" if mult > 1 else "logprob"] += mult * work
        return original(self, model, input_ids, attention_mask, *args, **kwargs)

    VideoGRPOTrainer._get_per_token_logps_and_entropies = logps
    for cls in (HFEngine, VLLMColocateEngine):
        gen = cls.generate

        def generate(self, requests, trainer, _gen=gen):
            out = _gen(self, requests, trainer)
            totals["rollout"] += sum(row_flops(r.sample_id, len(r.prompt_ids) + len(c)) for r, c in zip(requests, out[0]))
            return out

        cls.generate = generate


# ------------------------------------------------------------------------------ the benchmark

@dataclass
class Settings:
    size: str = "7b"
    frames: int = 16
    frame_size: int = 448
    prompts: int = 2  # per device per step
    generations: int = 8
    completion: int = 256
    steps: int = 3
    rollout: str = "both"  # rollout batch timing: hf | vllm | both
    grpo_rollout: str = "vllm"  # engine inside the GRPO step: hf | vllm
    vllm_memory: float = 0.25
    vllm_eager: bool = False
    gradient_checkpointing: bool = True
    optim: str = "adamw_torch"
    peak_tflops: float | None = None
    dry_run: bool = False


def run_benchmark(s: Settings) -> dict[str, Any]:
    import torch
    import trl.trainer.grpo_trainer as grpo_module
    from accelerate import PartialState
    from trl import GRPOConfig

    from egoadapt.data.cache import InputCache
    from egoadapt.inputs.families.qwen2_5_vl import Qwen2_5_VL
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.rewards.registry import build_reward_funcs
    from egoadapt.rollout.engines import HFEngine, VLLMColocateEngine
    from egoadapt.train.datasets import build_dataset
    from egoadapt.train.grpo import VideoGRPOTrainer

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    cuda = torch.cuda.is_available() and not s.dry_run
    state = PartialState()
    world = state.num_processes
    dtype = torch.bfloat16 if cuda else torch.float32
    attn = "sdpa"
    if cuda:
        import importlib.util

        attn = "flash_attention_2" if importlib.util.find_spec("flash_attn") else "sdpa"
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    folder, processor, config = model_folder(tmp / "model", SIZES[s.size], s.frame_size)
    samples = synthetic(tmp / "synth", s.frames, s.frame_size)
    video = VideoInputs(samples, processor, {"max_frames": s.frames}, None, cache=InputCache(tmp / "cache"),
                        family=Qwen2_5_VL(processor))
    rows = s.prompts * s.generations
    args = GRPOConfig(  # before the model: under accelerate + ZeRO-3 this switches transformers to zero.Init
        output_dir=str(tmp / "run"), per_device_train_batch_size=rows, num_generations=s.generations,
        max_completion_length=s.completion, beta=0.04, loss_type="dapo", learning_rate=1e-6, max_steps=1 + s.steps,
        logging_steps=10**6, save_strategy="no", report_to="none", bf16=cuda, use_cpu=not cuda, seed=0,
        remove_unused_columns=False, gradient_checkpointing=s.gradient_checkpointing and cuda, optim=s.optim,
        disable_tqdm=True)
    t0 = time.perf_counter()
    device = f"cuda:{state.local_process_index}" if cuda else "cpu"
    model = random_model(config, dtype, device, attn)
    grpo_module.create_model_from_path = lambda *a, **k: random_model(config, dtype, device, attn)  # reference model
    build_s = time.perf_counter() - t0
    flops = FlopModel.of(config, model)
    totals = {"rollout": 0.0, "logprob": 0.0, "train": 0.0}
    count_passes(flops, video, totals)

    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": None, "max_tokens": s.completion}
    engines: dict[str, Any] = {}
    if s.rollout in ("hf", "both") or s.grpo_rollout == "hf":
        engines["hf"] = HFEngine(video, sampling)
    if s.rollout in ("vllm", "both") or s.grpo_rollout == "vllm":
        kw: dict[str, Any] = {"load_format": "dummy", "max_model_len": 8192 + s.frames * s.frame_size ** 2 // 784,
                              "seed": state.process_index}
        if cuda:
            kw.update(gpu_memory_utilization=s.vllm_memory, enforce_eager=s.vllm_eager)
        t1 = time.perf_counter()
        engines["vllm"] = VLLMColocateEngine(video, sampling, str(folder), kw, world_size=world)
        vllm_start_s = time.perf_counter() - t1
    for e in engines.values():  # fixed-length completions: equal work per row
        e.banned = list(e.banned) + [t for t in e.eos_ids if t is not None]

    funcs, weights = build_reward_funcs({"mode": "training", "weights": {"format": 0.1, "accuracy": 1.0}})
    args.reward_weights = weights
    dataset = build_dataset(samples, video, qa="close")
    trainer = VideoGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                               reward_funcs=funcs, video=video, engine=engines[s.grpo_rollout])
    timer = StepTimer(cuda)
    trainer.add_callback(timer)

    # -- GRPO steps: the first is a warm-up (optimizer state, kernels, caches)
    for k in totals:
        totals[k] = 0.0
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steps = timer.times[1:]
    step_s = statistics.median(steps)
    step_flops = {k: v / (1 + s.steps) for k, v in totals.items()}  # per step, averaged over all steps run
    total_flops = sum(step_flops.values())
    step_memory_gib = torch.cuda.max_memory_allocated() / 2**30 if cuda else common.peak_rss_mib() / 1024
    # -- rollout batch, after the steps (the trainer's model is prepared, engines are warm)
    ids = [samples[i % len(samples)].id for i in range(s.prompts) for _ in range(s.generations)]
    requests = [video.request(i, "close") for i in ids]
    prompt_ids = [r.prompt_ids for r in requests]
    rollout: dict[str, Any] = {}
    for name, engine in engines.items():
        if s.rollout not in (name, "both"):
            continue
        target = trainer if name == "hf" else None
        engine.generate(requests[:2], target)
        times = []
        for _ in range(2):
            sync(cuda)
            t = time.perf_counter()
            out, _ = engine.generate(requests, target)
            sync(cuda)
            times.append(time.perf_counter() - t)
        n = sum(len(c) for c in out)
        rollout[name] = {"seconds": min(times), "completion_tokens": n, "tokens_per_s_per_gpu": n / min(times),
                         "tokens_per_s_all_gpus": world * n / min(times)}

    peak = s.peak_tflops or peak_tflops(cuda)
    prompt_tokens = sum(map(len, prompt_ids)) / len(prompt_ids)
    result = {
        "card": torch.cuda.get_device_name(0) if cuda else "CPU (dry run: timings mean nothing)",
        "gpus": world, "size": s.size, "settings": asdict(s), "attention": attn,
        "params_total_B": round(sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters()) / 1e9, 3),
        "video_tokens_per_row": video.num_video_tokens(ids[0]), "prompt_tokens_per_row": round(prompt_tokens),
        "rows_per_step_per_gpu": rows, "build_model_s": round(build_s, 1),
        "vllm_start_s": round(vllm_start_s, 1) if "vllm" in engines else None,
        "rollout": rollout,
        "grpo_step_s": {"median": step_s, "all": steps},
        "grpo_tokens_per_s_all_gpus": world * rows * (prompt_tokens + s.completion) / step_s,
        "model_tflop_per_step_per_gpu": {k: round(v / 1e12, 2) for k, v in step_flops.items()},
        "mfu": (total_flops / step_s / (peak * 1e12)) if peak else None,
        "peak_tflops_assumed": peak,
        "peak_memory_gib": step_memory_gib,
        "peak_memory_kind": "torch.cuda.max_memory_allocated over the GRPO steps, rank 0" if cuda
        else "process peak RSS",
    }
    for e in engines.values():
        e.close()
    return result


def sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def peak_tflops(cuda: bool) -> float | None:
    if not cuda:
        return None
    import torch

    name = torch.cuda.get_device_name(0)
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value
    return None


def StepTimer(cuda: bool):
    from transformers import TrainerCallback

    class _Timer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kw):
            sync(cuda)
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync(cuda)
            self.times.append(time.perf_counter() - self._t)

    return _Timer()


def table(r: dict[str, Any]) -> str:
    s = r["settings"]
    lines = [(f"Qwen2.5-VL-{r['size'].upper()} (random init, {r['params_total_B']} B parameters), {r['card']} x "
             f"{r['gpus']}, {s['frames']} frames of {s['frame_size']} px per clip ({r['video_tokens_per_row']} video "
             f"tokens, {r['prompt_tokens_per_row']} prompt tokens per row), {s['prompts']} prompts x "
             f"{s['generations']} generations x {s['completion']} tokens per GPU per step, attention {r['attention']}"),
             "", "| measurement | value |", "|---|---:|"]
    for name, ro in r["rollout"].items():
        lines.append(f"| rollout batch, {name}: completion tokens/s (all GPUs) | {ro['tokens_per_s_all_gpus']:.0f} |")
    lines.append(f"| GRPO step ({s['grpo_rollout']} rollouts), s (median of {len(r['grpo_step_s']['all'])}) | "
                 f"{r['grpo_step_s']['median']:.2f} |")
    lines.append(f"| GRPO tokens/s (prompt + completion, all GPUs) | {r['grpo_tokens_per_s_all_gpus']:.0f} |")
    lines.append(f"| model TFLOP per step per GPU (rollout / log-prob / train) | "
                 f"{' / '.join(str(v) for v in r['model_tflop_per_step_per_gpu'].values())} |")
    mfu = "n/a (no known peak)" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
    lines.append(f"| MFU (dense bf16 peak {r['peak_tflops_assumed']} TFLOPs per GPU) | {mfu} |")
    lines.append(f"| peak memory, GiB ({r['peak_memory_kind']}) | {r['peak_memory_gib']:.1f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ entry points

def dry_settings() -> Settings:
    import importlib.util

    return Settings(size="dry", frames=4, frame_size=112, prompts=2, generations=4, completion=16, steps=2,
                    rollout="both" if importlib.util.find_spec("vllm") else "hf",
                    grpo_rollout="vllm" if importlib.util.find_spec("vllm") else "hf", dry_run=True)


def run(quick: bool = False) -> list[dict]:
    """For benchmarks/run_all.py: the dry run, as rows (it proves the code path, not a speed)."""
    common.setup()
    t0 = time.perf_counter()
    r = run_benchmark(dry_settings())
    ok = r["grpo_step_s"]["median"] > 0 and all(v["completion_tokens"] > 0 for v in r["rollout"].values())
    cols = {"result": "passed" if ok else "FAILED", "rollout engines": ", ".join(r["rollout"]),
            "GRPO rollout": r["settings"]["grpo_rollout"], "params (M)": round(r["params_total_B"] * 1000, 1),
            "video tokens/row": r["video_tokens_per_row"],
            "model TFLOP/step counted": round(sum(r["model_tflop_per_step_per_gpu"].values()), 4),
            "wall (s)": round(time.perf_counter() - t0)}
    return [common.table_row("dry run (scaled-down config, CPU)", cols),
            common.note("The GPU benchmark itself needs a CUDA machine: benchmarks/gpu/README.md says how to run it "
                        "on 1 and 8 GPUs and where its numbers go. No GPU was available to this work, so no 7B "
                        "numbers are recorded yet.")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Settings()
    ap.add_argument("--size", choices=[k for k in SIZES if k != "dry"], default=d.size)
    ap.add_argument("--frames", type=int, default=d.frames, help="frames per clip (16-32 for the issue's numbers)")
    ap.add_argument("--frame-size", type=int, default=d.frame_size, help="frame side in px (pixel cap per frame)")
    ap.add_argument("--prompts", type=int, default=d.prompts, help="prompts per GPU per step")
    ap.add_argument("--generations", type=int, default=d.generations)
    ap.add_argument("--completion", type=int, default=d.completion, help="sampled tokens per row (EOS suppressed)")
    ap.add_argument("--steps", type=int, default=d.steps, help="timed GRPO steps after one warm-up step")
    ap.add_argument("--rollout", choices=["hf", "vllm", "both"], default=d.rollout,
                    help="engines timed on the rollout batch")
    ap.add_argument("--grpo-rollout", choices=["hf", "vllm"], default=d.grpo_rollout)
    ap.add_argument("--vllm-memory", type=float, default=d.vllm_memory, help="vLLM gpu_memory_utilization")
    ap.add_argument("--vllm-eager", action="store_true", help="no CUDA graphs in vLLM (faster start, slower decode)")
    ap.add_argument("--no-gradient-checkpointing", action="store_true")
    ap.add_argument("--optim", default=d.optim, help="TRL/transformers optimizer (adamw_torch, adamw_8bit, ...)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak per GPU, if not known by name")
    ap.add_argument("--dry-run", action="store_true", help="scaled-down config on CPU: proves the code path")
    ap.add_argument("--json", default=None, help="where to write the result record")
    a = ap.parse_args(argv)
    if a.dry_run:
        common.setup()
    else:
        common.quiet()
    s = dry_settings() if a.dry_run else Settings(
        a.size, a.frames, a.frame_size, a.prompts, a.generations, a.completion, a.steps, a.rollout, a.grpo_rollout,
        a.vllm_memory, a.vllm_eager, not a.no_gradient_checkpointing, a.optim, a.peak_tflops)
    r = run_benchmark(s)
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(table(r))
        if a.json:
            path = Path(a.json)
        elif a.dry_run:
            path = common.ROOT / ".cache" / "bench_logs" / "gpu-dry-run.json"
        else:
            card = r["card"].replace("NVIDIA", "").split()[0]
            path = HERE / "results" / f"{card}x{r['gpus']}-{r['size']}-{s.frames}f.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r, indent=1, default=str))
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
