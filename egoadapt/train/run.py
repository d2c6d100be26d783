"""`egoadapt train recipe=NAME out=DIR key=value ...`: a thin entry point into TRL's SFT and GRPO.

Order matters: every check that can fail from the config alone runs before a model or a
data set is loaded, so a bad launch on 8 GPUs fails in seconds, not after the download.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from egoadapt.train.launch import TrainConfigError, launch_job, launch_problems, save_run_config

log = logging.getLogger("egoadapt.train")


ALGORITHMS = ("sft", "grpo")


def trl_config_class(algorithm: str):
    from trl import GRPOConfig, SFTConfig

    try:
        return {"sft": SFTConfig, "grpo": GRPOConfig}[algorithm]
    except KeyError:
        raise TrainConfigError(f"algorithm={algorithm!r}: choose sft or grpo") from None


def trainer_kwargs(cfg: DictConfig, out: Path) -> dict[str, Any]:
    """`trainer.*` keys are TRL config fields by their own names; unknown ones are an error."""
    import torch

    cls = trl_config_class(cfg.algorithm)
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
        raise TrainConfigError("unknown trainer keys for TRL " + cls.__name__ + ": " + ", ".join(
            f"{k}" + (f" (did you mean {h[0]}?)" if h else "") for k, h in hints.items()))
    if kwargs.get("bf16") in (None, "auto"):
        kwargs["bf16"] = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    launched = int(os.environ.get("LOCAL_RANK", -1)) >= 0
    if kwargs.get("ddp_backend") is None and launched and not torch.cuda.is_available():
        # TRL's config sets the process group up again; launched by DeepSpeed on CPU it finds no
        # backend without this and every rank takes world size 1 (DeepSpeed then refuses the batch)
        kwargs["ddp_backend"] = "gloo"
    from egoadapt.tracking import job_identity, report_to

    logger = OmegaConf.to_container(cfg.logger, resolve=True) or {}
    kwargs.setdefault("report_to", logger.get("report_to", "none"))
    if report_to(logger):  # the run folder's name (and sweep), as the wandb run egoadapt starts has
        kwargs.setdefault("run_name", job_identity(out, logger)[0])
        if logger.get("project"):
            kwargs.setdefault("project", logger["project"])  # trackio's project
    kwargs.update(output_dir=str(out), seed=int(cfg.seed), remove_unused_columns=False)
    if cfg.algorithm == "sft":
        kwargs.setdefault("dataset_kwargs", {"skip_prepare_dataset": True})
    return kwargs


def preflight(cfg: DictConfig, here: bool = True) -> None:
    """Config-only checks: no model, no data touched. `here`: the job runs on this machine (false
    when a cluster launcher submits it elsewhere: the job checks its node's GPUs when it starts)."""
    import torch

    from egoadapt.config import ConfigError, check
    from egoadapt.inputs.families import UnknownFamily, check_family, check_pixel_limits
    from egoadapt.models.loading import ModelConfigError, check_model_path

    try:  # every key known, types and ranges (TRL's fields and GRPO's batch rule too), no secrets, out= sane
        check(cfg, "train", trainer=trl_config_class(cfg.algorithm) if cfg.get("algorithm") in ALGORITHMS else None)
    except ConfigError as e:
        raise TrainConfigError(str(e)) from None
    if cfg.get("out") in (None, "", "???"):
        raise TrainConfigError("out=DIR is required (the run folder)")
    trl_config_class(cfg.algorithm)
    if here and cfg.get("requires_gpu") and not torch.cuda.is_available():
        raise TrainConfigError(f"this recipe is sized for GPUs ({cfg.get('requires_gpu')}) and this machine has none;"
                               " use a tiny recipe (recipe=demo/tiny_sft) or launch it on a GPU node")
    try:
        check_model_path(cfg.model.get("path"))
        check_family(cfg.model.get("path"))  # a model type without a family module fails here, naming the known
        check_pixel_limits(cfg.model.get("path"), cfg.get("model"))
    except (ModelConfigError, UnknownFamily) as e:
        raise TrainConfigError(str(e)) from None
    if cfg.algorithm == "grpo" and cfg.rollout.engine.startswith("vllm") and importlib.util.find_spec("vllm") is None:
        raise TrainConfigError(f"rollout={cfg.rollout.engine} needs vLLM, which is not installed: "
                               "pip install -e .[gpu] (CUDA) or make install (CPU), or use rollout=hf")
    if cfg.algorithm == "grpo" and cfg.rollout.engine == "vllm_server" and not cfg.rollout.get("base_url"):
        raise TrainConfigError("rollout=vllm_server needs rollout.base_url=http://HOST:PORT/v1")
    if cfg.algorithm == "grpo" and cfg.rollout.engine.startswith("vllm"):
        t = cfg.trainer  # TRL checks this only with its own vLLM (use_vllm), which egoadapt does not start
        if (t.get("loss_type") == "vespo" and t.get("vllm_importance_sampling_correction", True)
                and t.get("vllm_importance_sampling_mode", "sequence_mask") not in ("token_truncate", "token_mask")):
            raise TrainConfigError("trainer.loss_type=vespo with vLLM rollouts needs "
                                   "trainer.vllm_importance_sampling_mode=token_truncate or token_mask")
    if cfg.get("split", {}).get("manifest") and not Path(cfg.split.manifest).is_file():
        raise TrainConfigError(f"split.manifest={cfg.split.manifest}: no such file")
    if cfg.algorithm == "grpo":
        reward_names = list((cfg.reward.get("weights") or {}).keys())
        from egoadapt.rewards.registry import available_rewards

        bad = [n for n in reward_names if n not in available_rewards()]
        if bad:
            raise TrainConfigError(f"unknown rewards {bad}; registered: {available_rewards()}")
        from egoadapt.rewards.judge import JudgeConfigError, check_judge_config

        try:  # a judge that cannot work fails here, not as fallback rewards during training
            check_judge_config(cfg.get("judge"))
        except JudgeConfigError as e:
            raise TrainConfigError(str(e)) from None
    trainer_kwargs(cfg, Path(cfg.out))  # unknown trainer keys fail here
    if cfg.trainer.get("push_to_hub"):
        raise TrainConfigError("trainer.push_to_hub=true would upload the whole run folder (checkpoints, "
                               "rollout_weights/, the model before the LoRA merge); train without it, then publish "
                               "the final model with its card: egoadapt push run=OUT repo=USER/NAME")
    from egoadapt.tracking import tracker_problems

    if found := tracker_problems(cfg.get("logger")):  # before the model loads, not in TRL's callback after it
        raise TrainConfigError("; ".join(found))
    if found := launch_problems(cfg):
        raise TrainConfigError("; ".join(found))


def train_samples(cfg: DictConfig, out: Path):
    """Load the data, apply (or make) the split manifest, save it in the run folder, return the train side."""
    from accelerate import PartialState

    from egoadapt.data.split import build_split, load_split, write_manifest

    manifest_path = out / "split.json"
    split_cfg = cfg.split
    if manifest_path.exists() and not split_cfg.get("manifest"):  # resume: keep the split the run started with
        split_cfg = OmegaConf.merge(split_cfg, {"manifest": str(manifest_path)})
    manifest, pool = build_split(cfg.data, split_cfg)
    if PartialState().is_main_process:
        write_manifest(manifest, manifest_path)
    PartialState().wait_for_everyone()
    side = load_split(manifest_path, pool, "train")
    limit = cfg.data.get("train_limit")
    return side[: int(limit)] if limit else side


def start_tracking(cfg: DictConfig, out: Path, opened: list) -> None:
    """The wandb run (name, group, config) before TRL's callback would start a bare one; when
    wandb cannot start even offline, it is disabled for this process: tracking never fails a run."""
    from egoadapt.tracking import report_to, start_training_run

    if "wandb" not in report_to(cfg.logger):
        return
    tracked = start_training_run(cfg, out)
    if tracked is None:
        os.environ["WANDB_MODE"] = "disabled"
    else:
        opened.append(tracked)


def build_engine(cfg: DictConfig, video, out: Path, world_size: int, context=None):
    from egoadapt.rollout.engines import HFEngine, VLLMColocateEngine, VLLMServerEngine

    t = cfg.trainer
    sampling = {"temperature": float(t.get("temperature", 1.0)), "top_p": float(t.get("top_p", 1.0)),
                "top_k": t.get("top_k"), "max_tokens": int(t.get("max_completion_length", 256))}
    engine = cfg.rollout.engine
    if engine == "hf":
        return HFEngine(video, sampling)
    if engine == "vllm_colocate":
        return VLLMColocateEngine(video, sampling, str(cfg.model.path),
                                  OmegaConf.to_container(cfg.rollout.engine_kwargs) if cfg.rollout.get("engine_kwargs") else {}, world_size,
                                  context=context)
    if engine == "vllm_server":
        r = cfg.rollout
        return VLLMServerEngine(video, sampling, r.base_url, r.get("model") or str(cfg.model.path),
                                Path(r.get("weights_dir") or out / "rollout_weights"), timeout=float(r.timeout_s),
                                api_key_env=r.get("api_key_env"), retries=int(r.retries),
                                backoff_s=float(r.backoff_s), backoff_max_s=float(r.backoff_max_s),
                                sync=str(r.sync), transfer_address=r.transfer_address,
                                transfer_port=int(r.transfer_port))
    raise TrainConfigError(f"rollout engine {engine!r}: choose hf, vllm_colocate or vllm_server")


def check_servers(cfg: DictConfig) -> None:
    """Wait up to `server_wait_s` for every server this GRPO run calls (the rollout server,
    the judge); fail naming the URL and what to start. Run on rank 0 before the data loads."""
    from egoadapt.net import ServerUnavailable, wait_for_server
    from egoadapt.rewards.judge import check_judge_config

    if cfg.algorithm != "grpo":
        return
    wait_s = float(cfg.server_wait_s)
    servers = []  # (what, base_url, model, api key variable, what to start, must reload weights)
    if cfg.rollout.engine == "vllm_server":
        r = cfg.rollout
        model = r.get("model") or str(cfg.model.path)
        servers.append(("the rollout server (rollout.base_url)", r.base_url, model, r.get("api_key_env"),
                        _start_hint(r.base_url, model, dev_mode=True, key_env=r.get("api_key_env")), True))
    judge = check_judge_config(cfg.get("judge"))
    if judge is not None:
        start = _start_hint(judge.base_url, judge.model, dev_mode=False, key_env=judge.api_key_env) \
            if judge.base_url.startswith("http:") else "check judge.base_url, the network and the judge's API key"
        servers.append(("the judge (judge.base_url)", judge.base_url, judge.model, judge.api_key_env, start, False))
    for what, base_url, model, key_env, start, reloads in servers:
        try:
            wait_for_server(base_url, model=model, wait_s=wait_s, what=what, start_hint=start,
                            api_key=os.environ.get(key_env, "") if key_env else "", api_key_env=key_env,
                            dev_mode=reloads)
        except ServerUnavailable as e:
            raise TrainConfigError(str(e)) from None


def _start_hint(base_url: str, model: str, dev_mode: bool, key_env: str | None) -> str:
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    cmd = f"launch/vllm_server.sh {model} {url.port or 80}"
    if not dev_mode:
        cmd = "VLLM_DEV_MODE=0 " + cmd
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        cmd = f"on {url.hostname}: VLLM_HOST=0.0.0.0 VLLM_API_KEY=\"${key_env or 'VLLM_API_KEY'}\" " + cmd
    return cmd


def run(cfg: DictConfig, out: Path) -> Path:
    """One training job. The rollout engine and the judge client it opens are closed when it
    ends, however it ends (the next job of a multirun starts without them)."""
    opened: list = []  # engines and judge clients, closed in reverse order
    try:
        return _run(cfg, out, opened)
    finally:
        for thing in reversed(opened):
            try:
                thing.close()
            except Exception as e:  # noqa: BLE001 - closing must not hide the job's own error
                log.warning("closing %s failed: %s: %s", type(thing).__name__, type(e).__name__, e)


def _run(cfg: DictConfig, out: Path, opened: list) -> Path:
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from egoadapt.data.cache import InputCache
    from egoadapt.inputs.families import for_checkpoint
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.models.loading import load_model, load_processor, peft_config
    from egoadapt.rollout.context import train_context
    from egoadapt.train.checkpoint import last_checkpoint
    from egoadapt.train.datasets import build_dataset, usable_samples

    preflight(cfg)
    set_seed(int(cfg.seed))
    # the process group first: rank 0 alone writes the run folder, the others wait for it.
    # cpu=True where there is no GPU, or `accelerate launch --multi_gpu` on CPU would leave
    # every process believing it is rank 0 until TRL's config sets the device up.
    state = PartialState(cpu=not torch.cuda.is_available())
    try:  # TRL's own checks (__post_init__) before anything is written or loaded
        args = trl_config_class(cfg.algorithm)(**trainer_kwargs(cfg, out))
    except (TypeError, ValueError) as e:
        raise TrainConfigError(f"trainer: {e}") from None
    if state.is_main_process:
        save_run_config(cfg, out)
        start_tracking(cfg, out, opened)
        check_servers(cfg)  # the rollout server and the judge answer, before the data loads
    samples = train_samples(cfg, out)
    processor = load_processor(cfg.model)
    family = for_checkpoint(str(cfg.model.path), processor)  # from the checkpoint's model_type
    context = train_context(cfg, samples, family)  # longest prompt vs the model's positions, before any clip is processed
    cache = InputCache(cfg.get("cache_dir"), enabled=bool(cfg.get("cache_dir")))
    video = VideoInputs(samples, processor, cfg.frames, cfg.prompt, cache=cache,
                        ram_bytes=cfg.get("cache_ram_bytes"), family=family)
    samples = usable_samples(samples, video, out)  # every clip read and processed before the model loads
    model = load_model(cfg.model, training=True, vision_prefixes=family.vision_prefixes)  # under ZeRO-3, partitioned as it loads (args set that up)
    log_param_share(model, state.process_index)
    dataset = build_dataset(samples, video, qa=cfg.data.get("qa", "close"), with_target=cfg.algorithm == "sft")
    log.info("%s on %d rows (%d samples), process %d of %d -> %s", cfg.algorithm.upper(), len(dataset), len(samples),
             state.process_index, state.num_processes, out)

    if cfg.algorithm == "sft":
        from egoadapt.train.collators import VideoSFTCollator
        from egoadapt.train.sft import VideoSFTTrainer

        trainer = VideoSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                  data_collator=VideoSFTCollator(video, args.max_length),
                                  peft_config=peft_config(cfg.model, family.vision_prefixes))
    else:
        from egoadapt.rewards.judge import Judge
        from egoadapt.rewards.registry import build_reward_funcs
        from egoadapt.train.grpo import VideoGRPOTrainer

        judge = Judge.from_config(cfg.judge)
        if judge is not None:
            opened.append(judge)
        funcs, weights = build_reward_funcs(cfg.reward, judge=judge)
        args.reward_weights = weights
        engine = build_engine(cfg, video, out, state.num_processes, context)
        opened.append(engine)
        trainer = VideoGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                   reward_funcs=funcs, peft_config=peft_config(cfg.model, family.vision_prefixes), video=video, engine=engine,
                                   vision_dedupe=bool(cfg.vision_dedupe))
    resume = last_checkpoint(out) if cfg.get("resume") else None
    if cfg.get("resume") and resume is None:
        log.warning("resume=true but no checkpoint in %s: starting from step 0", out)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()  # out/trainer_state.json: the whole log history, for plots and the demo
    final = save_final(trainer, processor, out, merge=bool(cfg.merge_lora and cfg.model.lora.enabled))
    log.info("saved %s", final)
    return final


