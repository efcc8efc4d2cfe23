"""Mined labels (`xmod_core.mining`): descriptors, the mover / still split, the k-means rule and
the CLI on a tiny drive."""
import hashlib
from pathlib import Path
import json

import cv2
import numpy as np
import pytest

from conftest import make_tiny_drive
from xmod_core import mining
from xmod_core.kitti import KittiRawDrive
from xmod_core.mining import (FEATURES, MiningConfig, candidate_descriptors, fit_ground_plane, kmeans, motion_overlap,
                              movable_clusters, movable_votes)

F = {name: i for i, name in enumerate(FEATURES)}


def box_points(centre, size, yaw=0.0, step=0.1, ground=lambda x, y: np.full_like(x, -1.73), lift=0.25):
    """Points on the sides and top of a box (length, width, height) standing `lift` m above the
    ground (no underside: a LiDAR does not see it)."""
    l, w, h = size
    u, v, z = np.meshgrid(np.arange(-l / 2, l / 2 + 1e-6, step), np.arange(-w / 2, w / 2 + 1e-6, step),
                          np.arange(0, h + 1e-6, step), indexing="ij")
    face = np.isclose(np.abs(u), l / 2) | np.isclose(np.abs(v), w / 2) | np.isclose(z, h)
    u, v, z = u[face], v[face], z[face]
    c, s = np.cos(yaw), np.sin(yaw)
    x, y = centre[0] + c * u - s * v, centre[1] + s * u + c * v
    return np.stack([x, y, ground(x, y) + lift + z], 1)


def test_descriptors_of_a_box_and_a_pole_on_a_sloped_ground():
    slope = lambda x, y: -1.73 + 0.03 * x                                     # 3 % uphill: heights are from the plane
    gx, gy = np.meshgrid(np.arange(2, 40, 0.3), np.arange(-10, 10, 0.3))
    ground = np.stack([gx.ravel(), gy.ravel(), slope(gx, gy).ravel()], 1)
    car = box_points((15, 3), (4.0, 1.8, 1.5), yaw=0.5, ground=slope)
    pole = box_points((20, -4), (0.2, 0.2, 3.0), ground=slope, step=0.05)
    pts = np.concatenate([ground, car, pole])
    labels = np.r_[np.zeros(len(ground), int), np.ones(len(car), int), np.full(len(pole), 2)]
    plane = fit_ground_plane(pts, labels == 0)
    assert plane[2] > 0.99 and np.isclose(np.linalg.norm(plane[:3]), 1)
    d = candidate_descriptors(pts, labels, plane)
    assert d.shape == (2, len(FEATURES))
    car_d, pole_d = d
    # oriented extents (the box is turned by 0.5 rad), heights above the sloped plane
    np.testing.assert_allclose([car_d[F["length"]], car_d[F["width"]]], [4.0, 1.8], atol=0.05)
    np.testing.assert_allclose([car_d[F["top"]], car_d[F["bottom"]]], [1.75, 0.25], atol=0.05)
    np.testing.assert_allclose([pole_d[F["top"]], pole_d[F["bottom"]]], [3.25, 0.25], atol=0.05)
    assert pole_d[F["width"]] < 0.25
    assert pole_d[F["linearity"]] > 0.9 > car_d[F["linearity"]]               # a pole is a line, a car is not
    assert np.isclose(car_d[F["log_points"]], np.log(len(car)))
    # range-normalised density: the same box twice as far with a quarter of the points looks the same
    far = box_points((30, 6), (4.0, 1.8, 1.5), yaw=0.5, ground=slope, step=0.2)
    lab2 = np.r_[np.zeros(len(ground), int), np.ones(len(far), int)]
    d2 = candidate_descriptors(np.concatenate([ground, far]), lab2, plane)
    assert abs(d2[0, F["log_density"]] - car_d[F["log_density"]]) < 0.25
    assert abs(d2[0, F["log_points"]] - car_d[F["log_points"]]) > 1.0


