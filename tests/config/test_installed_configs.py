"""A wheel of egoadapt carries its configs: installed outside the repo (its dependencies from this
environment), `egoadapt --help` and `egoadapt train recipe=demo/tiny_sft ... --cfg job` read the
packaged egoadapt/conf and egoadapt/recipes through Hydra's pkg:// search path."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """egoadapt built as a wheel from a copy of the sources and installed into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO / "egoadapt", src / "egoadapt", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("egoadapt-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "egoadapt/conf/train.yaml" in names and "egoadapt/conf/model/qwen2_5_vl_7b.yaml" in names
    assert "egoadapt/recipes/demo/tiny_sft.yaml" in names and "egoadapt/recipes/egocross/grpo_qwen2_5_vl_7b.yaml" in names
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp / "site"), str(wheel)], check=True,
                   capture_output=True, timeout=300)
    return tmp / "site"


def run(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of this environment's editable egoadapt
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.integration
def test_an_installed_egoadapt_has_its_configs(installed, tmp_path):
    where = run(installed, tmp_path, "-c", "import egoadapt, egoadapt.configs as c; print(egoadapt.__file__, c.CONF_DIR)")
    assert where.stdout.split() == [str(installed / "egoadapt" / "__init__.py"), str(installed / "egoadapt" / "conf")]
    help_ = run(installed, tmp_path, "-m", "egoadapt.cli", "--help")
    assert help_.returncode == 0 and "data export" in help_.stdout
    job = run(installed, tmp_path, "-m", "egoadapt.cli", "train", "recipe=demo/tiny_sft", f"out={tmp_path / 'run'}",
              "--cfg", "job")
    assert job.returncode == 0, job.stderr[-2000:]
    assert "algorithm: sft" in job.stdout and "num_train_epochs: 16" in job.stdout
    listing = run(installed, tmp_path, "-m", "egoadapt.cli", "train", "--help")
    assert "egocross/grpo_qwen2_5_vl_7b" in listing.stdout
