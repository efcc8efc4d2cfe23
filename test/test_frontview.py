"""Tests for xmod_core.frontview with a hand-built camera, plus the 30 real KITTI scans."""
from pathlib import Path

import numpy as np
import pytest

from xmod_core.frontview import (DEPTH_RANGE, FrontView, X_RANGE, Y_RANGE, Z_RANGE, depth_colormap,
                                 grid_labels_to_points, normalise, point_pixels, project_scan)
from xmod_core.kitti import CameraCalib, KittiRawDrive

KITTI = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw"
REAL_DRIVE = KITTI / "2011_09_26" / "2011_09_26_drive_sfnd_sync"

# velo (x fwd, y left, z up) -> cam (x right, y down, z fwd), camera 0.2 m ahead and 0.1 m up
A = np.array([[0.0, -1, 0], [0, 0, -1], [1, 0, 0]])
T_V2C = np.eye(4)
T_V2C[:3, :3], T_V2C[:3, 3] = A, [0.0, -0.1, 0.2]
W, H = 640, 200


def calib(p4=(50.0, 20.0, 0.5)) -> CameraCalib:
    """fx=500, fy=400, cx=300, cy=100, 4th column p4, identity R_rect, 640x200 image."""
    P = np.array([[500.0, 0, 300, p4[0]], [0, 400, 100, p4[1]], [0, 0, 1, p4[2]]])
    return CameraCalib(P, np.eye(3), T_V2C, W, H, camera=2)


def velo_from_cam(cam) -> np.ndarray:
    """(N,3) cam coordinates -> (N,3) velo points under T_V2C (inverse transform)."""
    return (np.asarray(cam, float) - T_V2C[:3, 3]) @ A


def test_hand_computed_projection_full_and_scaled():
    pt = np.array([[10.0, -1.0, 0.5]])  # velo -> cam (1, -0.6, 10.2)
    c = calib()
    # by hand: w = 10.2 + 0.5 = 10.7; u = (500*1 + 300*10.2 + 50) / w; v = (400*-0.6 + 100*10.2 + 20) / w
    u, v = 3610.0 / 10.7, 800.0 / 10.7                     # 337.38.., 74.77..
    uv, depth = c.project(pt)
    np.testing.assert_allclose(uv[0], [u, v], rtol=1e-12)
    np.testing.assert_allclose(depth, [10.2])             # z_rect, not w
    for (h, w), (sx, sy) in [((200, 640), (1, 1)), ((100, 320), (0.5, 0.5)), ((100, 160), (0.25, 0.5))]:
        fv = project_scan(pt, c, h, w)
        # integer coordinates are pixel centres: round to the nearest pixel
        row, col = int(np.floor(v * sy + 0.5)), int(np.floor(u * sx + 0.5))   # (75,337) (37,169) (37,84)
        assert fv.features.shape == (4, h, w) and fv.features.dtype == np.float32
        assert fv.valid.sum() == 1 and fv.valid[row, col]
        assert fv.pixel_point[row, col] == 0 and fv.point_pixel[0] == row * w + col
        dist = np.sqrt(1 + 0.36 + 10.2 ** 2)
        expect = [(1 - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0]), (-0.6 - Y_RANGE[0]) / (Y_RANGE[1] - Y_RANGE[0]),
                  (10.2 - Z_RANGE[0]) / (Z_RANGE[1] - Z_RANGE[0]),
                  (dist - DEPTH_RANGE[0]) / (DEPTH_RANGE[1] - DEPTH_RANGE[0])]
        np.testing.assert_allclose(fv.features[:, row, col], expect, rtol=1e-6)
    assert (project_scan(pt, c).point_pixel == project_scan(pt, c, 200, 640).point_pixel).all()


