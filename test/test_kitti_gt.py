"""Real KITTI ground truth: label and calibration readers (hand-made files, good and bad), the
points of each 3D box, the layouts, and the real-label evaluator on the shared benchmark frames."""
from pathlib import Path

import numpy as np
import pytest

from xmod_core.kitti import KittiFormatError
from xmod_core.kitti_gt import (KittiObjectSet, KittiTrackingSeq, Label, find_gt_sources, points_in_boxes, read_calib,
                                read_labels)

SHARED = Path(__file__).resolve().parents[2] / "shared"
# velo (x forward, y left, z up) -> camera (x right, y down, z forward), no offset
TR = "0 -1 0 0 0 0 -1 0 1 0 0 0"
P2 = "700 0 600 0 0 700 180 0 0 0 1 0"
EYE = "1 0 0 0 1 0 0 0 1"


def write_object_layout(root: Path, labels: str, points: np.ndarray, calib: str | None = None) -> Path:
    t = root / "training"
    for sub in ("velodyne", "calib", "label_2"):
        (t / sub).mkdir(parents=True, exist_ok=True)
    np.asarray(points, "<f4").tofile(t / "velodyne/000000.bin")
    (t / "calib/000000.txt").write_text(calib or f"P2: {P2}\nR0_rect: {EYE}\nTr_velo_to_cam: {TR}\n")
    (t / "label_2/000000.txt").write_text(labels)
    return root


