"""Every repository path and every `egoadapt.<module>[.<name>]` that the docs, the launch scripts,
the benchmarks and egoadapt's own comments and messages name exists: a renamed, moved or deleted
file, module or function (an sbatch script, an accelerate config, a module moved to another
package) fails here, naming the file and line that still mention it. Read from the files, nothing
imported."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# a path starts at a top-level folder (conf/ and recipes/ are read as egoadapt/conf/, egoadapt/recipes/)
PATH = re.compile(r"(?<![\w./:<>$-])((?:egoadapt|launch|tests|benchmarks|docs|conf|recipes)/[\w./*{},-]*[\w*}])")
# a dotted name in prose; one right after a quote is a string's content (a logger name, a schema tag)
DOTTED = re.compile(r"(?<![\w./\"'-])(egoadapt(?:\.[A-Za-z]\w*)+)")
SOURCES = ("README.md", "docs/*.md", "launch/**/*", "egoadapt/**/*.py", "egoadapt/**/*.yaml", "benchmarks/**/*.md",
           "benchmarks/**/*.py", "Makefile")


def expand(path: str) -> list[str]:
    """Shell-style alternatives: zero{2,3}.yaml -> zero2.yaml, zero3.yaml."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for alt in m.group(1).split(",") for p in expand(path[:m.start()] + alt + path[m.end():])]


def exists(path: str) -> bool:
    for base in (ROOT, ROOT / "egoadapt"):
        if any(base.glob(path)) if "*" in path else (base / path).exists():
            return True
    return False


def resolves(dotted: str) -> bool:
    """egoadapt.pkg.module[.name]: the module's file exists and defines, assigns or imports the name."""
    folder, parts = ROOT, dotted.split(".")
    for i, part in enumerate(parts):
        if (folder / part).is_dir():
            folder = folder / part
        elif (folder / f"{part}.py").is_file():
            if i + 1 == len(parts):
                return True
            name = re.escape(parts[i + 1])
            return bool(re.search(rf"^\s*(?:(?:async )?def|class)\s+{name}\b|^\s*{name}\s*[:=]|^\s*(?:from|import) .*\b{name}\b",
                                  (folder / f"{part}.py").read_text(), re.M))
        else:  # a name defined or imported in the package's __init__.py
            return i + 1 == len(parts) and bool(re.search(rf"\b{re.escape(part)}\b", (folder / "__init__.py").read_text()))
    return True


def source_lines():
    for pattern in SOURCES:
        for source in sorted(ROOT.glob(pattern)):
            if source.is_file() and "__pycache__" not in source.parts:
                for n, line in enumerate(source.read_text(errors="replace").splitlines(), 1):
                    yield f"{source.relative_to(ROOT)}:{n}", line


def mentions(lines):
    """(where, kind, name) for every path and dotted egoadapt name in the lines."""
    for where, line in lines:
        for m in PATH.finditer(line):
            template = re.match(r"[-/]?[<$]", line[m.end():]) or re.search(r"\{[^{},]*\}", m.group(1))
            if not template:  # a path a run writes (results/rehearsal-<card>.json, f"conf/{group}/...") is not a file
                yield from ((where, "path", p) for p in expand(m.group(1).rstrip(".,")))
        for m in DOTTED.finditer(line):
            yield where, "module", m.group(1)


def test_every_mentioned_path_and_module_exists():
    found = list(mentions(source_lines()))
    assert sum(kind == "path" for _, kind, _ in found) > 100 and sum(kind == "module" for _, kind, _ in found) > 100
    missing = [f"{where}: {name}" for where, kind, name in found
               if not (exists(name) if kind == "path" else resolves(name))]
    assert not missing, "named but not in the repository:\n" + "\n".join(missing)


def test_stale_mentions_are_caught():
    lines = [("x.md:1", "see `launch/slurm/train_multinode.sbatch`, out/launch/y, <job>/conf/z, benchmarks/gpu/results/<card>, "
                        'f"conf/{group}/{option}.yaml"'),
             ("x.md:2", "`egoadapt.train.video.VideoInputs` and `egoadapt.data.load.load_samples`; logger 'egoadapt.push'")]
    found = list(mentions(lines))
    assert [(k, n) for _, k, n in found] == [("path", "launch/slurm/train_multinode.sbatch"),
                                             ("module", "egoadapt.train.video.VideoInputs"),
                                             ("module", "egoadapt.data.load.load_samples")]
    assert not exists("launch/slurm/train_multinode.sbatch") and exists("conf/model/*.yaml")
    assert not resolves("egoadapt.train.video.VideoInputs") and not resolves("egoadapt.data.load.no_such_function")
    assert resolves("egoadapt.data.load.load_samples") and resolves("egoadapt.cli")
    assert expand("launch/accelerate/zero{2,3}.yaml") == ["launch/accelerate/zero2.yaml", "launch/accelerate/zero3.yaml"]
