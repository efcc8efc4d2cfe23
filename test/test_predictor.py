"""Inference API, late fusion and 3D clusters."""
import sys
import threading
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from xmod_core.clusters import cluster_objects
from xmod_core.frontview import project_scan
from xmod_core.fusion import ID_OFFSET_3D, either_fusion, foreground_fusion, late_fusion, separate_fusion
from xmod_core.instances import slots_to_instances
from xmod_core.kitti import KittiRawDrive
from xmod_core.model import DIOD, ModelConfig
from xmod_core.predictor import Predictor, PredictorConfig
from xmod_core.stages import student_config
from xmod_core.train import export_student

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_fusion import random_instances  # noqa: E402
from reference_fusion import reference_late_fusion  # noqa: E402

TINY = ModelConfig(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32,
                   gru_hidden=16, decoder_channels=8, norm="group")


@pytest.fixture(scope="module")
def students(tmp_path_factory):
    d = tmp_path_factory.mktemp("students")
    torch.manual_seed(0)
    paths = {}
    for modality in ("rgb", "lidar"):
        m = DIOD(student_config(TINY, modality))
        paths[modality] = d / f"student_{modality}.pt"
        export_student(paths[modality], "test", modality, TINY, m.state_dict(), {})
    return paths


def predictor(students, drive, mode, **kw):
    cfg = PredictorConfig(mode=mode, ckpt_2d=str(students["rgb"]), ckpt_3d=str(students["lidar"]), device="cpu",
                          height=32, width=96, min_pixels=0, **kw)
    return Predictor(cfg, KittiRawDrive(drive).calib)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """a and b label the same pixels as one instance, up to a one-to-one renaming (0 stays 0)."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()], 1), axis=0)
    return (len(pairs) == len(np.unique(a)) == len(np.unique(b))
            and ((pairs[:, 0] == 0) == (pairs[:, 1] == 0)).all())


@pytest.mark.parametrize("mode,horizon", [("rgb", 0), ("lidar", 0), ("fused", 0), ("rgb", 2), ("lidar", 3)])
def test_modes_outputs_and_streaming_equals_clip(students, tiny_drive, mode, horizon):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, mode, state_horizon=horizon, min_score=0.0,   # (untrained: nothing scores 0.5)
                  part_voxel_m=0.0)                                                  # labels: the grid's, untrimmed
    frames = range(4)
    results = [p(image=d.image(t) if mode != "lidar" else None, points=d.scan(t) if mode != "rgb" else None,
                 stamp=0.1 * t) for t in frames]
    for r, t in zip(results, frames):
        assert r.labels.shape == (d.calib.height, d.calib.width) and r.labels.dtype == np.uint16
        if mode == "rgb":
            assert r.point_labels is None
        else:
            assert r.point_labels.shape == (len(d.scan(t)),) and r.point_labels.dtype == np.uint16
    assert results[0].new_sequence and not results[1].new_sequence
    if mode == "fused":
        return
    # the same frames as one clip through the model give the same instances
    modality = "rgb" if mode == "rgb" else "lidar"
    model = p.models[modality]
    if modality == "rgb":
        import cv2
        x = torch.stack([torch.from_numpy(cv2.resize(d.image(t), (96, 32), interpolation=cv2.INTER_AREA)).permute(2, 0, 1).float() / 255
                         for t in frames])
    else:
        x = torch.stack([torch.from_numpy(project_scan(d.scan(t), d.calib.scaled(32, 96)).features) for t in frames])
    # (with a state horizon: the clip cut into windows of that many frames, each from a fresh state)
    step = horizon or len(frames)
    with torch.no_grad():
        masks = torch.cat([model(x[None, i:i + step])["masks"][0] for i in range(0, len(frames), step)])
        post = partial(slots_to_instances, size=(32, 96), min_pixels=p.cfg.min_pixels, min_score=p.cfg.min_score)
        ids, _ = post(masks, fragments=p.cfg.fragments)
        other, _ = post(masks, fragments="keep" if p.cfg.fragments == "largest" else "largest")
    assert not torch.equal(ids, other)                   # the fragments setting shows here: the Predictor must pass it
    import cv2
    for r, t in zip(results, frames):
        want = cv2.resize(ids[t].numpy().astype(np.uint16), (d.calib.width, d.calib.height), interpolation=cv2.INTER_NEAREST)
        assert same_partition(r.labels, want)            # ids are track ids: the same objects, renamed


def test_points_get_the_label_of_their_pixel(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "lidar", min_points=1, depth_gate_m=0, part_voxel_m=0.0)
    r = p(points=d.scan(0), stamp=0.0)
    fv = project_scan(d.scan(0), d.calib.scaled(32, 96))
    inside = fv.point_pixel >= 0
    assert (r.point_labels[~inside] == 0).all()
    for o in r.objects:                                   # every cluster point is labelled with its object
        assert (r.point_labels[o.point_index] == o.id).all() and o.num_points == len(o.point_index)


@pytest.mark.parametrize("mode", ["rgb", "lidar", "fused"])
def test_hybrid_instances_are_the_kept_clusters_with_track_ids(students, tiny_drive, mode):
    """instances=hybrid: every object's points form one LiDAR cluster; ids are tracked (the same
    ids in the image and on the points); with no agreement asked, every in-view cluster is kept."""
    from test_hybrid import box_surface

    from xmod_core.baselines import euclidean_clusters
    d = KittiRawDrive(tiny_drive)
    boxes = np.concatenate([box_surface(10.0, 14.0, -3.0, -1.2, -1.4, 0.0), box_surface(12.0, 12.6, 2.0, 2.6, -1.4, 0.2)])
    scan = lambda t: np.concatenate([d.scan(t), np.c_[boxes, np.zeros(len(boxes))].astype(np.float32)])   # wall, ground, 2 objects
    p = predictor(students, tiny_drive, mode, instances="hybrid", hybrid_objectness=0.0, min_points=1, depth_gate_m=0)
    ids = []
    for t in range(3):
        r = p(image=d.image(t) if mode != "lidar" else None, points=scan(t), stamp=0.1 * t)
        assert "hybrid" in r.timings and r.grid.shape == (32, 96) and set(r.students) == set(p.models)
        inside = project_scan(scan(t), d.calib.scaled(32, 96)).point_pixel >= 0
        cl = euclidean_clusters(scan(t)[inside])
        assert len(np.unique(cl)) == 3                                          # the two objects
        labelled = r.point_labels[inside] > 0
        assert labelled.any() and not (labelled & (cl == 0)).any()             # only clustered points
        kept = np.unique(cl[cl > 0])
        pairs = np.unique(np.stack([cl, r.point_labels[inside]], 1)[labelled], axis=0)
        assert len(np.unique(pairs[:, 0])) == len(kept)                       # every cluster kept (objectness 0)
        assert set(np.unique(r.point_labels[r.point_labels > 0])) <= set(np.unique(r.labels)) | {0}
        ids.append(set(np.unique(r.point_labels)) - {0})
    assert ids[0] & ids[1] & ids[2]                                            # the static scene keeps its ids
    strict = predictor(students, tiny_drive, mode, instances="hybrid", hybrid_objectness=1.0)
    r = strict(image=d.image(0) if mode != "lidar" else None, points=scan(0), stamp=0.0)
    assert (r.point_labels == 0).all()                                         # full agreement: nothing from these students


def test_hybrid_ground_feet_reaches_the_hybrid_step(students, tiny_drive):
    """PredictorConfig.hybrid_ground_feet: the same objects on the points, and image masks that
    reach further down (the Predictor hands the hybrid step its camera)."""
    from test_hybrid import box_surface
    d = KittiRawDrive(tiny_drive)
    box = box_surface(10.0, 14.0, -3.0, -1.2, -1.4, 0.0)                      # 0.33 m above the road, which ground removal keeps
    scan = np.concatenate([d.scan(0), np.c_[box, np.zeros(len(box))].astype(np.float32)])
    out = {}
    for feet in (False, True):
        p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_objectness=0.0, hybrid_ground_feet=feet,
                      min_points=1, depth_gate_m=0)
        assert p.hybrid.ground_feet == feet
        out[feet] = p(points=scan, stamp=0.0)
    assert (out[False].point_labels == out[True].point_labels).all()
    lowest = lambda g: np.nonzero(g)[0].max()
    assert lowest(out[True].grid) > lowest(out[False].grid)


def test_box_source_gives_the_objects_projected_boxes(students, tiny_drive):
    """PredictorConfig.box_source: mask boxes are the boxes around the labels; 3d boxes are the
    image rectangles of the frame's 3D objects (instances without one keep their mask box), and
    3d_ground ones reach further down, to the ground plane under a car standing 0.33 m above it
    in the point cloud; an unknown source is named."""
    from test_hybrid import box_surface
    from xmod_core.image_boxes import box_corners, project_boxes
    from xmod_core.metrics import instance_boxes
    d = KittiRawDrive(tiny_drive)
    box = box_surface(10.0, 14.0, -3.0, -1.2, -1.4, 0.0)
    scan = np.concatenate([d.scan(0), np.c_[box, np.zeros(len(box))].astype(np.float32)])
    out = {}
    for src in ("mask", "3d", "3d_ground"):
        p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_objectness=0.0, min_points=1,
                      depth_gate_m=0, box_source=src)
        out[src] = p(points=scan, stamp=0.0)
    m = out["mask"]
    ids, boxes = instance_boxes(m.labels)
    assert (m.box_ids == ids).all() and np.allclose(m.boxes, boxes)
    r = out["3d"]
    assert r.objects and set(o.id for o in r.objects) <= set(r.box_ids.tolist())
    o = r.objects[0]
    want, ok = project_boxes(box_corners(o.center[None], o.size[None], np.array([o.yaw])), d.calib)
    assert ok[0] and np.allclose(r.boxes[r.box_ids.tolist().index(o.id)], want[0])
    car = lambda res: res.boxes[np.argmax(res.boxes[:, 2] - res.boxes[:, 0])]        # the widest: the car
    assert car(out["3d_ground"])[3] > car(out["3d"])[3] + 1                            # bottom lower in the image
    with pytest.raises(ValueError, match="box_source"):
        predictor(students, tiny_drive, "lidar", box_source="hull")
    assert predictor(students, tiny_drive, "lidar", instances="hybrid").box_source == "3d_ground"   # auto
    assert predictor(students, tiny_drive, "lidar").box_source == "mask"


def test_hybrid_movable_model_reaches_the_hybrid_step(students, tiny_drive, tmp_path):
    """PredictorConfig.hybrid_movable / movable_model: a model calling every shape movable keeps, at
    weight 1, every cluster (the students' agreement no longer counts); a missing file is named."""
    from test_hybrid import box_surface
    from xmod_core.movable import MovableModel
    d = KittiRawDrive(tiny_drive)
    box = box_surface(10.0, 14.0, -3.0, -1.2, -1.4, 0.0)
    scan = np.concatenate([d.scan(0), np.c_[box, np.zeros(len(box))].astype(np.float32)])
    shipped = MovableModel.load()
    always = MovableModel(shipped.features, shipped.mean, shipped.scale, shipped.centres,
                          np.isfinite(shipped.centres).all(2), shipped.clusters, shipped.info)
    always.save(tmp_path / "always.json")
    out = {}
    for w in (0.0, 1.0):
        p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_objectness=1.0, hybrid_movable=w,
                      movable_model=str(tmp_path / "always.json"), min_points=1, depth_gate_m=0)
        assert (p.movable is None) == (w == 0) and p.hybrid.movable == w
        out[w] = p(points=scan, stamp=0.0).point_labels
    assert (out[0.0] == 0).all() and (out[1.0] > 0).sum() >= len(box) // 2      # agreement 1 is never met; the shape is
    import dataclasses
    always.clusters = dataclasses.replace(shipped.clusters, voxel=0.6)                # fitted on other clusters
    always.save(tmp_path / "other.json")
    with pytest.raises(ValueError, match="fitted on clusters"):
        predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_movable=0.5, movable_model=str(tmp_path / "other.json"))
    with pytest.raises(ValueError, match="missing.json"):
        predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_movable=0.5, movable_model=str(tmp_path / "missing.json"))
    for extent in ("axes", "oriented"):            # the extent only filters clusters: the shipped (axes) model votes under both
        p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_movable=0.5, hybrid_extent=extent)
        assert p.movable.clusters.extent == "axes" and p.hybrid.clusters.extent == extent


