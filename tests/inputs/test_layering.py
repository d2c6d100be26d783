"""The inputs layer sits below train/, rollout/ and eval/: it imports data/, models/, files and
configs, never the layers that use it (nor the CLI), at module level or inside a function."""
from __future__ import annotations

import ast
from pathlib import Path

import egoadapt.inputs

ABOVE = ("egoadapt.train", "egoadapt.rollout", "egoadapt.eval", "egoadapt.cli")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_inputs_imports_nothing_above_it():
    files = sorted(Path(egoadapt.inputs.__file__).parent.rglob("*.py"))
    assert len(files) >= 8  # the layer and its families
    bad = {f"{f.name}: {m}" for f in files for m in imported(f) if m.startswith(ABOVE)}
    assert not bad, bad
