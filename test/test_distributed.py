"""Tests for xmod_core.distributed: single-process defaults and a real 2-process gloo group."""
from __future__ import annotations

import json
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from xmod_core import distributed as D

WORLD = 2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def single_env(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)


def test_single_process_is_a_noop(single_env):
    info = D.init_distributed("cpu")
    assert info == D.DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert info.is_main and not info.distributed and not dist.is_initialized()
    assert D.is_main()
    D.barrier()
    t = torch.tensor([1, 2, 3])
    mean = D.all_reduce_mean(t)
    assert mean.dtype == torch.float32 and torch.equal(mean, t.float())
    obj = {"a": [1, 2]}
    assert D.broadcast_object(obj) is obj
    D.cleanup()
    auto = D.init_distributed("auto")
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_device_and_env_errors(single_env, monkeypatch):
    with pytest.raises(ValueError, match="'gpu'"):
        D.init_distributed("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="'cuda' requested but CUDA is not available"):
            D.init_distributed("cuda")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(RuntimeError, match="WORLD_SIZE='two'"):
        D.init_distributed("cpu")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(RuntimeError, match="RANK=2, WORLD_SIZE=2"):
        D.init_distributed("cpu")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match="MASTER_ADDR"):
        D.init_distributed("cpu")


def test_seed_everything_per_rank():
    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    assert D.seed_everything(5, rank=1) == 6
    a = draw()
    D.seed_everything(5, rank=1)
    assert draw() == a
    D.seed_everything(5, rank=0)
    assert draw() != a


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = D.init_distributed("cpu")
    try:
        x = torch.tensor([float(rank), 10.0 * (rank + 1)])
        mean = D.all_reduce_mean(x)
        obj = D.broadcast_object({"run": "abc", "rank": rank} if rank == 0 else None)
        D.barrier()
        result = {"rank": info.rank, "world": info.world_size, "local": info.local_rank,
                  "is_main": D.is_main(), "backend": dist.get_backend(), "mean": mean.tolist(),
                  "input_unchanged": x.tolist() == [float(rank), 10.0 * (rank + 1)], "obj": obj}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        D.cleanup()


def test_two_process_gloo(tmp_path):
    mp.spawn(_worker, args=(WORLD, free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    for rank in range(WORLD):
        r = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert r["rank"] == rank and r["world"] == WORLD and r["local"] == rank
        assert r["is_main"] == (rank == 0) and r["backend"] == "gloo"
        assert r["mean"] == pytest.approx([0.5, 15.0]) and r["input_unchanged"]
        assert r["obj"] == {"run": "abc", "rank": 0}


def test_is_main_reads_torchrun_rank_once_the_group_is_gone(monkeypatch):
    """After training destroys the process group, only torchrun's rank 0 is the main process (the
    CLI's summary is printed once, not by every rank)."""
    monkeypatch.setenv("RANK", "1")
    assert not D.is_main()
    monkeypatch.setenv("RANK", "0")
    assert D.is_main()
    monkeypatch.delenv("RANK")
    assert D.is_main()