def test_movers_and_still_candidates_from_a_motion_mask():
    hulls = np.zeros((40, 60), np.uint16)
    hulls[5:15, 5:15] = 1                                                     # matched by a motion instance
    hulls[20:30, 5:15] = 2                                                    # inside a much larger instance: no mover,
    hulls[5:15, 40:50] = 3                                                    # but not still either; 3: no motion
    motion = np.zeros((40, 60), np.int64)
    motion[6:15, 5:15] = 7                                                    # IoU 0.9 with candidate 1
    motion[18:40, 0:35] = 9                                                   # IoU 100 / 770 with candidate 2
    iou, inside = motion_overlap(hulls, motion, 3)
    np.testing.assert_allclose(iou, [0.9, 100 / 770, 0.0])
    np.testing.assert_allclose(inside, [0.9, 1.0, 0.0])
    # sparse motion ids are renumbered, not lost
    iou2, _ = motion_overlap(hulls, np.where(motion == 7, 60000, motion), 3)
    np.testing.assert_allclose(iou2, iou)
    cfg = MiningConfig(iou=0.3)
    ok, png = cv2.imencode(".png", hulls)
    f = mining._Frame("0", png.tobytes(), np.zeros((3, len(FEATURES))), np.full(3, 50), np.full(3, 10.0), iou, inside, True)
    np.testing.assert_array_equal(f.mover(cfg), [True, False, False])
    labels, idx = mining.frame_labels(f, np.ones(3), cfg)                     # all voted movable
    np.testing.assert_array_equal(idx, [2])                                   # no mover, no candidate inside motion
    assert labels.dtype == np.uint16 and set(np.unique(labels)) == {0, 1} and (labels == 1).sum() == 100
    assert (labels[hulls == 3] == 1).all()
    f.known = False                                                           # motion unknown: nobody is a mover
    assert not f.mover(cfg).any()


def test_kmeans_and_the_movable_share_rule():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [8, 0], [0, 8]], float)
    x = np.concatenate([c + rng.normal(0, 0.5, (100, 2)) for c in centres])
    truth = np.repeat(np.arange(3), 100)
    c, a, inertia = kmeans(x, 3, seed=1, restarts=2)
    assert c.shape == (3, 2) and inertia < 300 * 0.6
    assert len({(t, p) for t, p in zip(truth, a)}) == 3                       # the blobs, up to a permutation
    c2, a2, _ = kmeans(x, 3, seed=1, restarts=2)
    np.testing.assert_array_equal(a, a2)                                      # seeded: reproducible
    assert len(kmeans(x[:2], 5)[0]) == 2                                      # k > N: one cluster per point
    mover = np.zeros(300, bool)
    mover[:10] = True                                                         # 10 % of blob 0
    mover[100:102] = True                                                     # 2 % of blob 1
    known = np.ones(300, bool)
    movable, share, members, movers = movable_clusters(a, mover, known, 3, share=0.05)
    blob = {t: p for t, p in zip(truth, a)}
    assert movable[blob[0]] and not movable[blob[1]] and not movable[blob[2]]
    np.testing.assert_allclose(share[blob[0]], 0.1)
    assert movable_clusters(a, mover, known, 3, share=0.01)[0][blob[1]]       # a lower share admits blob 1
    assert not movable_clusters(a, mover, known, 3, share=0.01, min_movers=3)[0][blob[1]]
    known[100:200] = False                                                    # unknown motion counts neither way
    assert movable_clusters(a, mover, known, 3, share=0.01)[2][blob[1]] == 0
    # the ensemble's vote: the share of runs calling a candidate's cluster movable
    cfg = MiningConfig(share=0.05, min_movers=1)
    runs = [(3, 0, a), (3, 1, np.where(truth == 0, blob[1], a))]              # run 2 puts blob 0 with blob 1
    cls = movable_votes(runs, mover, np.ones(300, bool), cfg)
    np.testing.assert_allclose(cls.vote[[0, 150, 250]], [1.0, 0.5, 0.0])


def _tiny_scene(root):
    """The tiny drive with a moving box (and its motion mask), two still boxes of the same size
    and two poles added to every scan."""
    drive_dir = make_tiny_drive(root)
    drive = KittiRawDrive(drive_dir)
    still = np.concatenate([box_points((14, -4), (4, 1.8, 1.5)), box_points((18, 0.5), (4, 1.8, 1.5))])
    poles = np.concatenate([box_points((9, -1), (0.2, 0.2, 3), step=0.05), box_points((8, -4), (0.2, 0.2, 3), step=0.05)])
    for t, fid in enumerate(drive.frame_ids):
        mover = box_points((10 + 0.3 * t, 4), (4, 1.8, 1.5))
        scan = drive.scan(t)
        extra = np.concatenate([mover, still, poles])
        np.concatenate([scan, np.c_[extra, np.full(len(extra), 0.3)].astype(np.float32)]).astype(np.float32).tofile(
            drive.scan_path(t))
        uv, _ = drive.calib.project(mover)
        mask = np.zeros((drive.calib.height, drive.calib.width), np.uint16)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.floor(uv + 0.5).astype(np.int32)), 1)
        cv2.imwrite(str(drive_dir / "image_02/motion_masks" / f"{fid}.png"), mask)
    return drive_dir