def test_hybrid_extent_keeps_a_turned_car(students, tiny_drive):
    """PredictorConfig.hybrid_extent: a car turned 45 degrees (4.5 m along both sensor axes) is a
    hybrid object when its sides are measured along its own axes (the default), not along the sensor's."""
    from test_hybrid import box_surface
    d = KittiRawDrive(tiny_drive)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    car = box_surface(-2.25, 2.25, -0.9, 0.9, -1.4, 0.0) @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + [14.0, -2.0, 0]
    scan = np.concatenate([d.scan(0), np.c_[car, np.zeros(len(car))].astype(np.float32)])
    on_car = np.arange(len(scan)) >= len(scan) - len(car)
    out = {}
    for extent in ("axes", "oriented"):
        p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_objectness=0.0, hybrid_extent=extent,
                      min_points=1, depth_gate_m=0)
        assert p.hybrid.clusters.extent == extent
        out[extent] = p(points=scan, stamp=0.0).point_labels[on_car]
    assert PredictorConfig().hybrid_extent == "oriented" and PredictorConfig().hybrid_split_voxel == 0.0
    assert predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_far=True).hybrid.far
    p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_split_voxel=0.2, hybrid_movable=0.5)
    assert p.hybrid.clusters.split_voxel == 0.2 and p.movable is not None      # the shipped model votes here too
    assert (out["axes"] == 0).all() and (out["oriented"] > 0).mean() > 0.5
    with pytest.raises(ValueError, match="extent"):
        predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_extent="diagonal")
    with pytest.raises(ValueError, match="fusion_mask must be one of"):
        predictor(students, tiny_drive, "fused", fusion_mask="both")


def test_slots_and_hybrid_instances_get_their_own_fragments_setting(students, tiny_drive):
    for instances, want in (("slots", "largest"), ("hybrid", "keep")):
        p = predictor(students, tiny_drive, "fused", instances=instances, fragments="largest", hybrid_fragments="keep")
        assert {m: s.post.keywords["fragments"] for m, s in p.steps.items()} == {"rgb": want, "lidar": want}


