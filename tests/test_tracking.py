"""Experiment tracking (egoadapt.tracking): wandb online only when logged in, runs named and
grouped from the run folder and the sweep, the resolved config without secrets in the run,
eval and compare tables in wandb, other trackers checked before anything loads. Offline:
the tests read wandb's offline run files back."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from egoadapt import tracking
from egoadapt.cli import main as cli


def wandb_records(path: Path) -> list:
    """The records of a `.wandb` file (a 7-byte header, then LevelDB-style log chunks in 32 KiB
    blocks), as wandb's protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, chunk, records = path.read_bytes(), 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the block's tail is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):  # wandb's service is still writing this record: read it next time
            break
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def offline_run(folder: Path, run_id: str) -> tuple[Path, dict]:
    """(the offline run folder, {"run": the run record, "config": {key: value}, "history": [{key: value}]})."""
    runs = sorted(folder.glob(f"wandb/offline-run-*-{run_id}"))
    assert runs, f"no offline run {run_id} under {folder}/wandb"
    deadline = time.monotonic() + 60
    while True:  # wandb's service process may still be writing the file when finish() returns
        records = wandb_records(next(runs[-1].glob("run-*.wandb")))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update({u.key: json.loads(u.value_json) for u in r.config.update})
    history = [nested(r.history.item) for r in records if r.WhichOneof("record_type") == "history"]
    return runs[-1], {"run": run, "config": config, "history": history}


def nested(items) -> dict:
    """History items as a dict: an item keyed ["eval/results", "_type"] is d["eval/results"]["_type"]."""
    out: dict = {}
    for item in items:
        path = [item.key] if item.key else list(item.nested_key)
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = json.loads(item.value_json)
    return out


# ------------------------------------------------------------------ online or offline

@pytest.fixture
def no_login(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))  # wandb reads its login from this file
    return tmp_path / "netrc"


def test_online_when_logged_in_offline_otherwise(no_login, monkeypatch):
    assert tracking.wandb_mode() == "offline"
    no_login.write_text("machine example.org\n  login user\n  password x\n")
    assert tracking.wandb_mode() == "offline"  # a netrc without wandb's host
    no_login.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")  # `wandb login`
    assert tracking.wandb_mode() == "online"
    no_login.unlink()
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert tracking.wandb_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")  # the user's own choice wins
    assert tracking.wandb_mode() == "disabled"


def test_secrets_never_reach_the_tracker():
    cfg = {"judge": {"api_key_env": "EGOADAPT_JUDGE_API_KEY", "api_key": "sk-123"},
           "trainer": {"hub_token": "hf_x", "learning_rate": 1e-6}, "items": [{"password": "p", "ok": 1}]}
    assert tracking.public_config(cfg) == {"judge": {"api_key_env": "EGOADAPT_JUDGE_API_KEY"},
                                           "trainer": {"learning_rate": 1e-6}, "items": [{"ok": 1}]}


# ------------------------------------------------------------------ other trackers, refused before loading

@pytest.mark.parametrize("name", ["tensorboard", "trackio"])
def test_missing_tracker_is_refused_naming_the_extra(name, tmp_path, config_only_model, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m == name else real(m, *a))  # not installed
    with pytest.raises(SystemExit) as e:
        cli(["train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", f"model.path={config_only_model}",
             f"data.root={tmp_path}", f"logger={name}"])
    assert f"{name} is not installed; pip install 'egoadapt[{name}]'" in str(e.value)
    assert not (tmp_path / "run").exists()  # refused before Hydra wrote anything


# ------------------------------------------------------------------ a sweep job, its eval and a comparison

