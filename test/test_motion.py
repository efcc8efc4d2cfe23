"""Tests for xmod_core.motion / xmod_core.flow (and the motion config through xmod_core.config).

Synthetic scenes with an exact answer are ray-cast here (a textured ground plane, a textured
wall 45 m ahead and textured upright boxes that move), with a LiDAR sampled from the same
surfaces, so every case knows its true instance masks and ego-motion.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest

from xmod_core.config import ConfigError
from xmod_core.flow import DISFlow, forward_backward_error, make_flow, register_flow, sample
from xmod_core.kitti import CameraCalib, write_calib_files, write_oxts
from xmod_core.motion import (MotionConfig, MotionInputError, MotionSegmenter, load_motion_config,
                              process_drive, read_motion_json, relative_motion_from_poses)
from xmod_core.motion.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
KITTI = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw"
REAL_DRIVE = KITTI / "2011_09_26" / "2011_09_26_drive_sfnd_sync"

# camera: 496x160, f = 300 px; LiDAR at the camera, KITTI axes (velo x fwd, y left, z up)
H, W, F, CX, CY = 160, 496, 300.0, 247.5, 59.5
CAM_HEIGHT, WALL_Z = 1.65, 45.0
A_V2C = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
T_V2C = np.eye(4)
T_V2C[:3, :3] = A_V2C
P = np.array([[F, 0, CX, 0], [0, F, CY, 0], [0, 0, 1, 0]])


def calib(h=H, w=W) -> CameraCalib:
    return CameraCalib(P, np.eye(3), T_V2C, w, h, camera=2)


@dataclass
class Box:
    """Upright textured rectangle facing the camera: world x in [x0, x1] at frame 0, top at
    height ``height`` above the ground, at world depth z; moves by (vx, vz) m per frame."""
    x0: float
    x1: float
    z: float
    height: float = 1.6
    vx: float = 0.0
    vz: float = 0.0
    seed: int = 1


@dataclass
class Scene:
    ego_speed: float = 1.0            # m per frame along +z (forward)
    boxes: list = field(default_factory=list)


def _texture(seed: int, a: np.ndarray, b: np.ndarray, cell: float) -> np.ndarray:
    """Smooth random texture (bilinear on a 256x256 grid of cells), values ~40..215."""
    tex = np.random.default_rng(seed).uniform(40, 215, (256, 256)).astype(np.float32)
    tex = cv2.GaussianBlur(tex, (3, 3), 0.7)
    fa, fb = a / cell, b / cell
    ia, ib = np.floor(fa).astype(np.int64), np.floor(fb).astype(np.int64)
    wa, wb = (fa - ia).astype(np.float32), (fb - ib).astype(np.float32)
    i0, i1, j0, j1 = ia % 256, (ia + 1) % 256, ib % 256, (ib + 1) % 256
    return ((1 - wa) * (1 - wb) * tex[i0, j0] + wa * (1 - wb) * tex[i1, j0]
            + (1 - wa) * wb * tex[i0, j1] + wa * wb * tex[i1, j1])


def render(scene: Scene, t: int, ss: int = 2):
    """Frame t: (rgb uint8 (H,W,3), instances uint16 (H,W), velo points (N,4) float32)."""
    cz = scene.ego_speed * t
    off = (np.arange(ss) + 0.5) / ss - 0.5
    u = (np.arange(W)[:, None] + off[None]).ravel()
    v = (np.arange(H)[:, None] + off[None]).ravel()
    uu, vv = np.meshgrid(u, v)
    dx, dy = (uu - CX) / F, (vv - CY) / F
    depth = np.full(uu.shape, WALL_Z - cz)                       # wall
    inten = _texture(99, dx * depth, dy * depth, 0.6)
    ident = np.zeros(uu.shape, np.int32)
    with np.errstate(divide="ignore"):
        s_g = np.where(dy > 1e-6, CAM_HEIGHT / dy, np.inf)       # ground
    g = s_g < depth
    depth = np.where(g, s_g, depth)
    s_gf = np.where(g, s_g, 0.0)
    inten = np.where(g, _texture(7, dx * s_gf, s_gf + cz, 0.3), inten)
    for k, b in enumerate(scene.boxes, 1):
        s = b.z + b.vz * t - cz
        X, Y = dx * s, dy * s
        xa, xb = b.x0 + b.vx * t, b.x1 + b.vx * t
        hit = (s > 0) & (s < depth) & (X >= xa) & (X <= xb) & (Y >= CAM_HEIGHT - b.height) & (Y <= CAM_HEIGHT)
        depth = np.where(hit, s, depth)
        inten = np.where(hit, _texture(b.seed, X - b.vx * t, Y, 0.15), inten)
        ident = np.where(hit, k, ident)
    img = inten.reshape(H, ss, W, ss).mean((1, 3))
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, 2)
    inst = ident.reshape(H, ss, W, ss)[:, ss // 2, :, ss // 2].astype(np.uint16)
    # LiDAR: the surface point of every other pixel row / column (camera = LiDAR position)
    d = depth.reshape(H, ss, W, ss)[::2, ss // 2, ::2, ss // 2]
    ddx = dx.reshape(H, ss, W, ss)[::2, ss // 2, ::2, ss // 2]
    ddy = dy.reshape(H, ss, W, ss)[::2, ss // 2, ::2, ss // 2]
    cam = np.stack([ddx * d, ddy * d, d], -1).reshape(-1, 3)
    velo = cam @ A_V2C                                            # inverse of the axes swap
    pts = np.hstack([velo, np.full((len(velo), 1), 0.3)]).astype(np.float32)
    return rgb, inst, pts


def ego_pose(scene: Scene) -> np.ndarray:
    """rect(t) -> rect(t+1): the static world comes ego_speed closer."""
    T = np.eye(4)
    T[2, 3] = -scene.ego_speed
    return T


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def best_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    return max([iou(pred == i, gt) for i in np.unique(pred[gt]) if i > 0], default=0.0)


@pytest.fixture(scope="module")
def seg():
    return MotionSegmenter(load_motion_config(ROOT / "config" / "motion.yaml"))


def pair(scene, t=0):
    a, inst, pts = render(scene, t)
    b, _, _ = render(scene, t + 1)
    return a, b, inst, pts


# --------------------------------------------------------------------------- exact cases
STATIC = Scene(1.0, [Box(-6.0, -3.5, 14.0, seed=3), Box(3.0, 5.0, 20.0, 2.5, seed=4)])
ONE_MOVER = Scene(1.0, [Box(-6.0, -3.5, 14.0, seed=3), Box(-0.5, 1.5, 12.0, vx=0.4, seed=5)])
TWO_MOVERS = Scene(0.5, [Box(-2.4, -0.2, 8.0, vx=-0.4, seed=5), Box(-0.2, 2.0, 8.0, vx=0.4, seed=6)])


def test_static_scene_under_ego_translation_gives_no_mask(seg):
    a, b, _, pts = pair(STATIC)
    for pose in (ego_pose(STATIC), None):          # oxts-like pose, then PnP from LiDAR + flow
        res = seg.segment_pair(a, b, pts, calib(), pose)
        assert not res.unknown
        assert res.ego.status == ("oxts" if pose is not None else "pnp")
        assert res.n_instances == 0 and res.instances.max() == 0, res.info
    assert res.instances.shape == (H, W) and res.instances.dtype == np.uint16
    # the PnP estimate is the true motion
    assert abs(res.ego.T[2, 3] + 1.0) < 0.05 and np.abs(res.ego.T[:2, 3]).max() < 0.05


def test_one_translating_object_gives_one_mask_that_covers_it(seg):
    a, b, inst, pts = pair(ONE_MOVER)
    for pose in (ego_pose(ONE_MOVER), None):
        res = seg.segment_pair(a, b, pts, calib(), pose)
        assert res.n_instances == 1, res.info
        gt = inst == 2
        assert best_iou(res.instances, gt) > 0.7
        assert not (res.instances[inst == 1]).any()           # the static box stays clean


def test_two_objects_moving_apart_side_by_side_give_two_instances(seg):
    a, b, inst, pts = pair(TWO_MOVERS)
    res = seg.segment_pair(a, b, pts, calib(), ego_pose(TWO_MOVERS))
    assert res.n_instances == 2, res.info
    ia, ib = best_iou(res.instances, inst == 1), best_iou(res.instances, inst == 2)
    assert ia > 0.6 and ib > 0.6
    # each object is its own instance
    assert np.bincount(res.instances[inst == 1]).argmax() != np.bincount(res.instances[inst == 2]).argmax()


def test_no_lidar_uses_the_epipolar_test(seg):
    a, b, inst, _ = pair(ONE_MOVER)
    res = seg.segment_pair(a, b, None, calib(), ego_pose(ONE_MOVER))  # lateral motion: off the epipolar line
    assert res.ego.status == "oxts" and res.n_instances == 1
    assert best_iou(res.instances, inst == 2) > 0.5
    a, b, _, _ = pair(STATIC)
    res = seg.segment_pair(a, b, None, calib(), None)                # flow only: essential matrix
    assert res.ego.status == "essential" and not res.ego.metric
    assert res.n_instances == 0
    assert res.ego.T[2, 3] < -0.99                                   # unit translation, forward
    a, b, inst, _ = pair(ONE_MOVER)
    res = seg.segment_pair(a, b, None, calib(), None)
    assert res.ego.status == "essential" and res.n_instances == 1
    assert best_iou(res.instances, inst == 2) > 0.5
    a, _, _, _ = pair(STATIC)
    res = seg.segment_pair(a, a.copy(), None, calib(), None)         # ego still: no translation
    assert res.ego.status == "rotation" and res.n_instances == 0


def test_non_finite_lidar_points_are_ignored(seg):
    a, b, inst, pts = pair(ONE_MOVER)
    bad = pts.copy()
    bad[::7, 0] = np.nan
    bad[1::7, 2] = np.inf
    bad[2::7, 1] = -np.inf
    res = seg.segment_pair(a, b, bad, calib(), None)
    assert not res.unknown and res.n_instances == 1
    assert best_iou(res.instances, inst == 2) > 0.7


def test_non_finite_pose_is_unknown_not_empty(seg):
    a, b, _, pts = pair(STATIC)
    pose = ego_pose(STATIC)
    pose[0, 3] = np.nan
    res = seg.segment_pair(a, b, pts, calib(), pose)
    assert res.unknown and res.instances is None and "finite" in res.ego.reason


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_errors(seg):
    a, b, _, pts = pair(STATIC)
    with pytest.raises(MotionInputError, match="same size"):
        seg.segment_pair(a, b[:, :-8], pts, calib(), None)
    with pytest.raises(MotionInputError, match="img_t1: missing image"):
        seg.segment_pair(a, None, pts, calib(), None)
    with pytest.raises(MotionInputError, match="calib is for 248x80"):
        seg.segment_pair(a, b, pts, calib(80, 248), None)
    with pytest.raises(MotionInputError, match="uint8"):
        seg.segment_pair(a.astype(np.float32), b, pts, calib(), None)
    with pytest.raises(MotionInputError, match=r"scan: expected shape"):
        seg.segment_pair(a, b, pts[:, :2], calib(), None)
    with pytest.raises(MotionInputError, match=r"pose_t_to_t1"):
        seg.segment_pair(a, b, pts, calib(), np.eye(3))


def test_ego_fails_with_too_few_static_points_is_unknown(seg):
    a, b, _, pts = pair(STATIC)
    res = seg.segment_pair(a, b, pts[:30], calib(), None)   # 30 LiDAR points: PnP cannot be trusted
    assert res.unknown and res.ego.status == "failed" and res.ego.reason


# --------------------------------------------------------------------------- drives and CLI
def write_drive(root: Path, scene: Scene, frames=range(4), lidar=True, oxts=True) -> Path:
    date = root / "2011_01_01"
    write_calib_files(date, P, np.eye(3), T_V2C, np.eye(4), width=W, height=H)
    drive = date / "2011_01_01_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    if lidar:
        (drive / "velodyne_points" / "data").mkdir(parents=True)
    truth = {}
    for i in frames:
        rgb, inst, pts = render(scene, i)
        cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), rgb[..., ::-1])
        if lidar:
            pts.tofile(drive / "velodyne_points" / "data" / f"{i:010d}.bin")
        truth[i] = inst
    if oxts:
        n = max(frames) + 1
        poses = np.tile(np.eye(4), (n, 1, 1))
        poses[:, 0, 3] = scene.ego_speed * np.arange(n)               # velo x forward = cam z
        write_oxts(drive / "oxts", poses)
        for i in set(range(n)) - set(frames):                          # same frames as the images
            (drive / "oxts" / "data" / f"{i:010d}.txt").unlink()
    return drive, truth


def test_relative_motion_from_oxts_poses(tmp_path):
    from xmod_core.kitti import KittiRawDrive
    drive, _ = write_drive(tmp_path, STATIC, frames=range(2))
    d = KittiRawDrive(drive)
    T = relative_motion_from_poses(d.poses[0], d.poses[1], d.calib, np.eye(4))
    np.testing.assert_allclose(T, ego_pose(STATIC), atol=1e-6)


def test_process_drive_cli_skip_force_and_unknown(tmp_path, capsys):
    drive, truth = write_drive(tmp_path, ONE_MOVER, frames=range(4))
    out = drive / "image_02" / "motion_masks"
    assert cli_main([str(drive), "--quiet", "--overlays", str(tmp_path / "ov")]) == 0
    meta = read_motion_json(out)
    assert meta["ego_source"] == "oxts" and meta["unknown"] == []
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:010d}.png" for i in range(4)]
    for i in range(4):
        m = cv2.imread(str(out / f"{i:010d}.png"), cv2.IMREAD_UNCHANGED)
        assert m.dtype == np.uint16 and m.shape == (H, W)
        assert best_iou(m, truth[i] == 2) > 0.6 and not m[truth[i] == 1].any()
    assert len(list((tmp_path / "ov").glob("*.png"))) == 4
    # a re-run skips everything; --force recomputes; other parameters are refused without --force
    s = process_drive(drive, load_motion_config(ROOT / "config" / "motion.yaml"), progress=False)
    assert s.skipped == 4 and s.processed == 0
    s = process_drive(drive, load_motion_config(ROOT / "config" / "motion.yaml"), force=True, progress=False)
    assert s.processed == 4
    capsys.readouterr()
    assert cli_main([str(drive), "--quiet", "residual.threshold=2.0"]) == 1
    assert "other parameters" in capsys.readouterr().err
    assert cli_main([str(drive), "--quiet", "no.such_key=1"]) == 2
    assert "unknown key 'no'" in capsys.readouterr().err


def test_drive_with_missing_frame_and_without_lidar(tmp_path):
    # frames 0, 1, 3: frame 2 is missing, so frame 3 has no neighbour -> unknown, no PNG;
    # no LiDAR at all: the epipolar path with the oxts poses
    drive, truth = write_drive(tmp_path, ONE_MOVER, frames=[0, 1, 3], lidar=False)
    s = process_drive(drive, MotionConfig(), progress=False)
    out = drive / "image_02" / "motion_masks"
    meta = json.loads((out / "motion.json").read_text())
    assert meta["unknown"] == ["0000000003"] and s.unknown == ["0000000003"]
    assert "no neighbour" in meta["frames"]["0000000003"]["reason"]
    assert not (out / "0000000003.png").exists()
    m = cv2.imread(str(out / "0000000000.png"), cv2.IMREAD_UNCHANGED)
    assert best_iou(m, truth[0] == 2) > 0.5


def test_drive_errors_name_the_problem(tmp_path):
    drive, _ = write_drive(tmp_path, STATIC, frames=range(2), oxts=False)
    bad = np.zeros((H + 2, W, 3), np.uint8)
    cv2.imwrite(str(drive / "image_02" / "data" / "0000000001.png"), bad)
    with pytest.raises(MotionInputError, match=r"0000000001.png: image is 496x162"):
        process_drive(drive, MotionConfig(), progress=False)
    with pytest.raises(MotionInputError, match="ego.source=oxts but the drive has no oxts"):
        process_drive(drive, load_motion_config(None, ["ego.source=oxts"]), progress=False, force=True)


# --------------------------------------------------------------------------- config
def test_config_file_loads_and_rejects_bad_keys(tmp_path):
    cfg = load_motion_config(ROOT / "config" / "motion.yaml")
    assert isinstance(cfg, MotionConfig) and cfg.scale == 0.75 and cfg.residual.depth_window == (10, 14)
    assert cfg.to_dict() == MotionConfig().to_dict(), "config/motion.yaml and the defaults disagree"
    p = tmp_path / "m.yaml"
    p.write_text("residual:\n  treshold: 2\n")
    with pytest.raises(ConfigError, match=r"unknown key 'residual\.treshold'"):
        load_motion_config(p)
    p.write_text("mask:\n  min_object_points: 2.5\n")
    with pytest.raises(ConfigError, match=r"mask\.min_object_points: expected int"):
        load_motion_config(p)
    p.write_text("ego:\n  source: gps\n")
    with pytest.raises(ConfigError, match=r"ego\.source: expected one of"):
        load_motion_config(p)
    p.write_text("scale: !!python/object:os.system {}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_motion_config(p)
    with pytest.raises(ConfigError, match=r"residual: need 0 < threshold"):
        load_motion_config(None, ["residual.threshold=5"])
    with pytest.raises(ConfigError, match=r"scale must be within \[0\.1, 1\]"):
        load_motion_config(ROOT / "config" / "motion.yaml", ["scale=3"])
    assert load_motion_config() == MotionConfig()
    cfg = load_motion_config(None, ["scale=1", "flow.preset=fast", "residual.depth_window=[3, 5]"])
    assert cfg.scale == 1.0 and cfg.flow.preset == "fast" and cfg.residual.depth_window == (3, 5)
    assert cfg.residual.near_window == (18, 26) and cfg.flow.method == "dis"  # the rest: defaults
    with pytest.raises(ConfigError, match="expected key=value"):
        load_motion_config(None, ["scale"])


# --------------------------------------------------------------------------- flow
def test_dis_flow_and_forward_backward_check():
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.uniform(0, 255, (120, 200)).astype(np.float32), (5, 5), 1.5)
    a = base[10:90, 10:170].astype(np.uint8)
    b = base[10:90, 7:167].astype(np.uint8)          # content moves 3 px to the right
    flow = DISFlow("medium")
    fw, bw = flow(a, b), flow(b, a)
    inner = (slice(10, -10), slice(10, -10))
    assert np.median(fw[inner][..., 0]) == pytest.approx(3.0, abs=0.1)
    assert np.median(forward_backward_error(fw, bw)[inner]) < 0.2
    assert np.isinf(forward_backward_error(fw, bw)[:, -1]).all()   # leaves the view
    assert sample(fw, np.array([80.0]), np.array([40.0]))[0, 0] == pytest.approx(3.0, abs=0.2)
    assert flow.params()["preset"] == "medium"
    with pytest.raises(ValueError, match="not registered"):
        make_flow("raft")
    register_flow("zero", lambda: type("Z", (), {"name": "zero", "params": lambda s: {},
                                                  "__call__": lambda s, x, y: np.zeros(x.shape[:2] + (2,), np.float32)})())
    assert make_flow("zero")(a, b).shape == (80, 160, 2)
    with pytest.raises(ValueError, match="DIS preset"):
        DISFlow("slow")


# --------------------------------------------------------------------------- real frames
@pytest.mark.skipif(not REAL_DRIVE.is_dir(), reason=f"real KITTI frames not found at {REAL_DRIVE}")
def test_real_frames_ego_motion_and_masks(tmp_path):
    cfg = load_motion_config(ROOT / "config" / "motion.yaml")
    s = process_drive(REAL_DRIVE, cfg, out_dir=tmp_path / "masks", progress=False, frames=range(3))
    meta = read_motion_json(tmp_path / "masks")
    assert s.processed == 3 and meta["unknown"] == [] and meta["ego_source"] == "pnp"
    for fid in ("0000000000", "0000000001", "0000000002"):
        e = meta["frames"][fid]["ego"]
        # slow forward driving: 1-3 m/s at 10 Hz, no turning
        assert 0.08 < -e["translation"][2] < 0.35 and e["rotation_deg"] < 0.5
        m = cv2.imread(str(tmp_path / "masks" / f"{fid}.png"), cv2.IMREAD_UNCHANGED)
        assert m.shape == (375, 1242)
        # the road in front of the car (bottom centre) is never marked as moving
        assert not m[330:, 450:800].any()


def test_a_mover_merged_in_bev_with_a_static_neighbour_is_kept():
    """A car passing a parked one at the same depth, 0.2 m apart: in bird's-eye view they are one
    scene object whose median score is the static majority's. The mover is the bulk of its own
    points (>= object_bulk_share of the merged object), so the whole-object test must not drop it;
    with the exception switched off (share 1.0) it is dropped."""
    scene = Scene(1.0, [Box(-0.5, 1.5, 12.0, vx=0.4, seed=5), Box(1.7, 4.5, 12.0, seed=3)])
    a, b, inst, pts = pair(scene)
    found = {}
    for share in (0.35, 1.0):
        seg = MotionSegmenter(load_motion_config(ROOT / "config" / "motion.yaml", [f"mask.object_bulk_share={share}"]))
        res = seg.segment_pair(a, b, pts, calib(), ego_pose(scene))
        found[share] = best_iou(res.instances, inst == 1)
        assert not (res.instances[inst == 2] > 0).mean() > 0.3      # the parked car is not marked
    assert found[0.35] > 0.6 and found[1.0] < 0.5, found
    with pytest.raises(ConfigError, match="object_bulk_share"):
        load_motion_config(ROOT / "config" / "motion.yaml", ["mask.object_bulk_share=0"])


def test_a_mover_along_the_viewing_ray_is_found_by_its_points():
    """A box ahead driving on (0.6 m per frame while we do 1.0): its flow lies on the epipolar
    line of a static point, nearer than it is.  With the per-pixel test switched off
    (threshold 100), only the point test (each LiDAR point at its own depth) can find it: it must
    find it, whole, and leave the static box alone; with ``point_objects`` off nothing is found."""
    scene = Scene(1.0, [Box(-6.0, -3.5, 14.0, seed=3), Box(2.0, 5.0, 12.0, vz=0.6, seed=5)])
    a, b, inst, pts = pair(scene)
    base = ["residual.threshold=100", "residual.seed_threshold=100"]
    found = {}
    for on in (True, False):
        seg = MotionSegmenter(load_motion_config(ROOT / "config" / "motion.yaml",
                                                 base + [f"mask.point_objects={str(on).lower()}"]))
        res = seg.segment_pair(a, b, pts, calib(), ego_pose(scene))
        found[on] = (res.n_instances, best_iou(res.instances, inst == 2), res.info)
        assert not (res.instances[inst == 1] > 0).any()           # the static box stays clean
    assert found[True][0] == 1 and found[True][1] > 0.7, found[True]
    assert found[False][0] == 0, found[False]


def test_point_scores_use_the_points_own_depth_and_skip_silhouettes(seg):
    """Static scene: points inside a surface score low (their own depth explains their flow);
    points on a silhouette (the window around them holds other depths) get no score at all."""
    a, b, inst, pts = pair(STATIC)
    c = calib()
    H_, W_ = seg.processing_size(H, W)
    pc = seg.processing_calib(c, H, W)
    lv = seg.lidar(pts, pc)
    ga, gb = seg.prepare_image(a), seg.prepare_image(b)
    fw, bw = seg.flows(ga, gb)
    from xmod_core.motion.ego import EgoMotion
    ev = seg.evidence(ga, fw, bw, EgoMotion("oxts", ego_pose(STATIC), True), lv, pc)
    ps = ev.point_score
    assert ps is not None and ps.shape == (lv.n,)
    fin = np.isfinite(ps)
    assert fin.sum() > 0.3 * lv.n
    assert np.median(ps[fin]) < 0.5
    # silhouette points of the near box (depth 14 m against the 45 m wall): no score
    d = lv.depth
    edge = (lv.rho_max[lv.pix // W_, lv.pix % W_] > 1.2 / d)
    assert edge.any() and not fin[edge].any()
    # without LiDAR there is nothing to score
    assert seg.evidence(ga, fw, bw, EgoMotion("oxts", ego_pose(STATIC), True), None, pc).point_score is None


def test_point_objects_with_an_estimated_ego_motion_must_stand_out_of_the_frame(seg):
    """Every point of a static scene scoring 1.0 (what a few per cent of translation error does):
    given oxts poses that is motion (> point_object_score) and the boxes become instances; with
    an estimated ego-motion the threshold rises to point_object_level_ratio x the frame's median
    score and nothing is marked."""
    a, b, inst, pts = pair(STATIC)
    pc = seg.processing_calib(calib(), H, W)
    lv = seg.lidar(pts, pc)
    h, w = seg.processing_size(H, W)
    zero = np.zeros((h, w), np.float32)
    flow = np.zeros((h, w, 2), np.float32)
    ps = np.ones(lv.n, np.float32)
    out, info = seg.masks(zero, zero > 0, lv, flow, (H, W), ps, estimated=False)
    assert info["point_objects"] >= 2 and (out[inst == 1] > 0).mean() > 0.5 and (out[inst == 2] > 0).mean() > 0.5
    out, info = seg.masks(zero, zero > 0, lv, flow, (H, W), ps, estimated=True)
    assert info["point_objects"] == 0 and out.max() == 0
    # one box scoring 4x the rest stands out even so
    ps[lv.above & (lv.depth < 16)] = 4.0
    out, info = seg.masks(zero, zero > 0, lv, flow, (H, W), ps, estimated=True)
    assert info["point_objects"] == 1 and (out[inst == 1] > 0).mean() > 0.5 and not (out[inst == 2] > 0).any()


@pytest.mark.parametrize("override, key", [("mask.point_object_min_points=0", "point_object_min_points"),
                                           ("mask.point_object_covered=0", "point_object_covered"),
                                           ("residual.point_depth_rel=-0.1", "point_depth_rel"),
                                           ("residual.point_interior_rel=-1", "point_interior_rel"),
                                           ("mask.point_object_level_ratio=-3", "point_object_level_ratio"),
                                           ("mask.point_objects=maybe", "point_objects")])
def test_bad_point_test_settings_are_refused_by_name(override, key):
    with pytest.raises(ConfigError, match=key):
        load_motion_config(ROOT / "config" / "motion.yaml", [override])


def test_point_objects_leave_objects_an_instance_already_covers(seg):
    """Box 1 half covered by an instance of the per-pixel test: the point test must not add a
    second instance on its other half (>= point_object_covered of its points are taken); box 2,
    uncovered, becomes an instance.  With point_object_covered=1 box 1 gets the second instance."""
    a, b, inst, pts = pair(STATIC)
    pc = seg.processing_calib(calib(), H, W)
    lv = seg.lidar(pts, pc)
    h, w = seg.processing_size(H, W)
    ps = np.where(lv.above, 4.0, 0.0).astype(np.float32)
    box1 = cv2.resize(inst, (w, h), interpolation=cv2.INTER_NEAREST) == 1
    cols = np.flatnonzero(box1.any(0))
    half = box1.copy()
    half[:, (cols[0] + cols[-1]) // 2:] = False
    above_idx = np.flatnonzero(lv.above)
    kernel = np.ones(seg.px.depth_window[::-1], np.uint8)
    has_pt = cv2.dilate((lv.depth_map > 0).astype(np.uint8), kernel) > 0
    grow_ok = np.ones((h, w), bool)
    for covered, boxes_added in ((0.1, {2}), (1.0, {1, 2})):
        s2 = MotionSegmenter(load_motion_config(ROOT / "config" / "motion.yaml",
                                                [f"mask.point_object_covered={covered}"]))
        out = half.astype(np.int32)
        nxt = s2._point_objects(out, 2, ps, lv, above_idx, s2._scene_objects(lv, above_idx), np.zeros((h, w)),
                                np.zeros((h, w), np.float32), grow_ok, has_pt, kernel, 50.0)
        big = cv2.resize(out.astype(np.uint16), (W, H), interpolation=cv2.INTER_NEAREST)
        added = {k for k in (1, 2) if (big[inst == k] >= 2).mean() > 0.2}
        assert added == boxes_added and nxt - 2 == len(boxes_added), (covered, added, nxt)
        assert (out[half] == 1).all()                           # the instance already there is kept