def test_labels_object_and_tracking_layouts(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("Car 0.00 0 -1.5 10 20 110 80 1.5 1.8 4.0 1.0 1.6 12.0 0.3\n\nDontCare -1 -1 -10 5 5 50 50 -1 -1 -1 -1000 -1000 -1000 -10\n")
    (_, car), (_, dc) = read_labels(f)
    assert car.type == "Car" and car.track_id == -1 and np.allclose(car.bbox, [10, 20, 110, 80])
    assert np.allclose(car.dims, [1.5, 1.8, 4.0]) and np.allclose(car.location, [1.0, 1.6, 12.0]) and car.rotation_y == 0.3
    assert dc.type == "DontCare"
    f.write_text("3 7 Van 0 0 -1.7 296 161 455 292 2.0 1.8 4.4 -4.5 1.8 13.4 -2.1\n")
    [(frame, van)] = read_labels(f, tracking=True)
    assert frame == 3 and van.track_id == 7 and van.type == "Van" and van.rotation_y == pytest.approx(-2.1)


@pytest.mark.parametrize("text, tracking, msg", [
    ("Car 0 0 -1.5 10 20 110 80 1.5 1.8 4.0 1.0 1.6 12.0\n", False, "a.txt:1: 14 fields, expected 15"),
    ("Car 0 0 -1.5 10 20 110 80 1.5 1.8 4.0 1.0 1.6 12.0 0.3\nCar 0 0 x 10 20 110 80 1.5 1.8 4.0 1.0 1.6 12.0 0.3\n",
     False, "a.txt:2: not a number"),
    ("Car 0 0 -1.5 10 20 110 80 1.5 0 4.0 1.0 1.6 12.0 0.3\n", False, "a.txt:1: box dimensions must be positive"),
    ("Car 0 0 -1.5 10 20 110 80 1.5 nan 4.0 1.0 1.6 12.0 0.3\n", False, "a.txt:1: non-finite"),
    ("Car 0 0 -1.5 10 20 110 80 1.5 1.8 4.0 1.0 1.6 12.0 0.3\n", True, "a.txt:1: 15 fields, expected 17"),
])
def test_bad_labels_name_file_and_line(tmp_path, text, tracking, msg):
    f = tmp_path / "a.txt"
    f.write_text(text)
    with pytest.raises(KittiFormatError, match=msg):
        read_labels(f, tracking)


def test_calibration_both_naming_conventions(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text(f"P0: {P2}\nP2: {P2}\nR0_rect: {EYE}\nTr_velo_to_cam: {TR}\n")
    a = read_calib(f, 375, 1242)
    f.write_text(f"P2: {P2}\nR_rect {EYE}\nTr_velo_cam {TR}\n")                # tracking: no colon, other names
    b = read_calib(f, 375, 1242)
    assert np.array_equal(a.P_rect, b.P_rect) and np.array_equal(a.T_velo_to_cam, b.T_velo_to_cam)
    assert np.allclose(a.velo_to_rect(np.array([[10.0, 2.0, 1.0]])), [[-2.0, -1.0, 10.0]])
    f.write_text(f"P2: {P2}\nR0_rect: {EYE}\n")
    with pytest.raises(KittiFormatError, match="missing key Tr_velo_to_cam or Tr_velo_cam"):
        read_calib(f, 375, 1242)
    f.write_text(f"P2: {P2}\nR0_rect: 1 0 0\nTr_velo_to_cam: {TR}\n")
    with pytest.raises(KittiFormatError, match="c.txt:2: R0_rect has 3 values, expected 9"):
        read_calib(f, 375, 1242)


def test_points_in_boxes_rotation_dontcare_and_overlap(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text(f"P2: {P2}\nR0_rect: {EYE}\nTr_velo_to_cam: {TR}\n")
    calib = read_calib(f, 375, 1242)
    box = lambda ry, t="Car", loc=(0.0, 1.5, 10.0): Label(t, -1, 0, 0, np.zeros(4), np.array([1.5, 2.0, 4.0]),
                                                         np.array(loc), ry)
    cam = np.array([[1.9, 1.0, 10.5], [2.1, 1.0, 10.0], [0.5, 1.0, 11.5], [0.0, 1.6, 10.0], [0.0, -0.1, 10.0]])
    velo = np.stack([cam[:, 2], -cam[:, 0], -cam[:, 1]], 1)                     # inverse of TR
    # ry = 0: length along the camera's x, width along z; y (down) from 1.5 - 1.5 = 0 to 1.5
    assert list(points_in_boxes(velo, calib, [box(0.0)])) == [1, 0, 0, 0, 0]
    # ry = pi/2: length along z
    assert list(points_in_boxes(velo, calib, [box(np.pi / 2)])) == [0, 0, 1, 0, 0]
    # DontCare holds no points; overlapping boxes: the first wins
    assert list(points_in_boxes(velo, calib, [box(0.0, "DontCare"), box(np.pi / 2), box(0.0)])) == [3, 0, 2, 0, 0]
    assert len(points_in_boxes(np.zeros((0, 4)), calib, [box(0.0)])) == 0


def test_layouts_found_and_checked(tmp_path):
    car = "Car 0 0 0 10 20 110 80 1.5 1.8 4.0 0.0 1.6 12.0 0\n"
    root = write_object_layout(tmp_path / "obj", car, np.array([[12.0, 0.0, -1.0, 0.5]]))
    tr = tmp_path / "trk" / "training"
    for sub in ("velodyne/0003", "calib", "label_02"):
        (tr / sub).mkdir(parents=True)
    for i in range(2):
        np.zeros((5, 4), "<f4").tofile(tr / f"velodyne/0003/{i:06d}.bin")
    (tr / "calib/0003.txt").write_text(f"P2: {P2}\nR_rect {EYE}\nTr_velo_cam {TR}\n")
    (tr / "label_02/0003.txt").write_text("1 4 " + car + "1 -1 DontCare -1 -1 -10 1 2 3 4 -1 -1 -1 -1000 -1000 -1000 -10\n")
    obj, seq = find_gt_sources([str(tmp_path / "obj"), str(tmp_path / "trk"), str(tmp_path / "nothing")])
    assert isinstance(obj, KittiObjectSet) and isinstance(seq, KittiTrackingSeq)
    assert not obj.is_sequence and seq.is_sequence and not obj.has_images and seq.name.endswith("0003")
    f0 = obj.frame(0)
    assert (f0.calib.height, f0.calib.width) == (375, 1242) and f0.image is None and f0.labels[0].type == "Car"
    assert points_in_boxes(f0.scan, f0.calib, f0.labels).tolist() == [1]
    assert seq.frame(0).labels == [] and [lb.track_id for lb in seq.frame(1).labels] == [4, -1]
    assert seq.frame(1).stamp == pytest.approx(0.1)
    (root / "training/label_2/000000.txt").unlink()
    with pytest.raises(KittiFormatError, match="label_2: missing 1 file"):
        KittiObjectSet(root)
    (tr / "velodyne/0003/000000.bin").write_bytes(b"\0" * 17)
    with pytest.raises(KittiFormatError, match="not a multiple of 16"):
        seq.frame(0)


@pytest.mark.skipif(not (SHARED / "kitti_tracking").is_dir(), reason="../shared/kitti_tracking is absent")
def test_real_tracking_labels_hold_their_points():
    seq = find_gt_sources([str(SHARED / "kitti_tracking")])[0]
    fr = seq.frame(0)
    idx = points_in_boxes(fr.scan, fr.calib, fr.labels)
    objs = [i for i, lb in enumerate(fr.labels) if lb.type != "DontCare"]
    counts = np.bincount(idx, minlength=len(fr.labels) + 1)[1:]
    assert all(counts[i] >= 100 for i in objs)                                 # the near van, cyclist, pedestrian
    assert (idx > 0).mean() < 0.1                                              # objects are a small part of a scan


@pytest.mark.skipif(not (SHARED / "kitti_object").is_dir(), reason="../shared/kitti_object is absent")
def test_real_object_2d_boxes_are_their_3d_boxes_projected():
    """KITTI's 2D boxes follow from its 3D boxes (annotated in the point clouds): read with their
    calibration, each labelled 3D box's image rectangle overlaps the labelled 2D box, occluded
    objects included (the convention `evaluate --gt-boxes kitti` and `box_source` rest on)."""
    from xmod_core.metrics import box_iou
    src = find_gt_sources([str(SHARED / "kitti_object")])[0]
    ious = []
    for i in range(len(src)):
        fr = src.frame(i)
        for lb in (lb for lb in fr.labels if lb.type != "DontCare"):
            (h, w, l), (x, y, z), c, s = lb.dims, lb.location, np.cos(lb.rotation_y), np.sin(lb.rotation_y)
            u = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * l / 2                  # along the heading
            v = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
            corners = np.stack([x + c * u + s * v, y - np.repeat([0.0, h], 4), z - s * u + c * v], 1)
            uvw = corners @ fr.calib.P_rect[:, :3].T + fr.calib.P_rect[:, 3]
            uv = uvw[:, :2] / uvw[:, 2:]
            rect = np.clip([[*uv.min(0), *uv.max(0)]], 0, [fr.calib.width, fr.calib.height] * 2)
            ious.append(box_iou(np.array([lb.bbox]), rect)[0, 0])
    assert len(ious) >= 40 and np.median(ious) > 0.9 and np.mean(np.array(ious) > 0.5) > 0.9


def test_real_label_evaluator_on_a_hand_made_frame(tmp_path):
    """A car of points and a clutter wall: clustering finds both (the wall a false positive), a
    cluster inside a DontCare region is no false positive, the 2D box of the car is a hit."""
    from xmod_core.evaluate import evaluate_real, real_tables
    from xmod_core.kitti_gt import KittiObjectSet
    ys, zs = np.meshgrid(np.arange(-0.8, 0.8, 0.05), np.arange(-1.4, -0.2, 0.05))
    car = np.stack([np.full(ys.size, 10.0), ys.ravel(), zs.ravel(), np.zeros(ys.size)], 1)          # a face at 10 m
    wall = car + [[6.0, -6.0, 0.0, 0.0]]                                                           # clutter at 16 m
    hidden = car + [[10.0, 6.0, 0.0, 0.0]]                                                         # in the DontCare box
    gx, gy = np.meshgrid(np.arange(3, 30, 0.3), np.arange(-8, 8, 0.3))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.73), np.zeros(gx.size)], 1)
    # the car's box in camera coordinates: bottom centre below the face, 1.6 m wide, 1.2 m high
    label = "Car 0 0 0 {} 1.2 1.6 1.0 0.0 {} 10.2 1.5708\n"
    (tmp_path / "c.txt").write_text(f"P2: {P2}\nR0_rect: {EYE}\nTr_velo_to_cam: {TR}\n")
    cal = read_calib(tmp_path / "c.txt", 375, 1242)
    uv = cal.project(car[:, :3])[0]
    box = f"{uv[:, 0].min():.1f} {uv[:, 1].min():.1f} {uv[:, 0].max() + 1:.1f} {uv[:, 1].max() + 1:.1f}"
    uvh = cal.project(hidden[:, :3])[0]
    dc = f"DontCare -1 -1 -10 {uvh[:, 0].min() - 5:.1f} {uvh[:, 1].min() - 5:.1f} {uvh[:, 0].max() + 5:.1f} " \
         f"{uvh[:, 1].max() + 5:.1f} -1 -1 -1 -1000 -1000 -1000 -10\n"
    root = write_object_layout(tmp_path / "obj", label.format(box, 1.5 - 0.2) + dc,
                               np.concatenate([car, wall, hidden, ground]))
    res = evaluate_real([KittiObjectSet(root)], [], progress=False)
    r3, r2 = res["obj/training"]["3d"]["LiDAR clustering"], res["obj/training"]["2d_box"]["LiDAR clustering"]
    assert (r3["tp"], r3["fp"], r3["fn"]) == (1, 1, 0)                                             # the wall; not the hidden one
    assert (r2["tp"], r2["fn"]) == (1, 0)
    assert r3["per_frame"] == [[1, 1, 0]]                                                         # one frame's counts (real_veto)
    md = real_tables(res)
    assert "## obj/training: 3D" in md and "R 3k-10k px" in md
    assert r3["recall_by_size"]["3k-10k"] == (1.0, 1)                                            # the car's box: ~6,000 px