def test_hybrid_bad_settings_and_missing_scan(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    with pytest.raises(ValueError, match="instances must be one of"):
        predictor(students, tiny_drive, "rgb", instances="voxels")
    with pytest.raises(ValueError, match="fragments must be one of"):
        predictor(students, tiny_drive, "rgb", fragments="all")
    with pytest.raises(ValueError, match="hybrid_fragments must be one of"):
        predictor(students, tiny_drive, "rgb", hybrid_fragments="all")
    with pytest.raises(ValueError, match="hybrid agreement"):
        predictor(students, tiny_drive, "rgb", instances="hybrid", hybrid_agreement="vote")
    p = predictor(students, tiny_drive, "rgb", instances="hybrid")
    with pytest.raises(ValueError, match="hybrid instances needs a LiDAR scan"):
        p(image=d.image(0))


def test_set_calib_starts_a_new_sequence_at_another_size(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "rgb")
    p(image=d.image(0), stamp=0.0)
    small = d.calib.scaled(d.calib.height // 2, d.calib.width // 2)
    p.set_calib(small)
    img = cv2.resize(d.image(1), (small.width, small.height))
    r = p(image=img, stamp=0.1)
    assert r.new_sequence and r.labels.shape == (small.height, small.width)


def test_reset_on_gap_and_backwards_stamp(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "rgb")
    assert p(image=d.image(0), stamp=1.0).new_sequence
    assert not p(image=d.image(1), stamp=1.1).new_sequence
    assert p(image=d.image(2), stamp=5.0).new_sequence          # gap
    assert p(image=d.image(3), stamp=4.0).new_sequence          # backwards
    a = p(image=d.image(0), stamp=10.0).labels
    p.reset()
    np.testing.assert_array_equal(p(image=d.image(0), stamp=0.0).labels, a)   # a new sequence is a new sequence


def test_bad_input(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "fused")
    with pytest.raises(ValueError, match="differs from the calibration"):
        p(image=d.image(0)[:, :100].copy(), points=d.scan(0))
    with pytest.raises(ValueError, match="needs a LiDAR scan"):
        p(image=d.image(0))
    with pytest.raises(ValueError, match="points must be"):
        p(image=d.image(0), points=np.zeros((5, 2), np.float32))
    r = p(image=d.image(0), points=np.zeros((0, 4), np.float32))   # an empty cloud is fine
    assert r.point_labels.shape == (0,) and r.objects == []
    scan = d.scan(1)
    scan[::3] = np.nan
    r = p(image=d.image(1), points=scan, stamp=0.1)
    assert (r.point_labels[::3] == 0).all()
    with pytest.raises(ValueError, match="mode"):
        Predictor(PredictorConfig(mode="radar"), d.calib)
    with pytest.raises(FileNotFoundError, match="rgb checkpoint"):
        Predictor(PredictorConfig(mode="rgb", ckpt_2d="/nonexistent.pt", device="cpu"), d.calib)


def instance_pair(rng, noise_share: float):
    """A 2D instance map with scores and a 3D one that agrees with it except on `noise_share` of the pixels."""
    a, sa = random_instances(rng, K=12, H=40, W=60)
    b = a.copy()
    noise = rng.random(a.shape) < noise_share
    b[noise] = rng.integers(0, 12, noise.sum())
    return a, sa, b, rng.random(11)


@pytest.mark.parametrize("keep", [False, True])
def test_fusion_equals_the_double_loop_reference(keep):
    rng = np.random.default_rng(1)
    for _ in range(3):
        a, sa, b, sb = instance_pair(rng, 0.4)
        f1, s1 = late_fusion(a, sa, b, sb, 0.1, keep, 0.5)
        f2, s2 = reference_late_fusion(a, sa, b, sb, 0.1, keep, 0.5)
        np.testing.assert_array_equal(f1, f2)
        assert s1 == pytest.approx(s2)


def test_fusion_keeps_agreed_objects_only():
    a = np.zeros((10, 10), int)
    b = np.zeros((10, 10), int)
    a[0:4, 0:4], b[1:5, 1:5] = 1, 2          # agree (IoU 9/23)
    a[6:9, 6:9] = 2                          # 2D only
    b[6:8, 0:3] = 1                          # 3D only
    fused, scores = late_fusion(a, np.array([0.8, 0.95]), b, np.array([0.99, 0.6]))
    assert set(np.unique(fused)) == {0, 1} and (fused[1:5, 1:5] == 1).all()   # the union of the matched pair
    assert scores[1] == pytest.approx((0.8 + 0.6) / 2)
    fused, scores = late_fusion(a, np.array([0.8, 0.95]), b, np.array([0.99, 0.6]), keep_single=True, single_score=0.9)
    assert set(np.unique(fused)) == {0, 1, 2, ID_OFFSET_3D + 1}
    # the agreed object's pixels: its 3D partner's only, or its 2D mask only; the singles keep theirs
    for mask, own in (("lidar", b == 2), ("rgb", a == 1)):
        fused, s2 = late_fusion(a, np.array([0.8, 0.95]), b, np.array([0.99, 0.6]), keep_single=True, single_score=0.9,
                                mask=mask)
        assert ((fused == 1) == own).all() and s2 == scores
        assert ((fused == 2) == (a == 2)).all() and ((fused == ID_OFFSET_3D + 1) == (b == 1)).all()
    with pytest.raises(ValueError, match="mask"):
        late_fusion(a, np.array([0.8, 0.95]), b, np.array([0.99, 0.6]), mask="both")


def test_clusters_oriented_box_and_depth_gate():
    rng = np.random.default_rng(0)
    yaw = 0.4
    local = rng.uniform([-2, -0.9, 0], [2, 0.9, 1.5], (400, 3))               # a 4 x 1.8 x 1.5 box
    R = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    car = local @ R.T + [15, 3, -1.7]
    behind = np.array([[40.0, 8.0, 0.0]] * 20)                                 # a wall seen through the mask
    pts = np.concatenate([car, behind, rng.uniform(-5, 5, (50, 3))])
    labels = np.concatenate([np.full(420, 3), np.zeros(50, int)])
    objs, clean = cluster_objects(pts, labels, {3: 0.7})
    assert len(objs) == 1 and objs[0].id == 3 and objs[0].num_points == 400 and objs[0].score == 0.7
    assert (clean[400:420] == 0).all()
    o = objs[0]
    err = (o.yaw - yaw + np.pi / 2) % np.pi - np.pi / 2                        # the axis, up to 180 degrees
    assert abs(err) < 0.1                                                      # PCA of 400 random points
    np.testing.assert_allclose(o.size, [4, 1.8, 1.5], atol=0.1)
    np.testing.assert_allclose(o.center, [15, 3, -1.7 + 0.75], atol=0.1)
    objs, _ = cluster_objects(pts[:3], np.array([1, 1, 1]), min_points=5)       # too few points
    assert objs == []


def test_tracker_keeps_ids_of_overlapping_objects_and_gives_new_ones_fresh_ids():
    from xmod_core.tracking import IdTracker
    tr = IdTracker(min_iou=0.3)
    a = np.zeros((20, 30), int)
    a[2:8, 2:8], a[10:16, 20:28] = 5, 9
    out, sc = tr(a, {5: 0.9, 9: 0.8})
    first = {int(out[3, 3]), int(out[12, 22])}
    assert len(first) == 2 and 0 not in first and sc[int(out[3, 3])] == pytest.approx(0.9)
    b = np.zeros_like(a)                              # the same objects, moved a pixel and renamed (slot restart)
    b[3:9, 2:8], b[10:16, 21:29], b[0:2, 0:30] = 1, 2, 3   # plus a new one
    out2, sc2 = tr(b, {1: 0.7, 2: 0.6, 3: 0.5})
    assert out2[4, 3] == out[3, 3] and out2[12, 22] == out[12, 22]
    assert out2[0, 0] not in first and out2[0, 0] > 0 and sc2[int(out2[0, 0])] == pytest.approx(0.5)
    c = np.zeros_like(a)
    c[12:20, 0:30] = 4                                # overlaps nothing enough: fresh id, never a reused one
    out3, _ = tr(c, {})
    assert out3[15, 5] not in first | {out2[0, 0]} and (out3[c == 0] == 0).all()
    tr.reset()
    out4, _ = tr(a, {})
    assert same_partition(out4, a)
    with pytest.raises(ValueError, match="min_iou"):
        IdTracker(min_iou=0)


def test_predictor_restarts_state_every_horizon_frames(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "rgb", state_horizon=2)
    seen = []
    orig = p.models["rgb"].step
    p.models["rgb"].step = lambda x, state, **kw: (seen.append(state is None), orig(x, state, **kw))[1]
    for t in range(5):
        p(image=d.image(t), stamp=0.1 * t)
    assert seen == [True, False, True, False, True]
    with pytest.raises(ValueError, match="state_horizon"):
        predictor(students, tiny_drive, "rgb", state_horizon=-1)
    with pytest.raises(ValueError, match="track_iou"):
        predictor(students, tiny_drive, "rgb", track_iou=1.5)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="min_score"):
            predictor(students, tiny_drive, "rgb", min_score=bad)


def test_clusters_keep_large_and_sparse_track_ids():
    rng = np.random.default_rng(3)
    pts = np.concatenate([rng.normal((10, 0, 0), 0.3, (40, 3)), rng.normal((20, 5, 0), 0.3, (40, 3))]).astype(np.float32)
    labels = np.repeat([65535, 7], 40)                      # track ids: large and sparse
    objs, out = cluster_objects(pts, labels, {65535: 0.9, 7: 0.4}, min_points=5, depth_gate=0)
    assert [o.id for o in objs] == [7, 65535] and (out == labels).all()
    assert objs[1].score == pytest.approx(0.9) and np.allclose(objs[1].centroid[:2], (10, 0), atol=0.3)
    with pytest.raises(ValueError, match=">= 0"):
        cluster_objects(pts, -labels, None)


def test_fusion_and_tracker_on_tensors_equal_the_numpy_path():
    """The Predictor fuses and tracks on the students' device: tensors in must give the numpy answers."""
    from xmod_core.tracking import IdTracker
    rng = np.random.default_rng(3)
    tr_np, tr_t = IdTracker(0.3), IdTracker(0.3)
    for _ in range(3):
        a, sa, b, sb = instance_pair(rng, 0.3)
        f1, s1 = late_fusion(a, sa, b, sb, 0.1, True, 0.5)
        f2, s2 = late_fusion(torch.from_numpy(a), torch.from_numpy(sa), torch.from_numpy(b), sb, 0.1, True, 0.5)
        assert isinstance(f2, torch.Tensor) and s1 == pytest.approx(s2)
        np.testing.assert_array_equal(f1, f2.numpy())
        o1, t1 = tr_np(f1, s1)
        o2, t2 = tr_t(f2, s2)
        assert isinstance(o2, torch.Tensor) and t1 == pytest.approx(t2)
        np.testing.assert_array_equal(o1, o2.numpy())


def test_tracker_rejects_negative_ids_and_restarts_on_a_new_size():
    from xmod_core.tracking import IdTracker
    tr = IdTracker()
    with pytest.raises(ValueError, match=">= 0"):
        tr(np.array([[0, -1]]), {})
    a = np.zeros((6, 8), int)
    a[1:4, 1:4] = 1
    first, _ = tr(a, {})
    again, _ = tr(np.kron(a, np.ones((2, 2), int)), {})         # another resolution: nothing to match against
    assert again.max() > 0 and again.max() != first.max()
    big = np.where(a > 0, 10**12, 0)                             # ids far beyond a lookup table: still tracked
    big[5, 7] = 3
    out, sc = tr(big, {10**12: 0.8, 3: 0.4})
    assert len(np.unique(out)) == 3 and out[2, 2] > 0 and sc[int(out[2, 2])] == pytest.approx(0.8)
    assert sc[int(out[5, 7])] == pytest.approx(0.4)


def test_student_step_on_the_cpu_is_the_eager_step_with_graphs_ignored():
    from functools import partial

    from xmod_core.graphs import StudentStep
    from xmod_core.model import DIOD, ModelConfig
    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=5, widths=[8, 8, 16, 16, 16], blocks=[1, 1, 1, 1])).eval()
    post = partial(slots_to_instances, size=(32, 64), min_pixels=3)
    step = StudentStep(model, post, amp=True, graphs=True)
    assert not step.graphs and not step.amp                   # CUDA only: ignored for a model on the CPU
    x = torch.rand(2, 1, 3, 32, 64)
    with torch.no_grad():
        state, ref_state = None, None
        for t in range(2):
            ids, conf, fg, state = step(x[t], state)
            out, ref_state = model.step(x[t], ref_state, decode=False)
            ref_ids, ref_conf = post(out["masks"])
            assert torch.equal(ids, ref_ids) and torch.allclose(conf, ref_conf)
            assert torch.equal(fg, 1 - out["masks"][:, -1])                 # foreground: all but the background slot


