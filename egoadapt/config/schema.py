"""Typed schemas of the config groups (conf/<group>/) and of each command's primary config.

Types and allowed values only: the values stay in conf/*.yaml, the one place for defaults,
so every field here is MISSING. `egoadapt.config.validate` checks a composed config against
these before a command loads or writes anything, and Hydra types every key while composing: each
primary config's schema is in Hydra's ConfigStore (`register`, as `<name>_schema`) and listed first
in conf/<name>.yaml's defaults, so a misspelt key or a wrong type in a recipe, a group's YAML or an
override fails at compose (egoadapt.config.compose). The judge and reward groups
take their fields from the dataclasses that read them (`JudgeSettings`, `ScoringConfig`),
so a setting added there is known here; `trainer.*` keys are TRL's own fields
(`egoadapt.config.trainer`).
"""
from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from typing import Any

from omegaconf import MISSING

from egoadapt.data.schema import QA_MODES
from egoadapt.rewards.judge import JudgeSettings
from egoadapt.rewards.scoring import MODES, ScoringConfig


def rule(*choices: str, ge: float | None = None, gt: float | None = None, le: float | None = None,
         lt: float | None = None, output: str | None = None) -> Any:
    """A field that must be one of `choices`, within a range, or (output="dir"|"file") a path
    the command may write to."""
    meta = dict(choices=choices or None, ge=ge, gt=gt, le=le, lt=lt, output=output)
    return field(default=MISSING, metadata={k: v for k, v in meta.items() if v is not None})


def group(cls: type) -> Any:
    return field(default_factory=cls)


ON_ERROR = ("raise", "skip")
QA = tuple(QA_MODES)


# ------------------------------------------------------------------ groups

@dataclass
class Frames:  # egoadapt.data.frames
    backend: str = rule("decord", "pyav")
    fps: float | None = rule(gt=0)
    max_frames: int = rule(ge=1)
    max_pixels: int | None = rule(ge=1)
    resize: str = rule("cap", "qwen_vl_utils")
    processor_fps: float | None = rule(gt=0)
    odd_frames: str = rule("pad", "drop", "keep")
    span_tolerance_s: float = rule(ge=0)
    threads: int = rule(ge=0)
    on_error: str = rule(*ON_ERROR)


@dataclass
class Lora:
    enabled: bool = MISSING
    r: int = rule(ge=1)
    alpha: int = rule(ge=1)
    dropout: float = rule(ge=0, lt=1)
    target_modules: Any = MISSING  # "all-linear" or a list of module names
    exclude_modules: list[str] = MISSING


@dataclass
class Model:  # egoadapt.models.loading
    path: str | None = MISSING
    dtype: str = rule("auto", "bfloat16", "bf16", "float16", "fp16", "float32", "fp32")
    attn_implementation: str | None = MISSING
    freeze_vision: bool = MISSING
    min_pixels: int | None = rule(ge=1)
    max_pixels: int | None = rule(ge=1)
    lora: Lora = group(Lora)


@dataclass
class Data:  # egoadapt.data.load
    format: str = rule("egocross", "support", "jsonl")
    annotations: str | None = MISSING
    answers: str | None = MISSING
    root: str | None = MISSING
    fps: Any = MISSING  # a rate, or {default: rate, <dataset or domain>: rate}: checked in validate
    domains: dict[str, str] = MISSING
    on_error: str = rule(*ON_ERROR)
    check_files: bool = MISSING
    limit: int | None = rule(ge=1)
    qa: str = rule(*QA)  # train: the QA form(s) each training sample is asked in
    train_limit: int | None = rule(ge=1)


@dataclass
class Split:  # egoadapt.data.split
    protocol: str = rule("paper_70_30", "lodo", "support")
    seed: int = MISSING
    test_fraction: float = rule(gt=0, lt=1)
    test_domain: str | None = MISSING
    manifest: str | None = MISSING
    support: Data = group(Data)
    side: str = rule("test", "train")  # eval: which side of the manifest to evaluate


