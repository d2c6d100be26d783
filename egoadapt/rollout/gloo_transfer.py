"""A vLLM weight-transfer backend over torch.distributed gloo: vLLM's NCCL protocol on any device.

vLLM's weight-transfer engines (`vllm.distributed.weight_transfer`) move a trainer's weights
into a running server in three requests (init once; then per sync start, update, finish), the
tensors themselves travelling over a process group the trainer opens and the server's workers
join. vLLM ships NCCL (GPU to GPU); on a CPU it moves nothing. This backend, `egoadapt_gloo`,
keeps the protocol and the payloads of the dense NCCL engine and swaps the wire for gloo, so a
CPU server (CI), or a trainer and a server that share no GPU fabric, sync the same way:

- server side: `GlooWeightTransferEngine`, registered in every vLLM process by the
  `vllm.general_plugins` entry point `egoadapt` (egoadapt.rollout.vllm_plugin), enabled with
  `vllm serve ... --weight-transfer-config '{"backend": "egoadapt_gloo"}'`;
- trainer side: `GlooTrainerWeightTransferEngine`, built by vLLM's
  `WeightTransferTrainerFactory` from a `GlooTrainerInitInfo` (egoadapt.rollout.transfer).

The trainer is rank 0 and hosts the rendezvous (a TCPStore on `master_address:master_port`);
worker w of the server joins as rank 1 + w. Each tensor is broadcast as raw bytes, one at a
time, in the order the update request names them; the workers load them through vLLM's
layerwise reload (checkpoint-format names, repacked for the CPU kernels by the model itself).
"""
from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from vllm.distributed.weight_transfer.base import (
    TrainerInitInfo,
    TrainerWeightTransferEngine,
    WeightTransferEngine,
    WeightTransferInitInfo,
    WeightTransferUpdateInfo,
)

BACKEND = "egoadapt_gloo"
RENDEZVOUS_S = 60.0  # how long either side waits for the other to join the group


@dataclass
class GlooWeightTransferInitInfo(WeightTransferInitInfo):
    """What a server worker needs to join the trainer's group (the init request's `init_info`)."""

    master_address: str
    master_port: int
    rank_offset: int
    world_size: int
    timeout_s: float = 600.0  # per broadcast


@dataclass
class GlooWeightTransferUpdateInfo(WeightTransferUpdateInfo):
    """One sync's tensors, in broadcast order: the dense NCCL engine's update payload."""

    names: list[str]
    dtype_names: list[str]
    shapes: list[list[int]]

    def __post_init__(self):
        if not len(self.names) == len(self.dtype_names) == len(self.shapes):
            raise ValueError(f"update_info: {len(self.names)} names, {len(self.dtype_names)} dtype_names and "
                             f"{len(self.shapes)} shapes; they must be as many")


def _local_address(peer: str) -> str:
    """The address of this host's interface that routes to `peer` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((peer, 9))
        return s.getsockname()[0]


@dataclass
class Group:
    pg: Any  # torch's ProcessGroupGloo
    store: Any  # the TCPStore its ranks met through (kept alive with it)


def open_group(address: str, port: int, rank: int, world_size: int, timeout_s: float) -> Group:
    """A gloo group of its own (the default process group untouched): rank 0 hosts the store."""
    from torch.distributed import ProcessGroupGloo, TCPStore

    store = TCPStore(address, port, world_size, is_master=rank == 0,
                     timeout=datetime.timedelta(seconds=RENDEZVOUS_S), wait_for_workers=False)
    options = ProcessGroupGloo._Options()
    options._timeout = datetime.timedelta(seconds=timeout_s)
    options._devices = [ProcessGroupGloo.create_device(hostname=address if rank == 0 else _local_address(address))]
    return Group(ProcessGroupGloo(store, rank, world_size, options), store)


def broadcast(group: Group, tensor: torch.Tensor) -> None:
    """Broadcast `tensor` from rank 0 in place, as bytes (gloo has no kernel for some dtypes)."""
    from torch.distributed import BroadcastOptions

    opts = BroadcastOptions()
    opts.rootRank = 0
    group.pg.broadcast([tensor.view(-1).view(torch.uint8)], opts).wait()


class GlooWeightTransferEngine(WeightTransferEngine[GlooWeightTransferInitInfo, GlooWeightTransferUpdateInfo]):
    """Server side: joins the trainer's gloo group and loads each broadcast tensor."""

    init_info_cls = GlooWeightTransferInitInfo
    update_info_cls = GlooWeightTransferUpdateInfo
    supports_draft_weight_update = False

    def __init__(self, config, vllm_config, device, model):
        super().__init__(config, vllm_config, device, model)
        self.group = None

    def init_transfer_engine(self, init_info: GlooWeightTransferInitInfo) -> None:
        self.shutdown()  # a new trainer (a restarted run) replaces the previous one
        p = self.parallel_config
        rank = p.data_parallel_index * p.world_size + p.rank + init_info.rank_offset
        self.group = open_group(init_info.master_address, init_info.master_port, rank, init_info.world_size,
                                init_info.timeout_s)

    def start_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

        initialize_layerwise_reload(self.model)

    def finish_weight_update(self) -> None:
        from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

        finalize_layerwise_reload(self.model, self.model_config)

    def update_weights(self, update_info: dict[str, Any]) -> None:
        # the base class ends with torch.accelerator.synchronize(), which raises on a CPU
        self.receive_weights(self.parse_update_info(update_info))
        if torch.accelerator.is_available():
            torch.accelerator.synchronize()

    def receive_weights(self, update_info: GlooWeightTransferUpdateInfo) -> None:
        if self.group is None:
            raise RuntimeError(f"{BACKEND} weight transfer: no group yet; POST /init_weight_transfer_engine first")
        self.model.load_weights(self._received(update_info))

    def _received(self, info: GlooWeightTransferUpdateInfo) -> Iterator[tuple[str, torch.Tensor]]:
        for name, dtype_name, shape in zip(info.names, info.dtype_names, info.shapes):
            weight = torch.empty(shape, dtype=getattr(torch, dtype_name))
            broadcast(self.group, weight)
            yield name, weight.to(self.device)

    def shutdown(self) -> None:
        self.group = None  # gloo closes its pairs and the store its socket when dropped


