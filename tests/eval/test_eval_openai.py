"""`egoadapt eval backend=openai`: the evaluated model behind an OpenAI-compatible chat endpoint,
run as a user runs it against a real vLLM server serving the tiny Qwen2.5-VL on 127.0.0.1.

What the server saw is checked through its own token count: with the frames sent as images
(one image_url per frame) or as one mp4 video_url, the prompt vLLM built has exactly as many
tokens as the transformers processor gives for the same messages with those frames as images,
or as a video at the clip's fps. Failed requests: an endpoint that is down leaves every
question without a prediction (exit 4, counted and listed, the circuit breaker stops asking),
and rerunning the same command against a live endpoint asks exactly those questions again."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from egoadapt import cli
from tests.reliability.judge_fault_server import dead_url

KEY = "sk-test-never-on-disk-4711"


def jsonl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def openai_args(url: str, model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return ["eval", "backend=openai", f"openai.base_url={url}", f"openai.model={model}", "data=synthetic",
            f"data.root={data}", f"out={out}", "qa=close", "limit=3", "generation.max_new_tokens=8",
            "progress=false", "bootstrap.resamples=50", *extra]


def expected_prompt_tokens(model_dir: Path, data: Path, send: str, n: int) -> list[int]:
    """The transformers processor's token count for the first `n` CloseQA prompts, with the
    clip's frames as images or as one video (what vLLM must have seen)."""
    from PIL import Image

    from egoadapt.data.frames import load_clip
    from egoadapt.data.load import load_samples
    from egoadapt.data.prompts import build_messages
    from egoadapt.eval.run import config
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.models.loading import load_processor

    cfg = config(f"checkpoint={model_dir}", "data=synthetic", f"data.root={data}", "out=unused")
    samples = load_samples(cfg.data)[:n]
    processor = load_processor(cfg.model)
    if send == "video":
        video = VideoInputs(samples, processor, cfg.frames, cfg.prompt)
        return [len(video.prompt_ids(video.messages(s.id, "closeqa"), s.id)) for s in samples]
    counts = []
    for s in samples:
        clip = load_clip(s, cfg.frames)
        images = [Image.fromarray(f) for f in clip.frames[:clip.num_frames - clip.padded]]
        messages = build_messages(s, "closeqa", cfg.prompt, sampling_fps=clip.fps)
        user = messages[-1]
        user["content"] = [{"type": "image"} for _ in images] + [b for b in user["content"] if b["type"] == "text"]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        counts.append(len(processor(text=[text], images=images, return_tensors="pt")["input_ids"][0]))
    return counts


@pytest.mark.server
@pytest.mark.parametrize("send,extra", [
    ("images", []),
    ("video", ["++openai.extra_body={media_io_kwargs: {video: {num_frames: -1}}}"]),  # all frames (vLLM: 32 at most)
])
def test_eval_through_a_real_vllm_server(vllm_server, tiny_model_dir, synth_dir, tmp_path, monkeypatch, send, extra):
    monkeypatch.setenv("EGOADAPT_EVAL_API_KEY", KEY)  # a local vLLM takes any key: it must never reach disk
    out = tmp_path / send
    assert cli.main(openai_args(vllm_server.base_url, vllm_server.served_model_name, synth_dir, out,
                                f"openai.send={send}", *extra)) == 0

    preds = jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in preds] == ["1", "2", "3"] and {p["backend"] for p in preds} == {"openai"}
    assert all(0 < p["completion_tokens"] <= 8 and isinstance(p["output"], str) for p in preds)
    assert all("Question: " in p["prompt"] and "sampled at 2 fps" in p["prompt"] for p in preds)  # the text asked
    # the frames reached the model as asked: vLLM's prompt is the processor's, token for token
    assert [p["prompt_tokens"] for p in preds] == expected_prompt_tokens(tiny_model_dir, synth_dir, send, 3)

    res = json.loads((out / "results.json").read_text())
    assert res["config"]["backend"] == "openai" and res["config"]["checkpoint"] == vllm_server.served_model_name
    assert res["config"]["openai"]["send"] == send
    ident = json.loads((out / "generation.json").read_text())["openai"]  # the folder is bound to model and mode
    assert (ident["model"], ident["send"]) == (vllm_server.served_model_name, send) and "base_url" not in ident
    assert res["counts"]["predictions"] == res["counts"]["scored"] == 3 and not res["failed"]
    assert all(KEY not in p.read_text(errors="replace") for p in out.iterdir() if p.is_file())


