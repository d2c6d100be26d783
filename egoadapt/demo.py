"""`egoadapt demo` (`make demo`): the whole study on a laptop-sized scale, CPU only.

Synthetic EgoCross data, a tiny Qwen2.5-VL, a leak-free split, the base model evaluated,
video SFT, video GRPO from the SFT model, both evaluated, and the comparison with
paired-bootstrap intervals and plots. Every step is an `egoadapt` command, printed as
it runs, so each can be rerun or changed by hand; the folder keeps every artefact.
Steps whose outputs exist are skipped (rerunning resumes; `fresh=true` starts over).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from omegaconf import DictConfig


class Demo:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.out = Path(cfg.out).resolve()
        self.timings: dict[str, float] = {}

    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def step(self, name: str, done: Path, args: list[str]) -> None:
        from egoadapt.cli import main as cli

        shown = "egoadapt " + " ".join(args)
        if done.exists():
            print(f"\n== {name}: done already ({done.relative_to(self.out)}) ==\n   {shown}", flush=True)
            return
        print(f"\n== {name} ==\n   {shown}", flush=True)
        start = time.monotonic()
        rc = cli(args)
        if rc:
            raise SystemExit(f"egoadapt demo: step {name!r} failed ({rc})")
        self.timings[name] = time.monotonic() - start

    def data_args(self) -> list[str]:
        return ["data=synthetic", f"data.root={self.path('data')}"]

    def run(self) -> dict:
        c = self.cfg
        if c.get("fresh") and self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        manifest = self.path("split.json")
        common = [*self.data_args(), f"split.manifest={manifest}"]
        cache = f"cache_dir={self.path('cache')}"
        self.step("tiny model", self.path("model", "config.json"),
                  ["model", "tiny", f"size={c.model_size}", f"out={self.path('model')}", f"seed={c.seed}"])
        self.step("synthetic data", self.path("data", "answers.json"),
                  ["data", "synth", f"out={self.path('data')}", f"seed={c.seed}",
                   f"videos_per_domain={c.videos_per_domain}", "write_videos=false"])
        self.step("split", manifest, ["data", "split", *self.data_args(), f"split.seed={c.seed}", f"out={manifest}"])
        evaluate = ["qa=close", f"backend={c.eval_backend}", f"batch_size={c.eval_batch_size}"]
        if c.eval_limit:
            evaluate.append(f"limit={c.eval_limit}")
        self.step("evaluate base", self.path("eval", "base", "results.json"),
                  ["eval", f"checkpoint={self.path('model')}", *common, *evaluate, f"out={self.path('eval', 'base')}"])
        self.step("SFT", self.path("sft", "final", "config.json"),
                  ["train", "recipe=demo/tiny_sft", f"model.path={self.path('model')}", *common, cache,
                   f"trainer.num_train_epochs={c.sft_epochs}", f"seed={c.seed}", f"out={self.path('sft')}",
                   *[f"trainer.{k}={v}" for k, v in (c.sft_overrides or {}).items()]])
        self.step("evaluate SFT", self.path("eval", "sft", "results.json"),
                  ["eval", f"checkpoint={self.path('sft', 'final')}", *common, *evaluate,
                   f"out={self.path('eval', 'sft')}"])
        self.step("GRPO", self.path("grpo", "final", "config.json"),
                  ["train", "recipe=demo/tiny_grpo", f"model.path={self.path('sft', 'final')}", *common, cache,
                   f"rollout={c.grpo_rollout}", f"trainer.max_steps={c.grpo_steps}", f"seed={c.seed}",
                   f"out={self.path('grpo')}", *[f"trainer.{k}={v}" for k, v in (c.grpo_overrides or {}).items()]])
        self.step("evaluate GRPO", self.path("eval", "grpo", "results.json"),
                  ["eval", f"checkpoint={self.path('grpo', 'final')}", *common, *evaluate,
                   f"out={self.path('eval', 'grpo')}"])
        self.step("compare", self.path("compare", "compare.json"),
                  ["compare", str(self.path("eval", "base")), str(self.path("eval", "sft")),
                   str(self.path("eval", "grpo")), "labels=[base,SFT,GRPO]", f"out={self.path('compare')}"])
        self.step("compare GRPO with SFT", self.path("compare", "sft_vs_grpo", "compare.json"),
                  ["compare", str(self.path("eval", "sft")), str(self.path("eval", "grpo")), "labels=[SFT,GRPO]",
                   f"out={self.path('compare', 'sft_vs_grpo')}"])
        curves = training_curves(self.path("sft"), self.path("grpo"), self.path("compare"))
        summary = {"minutes": round((time.monotonic() - t0) / 60, 1), "steps_seconds": self.timings, **curves}
        (self.path("summary.json")).write_text(json.dumps(summary, indent=2) + "\n")
        report(self.path("compare"), curves, summary["minutes"])
        return summary


def log_history(run: Path) -> list[dict]:
    state = run / "trainer_state.json"
    return json.loads(state.read_text())["log_history"] if state.exists() else []


def training_curves(sft: Path, grpo: Path, out: Path) -> dict:
    """GRPO mean reward and SFT loss over steps: a PNG, and the reward's first vs last quarter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rewards = [(h["step"], h["reward"]) for h in log_history(grpo) if "reward" in h]
    accuracy = [(h["step"], h.get("rewards/accuracy/mean")) for h in log_history(grpo) if "reward" in h]
    losses = [(h["step"], h["loss"]) for h in log_history(sft) if "loss" in h]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    if losses:
        ax1.plot(*zip(*losses))
    ax1.set(title="SFT loss", xlabel="step", yscale="log")
    if rewards:
        steps, values = zip(*rewards)
        ax2.plot(steps, values, alpha=0.35, label="mean reward per step")
        k = max(1, len(values) // 10)
        smooth = [sum(values[max(0, i - k + 1):i + 1]) / len(values[max(0, i - k + 1):i + 1]) for i in range(len(values))]
        ax2.plot(steps, smooth, label=f"moving mean ({k} steps)")
        ax2.legend()
    ax2.set(title="GRPO reward", xlabel="step")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "training_curves.png", dpi=110)
    plt.close(fig)
    result = {}
    if len(rewards) >= 4:
        q = len(rewards) // 4
        first = sum(v for _, v in rewards[:q]) / q
        last = sum(v for _, v in rewards[-q:]) / q
        acc = [v for _, v in accuracy if v is not None]
        result = {"grpo_reward_first_quarter": round(first, 4), "grpo_reward_last_quarter": round(last, 4),
                  "grpo_reward_rose": last > first,
                  "grpo_accuracy_first_quarter": round(sum(acc[:q]) / q, 4) if len(acc) >= 4 else None,
                  "grpo_accuracy_last_quarter": round(sum(acc[-q:]) / q, 4) if len(acc) >= 4 else None}
    return result


