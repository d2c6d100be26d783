"""egoadapt's import graph (read with ast, nothing imported): no cycle among modules, none among
packages, and each package imports only the layers below it (docs/architecture.md).

Every import counts: module level, inside functions (lazy), under TYPE_CHECKING. An edge goes to
the module the name lives in: `from egoadapt.data import load` is an import of egoadapt.data.load,
`from egoadapt.data.load import load_samples` one of egoadapt.data.load.
"""
from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "egoadapt"

# What each part of egoadapt may import besides itself: the layers, bottom up. A part is a
# subpackage (data, inputs, ...) or a top-level module (files, net, cli, ...).
BASE = {"configs", "files", "net"}  # where configs live, atomic files and folder locks, HTTP retries
ALLOWED: dict[str, set[str]] = {
    "egoadapt": set(), "conf": set(), "recipes": set(),  # package data
    "configs": set(), "files": set(), "net": set(),
    "data": BASE,                                          # records, frames, splits, caches
    "models": BASE | {"data"},                             # loading checkpoints, the tiny model
    "inputs": BASE | {"data", "models"},                   # sample -> prompt and model inputs
    "rewards": BASE | {"data"},                            # parse, match, judge, score
    "config": BASE | {"data", "rewards"},                  # config schemas (judge and reward groups are rewards')
    "tracking": BASE | {"config"},                         # wandb runs, result tables
    "rollout": BASE | {"data", "models", "inputs"},        # generation engines, weight sync, servers
    "train": BASE | {"data", "models", "inputs", "rewards", "config", "tracking", "rollout"},
    "eval": BASE | {"data", "models", "inputs", "rewards", "config", "tracking", "rollout"},  # never train, cli
    "publish": BASE | {"data", "eval", "tracking"},
    "cli": BASE | {"config", "train"},                     # commands are named by string, loaded on use
    "demo": BASE | {"data", "cli"},                        # the study runs commands as a user would
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the egoadapt modules it imports."""
    mods = modules()

    def owner(name: str) -> str | None:  # the module a dotted name lives in
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        here = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module or ""
                targets = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] == "egoadapt" and (to := owner(target)) and to != mod:
                    graph[mod].add(to)
    return graph


def part(module: str) -> str:
    """egoadapt.data.load -> data; egoadapt.cli -> cli; egoadapt -> egoadapt."""
    return module.split(".")[1] if "." in module else module


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    parts: dict[str, set[str]] = {part(m): set() for m in graph}
    for mod, targets in graph.items():
        parts[part(mod)] |= {part(t) for t in targets} - {part(mod)}
    return parts


def edges(graph: dict[str, set[str]], a: str, b: str) -> Iterable[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts if part(m) == a and part(t) == b)


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert len(graph) > 50 and sum(map(len, graph.values())) > 100  # the parser found the package
    found = cycle(graph)
    assert found is None, "import cycle among modules: " + " -> ".join(found)


def test_no_package_cycle():
    graph = import_graph()
    found = cycle(package_graph(graph))
    if found is not None:
        steps = [f"{a} -> {b} ({'; '.join(edges(graph, a, b))})" for a, b in zip(found, found[1:])]
        raise AssertionError("import cycle among packages: " + " | ".join(steps))


def test_each_package_imports_only_the_layers_below_it():
    graph = import_graph()
    parts = package_graph(graph)
    assert set(parts) <= set(ALLOWED), f"place the new parts in ALLOWED (and the architecture doc): " \
                                       f"{sorted(set(parts) - set(ALLOWED))}"
    wrong = [edge for a, targets in sorted(parts.items()) for b in sorted(targets - ALLOWED[a])
             for edge in edges(graph, a, b)]
    assert not wrong, "imports across the layers: " + "; ".join(wrong)


def test_the_checks_find_a_cycle_and_a_layer_breach():
    """The tests above can fail: a planted loop and a planted upward import are found."""
    graph = {"egoadapt.data.a": {"egoadapt.data.b"}, "egoadapt.data.b": {"egoadapt.eval.c"},
             "egoadapt.eval.c": {"egoadapt.data.a"}}
    assert cycle(graph) == ["egoadapt.data.a", "egoadapt.data.b", "egoadapt.eval.c", "egoadapt.data.a"]
    assert cycle(package_graph(graph)) == ["data", "eval", "data"]
    assert "eval" not in ALLOWED["data"] and "train" not in ALLOWED["eval"] and "cli" not in ALLOWED["eval"]
