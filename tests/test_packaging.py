"""A clean install: egoadapt's wheel into a fresh virtual environment outside the repo, its
dependencies resolved by pip from setup.cfg's ranges (offline, against the distributions this
environment holds: a range the tested stack does not satisfy fails here), then the `egoadapt`
console script of that environment runs `--help` and `train recipe=demo/tiny_sft ... --cfg job`
(the configs and recipes read from the installed package through Hydra's pkg:// search path)
from a folder outside the repo. Also: the declared metadata (Python 3.11, ranges, the pins in
constraints.txt inside those ranges)."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def requirements(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_metadata_ranges_and_constraints():
    from packaging.requirements import Requirement
    from packaging.version import Version

    cfg = setup_cfg()
    assert cfg["options"]["python_requires"].strip() == ">=3.11"
    reqs = [Requirement(r) for r in requirements(cfg["options"]["install_requires"])]
    assert not [str(r) for r in reqs if any(s.operator == "==" for s in r.specifier)]  # ranges, no pins
    assert "openai" not in {r.name for r in reqs}  # nothing in egoadapt imports it
    assert {"scipy", "wandb", "huggingface_hub"} <= {r.name for r in reqs}
    gpu = [Requirement(r) for r in requirements(cfg["options.extras_require"]["gpu"])]
    vllm = next(r for r in gpu if r.name == "vllm")
    assert Version("0.32.0") in vllm.specifier and Version("0.33.0") not in vllm.specifier  # the series tests run
    assert {"tensorboard", "trackio"} <= set(cfg["options.extras_require"])
    pins = {Requirement(r).name.lower(): Requirement(r) for r in requirements((REPO / "constraints.txt").read_text())}
    for r in reqs:  # every tested pin satisfies the range it constrains
        pin = pins.get(r.name.lower())
        if pin is not None:
            version = next(iter(pin.specifier)).version
            assert Version(version) in r.specifier, f"constraints.txt {pin} is outside setup.cfg's {r}"
    assert "-c constraints.txt" in (REPO / "Makefile").read_text()


def dependency_dir(target: Path) -> Path:
    """This environment's site-packages without egoadapt itself (its editable finder and
    metadata), as symlinks: what an existing environment holds before `pip install egoadapt`."""
    site = Path(sysconfig.get_paths()["purelib"])
    target.mkdir()
    for entry in site.iterdir():
        if entry.name.startswith(("__editable__", "egoadapt-")) and "egoadapt" in entry.name:
            continue
        (target / entry.name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("clean_install")
    src = tmp / "src"  # a copy: building in the repo would leave build/ there
    shutil.copytree(REPO / "egoadapt", src / "egoadapt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    names = zipfile.ZipFile(next((tmp / "dist").glob("egoadapt-*.whl"))).namelist()  # the configs travel inside
    assert {"egoadapt/conf/train.yaml", "egoadapt/conf/model/qwen2_5_vl_7b.yaml", "egoadapt/recipes/demo/tiny_sft.yaml",
            "egoadapt/recipes/egocross/grpo_qwen2_5_vl_7b.yaml"} <= set(names)
    venv = tmp / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    deps = dependency_dir(tmp / "deps")
    (Path(purelib) / "_existing_environment.pth").write_text(f"import site; site.addsitedir({str(deps)!r})\n")
    # pip resolves egoadapt's requirements against what is installed, with no index to fall back on
    proc = subprocess.run([*pip, "--python", str(python), "install", "--no-index", "--find-links", str(tmp / "dist"),
                           "egoadapt"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return venv


def run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run([str(venv / "bin" / "egoadapt"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.integration
def test_clean_install_runs_the_console_script_outside_the_repo(fresh_venv, tmp_path):
    where = subprocess.run([str(fresh_venv / "bin" / "python"), "-c",
                            "import egoadapt, egoadapt.configs as c; print(egoadapt.__file__, c.CONF_DIR)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    assert all(w.startswith(str(fresh_venv)) for w in where), where  # the installed wheel, not the repo's copy
    help_ = run(fresh_venv, tmp_path, "--help")
    assert help_.returncode == 0 and "egoadapt <command>" in help_.stdout and "push" in help_.stdout
    job = run(fresh_venv, tmp_path, "train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}", "--cfg", "job")
    assert job.returncode == 0, job.stderr[-3000:]
    assert "algorithm: sft" in job.stdout and "num_train_epochs: 16" in job.stdout  # the packaged recipe
    assert not (tmp_path / "run").exists()  # --cfg job prints, writes nothing
    listing = run(fresh_venv, tmp_path, "train", "--help")
    assert "egocross/grpo_qwen2_5_vl_7b" in listing.stdout