def test_point_pixels_match_the_front_views_point_pixel():
    rng = np.random.default_rng(0)
    cam = np.c_[rng.uniform(-20, 20, 500), rng.uniform(-3, 3, 500), rng.uniform(-5, 60, 500)]   # some behind, some outside
    pts = velo_from_cam(cam).astype(np.float32)
    pts[3] = np.nan
    c = calib()
    pp = point_pixels(pts, c)
    assert pp.dtype == np.int64 and (pp == -1).any() and (pp >= 0).sum() > 100
    np.testing.assert_array_equal(pp, project_scan(pts, c).point_pixel)
    small = c.scaled(100, 320)
    np.testing.assert_array_equal(point_pixels(pts, small), project_scan(pts, c, 100, 320).point_pixel)
    with pytest.raises(ValueError, match="points must have shape"):
        point_pixels(pts[:, :2], c)


def test_zbuffer_nearest_wins():
    c = calib(p4=(0.0, 0.0, 0.0))  # camera centre at the rect origin: X and 2X share a ray
    cam = np.array([[2.0, 1.0, 20.0], [1.0, 0.5, 10.0], [-3.0, 0.2, 30.0]])  # 0 hidden by 1
    fv = project_scan(np.c_[velo_from_cam(cam), np.ones(3)], c)  # (N,4) with reflectance
    assert fv.point_pixel[0] == fv.point_pixel[1] >= 0 and fv.point_pixel[2] >= 0
    assert fv.valid.sum() == 2
    r, col = divmod(int(fv.point_pixel[0]), W)
    assert fv.pixel_point[r, col] == 1
    np.testing.assert_allclose(fv.features[2, r, col], (10 - 1) / 69, rtol=1e-6)
    labels = np.zeros((H, W), np.int64)
    labels[r, col] = 7
    labels.reshape(-1)[fv.point_pixel[2]] = 3
    np.testing.assert_array_equal(grid_labels_to_points(labels, fv.point_pixel), [7, 7, 3])
    # same result whatever the input order (no reliance on duplicate fancy assignment)
    fv2 = project_scan(np.c_[velo_from_cam(cam[::-1]), np.ones(3)], c)
    assert fv2.pixel_point[r, col] == 1  # reversed: the near point is index 1 again
    np.testing.assert_array_equal(fv2.features, fv.features)


def test_grid_labels_outside_and_errors():
    pp = np.array([-1, 0, 5, -1])
    np.testing.assert_array_equal(grid_labels_to_points(np.arange(6).reshape(2, 3) + 1, pp), [0, 1, 6, 0])
    with pytest.raises(ValueError, match="outside"):
        grid_labels_to_points(np.zeros((2, 2), int), pp)
    with pytest.raises(ValueError, match=r"\(6,\)"):
        grid_labels_to_points(np.zeros(6, int), pp)


def test_near_points_dropped_nan_ignored():
    c = calib()
    cam = np.array([[0.0, 0.0, 1.9], [0.0, 0.0, 2.0], [0.1, 0.0, 5.0], [0.0, 0.0, -5.0]])
    pts = np.vstack([velo_from_cam(cam), [[np.nan, 0, 0], [np.inf, 1, 1], [5, np.nan, 0]]])
    fv = project_scan(pts, c)
    assert fv.point_pixel[0] == -1 and fv.point_pixel[1] >= 0 and fv.point_pixel[2] >= 0
    assert (fv.point_pixel[3:] == -1).all()                     # behind camera, NaN, inf
    assert fv.valid.sum() == 2 and np.isfinite(fv.features).all()
    r, col = divmod(int(fv.point_pixel[1]), W)
    assert fv.valid[r, col] and fv.features[3, r, col] == 0     # z = depth = 2 m -> 0, still valid
    far = project_scan(velo_from_cam([[0.0, 0.0, 500.0]]), c)  # far beyond the ranges: clipped
    assert far.features[2:, far.valid].ravel().tolist() == [1.0, 1.0]


