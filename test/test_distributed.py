"""Tests for xmod_core.distributed: single-process defaults and a real 2-process gloo group."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from conftest import free_port, spawn_ranks
from xmod_core import distributed as D

WORLD = 2


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
    spawn_ranks(_worker, lambda attempt: (WORLD, free_port(), str(tmp_path)), WORLD)
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


def _pipeline_worker(rank: int, world: int, port: int, pipe: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import time

    from xmod_core import train as T
    real_export = T.export_student

    def slow_export(*a, **kw):                   # rank 0 writes the students late: the other rank must wait
        time.sleep(1.5)
        real_export(*a, **kw)
    T.export_student = slow_export
    summary = T.run_pipeline(pipe, progress=False)
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps([s["stage"] for s in summary]))


def test_two_process_pipeline_keeps_ranks_together(tiny_drive, tmp_path):
    """Under torchrun a pipeline's stages share one process group, and a rank starts the next stage
    only once rank 0 has exported the students that stage starts from (it used to start early and
    either miss them or hang on a process group created again)."""
    from test_distill import write_tiny_pipeline

    def make_args(attempt):                      # each attempt in its own folder: no stage resumes another's run
        root = tmp_path / f"attempt{attempt}"
        root.mkdir()
        pipe, _ = write_tiny_pipeline(root, tiny_drive)
        return WORLD, free_port(), str(pipe), str(root)
    root = tmp_path / f"attempt{spawn_ranks(_pipeline_worker, make_args, WORLD)}"   # fails after 240 s (ranks out of step)
    for rank in range(WORLD):
        assert json.loads((root / f"rank{rank}.json").read_text()) == ["2d_burn_in", "2d_ts"]
    assert (root / "runs/2d_ts/student_rgb.pt").is_file()
