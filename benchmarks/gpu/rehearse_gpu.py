"""The real job's rehearsal on one GPU: Qwen2.5-VL-7B at full size (random init), SFT steps and
GRPO steps with a colocated vLLM engine, on clips of the test bed's real lengths at the 7B
recipes' pixel budget. Prints JSON lines.

    python benchmarks/gpu/rehearse_gpu.py                 # one H100/H200, under 8 minutes
    python benchmarks/gpu/rehearse_gpu.py --dry-run       # the same code path on CPU, a tiny config

What runs, all through egoadapt's own code and TRL's trainers:

- the model: `Qwen2_5_VLConfig.from_dict` of Qwen2.5-VL-7B-Instruct's published config.json
  (benchmarks/gpu/qwen2_5_vl_7b.py, 8.29 B parameters), random bf16 weights; the tokenizer and
  processor are egoadapt's tiny ones (`egoadapt.models.tiny`: Qwen's special tokens, chat
  template and patching), loaded back with `load_processor` at the pixel budget of
  conf/model/qwen2_5_vl_7b.yaml (min_pixels 3136, max_pixels 200704);
- the clips: real test-bed questions (tests/fixtures/egocross) cut to 16, 32 and 91 frames (91
  is the test bed's longest), random pixels at 854x480, loaded by the EgoCross loader and
  processed by `VideoInputs` with the input cache, as `egoadapt train` does;
- SFT: `VideoSFTTrainer` + `VideoSFTCollator`, one clip per step, `--sft-steps` per length;
- GRPO: `VideoGRPOTrainer` with `VLLMColocateEngine` (vLLM in this process, `load_format=dummy`),
  one prompt x `--generations` completions per step, the weights synced into vLLM before
  every step, beta 0.04 (a reference model), training rewards; EOS is suppressed so every
  completion is `--completion` tokens long (fixed work).

Printed per step and per clip length: step seconds, training-pass MFU (model FLOPs of the
forward and backward passes / their time / the card's dense bf16 peak; gradient-checkpointing
recompute not counted), rollout samples/s (completions per second of vLLM generation), sync
seconds (trainer weights into vLLM), peak GPU memory (`torch.cuda.max_memory_allocated`, which
includes the in-process vLLM engine, and the device's used memory); at the end the wall time
against the 8-minute budget. FLOPs are counted by `bench_gpu.FlopModel` (2 N per token for the
LM's matmul parameters, causal attention, the vision tower per clip).

Without a GPU it stops at once (exit 2) unless `--dry-run`, whose timings mean nothing: it
proves the code path (the same functions, the same clip lengths at a tiny pixel budget).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(ROOT))

from egoadapt.configs import CONF_DIR  # noqa: E402

TESTBED = ROOT / "tests" / "fixtures" / "egocross" / "egocross_testbed_imgs.json"
RECIPE_MODEL = CONF_DIR / "model" / "qwen2_5_vl_7b.yaml"
BUDGET_S = 480.0  # the rehearsal's target: under 8 minutes on an H100/H200
T_START = time.perf_counter()  # the budget counts from the start of the process (imports included)


@dataclass
class Plan:
    frames: tuple[int, ...] = (16, 32, 91)
    frame_size: tuple[int, int] = (854, 480)  # width, height of the random frames
    min_pixels: int | None = None  # None: the 7B recipe's (conf/model/qwen2_5_vl_7b.yaml)
    max_pixels: int | None = None
    sft_steps: int = 2  # per clip length
    grpo_steps: int = 2  # per clip length
    generations: int = 4  # completions per prompt (one prompt per GRPO step)
    micro_batch: int = 1  # rows per forward/backward; gradient accumulation makes up the group
    completion: int = 128  # sampled tokens per completion (EOS suppressed)
    beta: float = 0.04
    optim: str = "adamw_torch"
    vllm_memory: float = 0.2  # vLLM gpu_memory_utilization
    vllm_eager: bool = True  # no CUDA graphs: a faster start inside the time budget
    gradient_checkpointing: bool = True
    peak_tflops: float | None = None  # dense bf16 peak per GPU; None: known by the card's name
    budget_s: float = BUDGET_S
    dry_run: bool = False
    tiny: bool = False  # the tiny twin of the 7B config (the dry run's)
    notes: list[str] = field(default_factory=list)


def dry_plan() -> Plan:
    """The same lengths and steps on CPU: tiny model, 56x56 frames (4 video tokens per frame pair)."""
    return Plan(frame_size=(64, 48), min_pixels=56 * 56, max_pixels=56 * 56, sft_steps=1, grpo_steps=1,
                generations=2, micro_batch=1, completion=8, optim="adamw_torch", dry_run=True, tiny=True,
                peak_tflops=1.0, notes=["dry run: CPU, tiny config; timings and MFU (against a nominal 1 TFLOPs) "
                                        "mean nothing"])


# ------------------------------------------------------------------------------ output

class Out:
    """JSON lines to the real stdout and to a file; everything else the libraries print goes to stderr."""

    def __init__(self, path: Path | None):
        sys.stdout.flush()
        self.stream = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)  # vLLM's and transformers' prints and logs: stderr
        self.path = path
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
        self.records: list[dict[str, Any]] = []

    def __call__(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"event": event, **{k: _round(v) for k, v in fields.items()}}
        self.records.append(rec)
        line = json.dumps(rec, default=str)
        self.stream.write(line + "\n")
        if self.path:
            with self.path.open("a") as f:
                f.write(line + "\n")
        return rec


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return round(v, 4) if abs(v) < 100 else round(v, 1)
    if isinstance(v, dict):
        return {k: _round(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_round(x) for x in v]
    return v


# ------------------------------------------------------------------------------ preflight

class Refused(SystemExit):
    pass


def preflight(plan: Plan) -> dict[str, Any]:
    """Fail in seconds, before anything heavy: no CUDA, no vLLM, a card the plan cannot fit."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise Refused("rehearse_gpu: vLLM is not installed (pip install -e .[gpu] on a GPU machine, make install "
                      "on a CPU one); the rehearsal's GRPO steps run a colocated vLLM engine")
    import torch

    if plan.dry_run:
        return {"card": "CPU (dry run)", "gpu_memory_gib": None}
    if not torch.cuda.is_available():
        raise Refused("rehearse_gpu: no CUDA GPU here (torch.cuda.is_available() is False; torch "
                      f"{torch.__version__}). This rehearsal needs one H100/H200; --dry-run runs the same code path "
                      "on CPU with a tiny config")
    props = torch.cuda.get_device_properties(0)
    total = props.total_memory
    need = memory_estimate(plan, n_params=8.29e9)
    if need["total_bytes"] > total:
        raise Refused(f"rehearse_gpu: the plan needs about {need['total_bytes'] / 2**30:.0f} GiB "
                      f"({', '.join(f'{k} {v / 2**30:.0f}' for k, v in need['parts'].items())} GiB) and "
                      f"{props.name} has {total / 2**30:.0f} GiB. On an 80 GB card: --beta 0 (no reference model) "
                      f"--optim adafactor (factored optimizer state) --vllm-memory 0.25")
    return {"card": props.name, "gpu_memory_gib": total / 2**30, "estimate_gib": need["total_bytes"] / 2**30}


