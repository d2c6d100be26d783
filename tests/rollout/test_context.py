"""Context length from the data (counts: tests/inputs/test_context.py): vLLM engines sized
by them, long clips (91 frames, prompts over 4096 tokens) through colocated GRPO and vLLM eval,
and a prompt the model's positions cannot hold refused before the model loads, naming the clip."""
import json
import shutil

import pytest

from egoadapt.cli import main as cli
from egoadapt.data.errors import DataError
from egoadapt.data.load import load_samples
from egoadapt.inputs.context import ContextPlan, PromptLength, plan_context, prompt_lengths
from egoadapt.rollout.context import vllm_kwargs
from tests.inputs.test_context import BUDGET, processor, synth_samples
from tests.train.helpers import train

LONG = 91  # frames of the longest EgoCross test-bed clip


def plan_of(tokens=5000, completion=64, positions=128000):
    return ContextPlan(PromptLength("7", "close", tokens, tokens - 100, LONG, "/data/f0.jpg"), completion, positions, 10)


def test_vllm_kwargs_from_the_plan_under_the_users(tiny_model_dir):
    proc = processor(tiny_model_dir, 3136, 200704)
    kw = vllm_kwargs(plan_of(), proc)
    assert kw["max_model_len"] == 5064 and kw["max_num_batched_tokens"] >= 5064
    assert kw["mm_processor_kwargs"] == {"min_pixels": 3136, "max_pixels": 200704}
    assert vllm_kwargs(plan_of(tokens=127990), proc)["max_model_len"] == 128000  # capped at the positions
    assert vllm_kwargs(plan_of(), proc, {"max_model_len": 9000, "max_num_batched_tokens": 512}) == {
        "max_model_len": 9000, "max_num_batched_tokens": 512, "mm_processor_kwargs": kw["mm_processor_kwargs"]}
    with pytest.raises(DataError, match=r"/data/f0.jpg: record 7: .*rollout.engine_kwargs.max_model_len=4096 "
                                        r"cannot hold this clip's prompt of 5000 tokens"):
        vllm_kwargs(plan_of(), proc, {"max_model_len": 4096}, "rollout.engine_kwargs")


def short_positions_model(tiny_model_dir, tmp_path, positions):
    """The tiny model with fewer positions (config.json edited): a prompt longer than them."""
    folder = tmp_path / "short"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["max_position_embeddings"] = positions
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_prompt_over_the_models_positions_is_refused_before_it_loads(tiny_model_dir, synth_dir, tmp_path,
                                                                       capsys, monkeypatch):
    """Train and eval stop before the model loads, naming the clip (id, file) and its tokens."""
    import egoadapt.models.loading as loading

    model = short_positions_model(tiny_model_dir, tmp_path, 150)
    samples = synth_samples(synth_dir)
    proc = processor(model)
    longest = max(prompt_lengths(samples, proc, None, None, ("close",)), key=lambda p: p.tokens)
    assert longest.tokens >= 150
    with pytest.raises(DataError, match=rf"record {longest.sample_id}: .*the prompt is {longest.tokens} tokens"):
        plan_context(samples, proc, None, None, ("close",), 8, str(model))

    def no_load(*a, **k):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(loading, "load_model", no_load)
    with pytest.raises(SystemExit) as e:
        train("demo/tiny_grpo", model, synth_dir, tmp_path / "grpo", "trainer.max_steps=1")
    msg = str(e.value)
    assert "egoadapt train:" in msg and "record " in msg and "frame_" in msg and "tokens" in msg
    assert "the model holds 150 positions" in msg
    assert cli(["eval", f"checkpoint={model}", "data=synthetic", f"data.root={synth_dir}", f"out={tmp_path / 'ev'}",
                "progress=false", "qa=close", "backend=hf", f"cache_dir={tmp_path / 'cache'}"]) == 2
    err = capsys.readouterr().err
    assert f"record {longest.sample_id}: field 'video_path': the prompt is {longest.tokens} tokens" in err
    assert longest.file in err


