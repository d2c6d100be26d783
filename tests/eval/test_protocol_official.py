"""`protocol=official` feeds the model what the official EgoCross scripts feed it, on the 957
real test-bed records: the prompt text (and the chat-templated text), the number of frames
and the processor's video grid, each against the official recipe computed here from its rules
(MyUniverse0726/EgoCross @ 3d886f3, eval_os_closedset.py and eval_gpt_openset.py):

- CloseQA / OpenQA prompt: the scripts' string concatenation, with `original_video_fps` and the
  sampling fps (1.0 for CholecTrack20 `.png` frames, else 0.5) written by Python's str();
- frames: every frame of the list, padded with the last one to an even count (qwen-vl-utils);
- grid: each frame resized by qwen-vl-utils' smart_resize (factor 28, 4*28*28 .. 480*360
  pixels), then by the processor's (256*28*28 .. 1280*28*28); grid = (T/2, H/14, W/14);
- time axis: the processor told the script's --fps, 0.5, for every clip: second_per_grid_ts 2/0.5.

Real frames are gated, so frames of the source datasets' video sizes are fabricated (the release
does not state them: these sizes are assumptions, chosen to take both resize branches).
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import pytest
from PIL import Image

from egoadapt.cli import compose
from egoadapt.data.frames import clip_geometry
from egoadapt.data.load import load_samples
from egoadapt.data.prompts import build_messages

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "egocross" / "egocross_testbed_imgs.json"
SIZES = {"CholecTrack20": (854, 480), "EgoSurgery": (1920, 1080), "ENIGMA": (1280, 720),
         "ExtrameSportFPV": (1920, 1080), "EgoPet": (480, 360)}  # (w, h), assumed


# ------------------------------------------------------------------ the official recipe, from its rules

def official_fps(record: dict) -> float:
    png = os.path.splitext(record["video_path"][0])[1].lower() == ".png"
    return 1.0 if record["dataset"] == "CholecTrack20" and png else 0.5


def official_closeqa(r: dict) -> str:
    options = "\n\nOptions:\n" + "\n".join(r["options"])
    return ("Please carefully read the question and its options, then select the most appropriate answer. "
            f"Question: {r['question_text']}{options}"
            f"The original FPS of the video is {r['original_video_fps']}. This image set is obtained by sampling "
            f"at {official_fps(r)} fps."
            "Respond in JSON format with two fields: 'prediction' (the correct option letter: A, B, C, or D) and "
            "'reason' (a brief explanation of your choice). Do not include any other content.\n\n"
            "Example response:\n{\n    \"prediction\": \"B\",\n    \"reason\": \"Paris is the capital city of "
            "France.\"\n}\n")


def official_openqa(r: dict) -> str:
    return ("Please carefully read the question and the provided context, then provide a clear and concise answer "
            f"based on your understanding. Question: {r['question_text']}\n"
            f"The original FPS of the video is {r['original_video_fps']}. This image set is obtained by sampling "
            f"at {official_fps(r)} fps."
            "Your answer should be reasoned and directly address the question. Respond in JSON format with two "
            "fields: 'prediction' (your answer as text) and 'reason' (a brief explanation of your reasoning). "
            "Do not include any other content.\n\nExample response:\n{\n    \"prediction\": \"The time duration "
            "of the video is 10 seconds.\",\n    \"reason\": \"The total number of frames is 240 and the frame rate "
            "is 24 FPS, so 240 / 24 = 10 seconds.\"\n}\n")


def chat(text: str) -> str:
    """Qwen2.5-VL's chat template on [video, text] with no system message (it adds its default)."""
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            f"<|vision_start|><|video_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n")


