"""Single-process, multi-GPU and multi-node training through ``torchrun``.

``torchrun --nproc_per_node=N [--nnodes=M ...] -m xmod_core.train ...`` sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init_distributed` reads them, picks the device
and, with more than one process, joins the process group (NCCL on CUDA, gloo on CPU).  A plain
``python -m ...`` run is rank 0 of a world of 1 and creates no process group; every helper
below then degrades to a no-op, so the trainer calls them unconditionally::

    info = init_distributed(cfg.device)
    seed_everything(cfg.seed, info.rank)
    ...
    loss_avg = all_reduce_mean(loss.detach())
    if is_main(): manager.save(state, step)
    cleanup()
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "is_main", "barrier", "all_reduce_mean",
           "broadcast_object", "cleanup", "seed_everything"]

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank`` of ``world_size`` processes, ``local_rank`` on
    its node, and the ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(device: Literal["auto", "cpu", "cuda"] | str = "auto") -> DistInfo:
    """Read RANK / WORLD_SIZE / LOCAL_RANK (defaults 0 / 1 / 0), choose the device and, when
    WORLD_SIZE > 1, initialise the default process group from the environment (``env://``).

    ``device``: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"`` (a
    RuntimeError if CUDA is unavailable).  On CUDA the process uses device ``cuda:LOCAL_RANK``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise RuntimeError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={world}, "
                           f"LOCAL_RANK={local}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available "
                               f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})")
        count = torch.cuda.device_count()
        if local >= count:
            raise RuntimeError(f"LOCAL_RANK={local} but only {count} CUDA device(s) are visible; "
                               "use at most that many processes per node")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available")
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if not os.environ.get(var):
                raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun")
        kwargs: dict[str, Any] = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://",
                                rank=rank, world_size=world, **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_main() -> bool:
    """True on global rank 0 (and in any non-distributed run), also once the process group is
    gone (torchrun's RANK)."""
    return dist.get_rank() == 0 if _active() else _env_int("RANK", 0) == 0


def barrier() -> None:
    """Wait for every process; no-op without a process group."""
    if _active():
        dist.barrier()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes, as a new tensor (integer input -> float).  The
    input is left unchanged; with NCCL it must live on this process's CUDA device."""
    out = tensor.detach().clone()
    if not out.is_floating_point():
        out = out.float()
    if _active():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= dist.get_world_size()
    return out


def broadcast_object(obj: T, src: int = 0) -> T:
    """Every process gets rank ``src``'s ``obj`` (any picklable object; only use it for data
    the processes produced themselves).  Returns ``obj`` unchanged without a process group."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup() -> None:
    """Destroy the process group if one exists (call once at the end of training)."""
    if _active():
        dist.destroy_process_group()


def seed_everything(seed: int, rank: int = 0) -> int:
    """Seed python ``random``, numpy's global RNG and torch (CPU and all CUDA devices) with
    ``seed + rank``, so ranks draw different augmentations / noise; returns that seed."""
    s = int(seed) + int(rank)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    return s
