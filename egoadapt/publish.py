"""`egoadapt push run=DIR repo=USER/NAME [--dry-run]`: a training run's final model on the Hub.

The upload folder (`out`, default `<run>/push/`) holds exactly what a user of the model needs:
the weights of `final/` (merged for LoRA runs, or with `weights=adapter` the adapter alone), the
processor files, and README.md, a model card whose metadata huggingface_hub reads (base model,
tags, data set, the recipe, data and split hash, the run's evaluations as `model-index`) and whose
text shows how to run the model on a video with transformers and with vLLM. Nothing else:
no checkpoints, optimizer states, rollout_weights/ or training_args.bin. `--dry-run`
(`dry_run=true`) writes the folder and stops; otherwise it is uploaded with `upload_folder`
(credentials: `hf auth login` or HF_TOKEN, never the config).
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("egoadapt.push")

MODEL_FILES = re.compile(r"^(config\.json|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|"
                         r"model\.safetensors\.index\.json)$")
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PROCESSOR_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken")  # tokenizer, processor, chat template
NOT_UPLOADED = {"trainer_state.json", "training_args.bin", *ADAPTER_FILES}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class PushError(ValueError):
    pass


@dataclass
class Run:
    """What a training run folder says about itself."""
    folder: Path
    config: dict[str, Any]
    recipe: str | None
    split_hash: str | None
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # results.json contents, with "path"

    @property
    def lora(self) -> str | None:
        """"merged" (final/ merged, adapter in final/adapter/), "adapter" (final/ is the adapter), or None."""
        final = self.folder / "final"
        if (final / "adapter" / "adapter_config.json").is_file():
            return "merged"
        return "adapter" if (final / "adapter_config.json").is_file() else None


def read_run(folder: Path, evals: list[str] | None) -> Run:
    from egoadapt.data.split import file_sha256

    final = folder / "final"
    if not (final / "config.json").is_file() and not (final / "adapter_config.json").is_file():
        raise PushError(f"run={folder}: no final/ model (not an `egoadapt train` run folder, or training did not finish)")
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise PushError(f"run={folder}: no config.yaml (not an `egoadapt train` run folder)")
    config = OmegaConf.to_container(OmegaConf.load(config_path), resolve=False)
    from egoadapt.eval.report import read_results
    from egoadapt.tracking import recipe_of

    hydra_path = folder / ".hydra" / "hydra.yaml"
    recipe = recipe_of(OmegaConf.load(hydra_path).hydra) if hydra_path.is_file() else None
    split = folder / "split.json"
    eval_dirs = [Path(e) for e in evals] if evals else [d for d in (folder / "eval",) if (d / "results.json").is_file()]
    evaluations = []
    for d in eval_dirs:
        path = d / "results.json" if d.is_dir() else d
        try:
            evaluations.append({**read_results(path), "path": str(path)})
        except (OSError, json.JSONDecodeError) as e:
            raise PushError(f"evals: {path}: not an evaluation results file ({e})") from None
    return Run(folder, config, recipe, file_sha256(split) if split.is_file() else None, evaluations)


def upload_files(run: Run, weights: str) -> dict[str, Path]:
    """{name in the repo: source file}: the model (merged or adapter) and the processor files of final/."""
    final = run.folder / "final"
    if weights == "adapter":
        if run.lora is None:
            raise PushError(f"weights=adapter: {run.folder} is not a LoRA run (no adapter in final/)")
        source = final / "adapter" if run.lora == "merged" else final
        model = {f: source / f for f in ADAPTER_FILES if (source / f).is_file()}
    else:
        if run.lora == "adapter":
            raise PushError(f"weights=merged: {run.folder} kept its LoRA adapter unmerged (merge_lora=false); "
                            "push it with weights=adapter")
        model = {p.name: p for p in sorted(final.iterdir()) if p.is_file() and MODEL_FILES.match(p.name)}
    processor = {p.name: p for p in sorted(final.iterdir()) if p.is_file() and p.suffix in PROCESSOR_SUFFIXES
                 and not MODEL_FILES.match(p.name) and p.name not in NOT_UPLOADED}
    return {**processor, **model}


def base_model_of(run: Run, override: str | None) -> str | None:
    """The Hub id the run started from (model card `base_model`), or None for a local folder."""
    if override:
        return override
    path = str((run.config.get("model") or {}).get("path") or "")
    adapter = run.folder / "final" / "adapter" / "adapter_config.json"
    if not path and adapter.is_file():
        path = json.loads(adapter.read_text()).get("base_model_name_or_path", "")
    return path if HUB_ID.match(path) and not Path(path).exists() else None


def eval_results(run: Run, dataset: str | None) -> list:
    """huggingface_hub EvalResults (model-index) from the run's evaluations: overall accuracy
    (micro and macro) per QA type, in %, on the split side each was evaluated on."""
    from huggingface_hub import EvalResult

    names = {"accuracy": "accuracy (micro)", "macro_accuracy": "accuracy (macro over domains)",
             "close_accuracy": "CloseQA accuracy (micro)", "close_macro_accuracy": "CloseQA accuracy (macro)",
             "open_accuracy": "OpenQA accuracy (micro)", "open_macro_accuracy": "OpenQA accuracy (macro)"}
    out = []
    for ev in run.evaluations:
        split = ev.get("split") or {}
        summary = ev.get("summary") or {}
        side = split.get("side") or "test"
        hash_ = str(split.get("hash") or "all")
        dataset_name = f"{dataset or 'egocentric video QA'} " + \
            (f"({side} side of split {hash_[:12]})" if hash_ != "all" else "(every record)")
        for key, name in names.items():
            value = summary.get(key)
            if isinstance(value, (int, float)):
                out.append(EvalResult(task_type="video-text-to-text", task_name="egocentric video question answering",
                                      dataset_type=dataset or "egocentric-video-qa", dataset_name=dataset_name,
                                      dataset_split=side, dataset_revision=None if hash_ == "all" else hash_,
                                      metric_type="accuracy", metric_name=name, metric_value=round(100 * value, 2),
                                      verified=False))
    return out


def example_prompt(run: Run) -> str:
    """A CloseQA prompt worded as the run was trained (its prompt config), for the usage snippets."""
    from egoadapt.data.prompts import prompt_text
    from egoadapt.data.schema import CLOSE, PROMPT_KEYS, FrameSource, Sample

    sample = Sample(id="example", question="Which instrument does the surgeon use to grasp the tissue?",
                    frame_source=FrameSource(fps=1.0), options=("Scissors", "Grasper", "Clipper", "Hook"),
                    domain="surgery", category="Identification", question_type="identification")
    prompt_cfg = run.config.get("prompt")
    return prompt_text(sample, PROMPT_KEYS[CLOSE], OmegaConf.create(prompt_cfg) if prompt_cfg else None, sampling_fps=1.0)


def model_card(run: Run, repo: str, weights: str, base_model: str | None, dataset: str | None,
               tags: list[str]) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    cfg = run.config
    algorithm = str(cfg.get("algorithm") or "sft")
    lora = run.lora is not None
    data = cfg.get("data") or {}
    split = cfg.get("split") or {}
    card_data = ModelCardData(
        base_model=base_model, library_name="peft" if weights == "adapter" else "transformers",
        pipeline_tag="video-text-to-text", datasets=[dataset] if dataset else None,
        tags=list(dict.fromkeys(["egoadapt", "egocentric", "video", "trl", algorithm, *(["lora"] if lora else []),
                                 *tags])),
        model_name=repo.split("/")[-1], eval_results=eval_results(run, dataset) or None,
        egoadapt={"recipe": run.recipe, "algorithm": algorithm, "data_format": data.get("format"),
                  "annotations": Path(str(data.get("annotations"))).name if data.get("annotations") else None,
                  "split_protocol": split.get("protocol"), "split_hash": run.split_hash,
                  "weights": "adapter" if weights == "adapter" else ("merged LoRA" if lora else "full")})
    prompt = example_prompt(run)
    fps = 1.0
    what = {"adapter": "the LoRA adapter only (load it on the base model with PEFT)",
            "merged": "LoRA merged into the base weights (a plain checkpoint; the adapter is not included)"}
    weights_line = what["adapter"] if weights == "adapter" else what["merged"] if lora else "full fine-tuned weights"
    evals = "\n".join(f"| {r.metric_name} | {r.dataset_name} | {r.metric_value:.1f} |" for r in card_data.eval_results or [])
    body = f"""