@dataclass
class Prompt:  # egoadapt.data.prompts
    name: str = MISSING
    system: str | None = MISSING
    fps_line: str = MISSING
    fps_line_no_original: str = MISSING
    closeqa: str = MISSING
    openqa: str = MISSING
    time_hint: str = MISSING
    time_hint_types: list[str] = MISSING
    domain_context: dict[str, str] = MISSING
    fps_format: str = MISSING
    target_reason: str = rule("detailed", "answer", "none")


@dataclass
class Rollout:  # egoadapt.rollout.engines
    engine: str = rule("hf", "vllm_colocate", "vllm_server")
    engine_kwargs: dict[str, Any] = MISSING
    base_url: str | None = MISSING
    model: str | None = MISSING
    weights_dir: str | None = MISSING
    api_key_env: str | None = MISSING
    timeout_s: float = rule(gt=0)
    retries: int = rule(ge=0)
    backoff_s: float = rule(ge=0)
    backoff_max_s: float = rule(ge=0)
    sync: str = rule("auto", "transfer", "disk")
    transfer_address: str | None = MISSING
    transfer_port: int = rule(ge=0)


@dataclass
class Logger:  # egoadapt.tracking
    report_to: Any = MISSING  # a TRL report_to: none | wandb | tensorboard | trackio | a list
    project: str | None = MISSING
    entity: str | None = MISSING
    run_name: str | None = MISSING
    group: str | None = MISSING
    dir: str | None = MISSING


def _from_dataclass(name: str, source: type, extra: dict[str, Any], rules: dict[str, Any]) -> type:
    """A schema with the fields (and types) of `source` plus `extra` ({name: type})."""
    hints = typing.get_type_hints(source)
    specs = [(n, t, rules.get(n, field(default=MISSING))) for n, t in extra.items()]
    specs += [(f.name, hints[f.name], rules.get(f.name, field(default=MISSING))) for f in fields(source)]
    return make_dataclass(name, specs)


# also checked where the settings are read (JudgeSettings.__post_init__), for Python callers;
# here whether or not the judge is enabled or asked
Judge = _from_dataclass("Judge", JudgeSettings, {"enabled": bool}, {
    "temperature": rule(ge=0), "top_p": rule(gt=0, le=1), "max_tokens": rule(ge=1), "concurrency": rule(ge=1),
    "timeout_s": rule(gt=0), "connect_timeout_s": rule(gt=0), "retries": rule(ge=0), "backoff_s": rule(ge=0),
    "backoff_max_s": rule(ge=0), "unparsable_retries": rule(ge=0), "max_calls": rule(ge=0),
    "fallback_mark": rule(ge=0, le=5), "breaker_failures": rule(ge=0), "breaker_cooldown_s": rule(gt=0),
    "max_failure_rate": rule(ge=0, le=1)})
Reward = _from_dataclass("Reward", ScoringConfig, {"weights": dict[str, float | None]}, {
    "mode": rule(*MODES), "judge_pass_mark": rule(ge=0, le=5), "count_tolerance": rule(ge=0),
    "iou_threshold": rule(ge=0, le=1), "time_tolerance_s": rule(ge=0), "time_window_s": rule(gt=0),
    "max_output_chars": rule(ge=1), "max_prediction_chars": rule(ge=1)})


# ------------------------------------------------------------------ eval's own nodes

@dataclass
class Generation:
    max_new_tokens: int = rule(ge=1)
    temperature: float = rule(ge=0)
    top_p: float = rule(gt=0, le=1)
    top_k: int | None = rule(ge=0)


@dataclass
class Bootstrap:
    resamples: int = rule(ge=1)
    seed: int = MISSING
    confidence: float = rule(gt=0, lt=1)


@dataclass
class Submission:
    template: str | None = MISSING
    out: str | None = rule(output="file")


@dataclass
class EvalVllm:
    engine_kwargs: dict[str, Any] = MISSING


@dataclass
class EvalOpenAI:  # egoadapt.eval.openai_backend
    base_url: str | None = MISSING
    model: str | None = MISSING
    api_key_env: str | None = MISSING
    send: str = rule("images", "video")
    image_format: str = rule("jpeg", "png")
    jpeg_quality: int = rule(ge=1, le=100)
    concurrency: int = rule(ge=1)
    timeout_s: float = rule(gt=0)
    connect_timeout_s: float = rule(gt=0)
    retries: int = rule(ge=0)
    backoff_s: float = rule(ge=0)
    backoff_max_s: float = rule(ge=0)
    breaker_failures: int = rule(ge=0)
    breaker_cooldown_s: float = rule(gt=0)
    extra_body: dict[str, Any] = MISSING


