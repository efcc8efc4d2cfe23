"""Tests for xmod_core.kitti: fake drives in tmp_path, plus the real frames in ../shared."""
import math
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from xmod_core.kitti import (CameraCalib, KittiFormatError, KittiRawDrive, KittiTimestampWarning,
                             load_calib, load_imu_to_velo, read_calib_file, read_timestamps_ns,
                             write_calib_files, write_oxts, write_timestamps)

KITTI = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw"
REAL_DRIVE = KITTI / "2011_09_26" / "2011_09_26_drive_sfnd_sync"

P2 = np.array([[721.5377, 0, 609.5593, 44.85728],
               [0, 721.5377, 172.854, 0.2163791],
               [0, 0, 1, 0.002745884]])
R_RECT = np.array([[0.9999239, 0.00983776, -0.007445048],
                   [-0.009869795, 0.9999421, -0.004278459],
                   [0.007402527, 0.004351614, 0.9999631]])
T_V2C = np.array([[0.007533745, -0.9999714, -0.000616602, -0.004069766],
                  [0.01480249, 0.0007280733, -0.9998902, -0.07631618],
                  [0.9998621, 0.00752379, 0.01480755, -0.2717806],
                  [0, 0, 0, 1]])
T_I2V = np.array([[0.9999976, 0.0007553071, -0.002035826, -0.8086759],
                  [-0.0007854027, 0.9998898, -0.01482298, 0.3195559],
                  [0.002024406, 0.01482454, 0.9998881, -0.7997231],
                  [0, 0, 0, 1]])


def make_drive(root: Path, img_frames=range(3), velo_frames=range(3), size=(6, 8)) -> Path:
    """Fake KITTI raw date dir + drive with tiny PNGs and 5-point scans; returns drive dir."""
    date = root / "2011_01_01"
    write_calib_files(date, P2, R_RECT, T_V2C, T_I2V, width=size[1], height=size[0])
    drive = date / "2011_01_01_drive_0001_sync"
    if img_frames is not None:
        (drive / "image_02" / "data").mkdir(parents=True)
        for i in img_frames:
            img = np.full((*size, 3), (10 * i, 20, 30), np.uint8)
            cv2.imwrite(str(drive / "image_02" / "data" / f"{i:010d}.png"), img)
    if velo_frames is not None:
        (drive / "velodyne_points" / "data").mkdir(parents=True)
        for i in velo_frames:
            np.arange(20, dtype=np.float32).reshape(5, 4).tofile(
                drive / "velodyne_points" / "data" / f"{i:010d}.bin")
    return drive


