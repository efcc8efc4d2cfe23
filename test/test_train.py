"""Trainer: a tiny overfit, exact resume, the DDP equivalence (2 gloo processes = 1 process with
the same global batch), config errors, corrupt or foreign checkpoints, exported students."""
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from conftest import make_tiny_drive
from xmod_core.checkpoint import CheckpointError, load_checkpoint
from xmod_core.config import ConfigError, from_dict, load_config
from xmod_core.train import TrainConfig, TrainingError, main, train

TINY_MODEL = {"widths": [8, 8, 8, 8, 8], "blocks": [1, 1, 1, 1], "num_slots": 4, "slot_dim": 16, "mlp_hidden": 32,
              "gru_hidden": 16, "decoder_channels": 8, "norm": "group"}


def tiny_cfg(drive: Path, out: Path, **over) -> TrainConfig:
    d = {"stage": "2d_burn_in", "out_dir": str(out), "device": "cpu", "log_every": 1, "ckpt_every": 3, "seed": 3,
         "model": TINY_MODEL, "data": {"drives": [str(drive)], "clip_len": 2, "height": 32, "width": 96, "workers": 0},
         "optim": {"batch_size": 2, "steps": 6, "warmup_steps": 1, "lr": 2e-3, "grad_clip": 1.0}}
    for k, v in over.items():
        node = d
        *path, last = k.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = v
    return from_dict(TrainConfig, d)


def losses(out: Path) -> list:
    return [json.loads(line)["total"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_overfit_one_clip_lowers_the_loss(tmp_path):
    drive = make_tiny_drive(tmp_path / "one", frames=2)                 # a single clip
    for stage in ("2d_burn_in", "3d_burn_in"):
        out = tmp_path / stage
        train(tiny_cfg(drive, out, stage=stage, **{"optim.batch_size": 1, "optim.steps": 25}), progress=False)
        trace = losses(out)
        assert sum(trace[-3:]) / 3 < 0.8 * sum(trace[:3]) / 3, (stage, trace)
        student = load_checkpoint(out / f"student_{'rgb' if stage == '2d_burn_in' else 'lidar'}.pt")
        assert student["format"] == "xmod-student-1" and student["model_config"]["num_slots"] == 4


def test_resume_continues_exactly(tiny_drive, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(tiny_drive, full), progress=False)
    train(tiny_cfg(tiny_drive, part, **{"optim.steps": 3}), progress=False)
    train(tiny_cfg(tiny_drive, part), resume=True, progress=False)
    a, b = losses(full), losses(part)
    assert len(a) == len(b) == 6
    assert a[3:] == pytest.approx(b[3:], rel=1e-6, abs=1e-7)          # steps 4..6 after the resume
    with pytest.raises(TrainingError, match="--resume"):               # never silently overwritten
        train(tiny_cfg(tiny_drive, part), progress=False)


def test_resume_rejects_corrupt_and_foreign_checkpoints(tiny_drive, tmp_path, capsys):
    out = tmp_path / "run"
    train(tiny_cfg(tiny_drive, out, **{"optim.steps": 3}), progress=False)
    with pytest.raises(CheckpointError, match="resume_hash"):          # another configuration
        train(tiny_cfg(tiny_drive, out, **{"optim.lr": 1e-3}), resume=True, progress=False)
    latest = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    latest.write_bytes(latest.read_bytes()[:200])                      # truncated
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"stage": "2d_burn_in", "out_dir": str(out), "device": "cpu", "model": TINY_MODEL,
                                    "data": {"drives": [str(tiny_drive)], "clip_len": 2, "height": 32, "width": 96,
                                             "workers": 0}, "optim": {"batch_size": 2, "steps": 6, "warmup_steps": 1,
                                                                      "lr": 2e-3, "grad_clip": 1.0}, "seed": 3,
                                    "log_every": 1, "ckpt_every": 3}))
    assert main(["--config", str(cfg_file), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and latest.name in err


def test_config_errors_name_the_key(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("stage: 2d_burn_in\noptim: {lr: 1e-3, lrate: 2}\n")
    with pytest.raises(ConfigError, match="optim.lrate"):
        load_config(TrainConfig, f)
    f.write_text("stage: 2d_burn_in\noptim: {steps: many}\n")
    with pytest.raises(ConfigError, match="optim.steps"):
        load_config(TrainConfig, f)
    f.write_text("stage: 2d_burn_in\n")
    with pytest.raises(ConfigError, match="model.slots"):
        load_config(TrainConfig, f, ["model.slots=3"])                 # overrides are checked too
    assert load_config(TrainConfig, f, ["optim.lr=1e-4", "model.num_slots=7"]).model.num_slots == 7
    assert main(["--config", str(f), "data.clip_len=two"]) == 2
    assert "data.clip_len" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown stage"):
        train(from_dict(TrainConfig, {"stage": "4d_burn_in", "out_dir": str(tmp_path / "x"), "device": "cpu"}))


def test_init_from_checks_the_architecture(tiny_drive, tmp_path):
    first = tmp_path / "first"
    train(tiny_cfg(tiny_drive, first, **{"optim.steps": 2}), progress=False)
    ok = tmp_path / "ok"
    train(tiny_cfg(tiny_drive, ok, init_from=str(first / "student_rgb.pt"), **{"optim.steps": 1}), progress=False)
    with pytest.raises(TrainingError, match="does not fit"):
        train(tiny_cfg(tiny_drive, tmp_path / "bad", init_from=str(first / "student_rgb.pt"),
                       **{"model.slot_dim": 8, "optim.steps": 1}), progress=False)
    with pytest.raises(CheckpointError, match="lidar"):
        train(tiny_cfg(tiny_drive, tmp_path / "bad3d", stage="3d_burn_in", init_from=str(first / "student_rgb.pt")),
              progress=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, cfg: TrainConfig, port: int):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg, progress=False)


def test_ddp_two_gloo_processes_match_one_process(tiny_drive, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    over = {"optim.batch_size": 4, "optim.steps": 4}
    train(tiny_cfg(tiny_drive, one, **over), progress=False)
    mp.spawn(_ddp_worker, args=(tiny_cfg(tiny_drive, two, **over), _free_port()), nprocs=2, join=True)
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-4), (a, b)