def test_student_step_falls_back_to_eager_when_graph_capture_fails():
    from functools import partial

    from xmod_core.graphs import StudentStep
    from xmod_core.model import DIOD, ModelConfig
    torch.manual_seed(0)
    model = DIOD(ModelConfig(num_slots=4, widths=[8, 8, 16, 16, 16], blocks=[1, 1, 1, 1])).eval()
    step = StudentStep(model, partial(slots_to_instances, size=(32, 64)))
    step.graphs = True                                        # as on CUDA ...

    def no_capture(*a):
        raise RuntimeError("operation not permitted when stream is capturing")
    step._capture = no_capture                                # ... on a driver that cannot capture
    x = torch.rand(2, 1, 3, 32, 64)
    with torch.no_grad():
        _, _, _, state = step(x[0], None)
        with pytest.warns(RuntimeWarning, match="run eagerly"):
            ids, _, _, _ = step(x[1], state)
        ref, _ = model.step(x[1], state, decode=False)
    assert torch.equal(ids, partial(slots_to_instances, size=(32, 64))(ref["masks"])[0]) and not step.graphs


def test_parallel_students_give_the_sequential_result_on_a_worker_thread(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    par = predictor(students, tiny_drive, "fused", min_score=0.0, state_horizon=2)
    seq = predictor(students, tiny_drive, "fused", min_score=0.0, state_horizon=2, parallel_students=False)
    assert par.pool is not None and seq.pool is None
    assert predictor(students, tiny_drive, "lidar").pool is None          # one student: nothing to overlap
    threads, orig = [], par._instances

    def spy(modality, x):                                                  # which thread runs which student
        threads.append((modality, threading.current_thread().name))
        return orig(modality, x)
    par._instances = spy
    for t in range(4):
        a = par(image=d.image(t), points=d.scan(t), stamp=0.1 * t)
        b = seq(image=d.image(t), points=d.scan(t), stamp=0.1 * t)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.point_labels, b.point_labels)
        assert a.scores == b.scores
        state = par.states["rgb"]
        assert not any(v.requires_grad for v in [state.slots, *state.hidden])      # no autograd graph kept
    assert {n for m, n in threads if m == "rgb"} == {"xmod-rgb_0"}
    assert {n for m, n in threads if m == "lidar"} == {threading.main_thread().name}


def test_a_failing_frame_waits_for_the_2d_student_on_its_worker(students, tiny_drive):
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "fused", min_score=0.0)
    p(image=d.image(0), points=d.scan(0), stamp=0.0)
    started, finished = threading.Event(), threading.Event()
    orig = p._instances

    def slow(modality, x):
        if modality == "rgb":
            started.set()
            time.sleep(0.3)
            out = orig(modality, x)
            finished.set()
            return out
        raise RuntimeError("3D student failed")
    p._instances = slow
    with pytest.raises(RuntimeError, match="3D student failed"):
        p(image=d.image(1), points=d.scan(1), stamp=0.1)
    assert started.is_set() and finished.is_set()                     # the frame ended only after the 2D step did


