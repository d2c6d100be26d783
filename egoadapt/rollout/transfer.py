"""Trainer side of server weight sync over vLLM's weight-transfer engines (rollout.sync=transfer).

The trainer drives vLLM's own trainer engines (`WeightTransferTrainerFactory`): NCCL when the
server runs `--weight-transfer-config '{"backend": "nccl"}'` and this trainer has CUDA, egoadapt's
gloo engine (egoadapt.rollout.gloo_transfer) when it runs `egoadapt_gloo`. Both send the same
requests to the server's dev-mode endpoints: `/init_weight_transfer_engine` once, then per
sync `/start_weight_update`, `/update_weights` (names, dtypes, shapes; the tensors follow over
the group) and `/finish_weight_update`. The weights are `iter_weights`' stream (DDP unwrapped,
ZeRO-3 gathered one parameter at a time, LoRA merged), so nothing is written to disk and no
more than one tensor is held outside the model.
"""
from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

import httpx
import torch
from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

from egoadapt.rollout.vllm_plugin import BACKEND as GLOO

SYNCS = ("auto", "transfer", "disk")


class TransferError(RuntimeError):
    """The server cannot take weights over a transfer engine (rollout.sync=auto falls back to disk)."""


class TrainerWeights(WeightSource):
    """The trainer's weights as vLLM's `WeightSource`: `weight_specs` announces them without
    gathering, `iter_weights` streams them (every rank must iterate: ZeRO-3 gathers are collective)."""

    def __init__(self, model, accelerator):
        self.model, self.accelerator = model, accelerator

    def metadata(self) -> list[ParamMeta]:
        from egoadapt.rollout.weights import weight_specs

        return [ParamMeta(name, dtype, tuple(shape)) for name, shape, dtype in weight_specs(self.model, self.accelerator)]

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        from egoadapt.rollout.weights import iter_weights

        return iter_weights(self.model, self.accelerator)


class ServerSyncClient:
    """vLLM's `VLLMWeightSyncClient` over a server's HTTP routes, through `post(url, json=...)`
    (egoadapt's client: deadlines, the API key). Sent once each: a repeated update request
    would wait for a broadcast that has already happened."""

    def __init__(self, root: str, post: Callable[..., httpx.Response], weight_version: str | None = None):
        self.root, self.post, self.weight_version = root, post, weight_version

    def _call(self, path: str, body: dict | None = None) -> None:
        r = self.post(f"{self.root}/{path}", json=body or {})
        if r.status_code == 404:
            raise TransferError(f"the vLLM server at {self.root} has no /{path}: start it in dev mode "
                                "(VLLM_SERVER_DEV_MODE=1; launch/vllm_server.sh does)")
        if r.status_code == 401:
            raise TransferError(f"the vLLM server at {self.root} refused /{path} (401): send its API key in the "
                                "environment variable named by rollout.api_key_env")
        if r.status_code >= 400:
            text = r.content[:500].decode("utf-8", "replace")
            hint = (" (started without --weight-transfer-config)" if "not configured" in text.lower() else "")
            raise TransferError(f"POST {self.root}/{path}: HTTP {r.status_code}{hint}: {text}")

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self._call("init_weight_transfer_engine", {"init_info": init_info})

    def start_weight_update(self) -> None:
        self._call("start_weight_update")

    def update_weights(self, update_info) -> None:
        self._call("update_weights", {"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        version = weight_version or self.weight_version
        self._call("finish_weight_update", {"weight_version": version} if version else None)

    def shutdown_weight_transfer_engine(self) -> None:
        self._call("shutdown_weight_transfer_engine")


def trainer_backend(server_backend: str | None) -> str:
    """The backend this trainer process can drive against a server running `server_backend`,
    or TransferError saying why not and what to change."""
    if server_backend is None:
        raise TransferError("it was started without a weight-transfer engine: restart it with "
                            f"--weight-transfer-config '{{\"backend\": \"{default_backend()}\"}}' "
                            "(launch/vllm_server.sh passes it in dev mode; VLLM_WEIGHT_TRANSFER picks the backend)")
    if server_backend == "nccl" and not torch.cuda.is_available():
        raise TransferError("it runs the nccl engine and this trainer has no CUDA device: restart it with "
                            f"--weight-transfer-config '{{\"backend\": \"{GLOO}\"}}' (VLLM_WEIGHT_TRANSFER={GLOO})")
    if server_backend not in ("nccl", GLOO):
        raise TransferError(f"it runs the {server_backend!r} engine; egoadapt drives nccl and {GLOO}")
    return server_backend


def default_backend() -> str:
    """NCCL between CUDA devices, gloo otherwise (a CPU server, CI)."""
    return "nccl" if torch.cuda.is_available() else GLOO


def local_address(server_url: str) -> str:
    """This host's address on the route to the server: where the server's workers reach the
    group the trainer hosts (127.0.0.1 for a server on this machine)."""
    host = urlparse(server_url).hostname or "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((socket.gethostbyname(host), 9))  # no packet is sent
        return s.getsockname()[0]


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def init_info(backend: str, address: str, port: int, world_size: int, timeout_s: float = 600.0):
    """The trainer's init info (rank 0, the sender) for vLLM's trainer factory."""
    if backend == "nccl":
        from vllm.distributed.weight_transfer.nccl_engine import NCCLTrainerInitInfo

        return NCCLTrainerInitInfo(master_address=address, master_port=port, world_size=world_size, rank=0)
    from egoadapt.rollout.gloo_transfer import GlooTrainerInitInfo

    return GlooTrainerInitInfo(master_address=address, master_port=port, world_size=world_size,
                               timeout_s=timeout_s, rank=0)


def planned_requests(info, source: WeightSource) -> dict[str, Any]:
    """The bodies of the requests a sync sends (init once; update per sync), built with vLLM's
    own payload classes and nothing sent: the GPU script's dry run checks the NCCL ones at 7B."""
    meta = source.metadata()
    update = {"names": [m.name for m in meta], "dtype_names": [str(m.dtype).removeprefix("torch.") for m in meta],
              "shapes": [list(m.shape) for m in meta]}
    if info.backend == "nccl":
        from vllm.distributed.weight_transfer.nccl_common import NCCLWeightTransferInitInfo, worker_init_payload
        from vllm.distributed.weight_transfer.nccl_engine import NCCLWeightTransferUpdateInfo

        worker = worker_init_payload(NCCLWeightTransferInitInfo(
            master_address=info.master_address, master_port=info.master_port, rank_offset=1,
            world_size=info.world_size, packed=info.packed, packed_buffer_size_bytes=info.packed_buffer_size_bytes,
            packed_num_buffers=info.packed_num_buffers))
        update = asdict(NCCLWeightTransferUpdateInfo(**update))
    else:
        from egoadapt.rollout.gloo_transfer import GlooWeightTransferUpdateInfo

        worker = info.worker_init_info()
        update = asdict(GlooWeightTransferUpdateInfo(**update))
    return {"init_weight_transfer_engine": {"init_info": worker}, "start_weight_update": {},
            "update_weights": {"update_info": update}, "finish_weight_update": {},
            "bytes": sum(m.dtype.itemsize * _numel(m.shape) for m in meta)}


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def open_transfer(info, client: ServerSyncClient, source: WeightSource):
    """vLLM's trainer engine for `info.backend`, joined with the server's workers."""
    from vllm.distributed.weight_transfer.factory import WeightTransferTrainerFactory

    from egoadapt.rollout.vllm_plugin import register

    register()  # the trainer is no vLLM process: vLLM never loaded the plugin here
    return WeightTransferTrainerFactory.trainer_init(info, client=client, source=source)
