"""Synthetic EgoCross: procedurally rendered first-person clips whose answers are in the pixels.

`egoadapt data synth out=DIR seed=N` writes, under DIR:

- `annotations.json`  test-bed records (the release's fields, plus `domain` and
                      `sampling_fps`, which real records leave to the loader's config);
- `answers.json`      `{id, question_id, correct_option_letter, answer_text, detailed_answer}`;
- `egocross_synth/<Dataset>/<video>/frames/q<k>/frame_NNNNN.jpg`  the frames the
                      annotations name (absolute paths rooted at DIR, as in the release);
- `videos/<Dataset>/<video>.mp4` and `videos.jsonl`  the same clips as raw videos with
                      time spans, for the decord path;
- `synth.json`        the generation parameters.

Each source video is a run of clips of `clip_seconds`, one question per clip, all in
one domain's visual style; several questions share a source video, so splits must group
them. Four target domains (the test bed's) and a daily-life source domain (`daily_life`, only
when asked for: `domains=[daily_life]`) differ in wall/floor palette, texture, camera motion
and object set (so also in the option words of the identification questions).
Options are always listed in the same order and the correct index is balanced in
blocks of four per family, so letters are balanced and no text leaks the answer.
The frame layout (lighter wall on top, darker floor, light from one side) gives the
tiny model an absolute position cue, which it needs to learn spatial localization.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from egoadapt.data.mp4 import write_mp4
from egoadapt.data.schema import LETTERS
from egoadapt.files import write_atomic

REGIONS = ("top-left", "top-right", "bottom-left", "bottom-right")
COLORS = {  # prediction indicator colors, shared by all domains
    "red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 230), "yellow": (240, 220, 40),
}


@dataclass(frozen=True)
class Domain:
    dataset: str
    domain: str
    wall: tuple[int, int, int]
    floor: tuple[int, int, int]
    texture: str  # stripes | dots | checker | noise
    motion: str  # static | pan | shake | bob
    objects: tuple[tuple[str, str, tuple[int, int, int]], ...]  # (name, shape, color)
    light_from_left: bool


DOMAINS = (
    Domain("SynthSurgery", "surgery", (236, 196, 196), (120, 40, 50), "noise", "static",
           (("grasper", "cross", (200, 200, 210)), ("hook", "triangle", (90, 90, 100)),
            ("clipper", "bar", (240, 240, 120)), ("scissors", "diamond", (60, 160, 200))), True),
    Domain("SynthIndustry", "industry", (200, 200, 190), (95, 95, 85), "checker", "pan",
           (("wrench", "square", (230, 160, 30)), ("screwdriver", "bar", (200, 30, 30)),
            ("bolt", "circle", (60, 60, 200)), ("gear", "star", (15, 15, 15))), False),
    Domain("SynthSports", "extreme_sports", (170, 210, 250), (60, 120, 50), "stripes", "shake",
           (("rock", "circle", (110, 100, 90)), ("tree", "triangle", (0, 60, 0)),
            ("flag", "square", (250, 60, 60)), ("ramp", "diamond", (250, 250, 250))), True),
    Domain("SynthAnimal", "animal", (230, 220, 170), (130, 100, 60), "dots", "bob",
           (("ball", "ring", (250, 120, 0)), ("bowl", "square", (60, 60, 200)),
            ("stick", "bar", (50, 25, 10)), ("leaf", "diamond", (60, 170, 60))), False),
    # the source domain (the daily-life video a pretrained MLLM has seen, EgoSchema's role in the
    # paper): its own palette, texture, motion and objects, so each target domain is a real shift
    Domain("SynthDaily", "daily_life", (245, 238, 220), (150, 105, 70), "waves", "walk",
           (("cup", "circle", (240, 240, 240)), ("phone", "square", (25, 25, 30)),
            ("key", "cross", (230, 190, 30)), ("book", "bar", (40, 110, 210))), True),
)
TARGET_DOMAINS = ("surgery", "industry", "extreme_sports", "animal")
SOURCE_DOMAIN = "daily_life"

FAMILIES = (  # (primary category, question type, sub-task tag used in question_id)
    ("Identification", "held object identification", "held-object"),
    ("Counting", "object counting", "distinct-objects-counting"),
    ("Localization", "object spatial localization", "object-region-localization"),
    ("Prediction", "next state prediction", "next-signal-prediction"),
    ("Identification", "absent object identification", "absent-object"),
    ("Localization", "event temporal localization", "event-temporal-localization"),
)


# ----------------------------------------------------------------------------- drawing

def shape_mask(shape: str, size: int, cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx**2 + dy**2 <= r**2
    if shape == "ring":
        d2 = dx**2 + dy**2
        return (d2 <= r**2) & (d2 >= (0.55 * r) ** 2)
    if shape == "square":
        return (abs(dx) <= 0.8 * r) & (abs(dy) <= 0.8 * r)
    if shape == "diamond":
        return abs(dx) + abs(dy) <= r
    if shape == "triangle":
        return (dy <= 0.8 * r) & (dy >= -r + 2 * abs(dx))
    if shape == "cross":
        return ((abs(dx) <= 0.3 * r) & (abs(dy) <= r)) | ((abs(dy) <= 0.3 * r) & (abs(dx) <= r))
    if shape == "bar":
        return (abs(dx) <= r) & (abs(dy) <= 0.3 * r)
    if shape == "star":
        return ((abs(dx) <= 0.25 * r) & (abs(dy) <= r)) | ((abs(dy) <= 0.25 * r) & (abs(dx) <= r)) \
            | ((abs(dx - dy) <= 0.35 * r) & (abs(dx + dy) <= 1.4 * r)) \
            | ((abs(dx + dy) <= 0.35 * r) & (abs(dx - dy) <= 1.4 * r))
    raise ValueError(f"unknown shape {shape!r}")


def camera_offset(motion: str, t: float) -> tuple[float, float]:
    if motion == "pan":
        return 6.0 * t, 0.0
    if motion == "shake":
        return 3.0 * math.sin(7.1 * t) + 2.0 * math.sin(2.3 * t), 3.0 * math.cos(5.3 * t)
    if motion == "bob":
        return 0.0, 4.0 * abs(math.sin(3.0 * t))
    if motion == "walk":
        return 2.0 * math.sin(1.5 * t), 2.5 * abs(math.sin(4.0 * t))
    return 0.0, 0.0


def background(dom: Domain, size: int, t: float, noise: np.ndarray) -> np.ndarray:
    """Wall on top, floor below, light from one side; the texture moves with the camera."""
    ox, oy = camera_offset(dom.motion, t)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    horizon = size * 0.45 + oy * 0.5
    img = np.where((yy < horizon)[..., None], np.array(dom.wall, np.float32), np.array(dom.floor, np.float32))
    light = (1.0 - xx / size) if dom.light_from_left else (xx / size)
    img = img * (0.8 + 0.3 * light)[..., None]
    u, v = xx + ox, yy + oy
    if dom.texture == "stripes":
        tex = (np.floor(u / 4) % 2) * 2 - 1
    elif dom.texture == "checker":
        tex = ((np.floor(u / 6) + np.floor(v / 6)) % 2) * 2 - 1
    elif dom.texture == "dots":
        tex = ((u % 8 - 4) ** 2 + (v % 8 - 4) ** 2 < 3).astype(np.float32) * 2 - 1
    elif dom.texture == "waves":
        tex = np.sin(u / 3.0 + np.sin(v / 5.0) * 2.0)
    else:
        n = noise.shape[0]
        tex = noise[(v.astype(int)) % n, (u.astype(int)) % n]
    return img + 12.0 * tex[..., None]


def paint(img: np.ndarray, mask: np.ndarray, color) -> None:
    img[mask] = color


# ----------------------------------------------------------------------------- clips

@dataclass
class Clip:
    """One question's clip: what is drawn when, and the question about it."""

    family: int
    question: str
    options: tuple[str, ...]
    answer: int
    detail: str
    placed: list  # (name, shape, color, cx, cy, r, t_from, t_to)
    held: tuple | None = None  # (shape, color) drawn in the hand
    signal: tuple[int, float, int] | None = None  # (start color index, seconds per color, +1 or -1)


