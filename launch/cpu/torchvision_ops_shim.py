"""CPU-only workaround: make the torchvision 0.28.0 wheel import beside torch 2.13.0+cpu.

The only torchvision build for torch 2.13 is a CUDA build; its C++ library does not
load against the CPU torch, so `import torchvision` dies registering fake kernels for
`torchvision::nms` ("operator torchvision::nms does not exist"). transformers needs
torchvision for every video processor. Declaring the two op schemas before
torchvision is imported lets its Python side (transforms, what transformers uses)
import; its C++ ops and `torchvision.io` stay unavailable, and egoadapt uses neither.

Installed into the venv's site-packages by `launch/cpu/apply_workarounds.py` together
with a `.pth` line that arms a lazy import hook: nothing happens until the first
`import torchvision`, so processes that never touch it pay nothing. Never installed
on GPU machines.
"""
import importlib.abc
import sys

_SCHEMAS = {
    "torchvision::nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "torchvision::qnms": "(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor",
}


def define_missing_ops():
    import torch

    for name, schema in _SCHEMAS.items():
        try:
            torch.library.define(name, schema)
        except RuntimeError:
            pass  # already defined (real kernels loaded, or shim ran before)


class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision":
            sys.meta_path.remove(self)
            define_missing_ops()
        return None


def install():
    if not any(isinstance(f, _Hook) for f in sys.meta_path) and "torchvision" not in sys.modules:
        sys.meta_path.insert(0, _Hook())