# --------------------------------------------------------------------------- calibration
def test_calib_round_trip(tmp_path):
    drive = make_drive(tmp_path)
    for where in (drive, drive.parent):  # drive dir (falls back to parent) and date dir
        c = load_calib(where, camera=2)
        np.testing.assert_allclose(c.P_rect, P2, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(c.R_rect, R_RECT, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(c.T_velo_to_cam, T_V2C, rtol=1e-6, atol=1e-9)
        assert (c.height, c.width, c.camera) == (6, 8, 2)
    np.testing.assert_allclose(load_imu_to_velo(drive), T_I2V, rtol=1e-6, atol=1e-9)
    c0 = load_calib(drive, camera=0)  # P_rect_00 written from camera 2 without translation
    np.testing.assert_allclose(c0.P_rect[:, 3], 0)
    np.testing.assert_allclose(c0.K, P2[:, :3], rtol=1e-6)
    assert "calib_time" not in read_calib_file(drive.parent / "calib_cam_to_cam.txt")


def test_calib_drive_dir_takes_precedence(tmp_path):
    drive = make_drive(tmp_path)
    write_calib_files(drive, P2 * 2, R_RECT, T_V2C, None, width=8, height=6)
    np.testing.assert_allclose(load_calib(drive).P_rect, P2 * 2, rtol=1e-6)
    assert load_imu_to_velo(tmp_path / "nowhere") is None


def test_camera_calib_properties():
    c = CameraCalib(P2, R_RECT, T_V2C, 1242, 375)
    R4 = np.eye(4)
    R4[:3, :3] = R_RECT
    np.testing.assert_allclose(c.T_velo_to_rect, R4 @ T_V2C)
    pts = np.array([[10.0, 1.0, -1.0], [20.0, -3.0, 0.5]])
    uv, depth = c.project(pts)
    X = np.c_[pts, np.ones(2)] @ (P2 @ R4 @ T_V2C).T  # KITTI convention, third row = z + P[2,3]
    np.testing.assert_allclose(uv, X[:, :2] / X[:, 2:], rtol=1e-12)
    np.testing.assert_allclose(depth, c.velo_to_rect(pts)[:, 2])
    np.testing.assert_allclose(depth, X[:, 2] - P2[2, 3], rtol=1e-12)
    h = c.scaled(92, 312)
    np.testing.assert_allclose(h.P_rect[0], P2[0] * 312 / 1242)
    np.testing.assert_allclose(h.P_rect[1], P2[1] * 92 / 375)
    np.testing.assert_allclose(h.P_rect[2], P2[2])
    assert (h.height, h.width) == (92, 312)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        CameraCalib(np.eye(3), R_RECT, T_V2C, 1242, 375)


@pytest.mark.parametrize("fname,key", [("calib_cam_to_cam.txt", "P_rect_02"),
                                       ("calib_cam_to_cam.txt", "R_rect_00"),
                                       ("calib_cam_to_cam.txt", "S_rect_02"),
                                       ("calib_velo_to_cam.txt", "R"),
                                       ("calib_velo_to_cam.txt", "T")])
def test_missing_calib_key(tmp_path, fname, key):
    drive = make_drive(tmp_path)
    f = drive.parent / fname
    f.write_text("".join(ln + "\n" for ln in f.read_text().splitlines()
                         if not ln.startswith(key + ":")))
    with pytest.raises(KittiFormatError, match=key) as ei:
        load_calib(drive)
    assert str(f) in str(ei.value)
    with pytest.raises(KittiFormatError, match=fname):
        KittiRawDrive(drive)


def test_calib_wrong_count_and_missing_file(tmp_path):
    drive = make_drive(tmp_path)
    f = drive.parent / "calib_cam_to_cam.txt"
    f.write_text(f.read_text().replace("R_rect_00:", "R_rect_00: 1.0"))
    with pytest.raises(KittiFormatError, match="R_rect_00.*10 values") as ei:
        load_calib(drive)
    assert str(f) in str(ei.value)
    (drive.parent / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(KittiFormatError, match="calib_velo_to_cam.txt"):
        load_calib(drive)
    with pytest.raises(KittiFormatError, match="nope.txt"):
        read_calib_file(tmp_path / "nope.txt")


# --------------------------------------------------------------------------- drive
def test_fake_drive_reads(tmp_path):
    drive = KittiRawDrive(make_drive(tmp_path))
    assert drive.frame_ids == [f"{i:010d}" for i in range(3)] and len(drive) == 3
    assert drive.has_camera and drive.has_lidar
    img = drive.image(2)
    assert img.dtype == np.uint8 and img.shape == (6, 8, 3)
    assert tuple(img[0, 0]) == (30, 20, 20)  # RGB: cv2 wrote (20, 20, 30) as B, G, R
    scan = drive.scan(1)
    assert scan.dtype == np.float32 and scan.shape == (5, 4) and scan[4, 3] == 19
    assert drive.poses is None and drive.velo_poses is None


def test_image_only_and_lidar_only(tmp_path):
    img_only = KittiRawDrive(make_drive(tmp_path / "a", velo_frames=None))
    assert img_only.has_camera and not img_only.has_lidar and len(img_only) == 3
    with pytest.raises(KittiFormatError, match="velodyne"):
        img_only.scan(0)
    velo_only = KittiRawDrive(make_drive(tmp_path / "b", img_frames=None))
    assert velo_only.has_lidar and not velo_only.has_camera and len(velo_only) == 3
    with pytest.raises(KittiFormatError, match="image_02"):
        velo_only.image(0)
    empty = make_drive(tmp_path / "c", img_frames=None, velo_frames=None)
    empty.mkdir()
    with pytest.raises(KittiFormatError, match="neither"):
        KittiRawDrive(empty)
    with pytest.raises(KittiFormatError, match="not found"):
        KittiRawDrive(tmp_path / "missing")


def test_bad_scan_size(tmp_path):
    drive = KittiRawDrive(make_drive(tmp_path))
    bad = drive.scan_path(1)
    bad.write_bytes(b"\0" * 68)  # 17 floats
    with pytest.raises(KittiFormatError, match="68 bytes") as ei:
        drive.scan(1)
    assert str(bad) in str(ei.value)


def test_garbage_png(tmp_path):
    drive = KittiRawDrive(make_drive(tmp_path))
    bad = drive.image_path(0)
    bad.write_bytes(b"\x89PNG garbage, not an image" * 10)
    with pytest.raises(KittiFormatError) as ei:
        drive.image(0)
    assert str(bad) in str(ei.value)


def test_mismatched_frames(tmp_path):
    root = make_drive(tmp_path, img_frames=[0, 1, 2], velo_frames=[0, 1, 3])
    with pytest.raises(KittiFormatError) as ei:
        KittiRawDrive(root)
    msg = str(ei.value)
    assert str(root / "velodyne_points" / "data") in msg and "0000000002" in msg
    assert str(root / "image_02" / "data") in msg and "0000000003" in msg


# --------------------------------------------------------------------------- timestamps
def test_timestamps_round_trip(tmp_path):
    root = make_drive(tmp_path, img_frames=range(4), velo_frames=range(4))
    secs = np.array([0.0, 0.103456789, 1.2, 3600.000000001])
    write_timestamps(root / "velodyne_points" / "timestamps.txt", secs + 5)
    write_timestamps(root / "image_02" / "timestamps.txt", secs, start="2011-09-26 13:02:25")
    ns = read_timestamps_ns(root / "image_02" / "timestamps.txt")
    np.testing.assert_array_equal(ns - ns[0], [0, 103456789, 1200000000, 3600000000001])
    assert (root / "image_02" / "timestamps.txt").read_text().splitlines()[1] == \
        "2011-09-26 13:02:25.103456789"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 10 Hz warning when the file exists
        t = KittiRawDrive(root).timestamps
    assert t.dtype == np.float64 and t.shape == (4,)
    np.testing.assert_allclose(t - t[0], secs, atol=1e-6)  # image_02 file preferred
    (root / "image_02" / "timestamps.txt").unlink()
    t = KittiRawDrive(root).timestamps  # falls back to velodyne_points/timestamps.txt
    np.testing.assert_allclose(t - t[0], secs, atol=1e-6)


def test_bad_timestamps(tmp_path):
    root = make_drive(tmp_path)
    f = root / "image_02" / "timestamps.txt"
    f.write_text("2011-09-26 13:02:25.1\nnot a time\n2011-09-26 13:02:25.3\n")
    with pytest.raises(KittiFormatError, match="bad timestamp") as ei:
        KittiRawDrive(root).timestamps
    assert str(f) in str(ei.value)
    write_timestamps(f, [0.0, 0.1])
    with pytest.raises(KittiFormatError, match="2 timestamps for 3 frames"):
        KittiRawDrive(root).timestamps


def test_10hz_warning_once(tmp_path):
    drive = KittiRawDrive(make_drive(tmp_path))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        t1, t2 = drive.timestamps, drive.timestamps
    assert [w.category for w in rec] == [KittiTimestampWarning]
    np.testing.assert_allclose(t1, [0, 0.1, 0.2])
    np.testing.assert_array_equal(t1, t2)


# --------------------------------------------------------------------------- oxts
def _rand_poses(rng, n):
    poses = np.tile(np.eye(4), (n, 1, 1))
    for i in range(1, n):
        r, p, y = rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(-3.1, 3.1)
        Rx = np.array([[1, 0, 0], [0, math.cos(r), -math.sin(r)], [0, math.sin(r), math.cos(r)]])
        Ry = np.array([[math.cos(p), 0, math.sin(p)], [0, 1, 0], [-math.sin(p), 0, math.cos(p)]])
        Rz = np.array([[math.cos(y), -math.sin(y), 0], [math.sin(y), math.cos(y), 0], [0, 0, 1]])
        poses[i, :3, :3] = Rz @ Ry @ Rx
        poses[i, :3, 3] = rng.uniform(-800, 800, 3) * [1, 1, 0.05]
    return poses


def test_oxts_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    poses = _rand_poses(rng, 6)
    root = make_drive(tmp_path, img_frames=range(6), velo_frames=range(6))
    write_oxts(root / "oxts", poses, speeds=rng.uniform(0, 15, 6))
    line = (root / "oxts" / "data" / "0000000000.txt").read_text().split()
    assert len(line) == 30 and float(line[0]) == 49.0 and float(line[1]) == 8.4
    drive = KittiRawDrive(root)
    got = drive.poses
    assert got.shape == (6, 4, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got[:, :3, 3], poses[:, :3, 3], atol=1e-6)
    np.testing.assert_allclose(got[:, :3, :3], poses[:, :3, :3], atol=1e-9)
    np.testing.assert_allclose(drive.velo_poses, got @ np.linalg.inv(load_imu_to_velo(root)))
    assert not np.allclose(drive.velo_poses[0], np.eye(4))


def test_oxts_relative_to_first_and_errors(tmp_path):
    poses = _rand_poses(np.random.default_rng(1), 3)
    poses = poses[[1, 2, 0]]  # first pose is not the identity
    root = make_drive(tmp_path)
    write_oxts(root / "oxts", poses, lat0=48.0, lon0=11.0)
    got = KittiRawDrive(root).poses
    np.testing.assert_allclose(got, np.linalg.inv(poses[0]) @ poses, atol=1e-6)
    f = root / "oxts" / "data" / "0000000001.txt"
    f.write_text(" ".join(f.read_text().split()[:29]))
    with pytest.raises(KittiFormatError, match="29 values") as ei:
        KittiRawDrive(root).poses
    assert str(f) in str(ei.value)


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_drive():
    if not REAL_DRIVE.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL_DRIVE} is absent (real KITTI frames)")
    return KittiRawDrive(REAL_DRIVE)


def test_real_drive(real_drive):
    ids = [f"{i:010d}" for i in range(30)]
    assert real_drive.frame_ids == ids and len(real_drive) == 30
    assert sorted(p.stem for p in (REAL_DRIVE / "velodyne_points" / "data").glob("*.bin")) == ids
    assert (real_drive.calib.height, real_drive.calib.width) == (375, 1242)
    for i in range(len(real_drive)):
        assert real_drive.image(i).shape == (375, 1242, 3)
    scan = real_drive.scan(0)
    assert scan.dtype == np.float32 and scan.shape[1] == 4 and len(scan) > 100_000
    assert real_drive.poses is None
    np.testing.assert_allclose(real_drive.calib.P_rect[0, 3], 44.85728)


def test_real_10hz_warning_once():
    if not REAL_DRIVE.is_dir():
        pytest.skip(f"../shared/kitti_raw not found: {REAL_DRIVE} is absent (real KITTI frames)")
    drive = KittiRawDrive(REAL_DRIVE)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        t = drive.timestamps
        drive.timestamps
    assert len([w for w in rec if issubclass(w.category, KittiTimestampWarning)]) == 1
    assert "10 Hz" in str(rec[0].message)
    np.testing.assert_allclose(np.diff(t), 0.1)