def make_clip(dom: Domain, family: int, answer: int, size: int, seconds: float, rng: np.random.Generator) -> Clip:
    names = [o[0] for o in dom.objects]
    category, qtype, _ = FAMILIES[family]
    r = size * 0.09

    def spot(region: int | None = None):
        # spread objects over the view; with a region, stay inside that quadrant
        if region is None:
            return rng.uniform(0.15, 0.85) * size, rng.uniform(0.12, 0.62) * size
        col, row = region % 2, region // 2
        return ((0.27 + 0.46 * col + rng.uniform(-0.06, 0.06)) * size,
                (0.25 + 0.45 * row + rng.uniform(-0.06, 0.06)) * size)

    if qtype == "held object identification":
        name, shape, color = dom.objects[answer]
        placed = []
        if rng.random() < 0.5:  # a distractor lying in the scene, never the held one
            d = dom.objects[int(rng.choice([i for i in range(4) if i != answer]))]
            placed.append((*d, *spot(int(rng.integers(0, 2))), r * 0.8, 0.0, seconds))
        return Clip(family, "Which object is the camera wearer holding throughout the clip?",
                    tuple(names), answer, f"The camera wearer holds the {name} in the lower center of the view.",
                    placed, held=(shape, color))
    if qtype == "absent object identification":
        regions = rng.permutation(4)
        placed = [(*o, *spot(int(regions[i])), r, 0.0, seconds) for i, o in enumerate(dom.objects) if i != answer]
        return Clip(family, "Which of these objects never appears in the clip?", tuple(names), answer,
                    f"The {names[answer]} is never visible; the other three objects are.", placed)
    if qtype == "object counting":
        k = answer + 1
        kinds = rng.permutation(4)[:k]
        placed = []
        for kind in kinds:
            for _ in range(int(rng.integers(1, 3))):  # one or two instances of each type
                t0 = float(rng.uniform(0, seconds * 0.5))
                placed.append((*dom.objects[int(kind)], *spot(), r * 0.8, t0, seconds))
        return Clip(family, f"How many distinct types of objects were visible in the video segment "
                            f"from 0.00s to {seconds:.2f}s?", ("1", "2", "3", "4"), answer,
                    f"{k} distinct object types appear: " + ", ".join(names[int(i)] for i in sorted(kinds)) + ".",
                    placed)
    if qtype == "object spatial localization":
        target = int(rng.integers(0, 4))
        placed = [(*dom.objects[target], *spot(answer), r, 0.0, seconds)]
        t = float(rng.uniform(0.5, seconds - 0.5))
        return Clip(family, f"Approximately in which region of the view was the '{names[target]}' located "
                            f"around timestamp {t:.2f}s?", REGIONS, answer,
                    f"The {names[target]} stays in the {REGIONS[answer]} region of the view.", placed)
    if qtype == "event temporal localization":
        target = int(rng.integers(0, 4))
        q = seconds / 4
        spans = tuple(f"{i * q:.1f}s to {(i + 1) * q:.1f}s" for i in range(4))
        placed = [(*dom.objects[target], *spot(), r * 1.2, answer * q, (answer + 1) * q)]
        return Clip(family, f"During which interval of the clip was the '{names[target]}' visible?", spans, answer,
                    f"The {names[target]} is visible only from {spans[answer]}.", placed)
    if qtype == "next state prediction":
        # the light steps through red, green, blue, yellow forwards or backwards (per clip), 3-5
        # colors per clip, and ends on the color before the answer: the last frame alone does not
        # tell the answer (with one direction it did: every model scored 100%), the order does
        changes = int(rng.integers(3, 6))
        step = 1 if rng.random() < 0.5 else -1
        per, start = seconds / changes, (answer - step * changes) % 4
        color_names = tuple(COLORS)
        order = color_names if step == 1 else color_names[::-1]
        return Clip(family, "The signal light cycles through its colors in a fixed order. "
                            "Which color will it show next, right after the clip ends?",
                    color_names, answer,
                    f"The light cycles {', '.join(order)}; it ends on {color_names[(answer - step) % 4]}, "
                    f"so {color_names[answer]} comes next.", [], signal=(start, per, step))
    raise AssertionError(qtype)


