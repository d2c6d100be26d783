"""`make rehearse --quick` (benchmarks/rehearse.py): the test bed's longest clips at the 7B pixel
budget through server GRPO (launched vLLM rollout server and judge), colocated GRPO and vLLM
evaluation, each as the CLI a user runs."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.integration
@pytest.mark.timeout(2700)
def test_quick_rehearsal_runs_the_longest_clips_end_to_end(tmp_path):
    out = tmp_path / "rehearse"
    proc = subprocess.run([sys.executable, "benchmarks/rehearse.py", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=2600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    phases = {r["phase"]: r for r in json.loads((out / "rehearsal.json").read_text())}
    assert list(phases) == ["data", "model", "prompt", "grpo_vllm_server", "grpo_vllm_colocate", "eval_vllm_heldout"]
    assert phases["data"]["records"] == 957 and phases["data"]["max_frames"] == 91
    prompt = phases["prompt"]
    assert prompt["longest_prompt_tokens"] > 10_000  # ~10.8k: past the 4096 the engines used to be built with
    assert prompt["questions_over_4096_tokens"] == 46  # the test bed's clips over 32 frames
    for name in ("grpo_vllm_server", "grpo_vllm_colocate"):
        assert phases[name]["sync_seconds"] is not None, name  # weights went to vLLM after a step
        assert (out / name.replace("_vllm", "") / "final" / "model.safetensors").is_file()
    assert phases["grpo_vllm_server"]["server_peak_rss_mb"] > 0
    assert phases["grpo_vllm_server"]["sync"] == "transfer"  # the default server + rollout.sync=auto: gloo engine
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["counts"]["scored"] == phases["data"]["subset"]  # every clip evaluated, the longest included