@dataclass
class ValidateOptions:
    check_files: bool = MISSING
    decode: bool = MISSING


@dataclass
class Accelerate:  # egoadapt.train.launch
    config_file: str | None = MISSING
    num_processes: int | None = rule(ge=1)
    main_process_port: int | None = rule(ge=1, le=65535)


# ------------------------------------------------------------------ primary configs (conf/<name>.yaml)

@dataclass
class Train:  # recipes/ on conf/train.yaml
    algorithm: str = rule("sft", "grpo")
    out: str = rule(output="dir")
    seed: int = MISSING
    resume: bool = MISSING
    requires_gpu: str | None = MISSING
    merge_lora: bool = MISSING
    cache_dir: str | None = MISSING
    cache_ram_bytes: int = rule(ge=0)
    server_wait_s: float = rule(ge=0)
    vision_dedupe: bool = MISSING
    model: Model = group(Model)
    data: Data = group(Data)
    split: Split = group(Split)
    frames: Frames = group(Frames)
    prompt: Prompt = group(Prompt)
    reward: Reward = group(Reward)
    judge: Judge = group(Judge)
    trainer: dict[str, Any] = MISSING  # TRL's SFTConfig / GRPOConfig fields: egoadapt.config.trainer
    rollout: Rollout = group(Rollout)
    logger: Logger = group(Logger)
    accelerate: Accelerate = group(Accelerate)


@dataclass
class Eval:
    checkpoint: str = MISSING
    sweep: str | None = MISSING
    eval_subdir: str = MISSING
    backend: str = rule("hf", "vllm", "openai")
    out: str = rule(output="dir")
    qa: str = rule(*QA)
    mode: str = rule(*MODES)
    batch_size: int = rule(ge=1)
    limit: int | None = rule(ge=1)
    fresh: bool = MISSING
    progress: bool = MISSING
    score_chunk_size: int = rule(ge=1)
    model: Model = group(Model)
    generation: Generation = group(Generation)
    split: Split = group(Split)
    vllm: EvalVllm = group(EvalVllm)
    openai: EvalOpenAI = group(EvalOpenAI)
    bootstrap: Bootstrap = group(Bootstrap)
    submission: Submission = group(Submission)
    cache_dir: str | None = MISSING
    cache_ram_bytes: int = rule(ge=0)
    data: Data = group(Data)
    frames: Frames = group(Frames)
    prompt: Prompt = group(Prompt)
    reward: Reward = group(Reward)
    judge: Judge = group(Judge)
    logger: Logger = group(Logger)


@dataclass
class Score:
    predictions: str = MISSING
    out: str = rule(output="dir")
    mode: str = rule(*MODES)
    chunk_size: int = rule(ge=1)
    data: Data = group(Data)
    reward: Reward = group(Reward)
    judge: Judge = group(Judge)


@dataclass
class DataValidate:
    data: Data = group(Data)
    frames: Frames = group(Frames)
    validate: ValidateOptions = group(ValidateOptions)


@dataclass
class DataSplit:
    data: Data = group(Data)
    split: Split = group(Split)
    out: str | None = rule(output="file")


@dataclass
class DataExport:  # egoadapt.data.export
    format: str = rule("hf", "swift", "llamafactory")
    out: str = rule(output="dir")
    qa: str = rule(*QA)
    media: str = rule("auto", "frames", "mp4")
    name: str = MISSING
    data: Data = group(Data)
    split: Split = group(Split)
    frames: Frames = group(Frames)
    prompt: Prompt = group(Prompt)


@dataclass
class DataSynth:  # egoadapt.data.synthetic.SynthConfig
    out: str = rule(output="dir")
    seed: int = MISSING
    videos_per_domain: int = rule(ge=1)
    questions_per_video: int = rule(ge=1)
    size: int = rule(ge=28)
    clip_seconds: float = rule(gt=0)
    sampling_fps: float = rule(gt=0)
    video_fps: float = rule(gt=0)
    jpeg_quality: int = rule(ge=1, le=100)
    write_videos: bool = MISSING
    domains: list[str] = MISSING
    blank_frames: bool = MISSING