def memory_estimate(plan: Plan, n_params: float) -> dict[str, Any]:
    """Bytes the plan holds on the card before activations (bf16 weights; optimizer states in the
    parameters' dtype, as transformers' optimizers keep them for a bf16 model), plus vLLM's share
    and 12 GiB for activations at 91 frames with gradient checkpointing."""
    import torch

    total = torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 0
    states = {"adamw_torch": 2, "adamw_torch_fused": 2, "adamw_8bit": 1, "adamw_bnb_8bit": 1, "adafactor": 0,
              "sgd": 0}.get(plan.optim, 2)
    parts = {"policy": 2 * n_params, "gradients": 2 * n_params, "optimizer": states * 2 * n_params,
             "reference": 2 * n_params if plan.beta else 0, "vllm": plan.vllm_memory * total,
             "activations": 12 * 2**30}
    return {"parts": parts, "total_bytes": sum(parts.values())}


# ------------------------------------------------------------------------------ model, data

def recipe_pixels() -> tuple[int, int]:
    from omegaconf import OmegaConf

    m = OmegaConf.load(RECIPE_MODEL)
    return int(m.min_pixels), int(m.max_pixels)


def model_folder(out: Path, plan: Plan):
    """config.json (the 7B's, or its tiny twin) + tokenizer + processor at the plan's pixel budget,
    no weights (vLLM loads it with load_format=dummy); the processor is loaded back as
    `egoadapt train` loads one (`load_processor` with model.min_pixels / model.max_pixels)."""
    from qwen2_5_vl_7b import config_for

    from egoadapt.models.loading import load_processor
    from egoadapt.models.tiny import build_processor, train_tokenizer

    tokenizer = train_tokenizer(1024)
    config = config_for(tokenizer, tiny=plan.tiny)
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    processor = build_processor(tokenizer)
    limits = {"shortest_edge": plan.min_pixels, "longest_edge": plan.max_pixels}
    for p in (processor.video_processor, processor.image_processor):  # the folder's own limits (vLLM reads them)
        p.size = dict(limits)
        p.min_pixels, p.max_pixels = plan.min_pixels, plan.max_pixels
    processor.save_pretrained(out)
    processor = load_processor({"path": str(out), "min_pixels": plan.min_pixels, "max_pixels": plan.max_pixels})
    return config, processor