@pytest.fixture(scope="module")
def long_data(synth_dir, tmp_path_factory):
    """The synthetic set with its first 4 questions on 91-frame clips (their 8 frames cycled), and
    a manifest that trains on 2 of them and tests on a third."""
    out = tmp_path_factory.mktemp("long")
    records = json.loads((synth_dir / "annotations.json").read_text())
    for rec in records[:4]:
        rec["video_path"] = [rec["video_path"][k % len(rec["video_path"])] for k in range(LONG)]
    (out / "annotations.json").write_text(json.dumps(records))
    shutil.copy(synth_dir / "answers.json", out / "answers.json")
    ids = [str(r["id"]) for r in records[:4]]
    (out / "split.json").write_text(json.dumps({"protocol": "paper_70_30", "train": ids[:2], "test": ids[2:3]}))
    return out


@pytest.mark.integration
def test_long_clips_through_colocated_grpo_and_vllm_eval(tiny_model_dir, synth_dir, long_data, tmp_path):
    """91 frames at a budget of 100 tokens per 2 frames: prompts over 4096 tokens, which the old
    fixed max_model_len=4096 refused ("The decoder prompt ... is longer than the maximum model length")."""
    budget = (f"model.min_pixels={BUDGET}", f"model.max_pixels={BUDGET}")
    samples = load_samples({"format": "egocross", "annotations": str(long_data / "annotations.json"),
                            "answers": str(synth_dir / "answers.json"), "root": str(synth_dir)})[:4]
    lengths = prompt_lengths(samples, processor(tiny_model_dir, BUDGET, BUDGET), None, None)
    assert min(p.tokens for p in lengths) > 4096 and {p.frames for p in lengths} == {LONG + 1}

    out = train("demo/tiny_grpo", tiny_model_dir, synth_dir, tmp_path / "grpo", "rollout=vllm_colocate",
                f"data.annotations={long_data / 'annotations.json'}", f"split.manifest={long_data / 'split.json'}",
                *budget, "trainer.max_steps=2", "trainer.per_device_train_batch_size=2", "trainer.num_generations=2",
                "trainer.max_completion_length=4", "trainer.save_steps=100",
                "model.freeze_vision=true")  # the context is the point here, not vision gradients (a third of the time)
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2

    ev = tmp_path / "ev"
    assert cli(["eval", f"checkpoint={tiny_model_dir}", "data=synthetic", f"data.root={synth_dir}",
                f"data.annotations={long_data / 'annotations.json'}", f"split.manifest={long_data / 'split.json'}",
                f"out={ev}", "backend=vllm", "qa=close", "generation.max_new_tokens=4", "progress=false",
                f"cache_dir={tmp_path / 'cache'}", "bootstrap.resamples=10", *budget]) == 0
    preds = [json.loads(x) for x in (ev / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 1 and all(p["backend"] == "vllm" and not p.get("skipped") for p in preds)


@pytest.mark.server
def test_a_server_too_short_for_the_longest_prompt_is_refused(vllm_server):
    """The served max_model_len (from /v1/models) must hold the longest prompt; the message says
    which VLLM_MAX_MODEL_LEN to restart launch/vllm_server.sh with."""
    from egoadapt.rollout.context import check_server_context

    served = check_server_context(vllm_server.base_url, vllm_server.served_model_name, plan_of(tokens=100))
    assert served == vllm_server.max_model_len
    with pytest.raises(DataError, match=rf"record 7: .*the prompt is {served + 10} tokens and the vLLM server at "
                                        rf".* holds {served} \(max_model_len\): restart it with "
                                        rf"VLLM_MAX_MODEL_LEN={served + 74} launch/vllm_server.sh"):
        check_server_context(vllm_server.base_url, vllm_server.served_model_name, plan_of(tokens=served + 10))