@dataclass
class GlooTrainerInitInfo(TrainerInitInfo):
    """Trainer side of `egoadapt_gloo`: where the trainer (rank 0) hosts the group's rendezvous,
    reachable from the server; `world_size` = the server's workers + 1."""

    backend: ClassVar[str] = BACKEND

    master_address: str
    master_port: int
    world_size: int
    timeout_s: float = 600.0

    def worker_init_info(self) -> dict[str, Any]:
        """The init request's payload: the server's workers sit after the trainer (rank_offset 1)."""
        return asdict(GlooWeightTransferInitInfo(self.master_address, self.master_port, 1, self.world_size,
                                                 self.timeout_s))


class GlooTrainerWeightTransferEngine(TrainerWeightTransferEngine[GlooTrainerInitInfo]):
    """Trainer side: the same round trip as vLLM's NCCL trainer engine (start, update with the
    broadcast running alongside it, finish), over gloo. Ranks other than 0 only iterate the
    source, so collective gathers (ZeRO-3, FSDP) stay in step."""

    init_info_cls = GlooTrainerInitInfo

    def __init__(self, *, client, source=None, is_sender: bool = True):
        super().__init__(client=client, source=source, is_sender=is_sender)
        self.group = None

    @classmethod
    def trainer_init(cls, init_info: GlooTrainerInitInfo, *, client, source=None):
        if source is None:
            raise ValueError(f"{BACKEND}: the trainer engine needs a WeightSource")
        engine = cls(client=client, source=source, is_sender=init_info.is_sender)
        if engine.is_sender:
            # the server's workers block in the init request until every rank has joined
            with ThreadPoolExecutor(max_workers=1) as pool:
                joined = pool.submit(client.init_weight_transfer_engine, init_info.worker_init_info())
                try:
                    engine.group = open_group(init_info.master_address, init_info.master_port, 0,
                                              init_info.world_size, init_info.timeout_s)
                finally:
                    joined.result()  # the server's error, if it failed to join, says more than ours
        return engine

    def send_weights(self) -> None:
        source = self.source
        meta = source.metadata()
        if not self.is_sender:
            for _ in source:
                pass
            return
        info = GlooWeightTransferUpdateInfo(names=[m.name for m in meta],
                                            dtype_names=[str(m.dtype).removeprefix("torch.") for m in meta],
                                            shapes=[list(m.shape) for m in meta])
        self.client.start_weight_update()
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            received = pool.submit(self.client.update_weights, asdict(info))
            sent = 0
            for name, tensor in source:
                m = meta[sent] if sent < len(meta) else None
                if m is None or (name, tensor.dtype, tuple(tensor.shape)) != (m.name, m.dtype, tuple(m.shape)):
                    raise ValueError(f"{BACKEND}: weight {sent} is {name} {tensor.dtype} {tuple(tensor.shape)}, the "
                                     f"update request announced {m}")
                if received.done():
                    received.result()  # the server refused the update: do not wait in a broadcast
                broadcast(self.group, tensor.detach().to("cpu").contiguous())
                sent += 1
                del tensor
            if sent != len(meta):
                raise ValueError(f"{BACKEND}: sent {sent} weights, the update request announced {len(meta)}")
            received.result()
        finally:
            pool.shutdown(wait=False)  # after a failed broadcast the request may never return
        self.client.finish_weight_update()

    def shutdown(self) -> None:
        self.group = None
