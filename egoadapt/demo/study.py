"""The demo's steps: the paper's study as a sequence of `egoadapt` commands.

1. a source-domain base: the random tiny model trained on a daily-life synthetic domain
   (the role of a pretrained MLLM), evaluated there and on every target domain (the shift);
2. SFT and GRPO each from that base, on the same target-domain training split, for the
   paper's 12:16 epoch ratio; each evaluated on held-out target questions, a domain left
   out of adaptation (generalisation), the source domain (forgetting) and blank frames
   (the shortcut check);
3. the challenge protocol: SFT and GRPO from the base on a support set of a few questions
   per domain, evaluated on the test-bed-format test side with a submission file.

Each step prints its command and is skipped when its output exists (rerunning resumes).
"""
from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig

from egoadapt.demo.challenge import write_challenge

METHODS = ("sft", "grpo")


def cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


class Study:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.out = Path(cfg.out).resolve()
        self.timings_file = self.out / "timings.json"

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def step(self, name: str, done: Path, args: list[str]) -> None:
        from egoadapt.cli import main as cli

        shown = "egoadapt " + " ".join(args)
        if done.exists():
            print(f"\n== {name}: done already ({done.relative_to(self.out)}) ==\n   {shown}", flush=True)
            return
        print(f"\n== {name} ==\n   {shown}", flush=True)
        wall, cpu = time.monotonic(), cpu_seconds()
        rc = cli(args)
        if rc:
            raise SystemExit(f"egoadapt demo: step {name!r} failed ({rc})")
        self.record_timing(name, time.monotonic() - wall, cpu_seconds() - cpu)

    def record_timing(self, name: str, wall: float, cpu: float) -> None:
        timings = json.loads(self.timings_file.read_text()) if self.timings_file.exists() else {}
        timings[name] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
        self.timings_file.write_text(json.dumps(timings, indent=2) + "\n")

    # ------------------------------------------------------------------ the pieces

    def synth(self, name: str, domains, videos: int, seed: int, blank: bool = False) -> None:
        out = self.path("data", name)
        self.step(f"data: {name}", out / "answers.json",
                  ["data", "synth", f"out={out}", f"domains=[{','.join(domains)}]", f"videos_per_domain={videos}",
                   f"seed={seed}", "write_videos=false", f"blank_frames={str(blank).lower()}"])

    def split(self, name: str, test_fraction: float = 0.3) -> Path:
        manifest = self.path("split", f"{name}.json")
        self.step(f"split: {name}", manifest, ["data", "split", *self.data(name), f"split.seed={self.cfg.seed}",
                                               f"split.test_fraction={test_fraction}", f"out={manifest}"])
        return manifest

    def data(self, name: str) -> list[str]:
        return ["data=synthetic", f"data.root={self.path('data', name)}"]

    def train(self, name: str, recipe: str, start: Path, data: list[str], epochs: float, seed: int,
              overrides) -> Path:
        out = self.path("train", name)
        interrupted = ["resume=true"] if any(out.glob("checkpoint-*")) else []  # killed mid-run: continue it
        self.step(f"train {name}", out / "final" / "config.json",
                  ["train", f"recipe=demo/{recipe}", f"model.path={start}", *data,
                   f"cache_dir={self.path('cache')}", f"trainer.num_train_epochs={epochs}", f"seed={seed}",
                   f"out={out}", *interrupted, *[f"trainer.{k}={v}" for k, v in (overrides or {}).items()]])
        return out / "final"

    def evaluate(self, model: str, checkpoint: Path, on: str, data: list[str], extra=()) -> Path:
        c, out = self.cfg, self.path("eval", model, on)
        qa = c.target_qa if on == "target" else "close"
        args = ["eval", f"checkpoint={checkpoint}", *data, f"qa={qa}", f"backend={c.eval_backend}",
                f"batch_size={c.eval_batch_size}", f"generation.max_new_tokens={c.eval_max_new_tokens}",
                f"cache_dir={self.path('cache')}", "progress=false",
                f"out={out}", *extra]
        if c.eval_limit:
            args.append(f"limit={c.eval_limit}")
        self.step(f"evaluate {model} on {on}", out / "results.json", args)
        return out

    def compare(self, on: str, runs: dict[str, Path], name: str = "") -> None:
        out = self.path("compare", on, name) if name else self.path("compare", on)
        self.step(f"compare on {on}" + (f" ({name})" if name else ""), out / "compare.json",
                  ["compare", *map(str, runs.values()), f"labels=[{','.join(runs)}]", f"out={out}"])

    # ------------------------------------------------------------------ the study

    def run(self) -> dict:
        from egoadapt.demo.report import write_report

        c = self.cfg
        if c.get("fresh") and self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        model = self.path("model")
        self.step("tiny model", model / "config.json",
                  ["model", "tiny", f"size={c.model_size}", f"out={model}", f"seed={c.seed}"])
        self.synth("source", [c.source_domain], c.source_videos, c.seed)
        self.synth("target", c.target_domains, c.target_videos, c.seed + 1)
        self.synth("unseen", [c.unseen_domain], c.unseen_videos, c.seed + 2)
        self.synth("blind", c.target_domains, c.blind_videos, c.seed + 3, blank=True)
        sets = {  # evaluation set -> its data arguments
            "source": [*self.data("source"), f"split.manifest={self.split('source', c.source_test_fraction)}"],
            "target": [*self.data("target"), f"split.manifest={self.split('target', c.target_test_fraction)}"],
            "unseen": self.data("unseen"),
            "blind": self.data("blind"),
        }
        base = self.train("base", "tiny_sft", model, sets["source"], c.pretrain_epochs, c.seed, c.pretrain_overrides)
        evals = {"base": {on: self.evaluate("base", base, on, data) for on, data in sets.items()}}
        recipes = {"sft": ("tiny_sft", c.sft_epochs, c.sft_overrides), "grpo": ("tiny_grpo", c.grpo_epochs,
                                                                             c.grpo_overrides)}
        for seed in c.adapt_seeds:
            for method, (recipe, epochs, overrides) in recipes.items():
                name = f"{method}_s{seed}"
                final = self.train(name, recipe, base, sets["target"], epochs, seed, overrides)
                on_sets = sets if seed == c.adapt_seeds[0] else {on: sets[on] for on in c.seed_sets}
                evals[name] = {on: self.evaluate(name, final, on, data) for on, data in on_sets.items()}
        first = c.adapt_seeds[0]
        for on in sets:
            self.compare(on, {"base": evals["base"][on], "SFT": evals[f"sft_s{first}"][on],
                              "GRPO": evals[f"grpo_s{first}"][on]})
            self.compare(on, {"SFT": evals[f"sft_s{first}"][on], "GRPO": evals[f"grpo_s{first}"][on]}, "sft_vs_grpo")
        for seed in c.adapt_seeds[1:]:  # run-to-run spread: the same method, another seed, paired questions
            for method in METHODS:
                self.compare("target", {f"seed{first}": evals[f"{method}_s{first}"]["target"],
                                        f"seed{seed}": evals[f"{method}_s{seed}"]["target"]}, f"{method}_seeds")
        if c.support_per_domain:
            self.challenge(base, recipes)
        return write_report(self.out, c)

    def challenge(self, base: Path, recipes: dict) -> None:
        c, folder = self.cfg, self.path("challenge")
        if not (folder / "template.json").exists():
            print(f"\n== challenge files: support set ({c.support_per_domain} per domain), test bed, template ==",
                  flush=True)
            counts = write_challenge(self.path("data", "target"), self.path("split", "target.json"), folder,
                                     c.support_per_domain, c.seed)
            print(f"   {counts['support']} support questions, {counts['testbed']} test-bed questions -> {folder}")
        testbed = [*self.data("target"), f"data.annotations={folder / 'testbed' / 'annotations.json'}",
                   f"data.answers={folder / 'testbed' / 'answers.json'}"]
        support = [*testbed, "split=support", f"split.support.annotations={folder / 'support.json'}"]
        manifest = self.path("split", "support.json")
        self.step("split: support", manifest, ["data", "split", *support, f"out={manifest}"])
        runs = {}
        for label, (recipe, epochs, overrides) in {"base": (None, 0, None), **recipes}.items():
            start = base
            if recipe:
                start = self.train(f"{label}_support", recipe, base, [*support, f"split.manifest={manifest}"],
                                   epochs, c.seed, overrides)
            name = label if label == "base" else f"{label}_support"
            runs[label.upper() if recipe else label] = self.evaluate(
                name, start, "testbed", testbed,
                [f"submission.template={folder / 'template.json'}", f"submission.out={folder / f'{name}.json'}"])
        self.compare("testbed", runs)


def main(cfg: DictConfig) -> int:
    Study(cfg).run()
    return 0