def test_empty_and_bad_shapes():
    fv = project_scan(np.zeros((0, 4), np.float32), calib(), 20, 64)
    assert fv.features.shape == (4, 20, 64) and not fv.features.any() and not fv.valid.any()
    assert (fv.pixel_point == -1).all() and fv.point_pixel.shape == (0,)
    assert project_scan(velo_from_cam([[0, 0, -3.0]]), calib()).point_pixel.tolist() == [-1]
    for shape in [(5,), (5, 2), (5, 5), (2, 3, 4)]:
        with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
            project_scan(np.zeros(shape), calib())
    with pytest.raises(ValueError):
        project_scan(np.zeros((1, 3)), calib(), 0, 10)


def test_normalisation_limits():
    lo = [X_RANGE[0], Y_RANGE[0], Z_RANGE[0], DEPTH_RANGE[0]]
    hi = [X_RANGE[1], Y_RANGE[1], Z_RANGE[1], DEPTH_RANGE[1]]
    out = normalise(np.array([lo, hi, np.subtract(lo, 10), np.add(hi, 10), np.add(lo, hi) / 2]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:4], [[0] * 4, [1] * 4, [0] * 4, [1] * 4])
    np.testing.assert_allclose(out[4], 0.5, rtol=1e-6)
    assert (X_RANGE, Y_RANGE, Z_RANGE, DEPTH_RANGE) == ((-52, 53), (-4, 15), (1, 70), (2, 80))


def test_depth_colormap():
    c = calib()
    fv = project_scan(velo_from_cam([[0.0, 0.0, 5.0], [1.0, 0.0, 60.0]]), c)
    img = depth_colormap(fv)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8
    assert not img[~fv.valid].any() and img[fv.valid].any(axis=1).all()
    assert isinstance(FrontView.empty(2, 3).features, np.ndarray)


def test_real_scans_fill_image():
    if not REAL_DRIVE.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL_DRIVE} is absent (real KITTI frames)")
    drive = KittiRawDrive(REAL_DRIVE)
    counts = []
    for i in range(len(drive)):
        fv = project_scan(drive.scan(i), drive.calib)
        counts.append(int((fv.point_pixel >= 0).sum()))
        assert fv.valid.sum() == len(np.unique(fv.point_pixel[fv.point_pixel >= 0]))
    print(f"points inside image_02 per scan: min {min(counts)}, max {max(counts)}")
    assert len(counts) == 30 and min(counts) > 10_000
    small = project_scan(drive.scan(0), drive.calib, 92, 312)  # scaled intrinsics
    assert small.features.shape == (4, 92, 312) and small.valid.sum() > 5_000


def test_matches_bruteforce_reference():
    """Crowded 12x40 view with duplicated points (exact ties) vs a per-point Python loop."""
    rng = np.random.default_rng(3)
    cam = np.c_[rng.uniform(-8, 8, 1500), rng.uniform(-3, 3, 1500), rng.uniform(-1, 40, 1500)]
    cam = np.vstack([cam, cam[::7]])                      # ties: later copies must lose
    pts = velo_from_cam(cam).astype(np.float32)
    c = calib()
    fv = project_scan(pts, c, 12, 40)
    cs = c.scaled(12, 40)
    X = cs.velo_to_rect(pts)
    uv, _ = cs.project(pts)
    best = {}
    for i in range(len(pts)):
        col, row = np.floor(uv[i] + 0.5).astype(int)  # pixel centres at integers
        pix = row * 40 + col
        if X[i, 2] < 2 or not (0 <= col < 40 and 0 <= row < 12):
            assert fv.point_pixel[i] == -1
            continue
        assert fv.point_pixel[i] == pix
        d = np.linalg.norm(X[i])
        if pix not in best or d < best[pix][0]:
            best[pix] = (d, i)
    assert fv.valid.sum() == len(best) > 100
    for pix, (d, i) in best.items():
        assert fv.pixel_point.reshape(-1)[pix] == i
        np.testing.assert_allclose(fv.features.reshape(4, -1)[3, pix], (d - 2) / 78, rtol=1e-5)