def test_cpu_threads_one_per_student_when_they_run_in_parallel(students, tiny_drive, monkeypatch):
    import xmod_core.predictor as predictor_module
    monkeypatch.setattr(predictor_module, "DEFAULT_THREADS", 7)            # tell it apart from 1 on any machine
    DEFAULT_THREADS = 7
    par = predictor(students, tiny_drive, "fused")
    seq = predictor(students, tiny_drive, "fused", parallel_students=False)
    lidar = predictor(students, tiny_drive, "lidar")
    assert par.cpu_threads() == 1                                          # each student thread takes a core
    assert seq.cpu_threads() == lidar.cpu_threads() == DEFAULT_THREADS     # back to the process default
    assert par.cpu_threads(3) == seq.cpu_threads(3) == 3                   # an explicit count wins
    with pytest.raises(ValueError, match="threads must be >= 0"):
        par.cpu_threads(-1)


def test_hybrid_hold_carries_the_previous_frame_and_restarts_with_the_sequence(students, tiny_drive):
    """PredictorConfig.hybrid_hold: the hybrid step is handed the previous frame's hybrid instances
    (none at a sequence's start). With an agreement nobody reaches (1.0) and hold 1.0, a cluster is
    kept only where an object lay the frame before."""
    from test_hybrid import box_surface
    d = KittiRawDrive(tiny_drive)
    box = box_surface(10.0, 14.0, -3.0, -1.2, -1.4, 0.0)
    scan = np.concatenate([d.scan(0), np.c_[box, np.zeros(len(box))].astype(np.float32)])
    on_box = np.arange(len(scan)) >= len(scan) - len(box)
    p = predictor(students, tiny_drive, "lidar", instances="hybrid", hybrid_objectness=1.0, hybrid_hold=1.0,
                  min_points=1, depth_gate_m=0)
    assert p.hybrid.hold == 1.0 and p.previous_hybrid is None
    r = p(points=scan, stamp=0.0)
    assert (r.point_labels == 0).all() and p.previous_hybrid is not None        # first frame: nothing to hold
    pp = project_scan(scan, p.calib_small).point_pixel
    held = np.zeros_like(r.grid)
    held.reshape(-1)[pp[on_box & (pp >= 0)]] = 1                               # as if the box was an object last frame
    p.previous_hybrid = held
    assert (p(points=scan, stamp=0.1).point_labels[on_box] > 0).mean() > 0.5
    p.previous_hybrid = held
    assert (p(points=scan, stamp=5.0).point_labels == 0).all()                  # a gap: a new sequence forgets it


def test_foreground_fusion_keeps_each_attended_3d_instance_on_its_own():
    """A 3D instance is kept, under its own id, when the 2D student's foreground attention averages
    the threshold over it; one 2D slot over two 3D instances does not merge them (late fusion
    with 3D masks gives both its one id)."""
    b = np.zeros((8, 12), int)
    b[1:4, 1:4], b[1:4, 5:8], b[5:7, 9:12] = 1, 2, 3       # two cars side by side, one more to the right
    fg = np.full((8, 12), 0.1)
    fg[1:4, 1:8] = 0.9                                     # the camera sees the two cars as foreground ...
    fg[5:7, 9:12] = 0.45                                   # ... and is unsure of the third
    s3 = np.array([0.7, 0.8, 0.99])
    fused, scores = foreground_fusion(b, s3, fg, 0.5)
    assert isinstance(fused, np.ndarray)
    np.testing.assert_array_equal(fused, np.where(b == 3, 0, b))
    assert scores == pytest.approx({1: (0.7 + 0.9) / 2, 2: (0.8 + 0.9) / 2})
    assert set(foreground_fusion(b, s3, fg, 0.4)[1]) == {1, 2, 3}
    a = np.zeros((8, 12), int)
    a[1:4, 1:8] = 1                                        # one 2D slot over both cars
    merged, _ = late_fusion(a, np.array([0.9]), b, s3, mask="lidar")
    assert (merged[1:4, 1:4] == merged[1:4, 5:8][0, 0]).all()
    # the attention on a coarser grid (the 2D student's) is resized to the ids' grid
    coarse = torch.nn.functional.avg_pool2d(torch.as_tensor(fg)[None, None], 2)[0, 0]
    f2, _ = foreground_fusion(torch.as_tensor(b), s3, coarse, 0.5)
    assert torch.is_tensor(f2) and set(np.unique(f2.numpy())) == {0, 1, 2}
    with pytest.raises(ValueError, match="foreground_2d must be"):
        foreground_fusion(b, s3, fg[None], 0.5)


def test_either_fusion_adds_attended_3d_singles_to_late_fusion():
    """`either`: late fusion's agreed objects stay as they are (two 3D parts of one 2D object merge
    into it), and a 3D instance no 2D instance agrees with joins as an object of its own only where
    the 2D student's foreground attention averages the threshold over it."""
    a = np.zeros((10, 12), int)
    b = np.zeros((10, 12), int)
    a[0:4, 0:6] = 1                                         # one 2D object ...
    b[0:4, 0:3], b[0:4, 3:6] = 1, 2                         # ... in two 3D parts
    b[6:9, 0:3] = 3                                         # a far car the 2D student gives no slot, attended to
    b[6:9, 8:11] = 4                                        # a 3D fragment the camera sees as background
    fg = np.full((10, 12), 0.2)
    fg[0:4, 0:6], fg[6:9, 0:3] = 0.9, 0.8
    s2, s3 = np.array([0.7]), np.array([0.6, 0.8, 0.9, 0.95])
    fused, scores = either_fusion(a, s2, b, s3, fg, 0.7)
    late, late_scores = late_fusion(a, s2, b, s3, mask="lidar")
    assert ((fused == 1) == (late == 1)).all() and ((fused == 1) == ((b == 1) | (b == 2))).all()
    assert ((fused == ID_OFFSET_3D + 3) == (b == 3)).all() and not (fused[b == 4]).any()
    assert scores == pytest.approx(late_scores | {ID_OFFSET_3D + 3: (0.9 + 0.8) / 2})
    assert set(np.unique(either_fusion(a, s2, b, s3, fg, 0.1)[0])) == {0, 1, ID_OFFSET_3D + 3, ID_OFFSET_3D + 4}
    with pytest.raises(ValueError, match="keep_3d must hold one value per 3D slot"):
        late_fusion(a, s2, b, s3, keep_3d=np.ones(2))
    # with keep_single too: the confident single 4 joins at its 3D score, 3 keeps its attended score
    fused, scores = either_fusion(a, s2, b, s3, fg, 0.7, keep_single=True, single_score=0.92)
    assert ((fused == ID_OFFSET_3D + 4) == (b == 4)).all() and scores[ID_OFFSET_3D + 4] == pytest.approx(0.95)
    assert scores[ID_OFFSET_3D + 3] == pytest.approx((0.9 + 0.8) / 2)
    # no 2D instance at all: every 3D instance is judged by the attention alone
    fused, _ = either_fusion(np.zeros_like(a), np.zeros(0), b, s3, fg, 0.7)
    np.testing.assert_array_equal(fused, np.where(np.isin(b, [1, 2, 3]), ID_OFFSET_3D + b, 0))


