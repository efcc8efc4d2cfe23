"""Trainer: a tiny overfit, exact resume, the DDP equivalence (2 gloo processes = 1 process with
the same global batch), config errors, corrupt or foreign checkpoints, exported students."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import free_port, make_tiny_drive, spawn_ranks
from xmod_core.checkpoint import CheckpointError, load_checkpoint
from xmod_core.config import ConfigError, from_dict, load_config
from xmod_core.train import TrainConfig, TrainingError, main, train

TINY_MODEL = {"widths": [8, 8, 8, 8, 8], "blocks": [1, 1, 1, 1], "num_slots": 4, "slot_dim": 16, "mlp_hidden": 32,
              "gru_hidden": 16, "decoder_channels": 8, "norm": "group"}


def tiny_cfg(drive: Path, out: Path, **over) -> TrainConfig:
    d = {"stage": "2d_burn_in", "out_dir": str(out), "device": "cpu", "log_every": 1, "ckpt_every": 3, "seed": 3,
         "model": dict(TINY_MODEL), "data": {"drives": [str(drive)], "clip_len": 2, "height": 32, "width": 96, "workers": 0},
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


def _ddp_worker(rank: int, cfg: TrainConfig, port: int):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train(cfg, progress=False)


def test_ddp_two_gloo_processes_match_one_process(tiny_drive, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    over = {"optim.batch_size": 4, "optim.steps": 4}
    train(tiny_cfg(tiny_drive, one, **over), progress=False)
    attempt = spawn_ranks(_ddp_worker, lambda n: (tiny_cfg(tiny_drive, two / f"attempt{n}", **over), free_port()))
    two = two / f"attempt{attempt}"
    a, b = losses(one), losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-4), (a, b)


def test_point_drop_applies_to_the_given_share_of_clips(tiny_drive):
    """augment.point_drop_prob: the share of clips whose student cloud is sparsified (paper 0.1);
    the other clips give the student every return of the target."""
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    dcfg = DataConfig(drives=[str(tiny_drive)], clip_len=2, height=32, width=96, workers=0)

    def sparse_share(prob):
        ds = ClipDataset(dcfg, AugmentConfig(point_drop=0.5, point_drop_prob=prob, point_jitter=0.0), ("lidar",))
        shares = []
        for i in range(len(ds)):
            s = ds[i]
            shares.append(not torch.equal(s["lidar"], s["lidar_target"]))   # jitter off: equal unless points dropped
        return sum(shares) / len(shares)
    assert sparse_share(0.0) == 0.0
    assert sparse_share(1.0) == 1.0
    ds = ClipDataset(dcfg, AugmentConfig(point_drop=0.5, point_drop_prob=0.5, point_jitter=0.0), ("lidar",))
    per_frame = [[not torch.equal(s["lidar"][t], s["lidar_target"][t]) for t in range(2)] for s in map(ds.__getitem__, range(len(ds)))]
    assert all(len(set(f)) == 1 for f in per_frame)                  # one draw per clip: all frames or none
    assert {f[0] for f in per_frame} == {True, False}


def test_min_target_cells_drops_only_the_small_targets(tiny_drive):
    """data.min_target_cells: target instances under that many cells of the mask grid become
    background, the others keep their masks (renumbered 1..G); 0 keeps every target."""
    from xmod_core.data import ClipDataset, DataConfig, drop_small_ids
    ids = np.array([[0, 1, 1, 1], [2, 0, 3, 3], [0, 0, 3, 3]])
    assert np.array_equal(drop_small_ids(ids, 3), [[0, 1, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]])
    assert np.array_equal(drop_small_ids(ids, 0), ids)
    assert not drop_small_ids(ids, 5).any()
    kw = dict(drives=[str(tiny_drive)], clip_len=2, height=32, width=96, workers=0)
    plain = ClipDataset(DataConfig(**kw), None, ("lidar",))
    sizes = [np.bincount(plain[i]["motion"][t].reshape(-1).numpy())[1:] for i in range(len(plain)) for t in range(2)]
    sizes = np.concatenate([s[s > 0] for s in sizes])
    cut = int(np.median(sizes)) + 1                                  # some targets fall under it, some not
    assert (sizes < cut).any() and (sizes >= cut).any()
    strict = ClipDataset(DataConfig(min_target_cells=cut, **kw), None, ("lidar",))
    for i in range(len(plain)):
        a, b = plain[i]["motion"].numpy(), strict[i]["motion"].numpy()
        for t in range(2):
            big = np.bincount(a[t].reshape(-1))
            kept = np.isin(a[t], np.flatnonzero(big >= cut)) & (a[t] > 0)
            assert np.array_equal(b[t] > 0, kept)                     # exactly the large targets' cells stay
            assert b[t].max(initial=0) == len(np.unique(a[t][kept]))  # renumbered without gaps


def test_min_target_cells_must_not_be_negative():
    with pytest.raises(ValueError, match="min_target_cells"):
        from_dict(TrainConfig, {"data": {"min_target_cells": -1}})


def test_camera_appearance_augmentation(tiny_drive):
    """augment.gamma / channel_gain / blur / noise change only the 2D student's input, each as it
    should: the crop, the clean image, the LiDAR and the masks stay those of the same seed without
    them, and at 0 (the default) the input is bit-identical to the colour jitter alone."""
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    dcfg = DataConfig(drives=[str(tiny_drive)], clip_len=2, height=32, width=96, workers=0)
    base = dict(color_jitter=0.0, grayscale=0.0)
    hf = lambda x: (x[..., 1:] - x[..., :-1]).abs().mean().item()           # high-frequency energy
    gains = lambda x, r: x.mean((0, 2, 3)) / r.mean((0, 2, 3))              # (3,) per-channel brightness ratio
    for kw, check in (({"noise": 0.1}, lambda x, r: hf(x) > hf(r) and (x - r).abs().mean() > 1e-3),
                      ({"blur": 3.0}, lambda x, r: hf(x) < hf(r) * 0.9),
                      ({"gamma": 1.0}, lambda x, r: not torch.allclose(x, r, atol=1e-3)),
                      ({"channel_gain": 0.5}, lambda x, r: (gains(x, r).max() - gains(x, r).min()).item() > 0.02)):
        hits = []
        for seed in range(4):                                               # blur hits half the clips
            s = ClipDataset(dcfg, AugmentConfig(**base, **kw), ("rgb", "lidar"), seed=seed)[0]
            ref = ClipDataset(dcfg, AugmentConfig(**base), ("rgb", "lidar"), seed=seed)[0]
            assert torch.allclose(ref["rgb"], ref["rgb_clean"], atol=1e-5)   # no colour jitter, no camera effects
            for k in ("crop", "flip", "rgb_clean", "lidar", "lidar_target", "motion"):
                assert torch.equal(s[k], ref[k]), (kw, k)
            assert s["rgb"].min() >= 0 and s["rgb"].max() <= 1
            hits.append(check(s["rgb"], ref["rgb_clean"]))
        assert any(hits) and (all(hits) or kw == {"blur": 3.0}), (kw, hits)
    # off (the default): the camera step hands the jittered image through untouched
    ds = ClipDataset(dcfg, AugmentConfig(color_jitter=0.3, grayscale=0.1), ("rgb",), seed=5)
    x = torch.rand(2, 32, 96, 3).numpy()
    assert ds._camera(x, 1) is x


def test_preloaded_frames_give_the_same_clips(tiny_drive):
    """data.preload decodes every frame once; the clips (augmentation included) are unchanged."""
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    kw = dict(drives=[str(tiny_drive)], clip_len=2, height=32, width=96, workers=0)
    disk = ClipDataset(DataConfig(**kw), AugmentConfig(point_drop_prob=0.5), ("rgb", "lidar"), seed=1)
    mem = ClipDataset(DataConfig(preload=True, **kw), AugmentConfig(point_drop_prob=0.5), ("rgb", "lidar"), seed=1)
    assert mem.frames and len(mem.frames) == sum(len(d) for d in mem.drives)
    for ds in (disk, mem):
        ds.set_epoch(3)
    for i in (0, len(disk) - 1):
        a, b = disk[i], mem[i]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), i


def test_weight_average_is_exported_and_resumes_exactly(tiny_drive, tmp_path):
    """ema_decay: the average differs from the last weights, survives a resume, and is exported
    beside the student; switched on when resuming, it starts at the resumed weights."""
    from xmod_core.model import load_student
    full, part = tmp_path / "full", tmp_path / "part"
    train(tiny_cfg(tiny_drive, full, ema_decay=0.5), progress=False)
    train(tiny_cfg(tiny_drive, part, ema_decay=0.5, **{"optim.steps": 3}), progress=False)
    train(tiny_cfg(tiny_drive, part, ema_decay=0.5), resume=True, progress=False)
    (a, _), (b, _) = load_student(full / "student_rgb_ema.pt"), load_student(part / "student_rgb_ema.pt")
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)
    last, _ = load_student(full / "student_rgb.pt")
    key = "slots_init"
    assert not torch.equal(a.state_dict()[key], last.state_dict()[key])          # an average, not the last weights
    plain = tmp_path / "plain"
    train(tiny_cfg(tiny_drive, plain, **{"optim.steps": 3}), progress=False)
    assert not (plain / "student_rgb_ema.pt").exists()
    train(tiny_cfg(tiny_drive, plain, ema_decay=0.5), resume=True, progress=False)
    (c, _), (d, _) = load_student(plain / "student_rgb_ema.pt"), load_student(plain / "student_rgb.pt")
    assert not torch.equal(c.state_dict()[key], a.state_dict()[key]) and not torch.equal(c.state_dict()[key], d.state_dict()[key])


def test_finer_grid_trains_on_targets_of_its_size(tiny_drive, tmp_path):
    """model.output_stride 2 with data.mask_stride 2: motion targets on the finer grid; a mismatch
    is refused naming both keys."""
    cfg = tiny_cfg(tiny_drive, tmp_path / "fine", **{"model.output_stride": 2, "data.mask_stride": 2, "optim.steps": 2})
    from xmod_core.data import ClipDataset
    assert ClipDataset(cfg.data, cfg.augment, ("rgb",))[0]["motion"].shape[-2:] == (16, 48)
    assert train(cfg, progress=False)["steps_run"] == 2
    with pytest.raises(ValueError, match="mask_stride.*output_stride"):
        tiny_cfg(tiny_drive, tmp_path / "bad", **{"model.output_stride": 2})


def test_a_coarse_student_starts_a_finer_grid(tiny_drive, tmp_path):
    """init_from takes a stride-4 student (recon_stride 2) into a stride-2 model with recon_stride 1:
    the same weights (lr 0 keeps them), exported with the finer grid's config; with recon_stride 2
    the decoder does not fit and the error says which recon_stride does."""
    widths = [8, 8, 16, 16, 16]                   # layer2 widens (as the demo's): its shortcut is a conv at either stride
    coarse = tmp_path / "coarse"
    train(tiny_cfg(tiny_drive, coarse, **{"model.widths": widths, "model.recon_stride": 2, "optim.steps": 2}), progress=False)
    fine = tmp_path / "fine"
    over = {"model.widths": widths, "model.output_stride": 2, "data.mask_stride": 2, "model.recon_stride": 1, "optim.steps": 1, "optim.lr": 0.0}
    train(tiny_cfg(tiny_drive, fine, init_from=str(coarse / "student_rgb.pt"), **over), progress=False)
    from xmod_core.model import load_student
    (a, _), (b, _) = load_student(coarse / "student_rgb.pt"), load_student(fine / "student_rgb.pt")
    assert b.cfg.output_stride == 2 and a.cfg.output_stride == 4
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa if sa[k].is_floating_point())
    with pytest.raises(TrainingError, match="recon_stride R / 2"):
        train(tiny_cfg(tiny_drive, tmp_path / "bad", init_from=str(coarse / "student_rgb.pt"),
                       **{**over, "model.recon_stride": 2}), progress=False)


def test_bad_ema_decay_and_mask_stride_are_named(tiny_drive, tmp_path):
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    with pytest.raises(ValueError, match="ema_decay must be within"):
        tiny_cfg(tiny_drive, tmp_path / "a", ema_decay=1.0)
    with pytest.raises(ValueError, match="mask_stride must be 2 or 4"):
        ClipDataset(DataConfig(drives=[str(tiny_drive)], mask_stride=3, clip_len=2, height=32, width=96), AugmentConfig())


def test_snapshots_every_export_every_steps_for_a_learning_curve(tiny_drive, tmp_path):
    """export_every: students (and the EMA) are also exported at every multiple of it, each the
    weights of its step (the step-4 snapshot of a 6-step run equals the last weights of a 4-step run
    of the same trajectory); the cadence may change on --resume; a negative value is refused."""
    from xmod_core.model import load_student
    out, short = tmp_path / "snap", tmp_path / "short"
    train(tiny_cfg(tiny_drive, out, ema_decay=0.5, export_every=2, ckpt_every=5), progress=False)
    names = sorted(p.name for p in (out / "snapshots").iterdir())
    assert names == sorted(f"student_rgb{e}_{s}.pt" for s in (2, 4, 6) for e in ("", "_ema")), names
    train(tiny_cfg(tiny_drive, short, ema_decay=0.5, **{"optim.steps": 4}), progress=False)
    for name in ("student_rgb", "student_rgb_ema"):
        (a, meta), (b, _) = load_student(out / "snapshots" / f"{name}_4.pt"), load_student(short / f"{name}.pt")
        assert meta["meta"]["step"] == 4
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=k)
    train(tiny_cfg(tiny_drive, short, ema_decay=0.5, export_every=3, **{"optim.steps": 7}), resume=True, progress=False)
    assert sorted(p.name for p in (short / "snapshots").iterdir()) == ["student_rgb_6.pt", "student_rgb_ema_6.pt"]
    with pytest.raises(ValueError, match="export_every must be >= 0"):
        tiny_cfg(tiny_drive, tmp_path / "bad", export_every=-1)


def test_configs_saved_before_export_every_still_match(tiny_drive, tmp_path):
    """A stage's config.json written before `export_every` existed has no such key: the pipeline's
    check of finished stages (resume_hash of the stored dict) must still match, not raise."""
    from xmod_core.config import to_dict
    from xmod_core.train import resume_hash
    cfg = tiny_cfg(tiny_drive, tmp_path / "a", export_every=2)
    old = to_dict(cfg)
    del old["export_every"]
    assert resume_hash(old) == resume_hash(cfg)
    assert resume_hash(old) != resume_hash(tiny_cfg(tiny_drive, tmp_path / "a", seed=4))
    # nor optim.train_only and model.fine_masks, at their defaults; set, they shape the run
    older = to_dict(cfg)
    del older["optim"]["train_only"], older["model"]["fine_masks"]
    assert resume_hash(older) == resume_hash(cfg)
    assert resume_hash(tiny_cfg(tiny_drive, tmp_path / "a", **{"optim.train_only": ["fine."]})) != resume_hash(cfg)
    assert resume_hash(tiny_cfg(tiny_drive, tmp_path / "a", **{"model.fine_masks": True, "data.mask_stride": 2})) != \
        resume_hash(cfg)


def test_training_ceiling_counts_the_step_and_its_convolutions(tmp_path):
    """bench_train --part ceiling on a tiny model: the step's floating-point work is counted (forward
    and backward), nearly all of it in convolutions, and their time is found by the profiler."""
    import sys
    import yaml
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from bench_train import ceiling_one, sgemm_gflops
    cfg = {"stage": "3d_burn_in", "model": dict(TINY_MODEL), "data": {"clip_len": 2, "height": 32, "width": 96},
           "optim": {"batch_size": 2}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    threads = torch.get_num_threads()
    try:
        r = ceiling_one(str(tmp_path / "tiny.yaml"), 1)
    finally:
        torch.set_num_threads(threads)
    assert r["gflop"] > 0 and r["s_per_step"] > 0
    assert 0.5 < r["conv_gflop_share"] <= 1.0 and 0.0 < r["conv_time_share"] < 1.0 and r["conv_gflops_rate"] > 0
    assert sgemm_gflops() > 0 and torch.get_num_threads() == threads            # its thread setting restored


@pytest.mark.parametrize("norm", ["group", "batch"])
def test_fine_mask_head_trains_alone_from_a_coarse_student(tiny_drive, tmp_path, norm):
    """A coarse student grows a fine-mask head (init_from accepts the missing head and nothing
    else: not a head-less model given a student with one); optim.train_only trains the head alone,
    the rest stays as loaded, BatchNorm statistics included; targets live on the 1/2 grid, and a
    1/4 grid is refused naming fine_masks; an unknown prefix is named."""
    from xmod_core.model import load_student
    first = tmp_path / "first"
    train(tiny_cfg(tiny_drive, first, **{"optim.steps": 2, "model.norm": norm}), progress=False)
    over = {"model.fine_masks": True, "data.mask_stride": 2, "optim.steps": 3, "optim.train_only": ["fine."],
            "model.norm": norm}
    head = tmp_path / "head"
    train(tiny_cfg(tiny_drive, head, init_from=str(first / "student_rgb.pt"), **over), progress=False)
    (a, _), (b, _) = load_student(first / "student_rgb.pt"), load_student(head / "student_rgb.pt")
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)                               # the body frozen
    assert not torch.equal(sb["fine.to_q.weight"], torch.zeros_like(sb["fine.to_q.weight"]))   # the head trained
    with torch.no_grad():
        assert b(torch.rand(1, 2, 3, 32, 96))["masks"].shape == (1, 2, 4, 16, 48)
    with pytest.raises(ValueError, match="fine_masks True"):
        tiny_cfg(tiny_drive, tmp_path / "bad", **{"model.fine_masks": True})
    with pytest.raises(TrainingError, match="train_only.*'head.'"):
        train(tiny_cfg(tiny_drive, tmp_path / "bad2", **{**over, "optim.train_only": ["head."]}), progress=False)
    with pytest.raises(TrainingError, match="does not fit"):                        # a head but a different body
        train(tiny_cfg(tiny_drive, tmp_path / "bad3", init_from=str(first / "student_rgb.pt"),
                       **{**over, "model.slot_dim": 8}), progress=False)
    with pytest.raises(TrainingError, match="does not fit.*unexpected keys"):       # a head-less model, a student with one
        train(tiny_cfg(tiny_drive, tmp_path / "bad4", init_from=str(head / "student_rgb.pt"),
                       **{"optim.steps": 1, "model.norm": norm}), progress=False)
