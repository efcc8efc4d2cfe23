"""The lead object (the car directly ahead, found by geometry) and the point IoU that scores a
prediction against it."""
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xmod_core.lead import LeadConfig, best_iou, found, lead_object
from xmod_core.model import DIOD, ModelConfig
from xmod_core.stages import student_config
from xmod_core.train import export_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import car_ahead  # noqa: E402


def box(x0, x1, y0, y1, z0, z1, step=0.1) -> np.ndarray:
    """Returns on the sides and top of a box (LiDAR frame, metres); none from below."""
    g = lambda a, b: np.arange(a, b + 1e-9, step)
    faces = [np.array(np.meshgrid(g(x0, x1), g(y0, y1), [z], indexing="ij")).reshape(3, -1).T for z in (z1,)]
    faces += [np.array(np.meshgrid(g(x0, x1), [y], g(z0, z1), indexing="ij")).reshape(3, -1).T for y in (y0, y1)]
    faces += [np.array(np.meshgrid([x], g(y0, y1), g(z0, z1), indexing="ij")).reshape(3, -1).T for x in (x0, x1)]
    return np.concatenate(faces)


def street(cars: dict) -> tuple[np.ndarray, dict]:
    """A flat road 1.73 m below the LiDAR, a bridge deck across it, a long wall on the right, and
    the named cars ((x0, x1, y0, y1) footprints, 1.5 m tall); the points and each part's slice."""
    ground = np.array(np.meshgrid(np.arange(0, 50, 0.3), np.arange(-10, 10, 0.3), [-1.73], indexing="ij")).reshape(3, -1).T
    parts = {"ground": ground,
             "bridge": box(30, 33, -10, 10, 3.0, 3.6, 0.3),             # above the corridor, too long to be an object
             "wall": box(0, 40, -8.2, -8.0, -1.7, 0.5, 0.2)}            # beside the lane, 40 m long
    parts |= {k: box(x0, x1, y0, y1, -1.4, -0.1) for k, (x0, x1, y0, y1) in cars.items()}
    pts, where, n = [], {}, 0
    for k, p in parts.items():
        where[k] = slice(n, n + len(p))
        pts.append(p)
        n += len(p)
    return np.concatenate(pts), where


def test_lead_is_the_nearest_car_in_the_lane_not_the_one_beside_it():
    # the car beside is nearer, the lorry further ahead has more returns: the lead is the car ahead
    pts, where = street({"beside": (5, 9, 2.5, 4.3), "ahead": (12, 16, -0.9, 0.9), "far": (25, 32, -1.1, 1.1)})
    lead = lead_object(pts)
    assert lead is not None
    assert lead[where["ahead"]].all()
    assert lead.sum() == where["ahead"].stop - where["ahead"].start      # nothing else: not the car beside, far, road
    pts2, where2 = street({"beside": (5, 9, 2.5, 4.3), "far": (25, 32, -1.1, 1.1)})
    lead2 = lead_object(pts2)
    assert lead2 is not None and lead2[where2["far"]].all()              # the next one in the lane takes over


def test_no_lead_on_an_empty_lane_or_below_min_points():
    pts, _ = street({"beside": (5, 9, 2.5, 4.3)})
    assert lead_object(pts) is None                                      # road, wall, bridge, a car in the other lane
    pts, where = street({"ahead": (12, 12.3, -0.15, 0.15)})             # a post: few returns in the corridor
    assert lead_object(pts, LeadConfig(min_points=10_000)) is None
    assert lead_object(pts, LeadConfig(min_points=10)) is not None


def test_best_iou_and_found():
    target = np.zeros(100, bool)
    target[10:50] = True
    labels = np.zeros(100, np.int64)
    labels[10:50] = 3
    assert best_iou(labels, target) == (1.0, 3) and found(labels, target)
    labels[29:50] = 4                                                    # split 19 / 21: the larger part matches
    iou, k = best_iou(labels, target)
    assert iou == pytest.approx(21 / 40) and k == 4 and found(labels, target)
    labels[29] = 3
    labels[30] = 5                                                       # 20 / 1 / 19
    assert best_iou(labels, target) == (0.5, 3) and found(labels, target)   # F1@50's rule: IoU >= 0.5 counts
    labels[10] = 6                                                       # 19 / 1 / 1 / 19
    assert best_iou(labels, target)[0] == pytest.approx(19 / 40) and not found(labels, target)
    labels[10:70] = 3                                                    # spills over half as much again: IoU 40/60
    assert best_iou(labels, target)[0] == pytest.approx(40 / 60) and found(labels, target)
    labels[:] = 0
    labels[60:] = 1                                                      # nothing on the target
    assert best_iou(labels, target) == (0.0, 0) and not found(labels, target)
    assert best_iou(labels.astype(np.uint16), target.astype(np.uint8))[0] == 0.0      # dtypes of a FrameResult
    with pytest.raises(ValueError, match=">= 0"):
        best_iou(labels - 2, target)
    with pytest.raises(ValueError, match="one value per point"):
        best_iou(labels[:50], target)