def test_separate_fusion_keeps_agreed_and_attended_3d_instances_apart():
    """`separate`: a 3D instance is kept, under its own id, when a 2D instance overlaps it by late
    fusion's IoU test or the 2D foreground averages the threshold over it; two 3D parts under one
    2D instance stay two objects."""
    a = np.zeros((10, 12), int)
    b = np.zeros((10, 12), int)
    a[0:4, 0:6] = 1
    b[0:4, 0:3], b[0:4, 3:6] = 1, 2                         # two 3D instances under one 2D instance
    b[6:9, 0:3] = 3                                         # no 2D instance, attended to
    b[6:9, 8:11] = 4                                        # no 2D instance, background to the camera
    fg = np.full((10, 12), 0.2)
    fg[6:9, 0:3] = 0.8                                      # (the agreed pair's attention is low: kept anyway)
    s3 = np.array([0.6, 0.8, 0.9, 0.95])
    fused, scores = separate_fusion(a, np.array([0.7]), b, s3, fg, 0.7)
    np.testing.assert_array_equal(fused, np.where(b == 4, 0, b))
    assert set(scores) == {1, 2, 3} and scores[3] == pytest.approx((0.9 + 0.8) / 2)
    fused, _ = separate_fusion(a, np.array([0.7]), b, s3, fg, 0.7, iou_threshold=0.9)     # no 2D agreement left
    np.testing.assert_array_equal(fused, np.where(b == 3, 3, 0))


def test_fusion_agreement_picks_the_fusion_and_passes_the_frames_foreground(students, tiny_drive, monkeypatch):
    """fusion_agreement: auto (the default) fuses slot instances by `separate` and hybrid instances
    by iou (late fusion); separate / either / foreground fuse with the 2D student's foreground
    attention of the frame (the StudentStep's third output, on its slot grid) and fusion_foreground."""
    import xmod_core.predictor as pred
    seen = []

    def spy(name, fn):
        def f(*args):
            seen.append((name, args))
            return fn(*args)
        monkeypatch.setattr(pred, fn.__name__, f)
    spy("late", late_fusion)
    spy("either", either_fusion)
    spy("foreground", foreground_fusion)
    spy("separate", separate_fusion)
    d = KittiRawDrive(tiny_drive)

    def run(**kw):
        seen.clear()
        p = predictor(students, tiny_drive, "fused", **kw)
        out = {}
        step = p.steps["rgb"]
        p.steps["rgb"] = lambda x, state: out.setdefault("rgb", step(x, state))
        r = p(image=d.image(0), points=d.scan(0), stamp=0.0)
        return [name for name, _ in seen], seen, out, r
    names, calls, out, _ = run()
    assert PredictorConfig.fusion_agreement == "auto" and names == ["separate"]
    fg, thr = calls[0][1][4], calls[0][1][5]
    assert thr == PredictorConfig.fusion_foreground and torch.equal(fg, out["rgb"][2][0])   # the frame's (image 0)
    assert fg.ndim == 2 and fg.shape != out["rgb"][0].shape[-2:]              # on the slot grid, not the ids' grid
    assert run(fusion_agreement="iou")[0] == ["late"]
    assert run(instances="hybrid", min_points=1)[0] == ["late"]               # auto: hybrid instances by iou
    assert run(instances="hybrid", min_points=1, fusion_agreement="either")[0][0] == "either"
    assert run(fusion_agreement="either")[0][0] == "either"
    names, calls, _, _ = run(fusion_agreement="foreground", fusion_foreground=0.3)
    assert names == ["foreground"] and calls[0][1][3] == 0.3
    names, calls, out, _ = run(fusion_agreement="separate", fusion_foreground=0.4, fusion_iou=0.2)
    assert names[0] == "separate" and calls[0][1][5:] == (0.4, 0.2) and torch.equal(calls[0][1][4], out["rgb"][2][0])
    # foreground at threshold 0 keeps every 3D instance as it is
    _, _, _, r = run(fusion_agreement="foreground", fusion_foreground=0.0, min_score=0.0)
    assert len(np.unique(r.grid)) > 2 and same_partition(r.grid, r.students["lidar"])
    with pytest.raises(ValueError, match="fusion_agreement must be one of auto, iou"):
        predictor(students, tiny_drive, "fused", fusion_agreement="mean")
    with pytest.raises(ValueError, match="fusion_foreground must be within"):
        predictor(students, tiny_drive, "fused", fusion_agreement="foreground", fusion_foreground=1.5)
    # settings of late fusion that separate / foreground would silently ignore are refused
    with pytest.raises(ValueError, match="keep_single applies to fusion_agreement iou or either"):
        predictor(students, tiny_drive, "fused", keep_single=True)
    with pytest.raises(ValueError, match="fusion_mask applies to fusion_agreement iou or either"):
        predictor(students, tiny_drive, "fused", fusion_agreement="foreground", fusion_mask="union")
    predictor(students, tiny_drive, "fused", fusion_agreement="either", keep_single=True, fusion_mask="union")
    predictor(students, tiny_drive, "lidar", keep_single=True)                 # not fused: nothing to ignore


def test_fusion_mask_reaches_late_fusion(students, tiny_drive, monkeypatch):
    """PredictorConfig.fusion_mask (default lidar, chosen on validation) is the mask fused mode asks of late fusion."""
    import xmod_core.predictor as pred
    seen = []

    def spy(*args):
        seen.append(args[-1])
        return late_fusion(*args)
    monkeypatch.setattr(pred, "late_fusion", spy)
    d = KittiRawDrive(tiny_drive)
    for mask in (None, "union", "rgb"):
        p = predictor(students, tiny_drive, "fused", fusion_agreement="iou", **({} if mask is None else {"fusion_mask": mask}))
        p(image=d.image(0), points=d.scan(0), stamp=0.0)
    assert seen == ["lidar", "union", "rgb"]


def test_students_with_fine_masks_run_in_every_mode(tiny_drive, tmp_path):
    """Students with the fine-mask head (masks at 1/2 of the input) run in the Predictor: its
    instances are those of the model's fine masks, and the head shows (the 1/4 attention alone
    would give other instances)."""
    import cv2
    torch.manual_seed(1)
    fine_cfg = replace(TINY, fine_masks=True)
    paths = {}
    for modality in ("rgb", "lidar"):
        m = DIOD(student_config(fine_cfg, modality))
        with torch.no_grad():
            m.fine.to_q.weight.normal_(0, 2.0)
        paths[modality] = tmp_path / f"student_{modality}.pt"
        export_student(paths[modality], "test", modality, fine_cfg, m.state_dict(), {})
    d = KittiRawDrive(tiny_drive)
    for mode in ("rgb", "lidar", "fused"):
        p = predictor(paths, tiny_drive, mode, min_score=0.0)
        r = p(image=d.image(0), points=d.scan(0), stamp=0.0)
        assert r.labels.shape == (d.calib.height, d.calib.width)
    p = predictor(paths, tiny_drive, "lidar", min_score=0.0)
    r = p(points=d.scan(0), stamp=0.0)
    x = torch.from_numpy(project_scan(d.scan(0), d.calib.scaled(32, 96)).features)[None]
    with torch.no_grad():
        out, _ = p.models["lidar"].step(x, decode=False)
        assert out["masks"].shape[-2:] == (16, 48)
        ids, _ = slots_to_instances(out["masks"], size=(32, 96), min_pixels=p.cfg.min_pixels, min_score=0.0,
                                    fragments=p.cfg.fragments)
        coarse = DIOD(student_config(TINY, "lidar"))
        coarse.load_state_dict(p.models["lidar"].state_dict(), strict=False)
        cids, _ = slots_to_instances(coarse.eval().step(x, decode=False)[0]["masks"], size=(32, 96), fragments=p.cfg.fragments)
    want = cv2.resize(ids[0].numpy().astype(np.uint16), (d.calib.width, d.calib.height), interpolation=cv2.INTER_NEAREST)
    assert same_partition(r.labels, want)
    assert not torch.equal(ids, cids)