@dataclass
class ModelTiny:
    family: str = MISSING      # a module of egoadapt/models/tiny/ (checked when it builds)
    size: str = rule("micro", "small")
    out: str = rule(output="dir")
    seed: int = MISSING


@dataclass
class Compare:
    runs: list[str] = MISSING
    labels: list[str] | None = MISSING
    out: str = rule(output="dir")
    allow_mismatched_splits: bool = MISSING
    allow_mismatched_prompts: bool = MISSING
    metric: str = MISSING
    eval_subdir: str = MISSING
    plots: bool = MISSING
    bootstrap: Bootstrap = group(Bootstrap)
    logger: Logger = group(Logger)


@dataclass
class Demo:  # egoadapt.demo
    out: str = rule(output="dir")
    fresh: bool = MISSING
    seed: int = MISSING
    model_size: str = rule("micro", "small")
    source_domain: str = MISSING
    source_videos: int = rule(ge=1)
    source_test_fraction: float = rule(gt=0, lt=1)
    target_domains: list[str] = MISSING
    target_videos: int = rule(ge=1)
    target_test_fraction: float = rule(gt=0, lt=1)
    unseen_domain: str = MISSING
    unseen_videos: int = rule(ge=1)
    blind_videos: int = rule(ge=1)
    pretrain_epochs: float = rule(gt=0)
    sft_epochs: float = rule(gt=0)
    grpo_epochs: float = rule(gt=0)
    adapt_seeds: list[int] = MISSING
    seed_sets: list[str] = MISSING  # evaluation sets of the seeds after the first (the spread)
    target_qa: str = rule("close", "open", "both")  # QA types of the held-out target evaluation
    support_per_domain: int = rule(ge=0)
    pretrain_overrides: dict[str, Any] | None = MISSING  # trainer.* of the base's training
    sft_overrides: dict[str, Any] | None = MISSING  # trainer.* of the SFT steps
    grpo_overrides: dict[str, Any] | None = MISSING  # trainer.* of the GRPO steps
    eval_backend: str = rule("hf", "vllm")
    eval_batch_size: int = rule(ge=1)
    eval_limit: int | None = rule(ge=1)
    eval_max_new_tokens: int = rule(ge=1)


@dataclass
class Push:  # egoadapt.publish
    run: str = MISSING
    repo: str = MISSING
    dry_run: bool = MISSING
    out: str | None = rule(output="dir")
    weights: str = rule("merged", "adapter")
    base_model: str | None = MISSING
    dataset: str | None = MISSING
    tags: list[str] = MISSING
    evals: list[str] | None = MISSING
    private: bool = MISSING
    commit_message: str | None = MISSING


# primary config name (conf/<name>.yaml; "train" for recipes) -> schema
SCHEMAS: dict[str, type] = {
    "train": Train, "eval": Eval, "score": Score, "data_validate": DataValidate, "data_split": DataSplit,
    "data_export": DataExport,
    "data_synth": DataSynth, "model_tiny": ModelTiny, "compare": Compare, "demo": Demo, "push": Push,
}


def register() -> None:
    """Each primary config's schema in Hydra's ConfigStore as `<name>_schema`: conf/<name>.yaml lists it
    first in its defaults (Hydra's schema pattern), so Hydra types every key while composing."""
    from hydra.core.config_store import ConfigStore

    for name, cls in SCHEMAS.items():
        ConfigStore.instance().store(name=f"{name}_schema", node=cls)


def field_spec(command: str, dotted: str) -> tuple[Any, dict[str, Any]] | None:
    """(type, rules) of the field `dotted` (a.b.c) of `command`'s schema; None when no schema field
    (an unknown key, or inside a free mapping such as trainer.*)."""
    node: Any = SCHEMAS.get(command)
    for part in dotted.split("."):
        if not is_dataclass(node):
            return None
        spec = {f.name: f for f in fields(node)}.get(part)
        if spec is None:
            return None
        hint, meta = typing.get_type_hints(node)[part], dict(spec.metadata)
        node = hint
    return hint, meta