# {repo.split('/')[-1]}

{'GRPO' if algorithm == 'grpo' else 'Supervised fine-tuning (SFT)'} of {f'`{base_model}`' if base_model else 'a video LLM'}
for egocentric video question answering, trained with egoadapt (on TRL).

- **Weights**: {weights_line}
- **Recipe**: `{run.recipe or 'unknown'}`; training data: format `{data.get('format')}`, split `{split.get('protocol')}`
  (manifest sha256 `{run.split_hash or 'n/a'}`)
- **Prompt**: the model was trained to answer in JSON: `{{"prediction": ..., "reason": ...}}`; ask it as below.

## Evaluation

{"| metric | data | % |" + chr(10) + "|---|---|---|" + chr(10) + evals if evals else "No evaluation was found in the run folder (`egoadapt eval ... out=RUN/eval`)."}

## Use with transformers

```python
from transformers import AutoModelForImageTextToText, AutoProcessor

model_id = "{repo}"
model = AutoModelForImageTextToText.from_pretrained(model_id, dtype="auto", device_map="auto")
processor = AutoProcessor.from_pretrained(model_id)
prompt = {json.dumps(prompt)}
messages = [{{"role": "user", "content": [{{"type": "video", "path": "clip.mp4"}}, {{"type": "text", "text": prompt}}]}}]
inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                       return_tensors="pt", processor_kwargs={{"fps": {fps}}}).to(model.device)
output = model.generate(**inputs, max_new_tokens=256, do_sample=False)
print(processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

## Use with vLLM

```python
from vllm import LLM, SamplingParams