def _digest(drive_dir):
    return {str(p.relative_to(drive_dir.parent)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(drive_dir.parent.rglob("*")) if p.is_file() and "mined_masks" not in p.parts}


def test_cli_writes_mined_masks_and_json(tmp_path, capsys):
    drive_dir = _tiny_scene(tmp_path)
    before = _digest(drive_dir)
    rc = mining.main([str(drive_dir), "--k", "2", "--runs", "1", "--vote", "1", "--min-movers", "1", "--quiet",
                      "--overlays", str(tmp_path / "ov")])
    assert rc == 0, capsys.readouterr().err
    assert _digest(drive_dir) == before                                       # nothing else in the drive changed
    out = drive_dir / "image_02/mined_masks"
    meta = json.loads((out / "mined.json").read_text())
    assert meta["params"]["k"] == [2] and meta["params"]["share"] == 0.05 and meta["format"] == 1
    frames = sorted(p.stem for p in (drive_dir / "image_02/data").glob("*.png"))
    assert sorted(meta["frames"]) == frames and meta["motion_unknown"] == []
    for fid in frames:
        m = cv2.imread(str(out / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
        motion = cv2.imread(str(drive_dir / "image_02/motion_masks" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint16 and m.shape == (64, 208)
        ids = set(np.unique(m)) - {0}
        assert ids == {1, 2}                                                  # the two still boxes, not the poles
        assert {int(i) for i in meta["frames"][fid]} == ids
        assert all(0 < v["confidence"] <= 1 and v["points"] > 0 for v in meta["frames"][fid].values())
        assert ((m > 0) & (motion > 0)).sum() < 0.2 * (m > 0).sum()           # the mover is not mined
    assert len(list((tmp_path / "ov").glob("*.png"))) == len(frames)
    assert "8 frames" in capsys.readouterr().out
    from xmod_core import data                                                # the loader reads the same motion masks
    assert mining.MOTION_DIR == data.MOTION_DIR
    np.testing.assert_array_equal(mining.read_motion(drive_dir, data.MOTION_DIR, frames[0]),
                                  data.read_motion(drive_dir, data.MOTION_DIR, frames[0]))


def test_cli_names_a_missing_drive_or_missing_motion_masks(tmp_path, capsys):
    assert mining.main([str(tmp_path / "nowhere"), "--quiet"]) == 1
    assert "nowhere: drive directory not found" in capsys.readouterr().err
    drive_dir = make_tiny_drive(tmp_path / "a", frames=2)
    for p in (drive_dir / "image_02/motion_masks").glob("*.png"):
        p.unlink()
    assert mining.main([str(drive_dir), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "motion_masks: no motion masks" in err and "xmod_core.motion" in err
    assert not (drive_dir / "image_02/mined_masks").exists()
    with pytest.raises(SystemExit):
        mining.main([str(drive_dir), "--share", "0"])                         # argparse error naming the value
    assert "share" in capsys.readouterr().err


def test_loader_merges_mined_labels_and_trains_two_steps(tmp_path, capsys):
    """data.mined_dir: the mined still objects join the motion instances of the training clips
    (the motion mask wins where both are set, low-confidence ones left out), and a two-step
    burn-in trains on them."""
    import torch
    from xmod_core.data import AugmentConfig, ClipDataset, DataConfig
    from xmod_core.config import load_config
    from xmod_core.train import TrainConfig, train
    drive_dir = _tiny_scene(tmp_path)
    assert mining.main([str(drive_dir), "--k", "2", "--runs", "1", "--vote", "1", "--min-movers", "1", "--quiet"]) == 0
    kw = dict(drives=[str(drive_dir)], clip_len=2, height=64, width=208, workers=0)
    plain = ClipDataset(DataConfig(**kw), None, ("lidar",))
    mined = ClipDataset(DataConfig(mined_dir="image_02/mined_masks", **kw), None, ("lidar",))
    strict = ClipDataset(DataConfig(mined_dir="image_02/mined_masks", mined_min_confidence=1.01, **kw), None, ("lidar",))
    a, b, c = plain[0]["motion"], mined[0]["motion"], strict[0]["motion"]
    assert int(a.amax()) == 1 and int(b.amax()) == 3                          # the mover, then the two still boxes
    assert torch.equal((b == 1), (a == 1)) and torch.equal(c, a)
    # the first mined id of each frame: after the motion ids (none mined: G + 1)
    assert mined[0]["motion_mined_from"].tolist() == [2, 2] and plain[0]["motion_mined_from"].tolist() == [2, 2]
    assert strict[0]["motion_mined_from"].tolist() == [2, 2]
    # motion ids that skip numbers (3, 7), one of them too small to stay a target: still the first mined id
    d0 = mined.drives[0]
    for fid in d0.frame_ids:
        png = drive_dir / "image_02/motion_masks" / f"{fid}.png"
        m = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        m = np.where(m == 1, 3, 0).astype(np.uint16)
        m[0:8, 0:8] = 7                                                      # 2x2 cells at mask stride 4
        cv2.imwrite(str(png), m)
    skip = ClipDataset(DataConfig(mined_dir="image_02/mined_masks", **kw), None, ("lidar",))
    assert int(skip[0]["motion"].amax()) == 4 and skip[0]["motion_mined_from"].tolist() == [3, 3]
    dropped = ClipDataset(DataConfig(mined_dir="image_02/mined_masks", min_target_cells=5, **kw), None, ("lidar",))
    assert int(dropped[0]["motion"].amax()) == 3 and dropped[0]["motion_mined_from"].tolist() == [2, 2]
    with pytest.raises(FileNotFoundError, match="xmod_core.mining"):
        ClipDataset(DataConfig(mined_dir="image_02/none", **kw), None, ("lidar",))
    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "config/demo/3d_burn_in.yaml", [
        f"data.drives=[{str(drive_dir)!r}]", "data.mined_dir=image_02/mined_masks", "data.clip_len=2", "data.height=64",
        "data.width=208", "data.workers=0", "optim.steps=2", "optim.batch_size=2", f"out_dir={tmp_path / 'run'}",
        "model.widths=[8,8,16,16,16]", "model.num_slots=4", "model.slot_dim=16", "model.gru_hidden=8", "model.mlp_hidden=16",
        "model.decoder_channels=8", "loss.mined_weight=2.0"])
    r = train(cfg, progress=False)
    assert r["steps_run"] == 2 and (tmp_path / "run" / "student_lidar.pt").is_file()
    fid = mined.drives[0].frame_ids[0]                                       # a mined mask of another size is named
    png = drive_dir / "image_02/mined_masks" / f"{fid}.png"
    cv2.imwrite(str(png), np.zeros((10, 20), np.uint16))
    with pytest.raises(ValueError, match=f"{fid}.png is 20x10"):
        mined[0]


def test_snap_labels_tool_unites_hybrid_and_mined_instances(tmp_path, capsys):
    """tools/snap_labels.py (an ablation, docs/training.md): hybrid instances first, a mined instance
    added only where it lies mostly outside them; written as the loader reads mined labels."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("snap_labels", Path(__file__).parents[1] / "tools/snap_labels.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    hybrid = np.array([[0, 7, 7, 0, 0, 0], [0, 7, 7, 0, 0, 0]])
    mined = np.array([[0, 1, 1, 0, 2, 2], [0, 0, 0, 3, 2, 2]])
    assert tool.snap(hybrid, mined).tolist() == [[0, 1, 1, 0, 2, 2], [0, 1, 1, 3, 2, 2]]   # mined 1 lies under hybrid 7
    drive_dir = _tiny_scene(tmp_path)
    assert mining.main([str(drive_dir), "--k", "2", "--runs", "1", "--vote", "1", "--min-movers", "1", "--quiet"]) == 0
    assert tool.main(["snap", str(drive_dir)]) == 0
    from xmod_core.data import read_mined_confidence, read_motion
    conf = read_mined_confidence(drive_dir, "image_02/snap")
    for fid, ids in conf.items():
        lab = read_motion(drive_dir, "image_02/snap", fid)
        mined = read_motion(drive_dir, "image_02/mined_masks", fid)
        assert set(np.unique(lab)) - {0} == {int(i) for i in ids}
        for i in set(np.unique(mined)) - {0}:                                   # each mined object is labelled
            assert (lab[mined == i] > 0).mean() > 0.5