@pytest.mark.integration
def test_sweep_job_eval_and_compare_land_in_wandb(tiny_model_dir, synth_dir, tmp_path, monkeypatch, no_login):
    monkeypatch.setenv("WANDB_MODE", "offline")
    sweep = tmp_path / "lr_sweep"
    rc = cli(["train", "-m", "recipe=demo/tiny_sft", f"model.path={tiny_model_dir}", f"data.root={synth_dir}",
              f"out={sweep}", f"cache_dir={tmp_path / 'cache'}", "trainer.max_steps=1", "trainer.learning_rate=1e-4",
              "logger=wandb"])
    assert rc == 0
    job = sweep / "0"
    record = json.loads((job / tracking.RUN_FILE).read_text())
    assert (record["name"], record["group"], record["mode"]) == ("lr_sweep-0", "lr_sweep", "offline")
    _, train_run = offline_run(job, record["id"])
    assert (train_run["run"].display_name, train_run["run"].run_group) == ("lr_sweep-0", "lr_sweep")
    config = train_run["config"]
    # the resolved Hydra config (data, frames, split, ...) beside TRL's own arguments
    assert config["data"]["root"] == str(synth_dir) and config["split"]["protocol"] == "paper_70_30"
    assert config["frames"]["max_frames"] >= 1 and config["algorithm"] == "sft"
    assert config["trainer"]["learning_rate"] == 1e-4 and config["learning_rate"] == 1e-4
    assert "++trainer.learning_rate=0.0001" in config["hydra"]["overrides"]  # as Hydra records it
    assert config["hydra"]["job_num"] == 0 and config["hydra"]["recipe"] == "demo/tiny_sft"

    # eval of the job's checkpoint: its table into the training run (same id)
    ev = job / "eval"
    assert cli(["eval", f"checkpoint={job / 'final'}", "data=synthetic", f"data.root={synth_dir}", f"out={ev}",
                "qa=close", "limit=4", "generation.max_new_tokens=4", "progress=false", "bootstrap.resamples=50",
                f"cache_dir={tmp_path / 'cache'}", "logger=wandb"]) == 0
    folders = sorted(job.glob(f"wandb/offline-run-*-{record['id']}"))
    assert len(folders) == 2  # the training, then the evaluation resuming the same run
    eval_folder, eval_run = offline_run(job, record["id"])
    logged = {k: v for h in eval_run["history"] for k, v in h.items()}
    assert logged["eval/results"]["_type"] == "table-file"
    table = json.loads((eval_folder / "files" / logged["eval/results"]["path"]).read_text())
    assert {"qa", "domain", "category", "accuracy", "ci_low"} <= set(table["columns"])
    results = json.loads((ev / "results.json").read_text())
    overall = next(r for r in table["data"] if r[:4] == ["close", "all", "all", "micro"])
    assert overall[table["columns"].index("accuracy")] == pytest.approx(results["summary"]["accuracy"])

    # compare: a run of its own, named after its folder, with the table and the plots
    cmp = tmp_path / "cmp"
    assert cli(["compare", str(ev), str(ev), "labels=[a,b]", f"out={cmp}", "bootstrap.resamples=50",
                "logger=wandb"]) == 0
    cmp_runs = list(cmp.glob("wandb/offline-run-*"))
    assert len(cmp_runs) == 1
    _, cmp_run = offline_run(cmp, cmp_runs[0].name.rsplit("-", 1)[1])
    assert cmp_run["run"].display_name == "cmp" and cmp_run["run"].job_type == "compare"
    logged = {k: v for h in cmp_run["history"] for k, v in h.items()}
    assert logged["compare/compare"]["_type"] == "table-file"
    assert logged["compare/accuracy_by_domain"]["_type"] == "image-file"


@pytest.mark.integration
def test_an_unreachable_wandb_server_falls_back_to_offline(no_login, monkeypatch, tmp_path, caplog):
    """Logged in, but the server does not answer (a closed port): the run goes on offline at
    once (wandb.init alone would spend ~90 s in retries first)."""
    for proxy in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert tracking.wandb_mode() == "online"
    with caplog.at_level("WARNING", logger="egoadapt.tracking"):
        run = tracking._init(project="egoadapt", name="fallback", dir=str(tmp_path))
    assert run is not None and run.settings.mode == "offline"
    assert "127.0.0.1:9 unreachable" in caplog.text
    run.finish()
    assert list(tmp_path.glob(f"wandb/offline-run-*-{run.id}"))


def test_no_reachability_probe_behind_a_proxy(monkeypatch):
    """Behind a proxy the server's address itself may not answer while wandb works through the proxy."""
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    assert not tracking.wandb_reachable(timeout_s=2)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    assert tracking.wandb_reachable(timeout_s=2)


@pytest.mark.integration
def test_logger_tensorboard_writes_the_training_scalars(tiny_model_dir, synth_dir, tmp_path, monkeypatch):
    """The tensorboard extra (in dev): TRL's TensorBoard callback writes the loss under <out>/runs/."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tests.train.helpers import train

    monkeypatch.delenv("TENSORBOARD_LOGGING_DIR", raising=False)
    out = train("demo/tiny_sft", tiny_model_dir, synth_dir, tmp_path / "tb", "trainer.max_steps=2", "logger=tensorboard")
    events = list((out / "runs").glob("*/events.out.tfevents.*"))
    assert len(events) == 1
    scalars = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in scalars, scalars