def test_bad_corridor_is_refused():
    with pytest.raises(ValueError, match="x_min < x_max"):
        LeadConfig(x_min=10, x_max=5)
    with pytest.raises(ValueError, match="corridor is empty"):
        LeadConfig(min_z=1.0, max_z=0.0)


def test_car_ahead_tool_counts_the_frames_with_a_lead_and_writes_overlays(tiny_drive, tmp_path):
    """tools/car_ahead.py on the tiny drive (a wall across the road 25 m ahead, the road) with a car
    added 10 m ahead in frames 2-4: only those frames have a lead and an IoU; an overlay per frame
    and a contact sheet are written; a missing drive is refused."""
    shutil.copytree(tiny_drive.parent, tmp_path / tiny_drive.parent.name)          # the drive and its calibration
    drive = tmp_path / tiny_drive.parent.name / tiny_drive.name
    car = box(10, 14, -0.9, 0.9, -1.4, -0.1, 0.05).astype(np.float32)
    scans = sorted((drive / "velodyne_points/data").glob("*.bin"))
    for f in scans[2:5]:
        pts = np.fromfile(f, np.float32).reshape(-1, 4)
        np.concatenate([pts, np.c_[car, np.full(len(car), 0.3, np.float32)]]).tofile(f)
    tiny = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32,
                       gru_hidden=16, decoder_channels=8, norm="group")
    torch.manual_seed(0)
    ckpt = tmp_path / "student_lidar.pt"
    export_student(ckpt, "test", "lidar", tiny, DIOD(student_config(tiny, "lidar")).state_dict(), {})
    res = car_ahead.run(drive, ["lidar"], ckpt_3d=str(ckpt), out=tmp_path / "out", sheet_frames=2)["lidar"]
    assert res["frames"] == len(scans) and res["with_lead"] == 3
    assert [v is not None for v in res["iou"]] == [2 <= t <= 4 for t in range(len(scans))]
    assert 0 <= res["found"] <= 3 and all(0.0 <= v <= 1.0 for v in res["iou"] if v is not None)
    assert len(list((tmp_path / "out" / "lidar").glob("*.png"))) == len(scans)
    assert (tmp_path / "out" / "sheet_lidar.jpg").is_file()
    with pytest.raises(SystemExit):
        car_ahead.main(["--drive", str(tmp_path / "missing")])


def test_car_ahead_size_flags_reach_the_students(tiny_drive, tmp_path, monkeypatch):
    """`--height/--width` set the processing size of every method's Predictor (the default is the
    students' training size, 96x320), `--zoom-tiles` its zoomed tiles (default none), `--mirror`
    the mirrored view (default off), `--min-score` both students' threshold (default each one's own)."""
    seen = []

    class Recorder(car_ahead.Predictor):
        def __init__(self, cfg, calib):
            seen.append((cfg.height, cfg.width, cfg.zoom_tiles, cfg.mirror, cfg.min_score))
            super().__init__(cfg, calib)

    monkeypatch.setattr(car_ahead, "Predictor", Recorder)
    args = ["--drive", str(tiny_drive), "--methods", "lidar"]
    assert car_ahead.main(args + ["--height", "64", "--width", "192"]) == 0
    assert car_ahead.main(args) == 0
    assert car_ahead.main(args + ["--zoom-tiles", "2"]) == 0
    assert car_ahead.main(args + ["--mirror"]) == 0
    assert car_ahead.main(args + ["--min-score", "0.7"]) == 0
    assert seen == [(64, 192, 0, False, None), (96, 320, 0, False, None), (96, 320, 2, False, None),
                    (96, 320, 0, True, None), (96, 320, 0, False, 0.7)]
