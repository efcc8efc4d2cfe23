"""Tests for xmod_core.checkpoint: atomic saves, safe loads, rotation, best tracking, RNG state."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from xmod_core.checkpoint import (CheckpointError, CheckpointManager, capture_rng_state,
                                  load_checkpoint, restore_rng_state, save_atomic)


class Custom:
    """Not allowlisted for weights_only loading."""

    def __init__(self) -> None:
        self.x = 1


def state(v: float = 1.0) -> dict:
    return {"model": {"w": torch.full((3, 2), v), "b": torch.zeros(2)}, "step": 7,
            "config_hash": "abc123", "stage": "2d_burn_in", "history": [1.0, 2.5], "note": None}


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# ---- save_atomic / load_checkpoint ---------------------------------------------------------

def test_save_and_load_round_trip(tmp_path):
    path = save_atomic(state(2.0), tmp_path / "sub" / "ck.pt")
    assert path == tmp_path / "sub" / "ck.pt" and no_temp_files(path.parent)
    got = load_checkpoint(path, expect={"config_hash": "abc123", "stage": "2d_burn_in"})
    assert torch.equal(got["model"]["w"], torch.full((3, 2), 2.0))
    assert got["history"] == [1.0, 2.5] and got["note"] is None and got["step"] == 7


def test_crash_mid_save_keeps_previous(tmp_path, monkeypatch):
    path = save_atomic(state(1.0), tmp_path / "ck.pt")
    before = path.read_bytes()

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 partial checkpoint bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_atomic(state(9.0), path)
    monkeypatch.undo()
    assert path.read_bytes() == before and no_temp_files(tmp_path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3, 2))


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=f"not found: {tmp_path / 'none.pt'}"):
        load_checkpoint(tmp_path / "none.pt")


def test_truncated_and_random_files(tmp_path):
    good = save_atomic(state(), tmp_path / "good.pt").read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {trunc}"):
        load_checkpoint(trunc)
    rand = tmp_path / "rand.pt"
    rand.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {rand}"):
        load_checkpoint(rand)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match=str(empty)):
        load_checkpoint(empty)


def test_custom_object_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": torch.ones(1), "obj": Custom()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    msg = str(err.value)
    assert str(path) in msg and "refusing" in msg and "Custom" in msg


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match=f"{path} holds a list"):
        load_checkpoint(path)


def test_expect_mismatch_names_key_and_values(tmp_path):
    path = save_atomic(state(), tmp_path / "ck.pt")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, expect={"config_hash": "zzz", "stage": "joint", "step": 7})
    msg = str(err.value)
    assert str(path) in msg
    assert "'config_hash' is 'abc123', expected 'zzz'" in msg
    assert "'stage' is '2d_burn_in', expected 'joint'" in msg
    assert "'step'" not in msg
    with pytest.raises(CheckpointError, match="'epoch' is missing"):
        load_checkpoint(path, expect={"epoch": 1})


# ---- CheckpointManager ---------------------------------------------------------------------

def test_manager_keep_last_and_latest(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=2)
    assert mgr.latest() is None and mgr.best() is None
    for step in (10, 20, 30, 40):
        p = mgr.save(state(step), step)
        assert p.name == f"step_{step:08d}.pt" and mgr.latest() == p
    assert [s for s, _ in mgr.checkpoints()] == [30, 40]
    assert (tmp_path / "ck" / "latest").read_text().strip() == "step_00000040.pt"
    got = load_checkpoint(mgr.latest())
    assert got["checkpoint_meta"] == {"step": 40, "metric": None, "higher_is_better": False}
    assert mgr.best() is None and no_temp_files(mgr.directory)
    # a re-run saving an older step keeps the file it just wrote and points latest at it
    p = mgr.save(state(), 5)
    assert p.is_file() and mgr.latest() == p
    (mgr.directory / "latest").unlink()  # pointer lost: fall back to the highest step
    assert mgr.latest() == mgr.step_path(40)
    with pytest.raises(ValueError):
        CheckpointManager(tmp_path / "x", keep_last=0)


@pytest.mark.parametrize("higher", [False, True])
def test_manager_best_tracking(tmp_path, higher):
    mgr = CheckpointManager(tmp_path, keep_last=1)
    metrics = [5.0, 3.0, 4.0, float("nan"), 1.0, 2.0]
    sign = -1.0 if higher else 1.0
    best_step = None
    best_val = None
    for step, m in enumerate(metrics):
        value = sign * m
        mgr.save(state(step), step, metric=value, higher_is_better=higher)
        if m == m and (best_val is None or (value > best_val if higher else value < best_val)):
            best_val, best_step = value, step
        info = json.loads((tmp_path / "best.json").read_text())
        assert info["step"] == best_step and info["metric"] == best_val
        got = load_checkpoint(mgr.best())
        assert got["checkpoint_meta"]["step"] == best_step
        assert got["checkpoint_meta"]["metric"] == best_val
        assert torch.equal(got["model"]["w"], torch.full((3, 2), float(best_step)))
    assert best_step == 4
    assert [s for s, _ in mgr.checkpoints()] == [5]  # pruning never touches best.pt
    assert mgr.best_info()["metric"] == best_val and no_temp_files(tmp_path)
    # a fresh manager on the same directory continues from best.json
    mgr2 = CheckpointManager(tmp_path, keep_last=1)
    mgr2.save(state(), 6, metric=sign * 1.5, higher_is_better=higher)
    assert mgr2.best_info()["step"] == 4
    with pytest.raises(ValueError, match="higher_is_better"):
        mgr2.save(state(), 7, metric=0.0, higher_is_better=not higher)


# ---- RNG state -----------------------------------------------------------------------------

def draw() -> tuple:
    return (random.random(), random.gauss(0, 1), np.random.rand(3).tolist(),
            np.random.randn(2).tolist(), torch.rand(3).tolist(), torch.randn(2).tolist())


def test_rng_capture_restore_weights_only_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    random.gauss(0, 1)      # leaves python's gauss_next cached
    np.random.randn(1)      # leaves numpy's cached gaussian
    snap = capture_rng_state()
    path = save_atomic({"rng": snap}, tmp_path / "rng.pt")
    expected = draw()
    draw()
    restore_rng_state(load_checkpoint(path)["rng"])
    assert draw() == expected
    with pytest.raises(CheckpointError, match="invalid RNG state"):
        restore_rng_state({"python": {}})


def test_saved_files_get_normal_permissions(tmp_path):
    import os
    import stat
    from xmod_core.checkpoint import save_atomic
    umask = os.umask(0o022)
    try:
        path = save_atomic({"a": 1}, tmp_path / "x.pt")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