@pytest.mark.server
def test_failed_requests_are_counted_never_fatal_and_asked_again(vllm_server, synth_dir, tmp_path, capsys):
    out = tmp_path / "ev"
    down = openai_args(dead_url(), vllm_server.served_model_name, synth_dir, out, "openai.concurrency=1",
                       "openai.retries=1", "openai.backoff_s=0.01", "openai.breaker_failures=2",
                       "openai.breaker_cooldown_s=600")
    assert cli.main(down) == 4  # results written, questions missing: rerun
    err = capsys.readouterr().err
    assert "3 requests failed, so 0 of 3 questions have a prediction" in err and "Run the same command again" in err
    assert not (out / "predictions.jsonl").read_text()  # nothing written: nothing taken as answered
    res = json.loads((out / "results.json").read_text())
    assert res["counts"]["failed"] == 3 and res["counts"]["predictions"] == 0
    reasons = [f["reason"] for f in res["failed"]]
    assert "gave up after 2 attempts" in reasons[0] and "ConnectError" in reasons[0]
    assert all("circuit open" in r for r in reasons[2:])  # the breaker stopped asking a dead endpoint

    # the endpoint is back (another URL: the folder is bound to the model, not to where it is served)
    up = openai_args(vllm_server.base_url, vllm_server.served_model_name, synth_dir, out, "batch_size=1",
                     "openai.concurrency=2")
    assert cli.main(up) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["timing"]["generated"] == 3 and res["timing"]["already_done"] == 0 and not res["failed"]
    preds = jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in preds] == ["1", "2", "3"]
    assert [p["batch_size"] for p in preds] == [2, 2, 1]  # a batch holds openai.concurrency requests in flight
    assert cli.main(up) == 0  # and a third run has nothing left to ask
    assert json.loads((out / "results.json").read_text())["timing"]["already_done"] == 3


def test_openai_backend_settings_are_checked_before_anything_runs(synth_dir, tmp_path, capsys):
    base = ["eval", "backend=openai", "data=synthetic", f"data.root={synth_dir}", "progress=false"]
    assert cli.main([*base, f"out={tmp_path / 'a'}", "openai.model=m"]) == 2
    assert "backend=openai needs openai.base_url" in capsys.readouterr().err
    assert cli.main([*base, f"out={tmp_path / 'b'}", "openai.model=m", "openai.base_url=127.0.0.1:8000"]) == 2
    assert "openai.base_url must be an http(s) URL" in capsys.readouterr().err
    assert cli.main([*base, f"out={tmp_path / 'c'}", "openai.model=m", "openai.base_url=http://x/v1",
                     "openai.send=gif"]) == 2
    assert "openai.send" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_frames_as_images_are_the_clips_frames_without_the_padding(synth_dir):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from egoadapt.data.chat_media import chat_messages, image_blocks
    from egoadapt.data.frames import load_clip
    from egoadapt.data.load import load_samples
    from egoadapt.data.prompts import build_messages

    sample = load_samples({"format": "jsonl", "annotations": str(synth_dir / "videos.jsonl")})[0]
    clip = load_clip(sample, {"fps": 0.75})  # 3 frames of the 4 s span, padded to 4 for Qwen's frame pairs
    assert (clip.num_frames, clip.padded) == (4, 1)
    blocks = image_blocks(clip, "png")
    assert len(blocks) == 3 and all(b["image_url"]["url"].startswith("data:image/png;base64,") for b in blocks)
    for block, frame in zip(blocks, clip.frames):
        png = base64.b64decode(block["image_url"]["url"].split(",", 1)[1])
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png)).convert("RGB")), frame)  # lossless, in order
    chat = chat_messages(build_messages(sample, "closeqa"), blocks)
    assert [m["role"] for m in chat] == ["user"] and chat[0]["content"][:3] == blocks
    assert chat[0]["content"][3]["type"] == "text" and sample.question in chat[0]["content"][3]["text"]


def test_reply_text_from_every_content_shape():
    from egoadapt.eval.openai_backend import message_text

    assert message_text("B") == "B" and message_text(None) == ""  # a refusal has no text: scored as no answer
    assert message_text([{"type": "text", "text": '{"prediction": '}, {"type": "image_url"},
                         {"type": "text", "text": '"B"}'}]) == '{"prediction": "B"}'