def report(compare_dir: Path, curves: dict, minutes: float) -> None:
    table = (compare_dir / "compare.md").read_text() if (compare_dir / "compare.md").exists() else ""
    print("\n" + "=" * 80 + "\n" + table)
    if curves:
        trend = "rose" if curves["grpo_reward_rose"] else "did NOT rise"
        print(f"GRPO mean reward {trend}: {curves['grpo_reward_first_quarter']:.3f} (first quarter of steps) -> "
              f"{curves['grpo_reward_last_quarter']:.3f} (last quarter)")
    for line in verdicts(compare_dir / "compare.json") + verdicts(compare_dir / "sft_vs_grpo" / "compare.json"):
        print(line)
    print(f"demo finished in {minutes:.1f} min; everything is in {compare_dir.parent} "
          f"(plots: {compare_dir}/*.png)")


def verdicts(compare_json: Path) -> list[str]:
    """One honest sentence per comparison against the baseline: overall accuracy, paired bootstrap."""
    if not compare_json.exists():
        return []
    result = json.loads(compare_json.read_text())
    row = next(r for r in result["table"]
               if r["qa"] == "all" and r["domain"] == "all" and r["category"] == "all" and r["stat"] == "micro")
    base = result["baseline"]
    lines = []
    for label, d in row["deltas"].items():
        ci = f"{100 * d['delta']:+.1f} points [{100 * d['delta_ci_low']:+.1f}, {100 * d['delta_ci_high']:+.1f}]"
        if d["delta_ci_low"] > 0:
            verdict = f"{label} beats {base}"
        elif d["delta_ci_high"] < 0:
            verdict = f"{label} is worse than {base}"
        else:
            verdict = f"{label} and {base} are not distinguishable"
        mcnemar = "" if d.get("mcnemar_p") is None else f", McNemar p={d['mcnemar_p']:.3f}"
        lines.append(f"{verdict} on held-out accuracy: {ci}, paired bootstrap p={d['p_value']:.3f}{mcnemar} "
                     f"(n={d['n_paired']})")
    return lines


def main(cfg: DictConfig) -> int:
    Demo(cfg).run()
    return 0