def smart_resize(h: int, w: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    h_bar, w_bar = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        h_bar, w_bar = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        h_bar, w_bar = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return h_bar, w_bar


def official_frames(r: dict) -> int:
    return len(r["video_path"]) + len(r["video_path"]) % 2


def official_grid(r: dict) -> tuple[int, int, int]:
    w, h = SIZES[r["dataset"]]
    h, w = smart_resize(h, w, 4 * 28 * 28, 480 * 360)  # qwen-vl-utils fetch_image, max_pixels=480*360
    h, w = smart_resize(h, w, 256 * 28 * 28, 1280 * 28 * 28)  # the processor: --min_pixels, --max_model_pixels
    return official_frames(r) // 2, h // 14, w // 14


# ------------------------------------------------------------------ egoadapt's side

@pytest.fixture(scope="module")
def records():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def testbed(records, tmp_path_factory):
    """The test bed's frame files under a data root: one image per (size, format), hard-linked."""
    root = tmp_path_factory.mktemp("egocross")
    made: dict[tuple, Path] = {}
    for r in records:
        for path in r["video_path"]:
            ext = os.path.splitext(path)[1].lower()
            key = (SIZES[r["dataset"]], ext)
            if key not in made:
                made[key] = root / f"frame_{key[0][0]}x{key[0][1]}{ext}"
                Image.new("RGB", key[0], (90, 120, 60)).save(made[key])
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(made[key], dest)
    return root


@pytest.fixture(scope="module")
def cfg(tiny_model_dir, testbed, tmp_path_factory):
    return compose("eval", ["protocol=official", f"checkpoint={tiny_model_dir}", f"data.annotations={FIXTURE}",
                            f"data.root={testbed}", f"out={tmp_path_factory.mktemp('out')}", "cache_dir=null"])


def test_the_preset(cfg):
    assert cfg.prompt.name == "official" and cfg.frames.resize == "qwen_vl_utils" and cfg.frames.processor_fps == 0.5
    assert (cfg.frames.max_pixels, cfg.model.min_pixels, cfg.model.max_pixels) == (480 * 360, 256 * 784, 1280 * 784)
    assert cfg.generation.max_new_tokens == 2048 and cfg.generation.temperature == 0  # greedy


def test_prompts_and_frame_counts_on_the_957_records(cfg, records):
    samples = {s.id: s for s in load_samples(cfg.data)}
    assert len(samples) == len(records) == 957
    for r in records:
        sample = samples[str(r["id"])]
        geometry = clip_geometry(sample, cfg.frames)
        assert geometry.num_frames == official_frames(r), r["id"]
        for qa, official in (("closeqa", official_closeqa), ("openqa", official_openqa)):
            messages = build_messages(sample, qa, cfg.prompt, sampling_fps=geometry.fps)
            assert messages[0]["role"] == "user" and messages[0]["content"][0] == {"type": "video"}
            assert messages[0]["content"][1]["text"] == official(r), (r["id"], qa)


def test_video_grid_and_chat_text_through_the_eval_path(cfg, records):
    """The processor's grid on the clip egoadapt's eval loads equals the official grid, and the
    chat-templated text the official one: for the shortest, the longest and an odd-length clip of
    each source (size and format). With the frame counts above (all 957), this covers every record:
    the grid is (T/2, H/14, W/14) with H, W fixed per size."""
    from egoadapt.inputs.video import VideoInputs
    from egoadapt.models.loading import load_processor

    processor = load_processor(cfg.model)
    video = VideoInputs(load_samples(cfg.data), processor, cfg.frames, cfg.prompt)
    by_source: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        by_source[(r["dataset"], os.path.splitext(r["video_path"][0])[1])].append(r)
    chosen = []
    for members in by_source.values():
        members = sorted(members, key=lambda r: len(r["video_path"]))
        chosen += [members[0], members[-1], next(r for r in members if len(r["video_path"]) % 2)]
    grids = set()
    for r in chosen:
        vision = video.vision(str(r["id"]))
        grid = tuple(int(x) for x in vision["video_grid_thw"].reshape(-1))
        assert grid == official_grid(r), (r["id"], grid, official_grid(r))
        assert float(vision["fps"]) == official_fps(r)  # the rate the prompt states
        assert vision["second_per_grid_ts"].reshape(-1).tolist() == [2 / 0.5]  # the rate the processor is told
        grids.add(grid[1:])
        for qa, official in (("closeqa", official_closeqa), ("openqa", official_openqa)):
            assert video.prompt_text(video.messages(str(r["id"]), qa)) == chat(official(r))
    assert {len(r["video_path"]) for r in chosen} >= {1, 91}  # a padded single frame, the longest clip
    assert len(grids) == 2  # 16:9 frames shrunk to the cap; 4:3 ones under it, rounded, then grown to min_pixels


def test_judge_prompt_is_the_official_one(cfg):
    """The judge template renders as eval_gpt_openset.py's evaluate_answer_with_detail fills its own."""
    from egoadapt.rewards.judge import JudgeRequest, render_prompt

    official = (
        "\n        You are an intelligent chatbot designed for evaluating the correctness of AI assistant predictions "
        "for question-answer pairs. Your task is to compare the predicted answer with the ground-truth and "
        "determine if the predicted answer is correct or not. Here's how you can accomplish the task: \n"
        "        ##INSTRUCTIONS: \n"
        "        - Focus on the factual accuracy and semantic equivalence of the predicted answer with the "
        "ground-truth. \n"
        "        - Consider uncertain predictions, such as 'it is impossible to answer the question from the video', "
        "as incorrect, unless the ground truth answer also says that.\n"
        "        Please evaluate the following video-based question-answer pair: \n"
        "        Question: {question} \n        Correct ground truth: {answer} \n"
        "        Detailed ground truth: {detailed_answer}\n        Predicted Answer: {pred} \n"
        "        Provide your evaluation as a correct/incorrect prediction along with the score where the score is an "
        "integer value between 0 (fully wrong) and 5 (fully correct). The middle score provides the percentage of "
        "correctness. Please generate the response in the form of a json object with the following fields:\n"
        "        ```\n        {\n            \"mark\": 4,  # The score of the prediction\n"
        "            \"reason\": \"\",  # The reason for the score\n        }\n        ```\n    ")
    q, a, d, p = "How many tools?", "3", "Three tools: grasper, hook, clipper.", "two {answer}"
    want = official.replace("{question}", q).replace("{answer}", a).replace("{pred}", p).replace("{detailed_answer}", d)
    assert render_prompt(cfg.judge.prompt, JudgeRequest(q, a, d, p)) == want.replace("two 3", "two {answer}")
    assert (cfg.judge.temperature, cfg.judge.top_p, cfg.judge.max_tokens) == (0.01, 0.9, 512)


@pytest.mark.integration
def test_eval_protocol_official_as_a_user_runs_it(tiny_model_dir, testbed, records, tmp_path, capsys):
    """`egoadapt eval ... protocol=official` on test-bed records (questions only: unscored): the
    predictions record the official prompts, results.json the official prompt's identity."""
    from egoadapt import cli

    out = tmp_path / "official"
    assert cli.main(["eval", f"checkpoint={tiny_model_dir}", "protocol=official", f"data.annotations={FIXTURE}",
                     f"data.root={testbed}", f"out={out}", "limit=3", "generation.max_new_tokens=4", "progress=false",
                     "cache_dir=null"]) == 0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    by_id = {str(r["id"]): r for r in records}
    asked = {(p["id"], p["qa"]): p["prompt"] for p in preds}
    assert asked == {(i, qa): (official_closeqa if qa == "close" else official_openqa)(by_id[i])
                     for i in ("1", "2", "3") for qa in ("close", "open")}
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["prompt"]["name"] == "official" and results["counts"]["unscored"] == 6
    assert results["config"]["generation"]["temperature"] == 0


def test_a_rate_ablation_tells_the_processor_its_rate(cfg, records):
    """frames.fps=R (the sampling-rate ablation) takes every k-th frame and tells the processor R,
    as the official script's --fps R does; without it every clip is told 0.5."""
    from omegaconf import OmegaConf

    from egoadapt.data.frames import load_clip

    sample = next(s for s in load_samples(cfg.data) if s.frame_source.fps == 0.5 and len(s.frame_source.frames) == 8)
    assert load_clip(sample, cfg.frames).metadata()["fps"] == 0.5
    slower = OmegaConf.merge(cfg.frames, {"fps": 0.25})
    clip = load_clip(sample, slower)
    assert (clip.fps, clip.metadata()["fps"], clip.num_frames) == (0.25, 0.25, 4)