def random_model(config, cuda: bool):
    import importlib.util

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    attn = "flash_attention_2" if cuda and importlib.util.find_spec("flash_attn") else "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda:0" if cuda else "cpu"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(
            config, dtype=torch.bfloat16 if cuda else torch.float32, attn_implementation=attn)
    return model, attn


def clip_records(plan: Plan, root: Path, per_length: int) -> tuple[Path, dict[int, list[str]]]:
    """Test-bed questions cut to each length (the records with the fewest frames at or over it),
    random-pixel frames where their paths point, answers in the released file's layout
    (egocross_testbed_answers.json: the record plus question_id and the answer fields)."""
    import numpy as np
    from PIL import Image

    records = json.loads(TESTBED.read_text())
    rng = np.random.default_rng(0)
    w, h = plan.frame_size
    pool = []
    for k in range(max(plan.frames)):
        p = root / "pool" / f"frame_{k:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p, quality=90)
        pool.append(p)
    out, ids = [], {}
    for n in plan.frames:
        longer = sorted((r for r in records if len(r["video_path"]) >= n), key=lambda r: (len(r["video_path"]), r["id"]))
        if len(longer) < per_length:
            raise Refused(f"rehearse_gpu: the test bed has {len(longer)} questions of {n}+ frames (longest: 91)")
        for r in longer[:per_length]:
            rec = dict(r, id=f"{r['id']}-{n}f", video_path=r["video_path"][:n])
            for k, path in enumerate(rec["video_path"]):
                dst = root / path.lstrip("/")
                dst.parent.mkdir(parents=True, exist_ok=True)
                if not dst.exists():
                    os.link(pool[k], dst)
            letter = "ABCD"[r["id"] % 4]
            text = r["options"]["ABCD".index(letter)].split(": ", 1)[1]
            rec.update(question_id=f"{r['dataset']}_REHEARSAL{r['id']}_q{r['id']}", correct_option_letter=letter,
                       answer_text=text, detailed_answer=f"The answer is {text}.")
            out.append(rec)
            ids.setdefault(n, []).append(rec["id"])
    path = root / "egocross_testbed_answers.json"
    path.write_text(json.dumps(out))
    return path, ids


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


# ------------------------------------------------------------------------------ measuring

def cuda_sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


class Timers:
    """Seconds (CUDA-synchronised) spent in wrapped calls since the last reset, by name."""

    def __init__(self, cuda: bool):
        self.cuda = cuda
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def wrap(self, obj: Any, name: str, key: str | None = None) -> None:
        key = key or name
        original = getattr(obj, name)

        def timed(*args, **kwargs):
            cuda_sync(self.cuda)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                cuda_sync(self.cuda)
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
                self.calls[key] = self.calls.get(key, 0) + 1

        setattr(obj, name, timed)