def test_a_students_own_min_score_applies_unless_the_config_names_one(students, tiny_drive, tmp_path):
    """A threshold named in a student's file (`stamp_min_score`) drops its unsure instances when the
    config leaves min_score to the students (None); an explicit min_score applies to both."""
    from xmod_core.checkpoint import CheckpointError, load_checkpoint, save_atomic
    from xmod_core.model import load_student
    from xmod_core.train import stamp_min_score
    sure = tmp_path / "lidar_sure.pt"
    stamp_min_score(students["lidar"], sure, 0.99)                       # untrained slots never score that high
    assert load_student(sure)[1]["min_score"] == 0.99 and "min_score" not in load_student(students["lidar"])[1]
    with pytest.raises(FileExistsError, match="new path"):
        stamp_min_score(students["lidar"], sure, 0.3)                     # nothing already written is replaced
    assert load_student(sure)[1]["min_score"] == 0.99
    d = KittiRawDrive(tiny_drive)
    paths = {"rgb": students["rgb"], "lidar": sure}
    own = predictor(paths, tiny_drive, "fused")
    assert own.min_scores == {"rgb": 0.5, "lidar": 0.99}                 # the file's, else the default
    lidar_own = predictor(paths, tiny_drive, "lidar")
    assert (lidar_own(points=d.scan(0), stamp=0.0).labels == 0).all()    # every instance under 0.99: dropped
    keep = predictor(paths, tiny_drive, "lidar", min_score=0.0)
    assert keep.min_scores == {"lidar": 0.0} and (keep(points=d.scan(0), stamp=0.0).labels > 0).any()
    assert predictor(paths, tiny_drive, "lidar", instances="hybrid").min_scores == {"lidar": 0.0}   # hybrid_min_score
    # fused mode only: the 3D student's own threshold gives way to fused_min_score_3d
    assert predictor(paths, tiny_drive, "lidar", fused_min_score_3d=0.0).min_scores == {"lidar": 0.99}
    every = dict(fusion_agreement="foreground", fusion_foreground=0.0)   # fusion keeps every 3D instance
    frame = dict(image=d.image(0), points=d.scan(0), stamp=0.0)
    assert (predictor(paths, tiny_drive, "fused", **every)(**frame).labels == 0).all()
    low = predictor(paths, tiny_drive, "fused", fused_min_score_3d=0.0, **every)
    assert low.min_scores == {"rgb": 0.5, "lidar": 0.0} and (low(**frame).labels > 0).any()
    with pytest.raises(ValueError, match="fused_min_score_3d"):
        predictor(paths, tiny_drive, "fused", fused_min_score_3d=1.0)
    with pytest.raises(ValueError, match="min_score must be within"):
        stamp_min_score(students["lidar"], tmp_path / "too_high.pt", 1.0)
    assert not (tmp_path / "too_high.pt").exists()
    save_atomic({"format": "xmod-train-1"}, tmp_path / "not_a_student.pt")
    with pytest.raises(CheckpointError, match="not an exported student"):
        stamp_min_score(tmp_path / "not_a_student.pt", tmp_path / "x.pt", 0.6)
    bad = load_checkpoint(sure)
    bad["min_score"] = 1.5
    save_atomic(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="min_score must be a float within"):
        load_student(tmp_path / "bad.pt")


