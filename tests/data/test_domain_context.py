"""Domain-context prompting: a per-domain line in the prompt, off by default, for that domain only."""
from __future__ import annotations

from omegaconf import OmegaConf

from egoadapt.cli import compose
from egoadapt.data.prompts import asked_text, build_messages, default_prompt_cfg, prompt_text, unknown_context_domains
from egoadapt.data.schema import FrameSource, Sample

SURGERY = "The video is filmed by a surgeon during an operation."


def sample(domain: str = "surgery") -> Sample:
    return Sample(id="7", question="Which instrument is used first?", options=("grasper", "hook", "clipper", "scissors"),
                  dataset="CholecTrack20", domain=domain, category="Identification", question_type="tool recognition",
                  original_fps=25.0, frame_source=FrameSource(frames=("a.jpg",), fps=0.5))


def with_context(**contexts) -> OmegaConf:
    cfg = OmegaConf.create(OmegaConf.to_container(default_prompt_cfg()))
    cfg.domain_context.update(contexts)
    return cfg


def test_off_by_default_and_no_empty_line():
    plain = prompt_text(sample(), "closeqa")
    assert plain.splitlines()[0].startswith("The video was originally recorded at 25 fps")
    assert "\n\n" not in plain


def test_the_context_line_comes_first_for_its_domain_only():
    cfg = with_context(surgery=SURGERY)
    for qa in ("closeqa", "openqa"):
        text = prompt_text(sample(), qa, cfg)
        assert text.splitlines()[0] == SURGERY
        assert text.splitlines()[1:] == prompt_text(sample(), qa).splitlines()  # the rest unchanged
        assert prompt_text(sample("industry"), qa, cfg) == prompt_text(sample("industry"), qa)


def test_official_wording_takes_it_as_its_first_line():
    official = compose("eval", ["protocol=official"]).prompt
    plain = prompt_text(sample(), "closeqa", official)
    official.domain_context.surgery = SURGERY
    assert prompt_text(sample(), "closeqa", official) == SURGERY + "\n" + plain
    assert plain.startswith("Please carefully read the question") and plain.endswith("}\n")
    assert "The original FPS of the video is 25.0. This image set is obtained by sampling at 0.5 fps." in plain


def test_a_misspelt_domain_is_found():
    cfg = with_context(surgical=SURGERY, industry="")
    assert unknown_context_domains(cfg, {"surgery", "industry"}) == ["surgical"]
    assert unknown_context_domains(with_context(surgery=SURGERY), {"surgery"}) == []


def test_asked_text_is_the_user_text_and_the_system_text():
    assert asked_text(build_messages(sample(), "closeqa")) == {"prompt": prompt_text(sample(), "closeqa")}
    cfg = with_context()
    cfg.system = "You are a careful assistant."
    assert asked_text(build_messages(sample(), "openqa", cfg)) == {"system": "You are a careful assistant.",
                                                                  "prompt": prompt_text(sample(), "openqa", cfg)}