def log_param_share(model, rank: int) -> tuple[int, int]:
    """(parameter elements this rank holds, the model's total), logged: under ZeRO-3's init
    (`zero3_init_flag`) a rank holds only its partition from the moment the model loads."""
    import resource

    from transformers.integrations import is_deepspeed_zero3_enabled

    local = total = 0
    for p in model.parameters():
        total += getattr(p, "ds_numel", p.numel())
        local += p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel()
    try:  # private (anonymous) and file-backed (mapped files: shared page cache) resident memory now
        status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        now = {k: int(status[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile")}
    except (OSError, KeyError, ValueError):
        now = {"RssAnon": float("nan"), "RssFile": float("nan")}
    log.info("rank %d holds %d of %d parameter elements after load (%.3f; ZeRO-3 init %s); peak RSS %.0f MiB "
             "(now %.0f MiB private, %.0f MiB file-backed)", rank, local, total, local / max(total, 1),
             "on" if is_deepspeed_zero3_enabled() else "off", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             now["RssAnon"], now["RssFile"])
    return local, total


def save_final(trainer, processor, out: Path, merge: bool) -> Path:
    """`final/` from the trained weights, written aside and moved into place whole: a kill
    during the save leaves the previous `final/` (or none), never a half-written one."""
    final, staging = out / "final", out / ".final.partial"
    if trainer.accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)  # a save killed earlier
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(staging))  # every rank: DeepSpeed gathers the shards here
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(str(staging))
        if merge:
            merge_lora(staging)
        from egoadapt.train.checkpoint import publish_atomically

        publish_atomically(staging, final)
    trainer.accelerator.wait_for_everyone()
    return final


def merge_lora(folder: Path) -> None:
    """Make `final/` a plain checkpoint (loadable by vLLM) by merging the adapter in place."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText
    from transformers.integrations import deepspeed as hf_deepspeed

    adapter = json.loads((folder / "adapter_config.json").read_text())
    # rank 0 merges alone: under ZeRO-3 the load must not be partitioned (zero.Init would wait for the other ranks)
    zero3, hf_deepspeed._hf_deepspeed_config_weak_ref = hf_deepspeed._hf_deepspeed_config_weak_ref, None
    try:
        base = AutoModelForImageTextToText.from_pretrained(adapter["base_model_name_or_path"])
        merged = PeftModel.from_pretrained(base, str(folder)).merge_and_unload()
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = zero3
    (folder / "adapter").mkdir(exist_ok=True)
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        if (folder / f).exists():
            (folder / f).replace(folder / "adapter" / f)
    merged.save_pretrained(str(folder))


def main(cfg: DictConfig) -> int:
    from hydra.core.hydra_config import HydraConfig

    from egoadapt.data.errors import DataError

    out = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path(cfg.out)
    try:
        if cfg.accelerate.config_file:  # e.g. each job of a Slurm sweep on its node
            launch_job(cfg, out)  # its ranks run the preflight, on the node that has the GPUs
        else:
            run(cfg, out)
    except DataError as e:  # names file, record and field: no traceback needed
        raise SystemExit(f"egoadapt train: {e}") from None
    return 0