def memory(cuda: bool) -> dict[str, float]:
    if not cuda:
        import common

        return {"peak_memory_gib": common.peak_rss_mib() / 1024, "memory_kind": "process peak RSS (dry run)"}
    import torch

    free, total = torch.cuda.mem_get_info()
    return {"peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
            "gpu_used_gib": (total - free) / 2**30}


def step_callback(on_begin, on_end):
    from transformers import TrainerCallback

    class _Steps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            on_begin(state.global_step)

        def on_step_end(self, args, state, control, **kw):
            on_end(state.global_step - 1)

    return _Steps()


def sequential(trainer) -> None:
    """Rows in dataset order (clip lengths in the plan's order), not shuffled."""
    from torch.utils.data import SequentialSampler

    trainer._get_train_sampler = lambda *a, **k: SequentialSampler(trainer.train_dataset)


# ------------------------------------------------------------------------------ the rehearsal

def rehearse(plan: Plan, out: Out, card: dict[str, Any]) -> int:
    import bench_gpu
    from omegaconf import OmegaConf

    from egoadapt.data.cache import InputCache
    from egoadapt.data.load import load_samples
    from egoadapt.inputs.video import VideoInputs

    cuda = not plan.dry_run
    if plan.min_pixels is None or plan.max_pixels is None:
        plan.min_pixels, plan.max_pixels = recipe_pixels()
    peak = plan.peak_tflops or bench_gpu.peak_tflops(cuda)
    versions = {}
    for name in ("torch", "transformers", "trl", "vllm"):
        with contextlib.suppress(Exception):
            versions[name] = __import__(name).__version__
    out("start", mode="dry-run" if plan.dry_run else "gpu", **card, peak_tflops=peak, versions=versions,
        plan={k: v for k, v in asdict(plan).items() if k != "notes"}, notes=plan.notes)
    tmp = Path(tempfile.mkdtemp(prefix="rehearse_gpu_"))

    # -- model (random init from the published config) and processor at the recipe's pixel budget
    t0 = time.perf_counter()
    folder = tmp / "model"
    config, processor = model_folder(folder, plan)
    model, attn = random_model(config, cuda)
    flops = bench_gpu.FlopModel.of(config, model)
    params = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    out("model", config="Qwen2.5-VL-7B-Instruct config.json" + (" (tiny twin)" if plan.tiny else ""),
        params_B=params / 1e9, vision_params_B=vision / 1e9, vocab=config.text_config.vocab_size,
        max_position_embeddings=config.text_config.max_position_embeddings, attention=attn,
        dtype=str(next(model.parameters()).dtype), build_s=time.perf_counter() - t0,
        min_pixels=plan.min_pixels, max_pixels=plan.max_pixels)

    # -- clips of the real lengths, through the loader and the input cache
    per_length = max(plan.sft_steps, plan.grpo_steps)
    annotations, ids = clip_records(plan, tmp / "data", per_length)
    samples = load_samples({"format": "egocross", "annotations": str(annotations), "root": str(tmp / "data"),
                            "fps": {"default": 0.5, "CholecTrack20_png": 1.0, "EgoSurgery": 1.0}})
    cache_dir = tmp / "cache"
    frames_cfg = OmegaConf.load(CONF_DIR / "frames" / "default.yaml")  # the job's: decode cap, odd frames, ...
    video = VideoInputs(samples, processor, frames_cfg, None, cache=InputCache(cache_dir))
    prompt_tokens: dict[int, int] = {}
    for n in plan.frames:
        before, t0 = folder_bytes(cache_dir), time.perf_counter()
        sid = ids[n][0]
        vis = video.vision(sid)
        process_s = time.perf_counter() - t0
        for other in ids[n][1:]:
            video.vision(other)
        prompt = video.prompt_ids(video.messages(sid, "closeqa"), sid)
        prompt_tokens[n] = len(prompt)
        out("clip", frames=n, frame_size=f"{plan.frame_size[0]}x{plan.frame_size[1]}",
            grid_thw=vis["video_grid_thw"].reshape(-1).tolist(), video_tokens=video.num_video_tokens(sid),
            prompt_tokens=len(prompt), process_s=process_s, cache_bytes=folder_bytes(cache_dir) - before)

    # -- SFT: one clip per step, the lengths in order
    sft = run_sft(plan, out, model, processor, video, samples, ids, flops, peak, tmp, cuda)
    # -- GRPO with colocated vLLM
    grpo = run_grpo(plan, out, model, config, processor, video, samples, ids, flops, peak, prompt_tokens, folder,
                    tmp, cuda, attn)

    wall = time.perf_counter() - T_START
    summary = {
        "sft_train_mfu": {n: v["train_mfu"] for n, v in sft.items()},
        "grpo_train_mfu": {n: v["train_mfu"] for n, v in grpo.items()},
        "rollout_samples_per_s": {n: v["rollout_samples_per_s"] for n, v in grpo.items()},
        "sync_s": {n: v["sync_s"] for n, v in grpo.items()},
    }
    key = "peak_gpu_memory_gib" if cuda else "peak_memory_gib"
    summary[key] = max(v.get(key, 0.0) for v in list(sft.values()) + list(grpo.values()))
    if not cuda:
        summary["memory_kind"] = "process peak RSS (dry run)"
    out("summary", **summary)
    out("end", wall_s=wall, budget_s=plan.budget_s, within_budget=wall <= plan.budget_s)
    return 0


