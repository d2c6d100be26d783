"""`make rehearse`: the real job's shapes, end to end, on a CPU machine.

    .venv/bin/python benchmarks/rehearse.py                     # ~20-30 min on 2 cores
    .venv/bin/python benchmarks/rehearse.py --quick             # the longest clips only, ~8 min
    .venv/bin/python benchmarks/rehearse.py --out runs/rehearse --questions 200

What is real: the 957 test-bed records (tests/fixtures/egocross) with their real frame counts
(1 to 91 per question), placeholder frames at 854x480 (one JPEG per distinct look, hard-linked
to every frame path), the 7B recipes' pixel budget (model.max_pixels=200704, 256 tokens per
frame pair), the tiny model at Qwen2.5-VL's real geometry (positions, patch/merge sizes, window
layout, tokens), 2 ranks under ZeRO-3, a vLLM rollout server and a vLLM judge started by
launch/vllm_server.sh, colocated vLLM, OpenQA and CloseQA rows, vLLM evaluation of the held-out
side including the longest clips, the challenge submission file. What is not: the width and
depth of a 7B model (benchmarks/gpu/ is the full-size run), the answers (synthesised), and the
pixels (placeholders).

Each phase is the CLI a user runs, in its own processes; per phase it prints the longest
prompt in tokens, the input cache's bytes per clip, the peak RSS of the largest process
(a rank, a server), the weight-sync seconds, and the wall time, then a table at the end
(also written to OUT/rehearsal.json).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FIXTURES = Path(os.environ.get("EGOCROSS_DIR", ROOT / "tests" / "fixtures" / "egocross"))
PIXEL_BUDGET = {"min_pixels": 3136, "max_pixels": 200704}  # the 7B recipes' (egoadapt/conf/model/qwen2_5_vl_7b.yaml)
PIXELS = tuple(f"model.{k}={v}" for k, v in PIXEL_BUDGET.items())
FRAME_SIZE = (854, 480)
LOOKS = 6  # distinct placeholder frames


class PhaseFailed(RuntimeError):
    pass


# ---------------------------------------------------------------- data
def placeholder_frames(folder: Path, seed: int = 0) -> list[Path]:
    """A few distinct 854x480 JPEGs (gradients and shapes: compressible, not blank)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng, paths = random.Random(seed), []
    for i in range(LOOKS):
        img = Image.new("RGB", FRAME_SIZE, tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x, y = rng.randrange(FRAME_SIZE[0]), rng.randrange(FRAME_SIZE[1])
            draw.ellipse((x, y, x + rng.randrange(20, 200), y + rng.randrange(20, 200)),
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        path = folder / f"look_{i}.jpg"
        img.save(path, quality=90)
        paths.append(path)
    return paths


def build_data(out: Path, questions: int | None, quick: bool, seed: int = 0) -> dict:
    """Frames for every test-bed record (hard links), synthesised answers, and the subset the
    training/evaluation phases use (the longest clips always in it)."""
    records = json.loads((FIXTURES / "egocross_testbed_imgs.json").read_text())
    template = json.loads((FIXTURES / "submission_template.json").read_text())
    qid = {str(t["id"]): t.get("question_id") for t in template}
    root = out / "data"
    looks = placeholder_frames(out / "looks", seed)
    rng = random.Random(seed)
    for r in records:
        for i, rel in enumerate(r["video_path"]):
            dst = root / rel.lstrip("/")
            if not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(looks[(r["id"] + i // 8) % LOOKS], dst)  # the look changes every 8 frames
    answers = []
    for r in records:
        letter = rng.choice([o.split(":", 1)[0].strip() for o in r["options"]])
        text = next(o.split(":", 1)[1].strip() for o in r["options"] if o.startswith(letter + ":"))
        answers.append({"id": r["id"], "question_id": qid.get(str(r["id"])), "correct_option_letter": letter,
                        "answer_text": text, "detailed_answer": f"The answer is {text}."})
    (out / "answers.json").write_text(json.dumps(answers))

    by_len = sorted(records, key=lambda r: -len(r["video_path"]))
    n = 4 if quick else (questions or len(records))
    longest = by_len[: 2 if quick else 16]
    rest = [r for r in records if r not in longest]
    subset = longest + rng.sample(rest, max(0, min(n, len(records)) - len(longest)))
    (out / "subset.json").write_text(json.dumps(subset))
    frames = [len(r["video_path"]) for r in subset]
    return {"records": len(records), "frames_linked": sum(len(r["video_path"]) for r in records),
            "subset": len(subset), "max_frames": max(frames), "longest_ids": [r["id"] for r in longest]}


# ---------------------------------------------------------------- processes
class PeakRSS:
    """Polls a process tree: the largest resident set any one process reached."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        while not self._stop.is_set():
            try:
                procs = [psutil.Process(self.pid)]
                procs += procs[0].children(recursive=True)
                for p in procs:
                    try:
                        self.peak = max(self.peak, p.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            self._stop.wait(0.5)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of a command; its output goes to `log`."""
    t0 = time.monotonic()
    with open(log, "ab") as f:
        f.write(("\n$ " + " ".join(map(str, cmd)) + "\n").encode())
        f.flush()
        proc = subprocess.Popen(list(map(str, cmd)), cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        rss = PeakRSS(proc.pid)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
        peak = rss.stop()
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise PhaseFailed(f"{' '.join(map(str, cmd[:6]))} ... exited {rc}; see {log}\n{tail}")
    return time.monotonic() - t0, peak


class Server:
    """A vLLM server started the way users start it: launch/vllm_server.sh MODEL PORT."""

    def __init__(self, model: Path, name: str, log: Path, max_model_len: int, rollout: bool):
        from egoadapt.rollout.server import free_port

        self.port, self.log, self.name = free_port(), log, name
        env = {**os.environ, "VLLM_HOST": "127.0.0.1", "VLLM_MAX_MODEL_LEN": str(max_model_len),
               "VLLM_DEV_MODE": "1" if rollout else "0", "VLLM_CPU_KVCACHE_SPACE": "1",
               "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        extra = ["--mm-processor-kwargs", json.dumps(PIXEL_BUDGET)] if rollout else []  # video as the trainer sees it
        self.proc = subprocess.Popen(["bash", str(ROOT / "launch" / "vllm_server.sh"), str(model), str(self.port),
                                      "--served-model-name", name, "--enforce-eager", "--max-num-seqs", "16", *extra],
                                     cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.rss = PeakRSS(self.proc.pid)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 600) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PhaseFailed(f"server {self.name} exited; see {self.log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(2)
        raise PhaseFailed(f"server {self.name} not healthy after {timeout:.0f} s; see {self.log}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.rss.stop()


# ---------------------------------------------------------------- measurements
def longest_prompt(model: Path, annotations: Path, answers: Path, root: Path) -> dict:
    """Prompt tokens of every test-bed question at the 7B pixel budget (counted from frame
    headers by the processor's own rule, as train and eval preflight count them)."""
    from egoadapt.config.compose import compose
    from egoadapt.data.load import load_samples
    from egoadapt.inputs.context import prompt_lengths
    from egoadapt.models.loading import load_processor

    cfg = compose("demo/tiny_sft", [f"model.path={model}", "data=egocross", f"data.annotations={annotations}",
                                    f"data.answers={answers}", f"data.root={root}", "cache_dir=null", *PIXELS],
                  recipe=True)
    lengths = prompt_lengths(load_samples(cfg.data), load_processor(cfg.model), cfg.frames, cfg.prompt)
    longest = max(lengths, key=lambda p: p.tokens)
    over = sorted({p.sample_id for p in lengths if p.tokens > 4096})
    return {"longest_prompt_tokens": longest.tokens, "longest_prompt_id": longest.sample_id,
            "longest_frames": longest.frames, "questions_over_4096_tokens": len(over)}


def cache_bytes_per_clip(cache: Path) -> int | None:
    files = [p for p in cache.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return int(sum(p.stat().st_size for p in files) / len(files)) if files else None


def sync_seconds(run_dir: Path) -> float | None:
    state = run_dir / "trainer_state.json"
    if not state.exists():
        return None
    values = [h[k] for h in json.loads(state.read_text())["log_history"] for k in h if k.endswith("sync_seconds")]
    return round(max(values), 3) if values else None


# ---------------------------------------------------------------- phases
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "rehearse")
    ap.add_argument("--questions", type=int, default=96, help="questions trained and evaluated (the longest always)")
    ap.add_argument("--quick", action="store_true", help="the longest clips only: colocated GRPO, server GRPO, eval")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    cache = out / "input_cache"
    env = {"EGOADAPT_CACHE_DIR": str(out / "cache"), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    figures: list[dict] = []

    def phase(name: str, fn) -> dict:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        row = {"phase": name, **(fn() or {})}
        row.setdefault("seconds", round(time.monotonic() - t0, 1))
        figures.append(row)
        print("   " + json.dumps(row), flush=True)
        (out / "rehearsal.json").write_text(json.dumps(figures, indent=2))
        return row

    cli = [BIN / "egoadapt"]
    model = out / "tiny"
    data = out / "data"
    ann_all, answers, subset = FIXTURES / "egocross_testbed_imgs.json", out / "answers.json", out / "subset.json"
    common = ["data=egocross", f"data.answers={answers}", f"data.root={data}", *PIXELS]

    phase("data", lambda: build_data(out, args.questions, args.quick))
    phase("model", lambda: {"seconds": round(run([*cli, "model", "tiny", "size=micro", f"out={model}"],
                                                   logs / "model.log", 300, env)[0], 1)})
    phase("prompt", lambda: longest_prompt(model, ann_all, answers, data))
    max_len = figures[-1]["longest_prompt_tokens"] + 64

    def timed(name, cmd, timeout=1800, run_dir=None):
        secs, rss = run(cmd, logs / f"{name}.log", timeout, env)
        row = {"seconds": round(secs, 1), "peak_rss_mb": round(rss / 2**20)}
        if run_dir is not None:
            row["sync_seconds"] = sync_seconds(run_dir)
            if "rollout=vllm_server" in map(str, cmd):  # rollout.sync=auto: disk leaves <out>/rollout_weights
                row["sync"] = "disk" if any((run_dir / "rollout_weights").glob("step-*")) else "transfer"
        row["cache_bytes_per_clip"] = cache_bytes_per_clip(cache)
        return row

    if not args.quick:
        phase("validate", lambda: timed("validate", [*cli, "data", "validate", f"data.annotations={ann_all}",
                                                     *common[1:3]]))
    manifest = [f"split.manifest={out / 'split.json'}"]
    if args.quick:  # every question on both sides: the longest clips are trained on and evaluated
        ids = [str(r["id"]) for r in json.loads(subset.read_text())]
        (out / "split.json").write_text(json.dumps({"version": 1, "protocol": "rehearsal", "train": ids,
                                                    "test": ids}))
    else:
        phase("split", lambda: timed("split", [*cli, "data", "split", f"data.annotations={subset}", *common[:3],
                                               "split.protocol=paper_70_30", f"out={out / 'split.json'}"]))
    train_common = [*common, f"data.annotations={subset}", *manifest, f"model.path={model}", f"cache_dir={cache}",
                    f"trainer.max_steps={args.steps}", "trainer.save_steps=1000"]
    grpo = ["recipe=demo/tiny_grpo", *train_common, "data.qa=both", "trainer.per_device_train_batch_size=4",
            "trainer.num_generations=4", "trainer.max_completion_length=16"]
    accelerate = [BIN / "accelerate", "launch"]

    if not args.quick:
        phase("sft_zero3_2ranks", lambda: timed("sft", [
            *accelerate, "--config_file", "launch/accelerate/zero3.yaml", "--num_processes", "2",
            "-m", "egoadapt.cli", "train", "recipe=demo/tiny_sft", *train_common,
            "trainer.per_device_train_batch_size=1", f"out={out / 'sft'}"]))

    def grpo_server():
        rollout = Server(model, "policy", logs / "rollout_server.log", max_len + 64, rollout=True)
        judge = Server(model, "judge", logs / "judge_server.log", 4096, rollout=False)
        try:
            rollout.wait(), judge.wait()
            row = timed("grpo_server", [*cli, "train", *grpo, "rollout=vllm_server", f"rollout.base_url={rollout.url}",
                                        "rollout.model=policy", "judge=vllm_local", f"judge.base_url={judge.url}",
                                        "judge.model=judge", "judge.max_failure_rate=1.0",  # a random judge: its verdicts do not parse
                                        f"out={out / 'grpo_server'}"], run_dir=out / "grpo_server")
        finally:
            row_rss = max(rollout.stop(), judge.stop())
        row["server_peak_rss_mb"] = round(row_rss / 2**20)
        return row

    phase("grpo_vllm_server", grpo_server)
    phase("grpo_vllm_colocate", lambda: timed("grpo_colocate", [*cli, "train", *grpo, "rollout=vllm_colocate",
                                                                "judge=none", "data.qa=close",
                                                                f"out={out / 'grpo_colocate'}"],
                                              run_dir=out / "grpo_colocate"))
    phase("eval_vllm_heldout", lambda: timed("eval", [
        *cli, "eval", f"checkpoint={out / 'grpo_colocate' / 'final'}", "backend=vllm", *common,
        f"data.annotations={subset}", *manifest, "qa=close", f"cache_dir={cache}",
        "generation.max_new_tokens=16", "progress=false", f"out={out / 'eval'}"]))
    if not args.quick:
        phase("submission", lambda: timed("submission", [
            *cli, "eval", f"checkpoint={out / 'grpo_colocate' / 'final'}", "backend=vllm", *common,
            f"data.annotations={subset}", "qa=close", f"cache_dir={cache}", "generation.max_new_tokens=16",
            "progress=false", f"submission.template={FIXTURES / 'submission_template.json'}",
            f"submission.out={out / 'submission.json'}", f"out={out / 'eval_all'}"]))

    print("\n| phase | seconds | peak RSS MB | sync s | cache B/clip |\n|---|---|---|---|---|")
    for r in figures:
        print(f"| {r['phase']} | {r.get('seconds')} | {r.get('peak_rss_mb', '')} | {r.get('sync_seconds') or ''} | "
              f"{r.get('cache_bytes_per_clip') or ''} |")
    print(f"\nlongest prompt: {figures[2]['longest_prompt_tokens']} tokens (question {figures[2]['longest_prompt_id']});"
          f" figures in {out / 'rehearsal.json'}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PhaseFailed as e:
        print(f"rehearsal failed: {e}", file=sys.stderr)
        sys.exit(1)
