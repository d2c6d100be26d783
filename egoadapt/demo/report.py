"""The demo's report: what a reader of the paper would look for, from the steps' artefacts.

- the domain-shift table (the source-trained base on its own domain vs each target domain);
- the Table-3-shaped table and figure (domains x base/SFT/GRPO, held-out accuracy with intervals);
- verdicts: paired bootstrap and McNemar from `egoadapt compare`, per evaluation set and domain;
- budgets (questions and completions seen, seconds) and training curves (SFT loss, GRPO reward,
  its components, the fraction of groups whose rewards do not vary);
- shortcut checks: blank frames must score near chance, and no task may be solved by every model.

Writes out/report.md, out/summary.json and out/figures/{table3,training_curves}.png.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from egoadapt.data.schema import QA_NAMES, QA_TYPES

CHANCE = 0.25
BLIND_LIMIT = 0.35  # a blank-frame score whose interval lies above this: the text leaks the answer
SOLVED = 0.99  # a task at or above this for every model: too easy to tell the methods apart
LABELS = {"base": "base", "sft": "SFT", "grpo": "GRPO"}


def read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def cell(results: dict, domain: str = "all", category: str = "all", qa: str = "all") -> dict | None:
    return next((r for r in results["table"] if r["qa"] == qa and r["domain"] == domain
                 and r["category"] == category and r["stat"] == "micro"), None)


def pct(row: dict | None, ci: bool = True) -> str:
    if not row:
        return "-"
    text = f"{100 * row['accuracy']:.1f}"
    return f"{text} [{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]" if ci else text


class Artefacts:
    def __init__(self, out: Path, cfg):
        self.out, self.cfg = out, cfg
        self.seed = cfg.adapt_seeds[0]

    def model(self, method: str, seed: int | None = None) -> str:
        return "base" if method == "base" else f"{method}_s{self.seed if seed is None else seed}"

    def results(self, method: str, on: str, seed: int | None = None) -> dict | None:
        return read_json(self.out / "eval" / self.model(method, seed) / on / "results.json")

    def compare(self, on: str, name: str = "") -> dict | None:
        return read_json(self.out / "compare" / on / name / "compare.json")

    def history(self, run: str) -> list[dict]:
        state = read_json(self.out / "train" / run / "trainer_state.json")
        return state["log_history"] if state else []


def domain_rows(a: Artefacts) -> list[tuple[str, str, str]]:
    """(label, evaluation set, domain) for every domain the study reports, targets first."""
    c = a.cfg
    return ([(d, "target", d) for d in c.target_domains] + [(f"{c.unseen_domain} (left out)", "unseen", c.unseen_domain)]
            + [(f"{c.source_domain} (source)", "source", c.source_domain)])


def shift_table(a: Artefacts) -> tuple[list[str], dict]:
    lines = ["| domain | base accuracy (%) | format violations |", "|---|---|---|"]
    source = None
    drops = {}
    rows = domain_rows(a)
    for label, on, domain in rows[-1:] + rows[:-1]:  # the source domain first
        res = a.results("base", on)
        row = cell(res, domain) if res else None
        if on == "source":
            source = row
        elif row and source and row["accuracy"] > 0:
            drops[domain] = source["accuracy"] / row["accuracy"]
        lines.append(f"| {label} | {pct(row)} | {100 * row['format_violation_rate']:.0f}% |" if row else
                     f"| {label} | - | - |")
    target = cell(a.results("base", "target"), "all") if a.results("base", "target") else None
    summary = {"source": source and source["accuracy"], "target": target and target["accuracy"],
               "ratio_source_to_target": round(source["accuracy"] / target["accuracy"], 2)
               if source and target and target["accuracy"] else None,
               "ratio_per_domain": {k: round(v, 2) for k, v in drops.items()}}
    return lines, summary


def table3(a: Artefacts) -> tuple[list[str], dict]:
    methods = ("base", "sft", "grpo")
    lines = ["| domain | " + " | ".join(LABELS[m] for m in methods) + " |", "|---" * (len(methods) + 1) + "|"]
    data = {}
    for label, on, domain in [("all target (held out)", "target", "all"), *domain_rows(a)]:
        rows = {m: (cell(r, domain) if (r := a.results(m, on)) else None) for m in methods}
        data[label] = {m: r and {k: r[k] for k in ("accuracy", "ci_low", "ci_high", "n")} for m, r in rows.items()}
        lines.append(f"| {label} | " + " | ".join(pct(rows[m]) for m in methods) + " |")
    return lines, data


def task_table(a: Artefacts, on: str = "target") -> list[str]:
    res = {m: a.results(m, on) for m in ("base", "sft", "grpo")}
    if not all(res.values()):
        return []
    cats = sorted({r["category"] for r in res["base"]["table"] if r["category"] != "all"})
    lines = ["| task | base | SFT | GRPO | blank frames (SFT) |", "|---|---|---|---|---|"]
    blind = a.results("sft", "blind")
    for cat in cats:
        lines.append(f"| {cat} | " + " | ".join(pct(cell(r, "all", cat), ci=False) for r in res.values())
                     + f" | {pct(cell(blind, 'all', cat), ci=False) if blind else '-'} |")
    return lines


def qa_table(a: Artefacts, on: str = "target") -> list[str]:
    """Held-out target accuracy per QA type (CloseQA, OpenQA), where the evaluation asked both."""
    res = {m: a.results(m, on) for m in ("base", "sft", "grpo")}
    if not all(res.values()):
        return []
    kinds = [q for q in QA_TYPES if cell(res["base"], qa=q)]
    if len(kinds) < 2:
        return []
    lines = ["| QA type | base | SFT | GRPO |", "|---|---|---|---|"]
    for q in kinds:
        lines.append(f"| {QA_NAMES[q]} | " + " | ".join(pct(cell(r, qa=q)) for r in res.values()) + " |")
    return lines


def verdict(label: str, base: str, d: dict) -> str:
    ci = f"{100 * d['delta']:+.1f} points [{100 * d['delta_ci_low']:+.1f}, {100 * d['delta_ci_high']:+.1f}]"
    if d["delta_ci_low"] > 0:
        word = f"{label} beats {base}"
    elif d["delta_ci_high"] < 0:
        word = f"{label} is worse than {base}"
    else:
        word = f"{label} and {base} are not distinguishable"
    mcnemar = "" if d.get("mcnemar_p") is None else f", McNemar p={d['mcnemar_p']:.3f}"
    return f"{word}: {ci}, paired bootstrap p={d['p_value']:.3f}{mcnemar} (n={d['n_paired']})"


def verdicts(a: Artefacts) -> list[str]:
    names = {"target": "held-out target questions", "unseen": "the left-out domain (generalisation)",
             "source": "the source domain (forgetting)", "testbed": "the challenge test bed (support-set training)"}
    lines = []
    for on, title in names.items():
        for name in ("", "sft_vs_grpo"):
            result = a.compare(on, name)
            if not result:
                continue
            for row in result["table"]:
                if row["qa"] != "all" or row["category"] != "all" or row["stat"] != "micro":
                    continue
                if row["domain"] != "all" and on != "target":
                    continue
                where = title if row["domain"] == "all" else f"{title}, {row['domain']}"
                lines += [f"- {where}: {verdict(lab, result['baseline'], d)}" for lab, d in row["deltas"].items()]
    for method in ("sft", "grpo"):
        result = a.compare("target", f"{method}_seeds")
        if result:
            row = cell(result)
            lines += [f"- run-to-run spread, {LABELS[method]} (another seed, same questions): "
                      + verdict(lab, result["baseline"], d) for lab, d in row["deltas"].items()]
    return lines


def budgets(a: Artefacts) -> tuple[list[str], dict]:
    lines = ["| run | epochs | questions seen | completions generated | optimizer steps | train seconds |",
             "|---|---|---|---|---|---|"]
    out = {}
    for run in sorted(p.name for p in (a.out / "train").iterdir() if p.is_dir()) if (a.out / "train").exists() else []:
        cfg = yaml.safe_load((a.out / "train" / run / "config.yaml").read_text())
        hist, split = a.history(run), read_json(a.out / "train" / run / "split.json")
        n_train = len(split["train"]) if split else 0
        epochs = cfg["trainer"]["num_train_epochs"]
        gens = cfg["trainer"].get("num_generations") if cfg.get("algorithm") == "grpo" else None
        end = next((h for h in reversed(hist) if "train_runtime" in h), {})
        steps = max((h.get("step", 0) for h in hist), default=0)
        seen = round(n_train * epochs)
        out[run] = {"epochs": epochs, "questions_seen": seen, "completions": gens and seen * gens, "steps": steps,
                    "seconds": end.get("train_runtime")}
        lines.append(f"| {run} | {epochs:g} | {seen} | {gens and seen * gens or '-'} | {steps} | "
                     f"{end.get('train_runtime', 0):.0f} |")
    return lines, out


def quarters(values: list[float]) -> tuple[float, float] | None:
    if len(values) < 4:
        return None
    q = len(values) // 4
    return sum(values[:q]) / q, sum(values[-q:]) / q


def running_mean(values: list, window: int) -> list[float | None]:
    out = []
    for i in range(len(values)):
        seen = [v for v in values[max(0, i - window + 1):i + 1] if v is not None]
        out.append(sum(seen) / len(seen) if seen else None)
    return out


def curves(a: Artefacts, figures: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grpo = [h for h in a.history(a.model("grpo")) if "reward" in h]
    parts = sorted({k for h in grpo for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for run, style in (("base", ":"), (a.model("sft"), "-")):
        loss = [(h["step"], h["loss"]) for h in a.history(run) if "loss" in h]
        if loss:
            axes[0].plot(*zip(*loss), style, label=run)
    axes[0].set(title="SFT loss", xlabel="step", yscale="log")
    axes[0].legend()
    steps = [h["step"] for h in grpo]
    for key in ["reward", *parts]:  # each logged step thin, its running mean over 10 logs thick
        values = [h.get(key) for h in grpo]
        line, = axes[1].plot(steps, values, lw=0.6, alpha=0.4)
        axes[1].plot(steps, running_mean(values, 10), color=line.get_color(), lw=1.8,
                     label=key.replace("rewards/", "").replace("/mean", ""))
    axes[1].set(title="GRPO reward (training prompts; running mean of 10 logs)", xlabel="step")
    axes[1].legend(fontsize=7)
    axes[2].plot(steps, [h.get("frac_reward_zero_std") for h in grpo])
    axes[2].set(title="GRPO: fraction of groups with zero reward variance", xlabel="step", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(figures / "training_curves.png", dpi=110)
    plt.close(fig)
    result = {}
    for key in ["reward", *parts, "frac_reward_zero_std"]:
        q = quarters([h[key] for h in grpo if h.get(key) is not None])
        if q:
            result[key] = {"first_quarter": round(q[0], 4), "last_quarter": round(q[1], 4)}
    return result


def table3_figure(data: dict, figures: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(data)
    fig, ax = plt.subplots(figsize=(11, 3.8))
    width = 0.27
    for i, method in enumerate(("base", "sft", "grpo")):
        xs = [g + (i - 1) * width for g in range(len(groups))]
        rows = [data[g][method] for g in groups]
        acc = [100 * r["accuracy"] if r else 0 for r in rows]
        err = [[100 * (r["accuracy"] - r["ci_low"]) if r else 0 for r in rows],
               [100 * (r["ci_high"] - r["accuracy"]) if r else 0 for r in rows]]
        ax.bar(xs, acc, width, yerr=err, capsize=2, label=LABELS[method])
    ax.axhline(100 * CHANCE, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set(ylabel="held-out CloseQA accuracy (%)", ylim=(0, 100),
           title="Base (source-trained) vs SFT vs GRPO from the same base, per domain (95% intervals)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(figures / "table3.png", dpi=110)
    plt.close(fig)


def shortcut_checks(a: Artefacts) -> tuple[list[str], bool]:
    lines, ok = [], True
    for method in ("base", "sft", "grpo"):
        res = a.results(method, "blind")
        if not res:
            continue
        row = cell(res)
        leak = row["ci_low"] > BLIND_LIMIT
        ok &= not leak
        lines.append(f"- blank frames, {LABELS[method]}: {pct(row)}"
                     + (" -- ABOVE CHANCE: the text tells the answer" if leak else " (chance 25)"))
    res = [r for m in ("base", "sft", "grpo") if (r := a.results(m, "target"))]
    if res:
        cats = sorted({r["category"] for r in res[0]["table"] if r["category"] != "all"})
        solved = [c for c in cats if all((x := cell(r, "all", c)) and x["accuracy"] >= SOLVED for r in res)]
        ok &= not solved
        lines.append(f"- tasks at >= {100 * SOLVED:.0f}% for every model: " + (", ".join(solved) or "none"))
    return lines, ok


def write_report(out: Path, cfg) -> dict:
    a = Artefacts(out, cfg)
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    shift_lines, shift = shift_table(a)
    t3_lines, t3 = table3(a)
    budget_lines, budget = budgets(a)
    trend = curves(a, figures)
    table3_figure(t3, figures)
    checks, clean = shortcut_checks(a)
    rose = trend.get("reward") and trend["reward"]["last_quarter"] > trend["reward"]["first_quarter"]
    timings = read_json(out / "timings.json") or {}
    sections = [
        "## Domain shift: the source-trained base on its own domain and on each target domain", *shift_lines,
        "", "## Held-out accuracy (%), base vs SFT vs GRPO from the same base (the paper's Table 3 shape)",
        *t3_lines, "", "## Per task, held-out target questions (%)", *task_table(a),
        *(["", "## Per QA type, held-out target questions (%)", *qa] if (qa := qa_table(a)) else []),
        "", "## Verdicts (paired over the same questions)", *verdicts(a),
        "", "## Budgets", *budget_lines,
        "", "## GRPO training signal (first vs last quarter of its logged steps)",
        *[f"- {k}: {v['first_quarter']:.3f} -> {v['last_quarter']:.3f}" for k, v in trend.items()],
        f"- GRPO mean training reward {'rose' if rose else 'did NOT rise'}",
        "", "## Shortcut checks", *checks, f"- {'passed' if clean else 'FAILED'}",
        "", f"Step times: {sum(t['wall_s'] for t in timings.values()) / 60:.1f} min wall, "
            f"{sum(t['cpu_s'] for t in timings.values()) / 60:.1f} min CPU (each step's last run; "
            "out/timings.json per step)",
    ]
    text = "\n".join(sections) + "\n"
    (out / "report.md").write_text(text)
    summary = {"domain_shift": shift, "table3": t3, "budgets": budget, "grpo_curves": trend,
               "grpo_reward_rose": bool(rose), "shortcut_checks_passed": clean, "timings": timings}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n" + "=" * 80 + "\n" + text + f"everything is in {out} (report.md, figures/)", flush=True)
    return summary