def run_sft(plan, out, model, processor, video, samples, ids, flops, peak, tmp, cuda) -> dict[int, dict]:
    import torch
    from trl import SFTConfig

    from egoadapt.train.collators import VideoSFTCollator
    from egoadapt.train.datasets import build_dataset
    from egoadapt.train.sft import VideoSFTTrainer

    order = [(n, sid) for n in plan.frames for sid in ids[n][:plan.sft_steps]]
    by_id = {s.id: s for s in samples}
    dataset = build_dataset([by_id[sid] for _, sid in order], video, qa="close", with_target=True)
    args = SFTConfig(
        output_dir=str(tmp / "sft"), per_device_train_batch_size=1, gradient_accumulation_steps=1,
        max_steps=len(order), learning_rate=1e-6, max_length=None, bf16=cuda, use_cpu=not cuda, seed=0,
        gradient_checkpointing=plan.gradient_checkpointing, optim=plan.optim, logging_steps=10**6,
        save_strategy="no", report_to="none", disable_tqdm=True, remove_unused_columns=False,
        dataset_kwargs={"skip_prepare_dataset": True})
    trainer = VideoSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                              data_collator=VideoSFTCollator(video, args.max_length))
    sequential(trainer)
    counted = {"train": 0.0, "tokens": 0}

    def count(module, a, kwargs):  # one call per micro-batch forward (checkpointing recomputes layers, not this)
        if not torch.is_grad_enabled():
            return
        mask, grid = kwargs.get("attention_mask"), kwargs.get("video_grid_thw")
        tokens = [int(t) for t in mask.sum(-1).tolist()]
        patches = [int(g.prod()) for g in grid] if grid is not None else []
        counted["train"] += 3 * (sum(flops.lm_forward(t) for t in tokens) + sum(flops.vision_forward(p) for p in patches))
        counted["tokens"] += sum(tokens)

    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    steps: list[dict] = []
    state: dict[str, float] = {}

    def begin(step):
        cuda_sync(cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        state.update(t=time.perf_counter(), train=counted["train"], tokens=counted["tokens"])

    def end(step):
        cuda_sync(cuda)
        seconds = time.perf_counter() - state["t"]
        n = order[step][0]
        tflop = (counted["train"] - state["train"]) / 1e12
        rec = out("sft_step", step=step, frames=n, sample=order[step][1], step_s=seconds,
                  tokens=counted["tokens"] - state["tokens"], train_tflop=tflop,
                  train_mfu=tflop / seconds / peak if peak else None, **memory(cuda))
        steps.append(rec)

    trainer.add_callback(step_callback(begin, end))
    try:
        trainer.train()
    finally:
        hook.remove()
    result = per_length(steps, plan.frames, "sft", out)
    # free what SFT holds (optimizer state, gradients) before vLLM and GRPO take their share
    trainer.accelerator.free_memory()
    trainer.optimizer = trainer.lr_scheduler = None
    model.zero_grad(set_to_none=True)
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def per_length(steps: list[dict], lengths, phase: str, out: Out) -> dict[int, dict]:
    """Median over each length's steps, its first step left out when there are more (warm-up)."""
    result = {}
    for n in lengths:
        rows = [r for r in steps if r["frames"] == n]
        timed = rows[1:] if len(rows) > 1 else rows
        rec = {"frames": n, "steps": len(rows), "timed_steps": len(timed)}
        for key in ("step_s", "train_mfu", "step_mfu", "rollout_samples_per_s", "rollout_s", "sync_s",
                    "train_pass_s", "tokens", "train_tflop"):
            values = [r[key] for r in timed if r.get(key) is not None]
            if values:
                rec[key] = statistics.median(values)
            elif any(key in r for r in timed):
                rec[key] = None
        for key in ("peak_gpu_memory_gib", "gpu_used_gib", "peak_memory_gib"):
            values = [r[key] for r in rows if r.get(key) is not None]
            if values:
                rec[key] = max(values)
        result[n] = out(phase, **rec)
    return result


def run_grpo(plan, out, model, config, processor, video, samples, ids, flops, peak, prompt_tokens, folder, tmp,
             cuda, attn) -> dict[int, dict]:
    import bench_gpu
    import torch
    import trl.trainer.grpo_trainer as grpo_module
    from trl import GRPOConfig

    from egoadapt.rewards.registry import build_reward_funcs
    from egoadapt.rollout.engines import VLLMColocateEngine
    from egoadapt.train.datasets import build_dataset
    from egoadapt.train.grpo import VideoGRPOTrainer

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    order = [(n, sid) for n in plan.frames for sid in ids[n][:plan.grpo_steps]]
    by_id = {s.id: s for s in samples}
    longest = max(prompt_tokens.values())
    # the context from the data: the longest prompt plus the completion (vLLM refuses a longer prompt)
    max_model_len = min(longest + plan.completion + 64, config.text_config.max_position_embeddings)
    kw: dict[str, Any] = {"load_format": "dummy", "max_model_len": max_model_len, "seed": 0,
                          "max_num_batched_tokens": max(16384, max_model_len), "enforce_eager": plan.vllm_eager}
    if cuda:
        kw["gpu_memory_utilization"] = plan.vllm_memory
    sampling = {"temperature": 1.0, "top_p": 1.0, "top_k": None, "max_tokens": plan.completion}
    t0 = time.perf_counter()
    engine = VLLMColocateEngine(video, sampling, str(folder), kw, world_size=1)
    start_s = time.perf_counter() - t0
    # vLLM's own prompt length of each clip (its processor, the folder's pixel limits) vs the trainer's
    from vllm import SamplingParams

    vllm_tokens = {}
    for n in plan.frames:
        sid = ids[n][0]
        req = engine.vllm_inputs([video.request(sid, "close", tokenize=False)])
        o = engine.llm.generate(req, SamplingParams(max_tokens=1), use_tqdm=False)[0]
        vllm_tokens[n] = len(o.prompt_token_ids)
    out("vllm_start", seconds=start_s, max_model_len=max_model_len, gpu_memory_utilization=kw.get(
        "gpu_memory_utilization"), enforce_eager=plan.vllm_eager, prompt_tokens_vllm=vllm_tokens,
        prompt_tokens_trainer=prompt_tokens, prompt_tokens_match=vllm_tokens == prompt_tokens, **memory(cuda))
    engine.banned = list(engine.banned) + [t for t in engine.eos_ids if t is not None]  # fixed-length completions
    engine.synced_step = -1  # sync before the first step too: vLLM starts from dummy weights

    totals = {"rollout": 0.0, "logprob": 0.0, "train": 0.0}
    bench_gpu.count_passes(flops, video, totals)
    # the reference model (beta > 0), built as the policy was: random, same config
    grpo_module.create_model_from_path = lambda *a, **k: random_model(config, cuda)[0]
    funcs, weights = build_reward_funcs({"mode": "training", "weights": {"format": 0.1, "accuracy": 1.0}})
    args = GRPOConfig(
        output_dir=str(tmp / "grpo"), per_device_train_batch_size=plan.micro_batch,
        gradient_accumulation_steps=plan.generations // plan.micro_batch, num_generations=plan.generations,
        max_completion_length=plan.completion, beta=plan.beta, learning_rate=1e-6, max_steps=len(order),
        shuffle_dataset=False, logging_steps=10**6, save_strategy="no", report_to="none", bf16=cuda,
        use_cpu=not cuda, seed=0, remove_unused_columns=False, gradient_checkpointing=plan.gradient_checkpointing,
        optim=plan.optim, disable_tqdm=True, reward_weights=weights)
    dataset = build_dataset([by_id[sid] for _, sid in order], video, qa="close")
    trainer = VideoGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                               reward_funcs=funcs, video=video, engine=engine)
    timers = Timers(cuda)
    timers.wrap(trainer, "training_step")  # rollout + scoring + log-prob passes + the training pass
    timers.wrap(trainer, "_generate_and_score_completions", "generation")  # rollout, sync, rewards, no-grad passes
    timers.wrap(engine, "generate", "rollout")
    timers.wrap(engine, "sync")
    steps: list[dict] = []
    state: dict[str, Any] = {}

    def begin(step):
        cuda_sync(cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        timers.reset()
        state.update(t=time.perf_counter(), totals=dict(totals))

    def end(step):
        cuda_sync(cuda)
        seconds = time.perf_counter() - state["t"]
        n = order[step][0]
        d = {k: (totals[k] - state["totals"][k]) / 1e12 for k in totals}
        train_pass = timers.seconds.get("training_step", 0.0) - timers.seconds.get("generation", 0.0)
        rollout = timers.seconds.get("rollout")
        rec = out("grpo_step", step=step, frames=n, sample=order[step][1], rows=plan.generations, step_s=seconds,
                  rollout_s=rollout, rollout_samples_per_s=plan.generations / rollout if rollout else None,
                  completion_tokens=plan.generations * plan.completion, sync_s=timers.seconds.get("sync"),
                  generation_phase_s=timers.seconds.get("generation"), train_pass_s=train_pass,
                  tflop={k: v for k, v in d.items()}, train_tflop=d["train"],
                  train_mfu=d["train"] / train_pass / peak if peak and train_pass > 0 else None,
                  step_mfu=sum(d.values()) / seconds / peak if peak else None, **memory(cuda))
        steps.append(rec)

    trainer.add_callback(step_callback(begin, end))
    try:
        trainer.train()
    finally:
        engine.close()
    return per_length(steps, plan.frames, "grpo", out)


# ------------------------------------------------------------------------------ entry points

def run(quick: bool = False) -> list[dict]:
    """For benchmarks/run_all.py: the dry run in a child process (it takes over fd 1), as rows."""
    import subprocess

    import common

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dry.jsonl"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--dry-run", "--out", str(path)],
                              capture_output=True, text=True)
        wall = time.perf_counter() - t0
        records = [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []
    if proc.returncode != 0:
        raise RuntimeError(f"rehearse_gpu.py --dry-run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    by = {r["event"]: r for r in records}
    grpo = [r for r in records if r["event"] == "grpo_step"]
    cols = {"result": "passed" if by.get("end") and grpo and all(r["sync_s"] and r["rollout_samples_per_s"]
                                                                    for r in grpo) else "FAILED",
            "clip lengths": ", ".join(str(r["frames"]) for r in records if r["event"] == "clip"),
            "SFT steps": sum(r["event"] == "sft_step" for r in records), "GRPO steps": len(grpo),
            "vLLM prompt tokens = trainer's": by.get("vllm_start", {}).get("prompt_tokens_match"),
            "wall (s)": round(wall)}
    return [common.table_row("dry run (tiny twin of the 7B config, CPU)", cols),
            common.note("benchmarks/gpu/rehearse_gpu.py without --dry-run is the real job's rehearsal on one "
                        "H100/H200 (benchmarks/gpu/README.md); these rows prove its code path only.")]


def parse(argv: list[str] | None) -> tuple[Plan, Path | None]:
    d = Plan()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny config: proves the code path in about a minute")
    ap.add_argument("--frames", default=",".join(map(str, d.frames)), help="clip lengths, comma-separated")
    ap.add_argument("--sft-steps", type=int, default=None, help=f"SFT steps per clip length ({d.sft_steps})")
    ap.add_argument("--grpo-steps", type=int, default=None, help=f"GRPO steps per clip length ({d.grpo_steps})")
    ap.add_argument("--generations", type=int, default=None, help=f"completions per prompt ({d.generations})")
    ap.add_argument("--micro-batch", type=int, default=None, help=f"rows per forward/backward ({d.micro_batch})")
    ap.add_argument("--completion", type=int, default=None, help=f"tokens per completion ({d.completion})")
    ap.add_argument("--beta", type=float, default=None, help=f"KL weight; 0: no reference model ({d.beta})")
    ap.add_argument("--optim", default=None, help=f"transformers optimizer ({d.optim}; adafactor: small state)")
    ap.add_argument("--vllm-memory", type=float, default=None, help=f"vLLM gpu_memory_utilization ({d.vllm_memory})")
    ap.add_argument("--cuda-graphs", action="store_true", help="vLLM with CUDA graphs (slower start, faster decode)")
    ap.add_argument("--max-pixels", type=int, default=None, help="per-frame pixel budget (default: the 7B recipe's)")
    ap.add_argument("--frame-size", default=None, help="WIDTHxHEIGHT of the random frames (854x480; dry run 64x48)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak per GPU if the card is unknown")
    ap.add_argument("--out", default=None, help="also write the JSON lines here "
                    "(default benchmarks/gpu/results/rehearsal-<card>.jsonl; dry run: .cache/bench_logs/)")
    a = ap.parse_args(argv)
    plan = dry_plan() if a.dry_run else Plan()
    plan.frames = tuple(int(x) for x in a.frames.split(",") if x.strip())
    for name in ("sft_steps", "grpo_steps", "generations", "micro_batch", "completion", "beta", "optim",
                 "vllm_memory", "peak_tflops", "max_pixels"):
        value = getattr(a, name)
        if value is not None:
            setattr(plan, name, value)
    if a.frame_size:
        try:
            w, h = (int(x) for x in a.frame_size.lower().split("x"))
        except ValueError:
            ap.error(f"--frame-size {a.frame_size!r}: WIDTHxHEIGHT, e.g. 854x480")
        plan.frame_size = (w, h)
    if a.cuda_graphs:
        plan.vllm_eager = False
    if plan.generations % plan.micro_batch:
        ap.error(f"--generations {plan.generations} must be a multiple of --micro-batch {plan.micro_batch}")
    if not plan.frames or min(plan.frames) < 1 or max(plan.frames) > 91:
        ap.error("--frames: lengths from 1 to 91 (the test bed's longest clip)")
    return plan, Path(a.out) if a.out else None


def main(argv: list[str] | None = None) -> int:
    plan, path = parse(argv)
    try:
        card = preflight(plan)  # torch only: no GPU, no vLLM, too little memory fail in seconds
    except Refused as e:
        print(str(e), file=sys.stderr)
        return 2
    import common

    common.setup() if plan.dry_run else common.quiet()  # before vLLM is imported: its logging settings
    if path is None:
        name = "dry-run" if plan.dry_run else card["card"].replace("NVIDIA", "").strip().replace(" ", "-")
        path = (ROOT / ".cache" / "bench_logs" / "rehearse-gpu-dry-run.jsonl") if plan.dry_run else \
            HERE / "results" / f"rehearsal-{name}.jsonl"
    out = Out(path)
    try:
        return rehearse(plan, out, card)
    except Refused as e:
        print(str(e), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