llm = LLM("{repo}", limit_mm_per_prompt={{"video": 1}}, allowed_local_media_path="/data")
prompt = {json.dumps(prompt)}
messages = [{{"role": "user", "content": [{{"type": "video_url", "video_url": {{"url": "file:///data/clip.mp4"}}}},
                                          {{"type": "text", "text": prompt}}]}}]
print(llm.chat(messages, SamplingParams(temperature=0, max_tokens=256))[0].outputs[0].text)
```

or serve it (`vllm serve {repo}`) and send the clip as a `video_url` in an OpenAI chat request.
"""
    if weights == "adapter":
        body += f"""
The adapter loads on its base model with PEFT:
`PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained("{base_model}"), "{repo}")`.
"""
    return ModelCard(f"---\n{card_data.to_yaml()}\n---\n{body}").content


def stage(cfg: DictConfig) -> tuple[Path, Run]:
    """Write the upload folder aside and move it into place whole; (the folder, the run)."""
    from egoadapt.files import publish_atomically

    folder = Path(str(cfg.run))
    run = read_run(folder, [str(e) for e in cfg.get("evals") or []])
    weights = str(cfg.weights)
    files = upload_files(run, weights)
    if weights == "adapter" and not base_model_of(run, cfg.get("base_model")):
        raise PushError("weights=adapter: the run started from a local model; an adapter repo needs its base "
                        "model on the Hub: give base_model=ORG/NAME, or push merged weights (weights=merged)")
    out = Path(str(cfg.get("out") or folder / "push"))
    staging = out.with_name(f".{out.name}.partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, src in files.items():
        try:  # a hard link: the weights are not copied (the same file system as the run)
            os.link(src, staging / name)
        except OSError:
            shutil.copy2(src, staging / name)
    base = base_model_of(run, cfg.get("base_model"))
    if weights == "adapter" and base:  # the adapter names its base by Hub id, not the path it trained from
        adapter = json.loads((staging / "adapter_config.json").read_text())
        (staging / "adapter_config.json").unlink()  # a link to the run's file: never edit that one
        (staging / "adapter_config.json").write_text(json.dumps({**adapter, "base_model_name_or_path": base},
                                                                indent=2) + "\n")
    (staging / "README.md").write_text(model_card(run, str(cfg.repo), weights, base, cfg.get("dataset"),
                                                  list(cfg.get("tags") or [])), encoding="utf-8")
    publish_atomically(staging, out)
    return out, run


def push(cfg: DictConfig) -> dict[str, Any]:
    """Stage, then (unless dry_run) upload; returns {folder, files, repo, url}."""
    for key in ("run", "repo"):
        if OmegaConf.is_missing(cfg, key) or not cfg.get(key):
            raise PushError(f"{key}= is required: egoadapt push run=RUN_FOLDER repo=USER/NAME [--dry-run]")
    if not HUB_ID.match(str(cfg.repo)):
        raise PushError(f"repo={cfg.repo}: expected a Hub model id USER/NAME")
    folder, _ = stage(cfg)
    result: dict[str, Any] = {"folder": str(folder), "files": sorted(p.name for p in folder.iterdir()),
                              "repo": str(cfg.repo), "url": None}
    if cfg.get("dry_run"):
        return result
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi()
    try:
        api.create_repo(str(cfg.repo), repo_type="model", private=bool(cfg.get("private")), exist_ok=True)
        commit = api.upload_folder(repo_id=str(cfg.repo), folder_path=str(folder), repo_type="model",
                                   commit_message=str(cfg.get("commit_message") or "Upload model (egoadapt push)"))
    except (HfHubHTTPError, OfflineModeIsEnabled, OSError) as e:
        raise PushError(f"upload to {cfg.repo} failed: {type(e).__name__}: {e} (the folder is ready: {folder}; "
                        "log in with `hf auth login` or set HF_TOKEN, then rerun)") from None
    result["url"] = str(getattr(commit, "commit_url", commit))
    return result


def main(cfg: DictConfig) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = push(cfg)
    except PushError as e:
        print(f"egoadapt push: {e}", file=sys.stderr)
        return 2
    print(f"{'dry run: ' if cfg.get('dry_run') else ''}{result['folder']}: {', '.join(result['files'])}")
    print(f"uploaded to {result['url']}" if result["url"] else f"not uploaded (dry run); repo would be {result['repo']}")
    return 0