def render(dom: Domain, clip: Clip, size: int, t: float, noise: np.ndarray, blank: bool = False) -> np.ndarray:
    if blank:  # the shortcut check's frames: the question and options alone must not tell the answer
        return np.full((size, size, 3), 128, np.uint8)
    img = background(dom, size, t, noise)
    for _name, shape, color, cx, cy, r, t0, t1 in clip.placed:
        if t0 <= t < t1 + 1e-6:
            paint(img, shape_mask(shape, size, cx, cy, r), color)
    if clip.held:
        shape, color = clip.held
        hand = shape_mask("circle", size, size * 0.5, size * 0.95, size * 0.16)
        paint(img, hand, (225, 180, 150))
        paint(img, shape_mask(shape, size, size * 0.5, size * 0.78, size * 0.15), color)
    if clip.signal:
        start, per, step = clip.signal
        idx = (start + step * int(t // per)) % 4
        paint(img, shape_mask("circle", size, size * 0.5, size * 0.12, size * 0.09), tuple(COLORS.values())[idx])
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- writing

@dataclass
class SynthConfig:
    out: str
    seed: int = 0
    videos_per_domain: int = 4
    questions_per_video: int = 6
    size: int = 56
    clip_seconds: float = 4.0
    sampling_fps: float = 2.0
    video_fps: float = 8.0
    jpeg_quality: int = 95
    write_videos: bool = True
    domains: tuple[str, ...] = TARGET_DOMAINS
    blank_frames: bool = False  # every frame mid-grey (a blind model's view, for shortcut checks)


def generate(cfg: SynthConfig, progress: bool = True) -> Path:
    from tqdm import tqdm

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    noise = rng.uniform(-1, 1, (64, 64)).astype(np.float32)
    domains = [d for d in DOMAINS if d.domain in cfg.domains]
    if not domains:
        raise ValueError(f"synth: no known domain in {list(cfg.domains)}; known: {[d.domain for d in DOMAINS]}")
    if abs(cfg.video_fps / cfg.sampling_fps - round(cfg.video_fps / cfg.sampling_fps)) > 1e-9:
        raise ValueError("synth: video_fps must be a multiple of sampling_fps")
    step = round(cfg.video_fps / cfg.sampling_fps)
    n_frames = round(cfg.clip_seconds * cfg.sampling_fps)
    records, answers, video_rows = [], [], []
    answer_blocks: dict[tuple[str, int], list[int]] = {}  # per (domain, family): balanced letters
    total = len(domains) * cfg.videos_per_domain * cfg.questions_per_video
    bar = tqdm(total=total, desc="synth", unit="q", disable=not progress)
    qid = 0
    for dom in domains:
        for v in range(cfg.videos_per_domain):
            video = f"V{v:03d}"
            clips = []
            for k in range(cfg.questions_per_video):
                family = (v * cfg.questions_per_video + k) % len(FAMILIES)
                block = answer_blocks.setdefault((dom.domain, family), [])
                if not block:
                    block.extend(int(i) for i in rng.permutation(4))
                clips.append(make_clip(dom, family, block.pop(), cfg.size, cfg.clip_seconds, rng))
            frames_per_clip = round(cfg.clip_seconds * cfg.video_fps)
            movie = []
            for k, clip in enumerate(clips):
                qid += 1
                rel = f"egocross_synth/{dom.dataset}/{video}/frames/q{k + 1}"
                (out / rel).mkdir(parents=True, exist_ok=True)
                paths = []
                for f in range(frames_per_clip):
                    sampled = f % step == 0 and f // step < n_frames
                    if not (sampled or cfg.write_videos):
                        continue  # only the mp4 shows the frames between samples
                    img = render(dom, clip, cfg.size, f / cfg.video_fps, noise, cfg.blank_frames)
                    movie.append(img)
                    if sampled:
                        name = f"{rel}/frame_{f // step:05d}.jpg"
                        Image.fromarray(img).save(out / name, quality=cfg.jpeg_quality)
                        paths.append("/" + name)
                category, qtype, tag = FAMILIES[clip.family]
                question_id = f"{dom.dataset}_{video}_q{k + 1}_{tag}"
                options = [f"{LETTERS[i]}: {o}" for i, o in enumerate(clip.options)]
                records.append({
                    "id": qid, "dataset": dom.dataset, "primary_category": category, "question_type": qtype,
                    "question_text": clip.question, "options": options, "original_video_fps": cfg.video_fps,
                    "video_path": paths, "domain": dom.domain, "sampling_fps": cfg.sampling_fps,
                })
                answers.append({
                    "id": qid, "question_id": question_id, "correct_option_letter": LETTERS[clip.answer],
                    "answer_text": clip.options[clip.answer], "detailed_answer": clip.detail,
                })
                video_rows.append({
                    "id": qid, "question_id": question_id, "video": f"videos/{dom.dataset}/{video}.mp4",
                    "start": k * cfg.clip_seconds, "end": (k + 1) * cfg.clip_seconds, "fps": cfg.sampling_fps,
                    "question": clip.question, "options": list(clip.options), "answer": LETTERS[clip.answer],
                    "answer_text": clip.options[clip.answer], "detailed_answer": clip.detail,
                    "domain": dom.domain, "dataset": dom.dataset, "task": category, "question_type": qtype,
                })
                bar.update()
            if cfg.write_videos:
                write_mp4(out / f"videos/{dom.dataset}/{video}.mp4", movie, cfg.video_fps)
    bar.close()
    write_json(out / "annotations.json", records)
    write_json(out / "answers.json", answers)
    write_atomic(out / "videos.jsonl", "".join(json.dumps(r) + "\n" for r in video_rows))
    write_json(out / "synth.json", {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()})
    return out


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def vocabulary_corpus() -> list[str]:
    """Every word the synthetic questions, options and answers use (for the tiny tokenizer)."""
    words = [*REGIONS, *COLORS, *(o[0] for d in DOMAINS for o in d.objects)]
    rng = np.random.default_rng(0)
    texts = []
    for dom in DOMAINS:
        for family in range(len(FAMILIES)):
            for answer in range(4):
                clip = make_clip(dom, family, answer, 56, 4.0, rng)
                texts += [clip.question, clip.detail, " ".join(clip.options)]
    return texts + words


def main(cfg: DictConfig) -> int:
    params = OmegaConf.to_container(cfg, resolve=True)
    params["domains"] = tuple(params.get("domains") or SynthConfig.domains)
    out = generate(SynthConfig(**params))
    n = len(json.loads((out / "annotations.json").read_text()))
    print(f"wrote {n} questions to {out}")
    return 0