def test_student_min_score_tool_writes_a_stamped_copy_and_refuses_an_existing_path(students, tmp_path, capsys):
    import importlib.util
    from xmod_core.model import load_student
    spec = importlib.util.spec_from_file_location("student_min_score",
                                                  Path(__file__).parents[1] / "tools/student_min_score.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "stamped.pt"
    assert tool.main([str(students["lidar"]), str(out), "--min-score", "0.6"]) == 0
    assert load_student(out)[1]["min_score"] == 0.6
    with pytest.raises(SystemExit):
        tool.main([str(students["lidar"]), str(out), "--min-score", "0.3"])
    assert "exists" in capsys.readouterr().err and load_student(out)[1]["min_score"] == 0.6
    assert tool.main([str(out), str(tmp_path / "plain.pt"), "--min-score", "-1"]) == 0   # negative: names none
    assert "min_score" not in load_student(tmp_path / "plain.pt")[1]


def test_depth_gate_grid_trims_the_spill_and_keeps_cells_without_returns():
    from xmod_core.clusters import depth_gate_grid
    grid = np.zeros((4, 8), np.int32)
    grid[:, 0:5] = 1                                    # an object at 20 m whose mask spills over a wall at 30 m
    grid[:, 6:8] = 2                                    # an instance with no return at all
    depth = np.full((4, 8), 20.0)
    depth[:, 3:5] = 30.0
    depth[0, 0] = 21.5                                  # within 2 m of the median: kept
    valid = np.ones((4, 8), bool)
    valid[:, 6:8] = False
    valid[1, 4] = False                                 # a beam gap inside the spill keeps its id
    out = depth_gate_grid(grid, depth, valid, 2.0)
    want = grid.copy()
    want[:, 3:5] = 0
    want[1, 4] = 1
    assert np.array_equal(out, want) and out.dtype == grid.dtype
    assert (grid[:, 3:5] == 1).all()                                           # the input is not written
    assert np.array_equal(depth_gate_grid(grid, depth, valid, 0.0), grid)      # 0: off
    assert np.array_equal(depth_gate_grid(grid, depth, valid, 15.0), grid)     # nothing that far
    assert np.array_equal(depth_gate_grid(np.zeros_like(grid), depth, valid, 2.0), np.zeros_like(grid))
    with pytest.raises(ValueError, match="must match"):
        depth_gate_grid(grid, depth[:3], valid, 2.0)


def test_part_trim_reaches_lidar_and_fused_slot_instances(students, tiny_drive, monkeypatch):
    import xmod_core.predictor as P
    d = KittiRawDrive(tiny_drive)
    calls, pts = [], []
    real, real_pts = P.trim_image, P.trim_points
    monkeypatch.setattr(P, "trim_image", lambda lab, pix, xyz, g, v, win, road: calls.append((lab.shape, v, win, road))
                        or real(lab, pix, xyz, g, v, win, road))
    monkeypatch.setattr(P, "trim_points", lambda lab, xyz, g, v: pts.append(v) or real_pts(lab, xyz, g, v))
    for mode in ("lidar", "fused", "rgb"):
        predictor(students, tiny_drive, mode, part_voxel_m=0.7)(image=d.image(0), points=d.scan(0), stamp=0.0)
    predictor(students, tiny_drive, "lidar", part_voxel_m=0.7, instances="hybrid")(points=d.scan(0), stamp=0.0)
    predictor(students, tiny_drive, "lidar", part_voxel_m=0.0)(points=d.scan(0), stamp=0.0)        # 0: off
    hw = (d.calib.height, d.calib.width)
    win = P.part_window(d.calib.height)
    assert calls == [(hw, 0.7, win, P.ROAD_MARGIN), (hw, 0.7, win, P.ROAD_MARGIN)] and pts == [0.7, 0.7]  # lidar, fused slots
    predictor(students, tiny_drive, "lidar", part_voxel_m=0.7, part_road=False)(points=d.scan(0), stamp=0.0)
    assert calls[-1] == (hw, 0.7, win, None)
    r = predictor(students, tiny_drive, "lidar")(points=d.scan(0), stamp=0.0)                      # default: on
    assert len(calls) == 4 and calls[-1][1] == P.PredictorConfig.part_voxel_m > 0 and "parts" in r.timings
    assert calls[-1][3] == (P.ROAD_MARGIN if P.PredictorConfig.part_road else None)
    with pytest.raises(ValueError, match="part_voxel_m must be >= 0"):
        predictor(students, tiny_drive, "lidar", part_voxel_m=-0.5)


def test_part_trim_output_is_the_trim_of_the_untrimmed_labels_and_boxes_follow_it(students, tiny_drive):
    import xmod_core.predictor as P
    from xmod_core.baselines import ground_plane, is_ground, plane_distance
    from xmod_core.frontview import point_pixels
    from xmod_core.metrics import instance_boxes
    d = KittiRawDrive(tiny_drive)
    pts = d.scan(0)
    off = predictor(students, tiny_drive, "lidar", min_score=0.0, part_voxel_m=0.0)(points=pts, stamp=0.0)
    p = predictor(students, tiny_drive, "lidar", min_score=0.0, part_voxel_m=0.5)
    on = p(points=pts, stamp=0.0)
    fv = project_scan(pts, d.calib.scaled(32, 96))
    plane = ground_plane(pts[fv.point_pixel >= 0], p.hybrid.clusters)
    ground = np.abs(plane_distance(pts[:, :3], plane)) < p.hybrid.clusters.ground_tol if is_ground(plane) else \
        np.zeros(len(pts), bool)
    want = P.trim_image(off.labels, point_pixels(pts, d.calib), pts[:, :3], ground, 0.5, P.part_window(d.calib.height),
                        P.ROAD_MARGIN)
    assert (off.labels > 0).any() and np.array_equal(on.labels, want)
    assert not np.array_equal(on.labels, off.labels)                 # the tiny drive's untrained masks do spill
    ids, boxes = instance_boxes(on.labels)
    assert np.array_equal(on.box_ids, ids) and np.allclose(on.boxes, boxes)   # boxes of the trimmed pixels


def test_grid_depth_gate_reaches_lidar_and_fused_slot_instances(students, tiny_drive, monkeypatch):
    import xmod_core.predictor as P
    d = KittiRawDrive(tiny_drive)
    calls = []
    real = P.depth_gate_grid
    monkeypatch.setattr(P, "depth_gate_grid", lambda g, dep, v, gate: calls.append((tuple(g.shape), gate)) or real(g, dep, v, gate))
    for mode in ("lidar", "fused", "rgb"):
        p = predictor(students, tiny_drive, mode, grid_depth_gate_m=1.5)
        p(image=d.image(0), points=d.scan(0), stamp=0.0)
    predictor(students, tiny_drive, "lidar", grid_depth_gate_m=1.5, instances="hybrid")(points=d.scan(0), stamp=0.0)
    predictor(students, tiny_drive, "lidar")(points=d.scan(0), stamp=0.0)                      # default: off
    assert calls == [((32, 96), 1.5), ((32, 96), 1.5)]              # lidar and fused slot instances only
    with pytest.raises(ValueError, match="grid_depth_gate_m must be >= 0"):
        predictor(students, tiny_drive, "lidar", grid_depth_gate_m=-1.0)


def test_rescue_keeps_the_unsure_3d_instances_a_lidar_cluster_confirms(students, tiny_drive, monkeypatch):
    """rescue_iou > 0: the 3D student's instances under its own threshold but over rescue_min_score
    reach fusion and the output only where `rescue.confirmed` keeps them; lidar / fused slot
    instances only."""
    import xmod_core.predictor as pred
    from xmod_core.frontview import project_scan
    from xmod_core.rescue import confirmed
    from test_mining import box_points
    d = KittiRawDrive(tiny_drive)
    cars = np.concatenate([box_points((x, y), (4.0, 1.8, 1.5)) for x, y in ((10, -3), (12, 3), (20, 0))])
    scan = np.concatenate([d.scan(0), np.c_[cars, np.full(len(cars), 0.3)]]).astype(np.float32)
    frame = dict(points=scan, stamp=0.0)
    every = predictor(students, tiny_drive, "lidar", min_score=0.0, rescue_iou=0.0)   # all instances, no rescue
    r_all = every(**frame)
    assert len(np.unique(r_all.students["lidar"])) > 2
    # the clusters confirm the last present instance of the unfiltered student, whatever the geometry
    present = [int(i) for i in np.unique(r_all.students["lidar"]) if i]
    chosen = [present[-1]]                                  # the other present ones are dropped
    seen = []

    def fake(grid, scores, pixel, points, own, low, iou):
        seen.append((own, low, iou))
        keep = np.asarray(scores) >= own
        keep[np.array(chosen) - 1] = True
        return keep
    monkeypatch.setattr(pred, "confirmed", fake)
    p = predictor(students, tiny_drive, "lidar", min_score=0.9, rescue_iou=0.5, rescue_min_score=0.0)
    assert p.extract_scores == {"lidar": 0.0} and p.min_scores == {"lidar": 0.9} and p.own_min_score_3d == 0.9
    r = p(**frame)
    assert seen == [(0.9, 0.0, 0.5)]
    want = np.where(np.isin(r_all.students["lidar"], chosen), r_all.students["lidar"], 0)
    assert len(present) >= 2 and (want > 0).any() and (want != r_all.students["lidar"]).any()
    np.testing.assert_array_equal(r.students["lidar"], want)
    assert PredictorConfig.rescue_iou > 0 and predictor(students, tiny_drive, "lidar", min_score=0.9).rescue   # default
    for mode, kw in (("rgb", {}), ("lidar", {"instances": "hybrid", "min_points": 1})):     # the rescue does not run
        q = predictor(students, tiny_drive, mode, min_score=0.9, rescue_iou=0.5, **kw)
        assert not q.rescue and q.extract_scores == q.min_scores
    assert not predictor(students, tiny_drive, "lidar", min_score=0.9, rescue_iou=0.0).rescue
    assert not predictor(students, tiny_drive, "lidar", min_score=0.9, rescue_iou=0.5, instances="hybrid",
                         min_points=1).rescue
    seen.clear()
    predictor(students, tiny_drive, "fused", min_score=0.9, rescue_iou=0.5)(image=d.image(0), **frame)
    assert seen == [(0.9, PredictorConfig.rescue_min_score, 0.5)]
    with pytest.raises(ValueError, match="rescue_iou must be within"):
        predictor(students, tiny_drive, "lidar", rescue_iou=1.5)
    with pytest.raises(ValueError, match="rescue_min_score within"):
        predictor(students, tiny_drive, "lidar", rescue_min_score=1.0)
    # unpatched: the same as confirmed() on the unfiltered student's instances and their scores
    got = []
    monkeypatch.setattr(pred, "confirmed", lambda *a: got.append(a[1]) or confirmed(*a))
    r = predictor(students, tiny_drive, "lidar", min_score=0.9, rescue_iou=0.01, rescue_min_score=0.0)(**frame)
    scores = got[0]
    assert len(scores) == every.models["lidar"].slots_init.shape[0] - 1          # one per object slot
    keep = confirmed(r_all.students["lidar"], scores, project_scan(frame["points"], every.calib_small).point_pixel,
                     frame["points"], 0.9, 0.0, 0.01)
    ids = np.arange(len(keep)) + 1
    present = np.isin(ids, r_all.students["lidar"])
    assert (keep & present).any() and (~keep & present).any()              # some confirmed, some not
    np.testing.assert_array_equal(r.students["lidar"], np.where(np.isin(r_all.students["lidar"], ids[keep]),
                                                                r_all.students["lidar"], 0))
