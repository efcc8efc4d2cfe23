"""Tests for xmod_core.parts: an instance keeps its main 3D part (points and camera pixels)."""
import numpy as np
import pytest

from xmod_core.parts import PART_WINDOW, ROAD_MARGIN, main_part, part_window, trim_image, trim_points


def blob(centre, n, spread=0.1, seed=0):
    return np.asarray(centre, float) + np.random.default_rng(seed).uniform(-spread, spread, (n, 3))


def test_main_part_keeps_each_instances_largest_connected_part():
    xyz = np.concatenate([blob([10, 0, 0], 20), blob([20, 0, 0], 5, seed=1),      # instance 1: car + a far wall patch
                          blob([10.3, 0, 0], 8, seed=2),                          # instance 2 touching instance 1's car
                          blob([30, 0, 0], 4, seed=3)])                           # unlabelled
    ids = np.array([1] * 25 + [2] * 8 + [0] * 4)
    keep = main_part(ids, xyz, 0.5)
    assert keep[:20].all() and not keep[20:25].any()          # the wall patch is not instance 1's object
    assert keep[25:33].all()                                  # instance 2 is not merged into instance 1's part
    assert not keep[33:].any()                                # no instance, no part
    ground = np.zeros(len(ids), bool)
    ground[:20] = True                                        # ground points are never in a part: the far patch wins
    keep = main_part(ids, xyz, 0.5, ground)
    assert not keep[:20].any() and keep[20:25].all()


def test_main_part_voxel_size_decides_what_touches_and_ties_keep_both():
    xyz = np.concatenate([blob([10, 0, 0], 10, 0.05), blob([11.5, 0, 0], 10, 0.05, seed=1)])   # two parts 1.5 m apart
    ids = np.ones(20, np.int64)
    assert main_part(ids, xyz, 0.5).all()                     # 10 and 10 points: a tie keeps both
    xyz[10:15] += [0, 0, 5]                                   # the second part loses half its points to a third
    assert main_part(ids, xyz, 0.5).tolist() == [True] * 10 + [False] * 10
    assert main_part(ids, xyz, 1.0).tolist() == [True] * 10 + [False] * 5 + [True] * 5   # 1 m voxels join 10 and 11.5
    with pytest.raises(ValueError, match="voxel must be > 0"):
        main_part(ids, xyz, 0.0)
    with pytest.raises(ValueError, match="must match"):
        main_part(ids[:5], xyz, 0.5)


def test_trim_image_cuts_pixels_of_other_parts_and_keeps_pixels_without_returns():
    H, W = 20, 40
    labels = np.zeros((H, W), np.uint16)
    labels[4:16, 0:30] = 1                                    # a mask spilling from its car (cols 0-9) over a wall
    rows, cols = np.meshgrid(np.arange(4, 16, 2), np.arange(0, 10), indexing="ij")       # the car's returns
    car = np.stack([np.full(rows.size, 10.0) + cols.ravel() * 0.02, cols.ravel() * 0.05, rows.ravel() * 0.05], 1)
    rows2, cols2 = np.meshgrid(np.arange(4, 16, 2), np.arange(24, 30), indexing="ij")    # the wall's, 8 m behind
    wall = np.stack([np.full(rows2.size, 18.0), cols2.ravel() * 0.05, rows2.ravel() * 0.05], 1)
    xyz = np.concatenate([car, wall, [[5.0, 0, 0]]])
    pix = np.concatenate([rows.ravel() * W + cols.ravel(), rows2.ravel() * W + cols2.ravel(), [-1]])
    ground = np.zeros(len(xyz), bool)
    out = trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=None)
    assert np.array_equal(out, trim_image(labels, pix, xyz, ground, 0.5, (3, 3)))     # no road: the margin is moot
    assert (out[4:16, 0:10] == 1).all()                       # the car stays
    assert (out[4:16, 24:30] == 0).all()                      # the wall's pixels go (its returns 2 rows apart: 3x3 bridges)
    assert (out[4:16, 12:22] == 1).all()                      # no return within the window: kept
    assert (out[4:16, 23] == 0).all() and (out[4:16, 11] == 1).all()   # the window reaches one column past the returns
    assert (labels[4:16, 24:30] == 1).all()                   # the input is not written
    wide = trim_image(labels, pix, xyz, ground, 0.5, (3, 7))
    assert (wide[4:16, 21:24] == 0).all() and (wide[4:16, 13:21] == 1).all()
    ground[len(car):-1] = True                                # the wall's returns on the ground: no part, and evidence
    assert np.array_equal(trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=None), labels)    # ... only
    assert np.array_equal(trim_image(labels, pix, xyz, ground, 0.5, (3, 3)), out)       # 6 m past the car's far end
    with pytest.raises(ValueError, match="must match"):
        trim_image(labels, pix[:-1], xyz, ground, 0.5, (3, 3))
    with pytest.raises(ValueError, match="labels must have shape"):
        trim_image(labels[None], pix, xyz, ground, 0.5, (3, 3))
    with pytest.raises(ValueError, match="outside labels"):
        trim_image(labels, np.where(pix >= 0, pix + H * W, pix), xyz, ground, 0.5, (3, 3))


def test_trim_points_keeps_the_main_part_only():
    xyz = np.concatenate([blob([10, 0, 0], 12), blob([25, 0, 0], 4, seed=1), blob([10, 2, -1.7], 3, seed=2)])
    labels = np.array([3] * 16 + [3] * 3, np.uint16)
    ground = np.zeros(19, bool)
    ground[16:] = True
    out = trim_points(labels, xyz, ground, 0.5)
    assert out.dtype == labels.dtype and out[:12].tolist() == [3] * 12 and not out[12:].any()


def test_part_window_scales_with_the_image_height():
    assert part_window(375) == PART_WINDOW == (21, 9)
    assert part_window(188) == (11, 5)                         # the half-size validation drives' camera
    assert part_window(10) == (1, 1)
    with pytest.raises(ValueError, match="height must be positive"):
        part_window(0)


def test_road_returns_count_against_an_instance_only_outside_its_range_span():
    H, W = 30, 20
    labels = np.zeros((H, W), np.uint16)
    labels[0:30, 0:20] = 2                                     # a mask over a car (rows 0-11) spilling down the road
    car_rows, cols = np.meshgrid(np.arange(0, 12, 2), np.arange(0, 20, 2), indexing="ij")
    car = np.stack([10.0 + cols.ravel() * 0.1, cols.ravel() * 0.05, 1.0 - car_rows.ravel() * 0.05], 1)   # range 10-12 m
    wheel_rows, road_rows = np.arange(12, 16, 2), np.arange(18, 30, 2)
    wr, wc = np.meshgrid(wheel_rows, np.arange(0, 20, 2), indexing="ij")
    wheels = np.stack([np.full(wr.size, 10.5), wc.ravel() * 0.05, np.full(wr.size, -1.6)], 1)             # road under it
    rr, rc = np.meshgrid(road_rows, np.arange(0, 20, 2), indexing="ij")
    road = np.stack([np.full(rr.size, 7.0), rc.ravel() * 0.05, np.full(rr.size, -1.7)], 1)                # road in front
    xyz = np.concatenate([car, wheels, road])
    pix = np.concatenate([(car_rows * W + cols).ravel(), (wr * W + wc).ravel(), (rr * W + rc).ravel()])
    ground = np.r_[np.zeros(len(car), bool), np.ones(len(wheels) + len(road), bool)]
    assert np.array_equal(trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=None), labels)   # road: no evidence
    out = trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=ROAD_MARGIN)
    assert (out[0:12] == 2).all() and (out[12:16] == 2).all()  # the car and the road under its wheels stay
    assert (out[18:30] == 0).all()                             # the road 3 m in front of the bumper goes
    assert (out[17] == 0).all() and (out[16] == 2).all()       # the window reaches a row past the returns, not to the wheels
    assert (trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=3.5) == 2).all()   # 3 m is within a 3.5 m margin


def test_an_empty_scan_or_no_instance_leaves_the_labels_alone():
    labels = np.zeros((6, 8), np.uint16)
    labels[1:4, 2:6] = 5
    empty = np.zeros((0, 3))
    out = trim_image(labels, np.zeros(0, np.int64), empty, np.zeros(0, bool), 0.5, (3, 3))
    assert np.array_equal(out, labels) and out is not labels
    pts = np.array([[10.0, 0, 0], [30.0, 0, 0]])
    assert np.array_equal(trim_image(labels, np.array([0, -1]), pts, np.ones(2, bool), 0.5, (3, 3)), labels)
    assert trim_points(np.zeros(0, np.uint16), empty, np.zeros(0, bool), 0.5).shape == (0,)


def test_evidence_counts_only_for_the_pixels_own_instance():
    H, W = 8, 20
    labels = np.zeros((H, W), np.uint16)
    labels[:, 0:10], labels[:, 10:20] = 1, 2                  # two instances side by side
    # instance 1: its car at cols 0-3, a far part at cols 8-9; instance 2: one car at cols 10-19, no other part
    c1 = [(r, c, 10.0) for r in range(0, 8, 2) for c in range(0, 4)]
    f1 = [(r, c, 20.0) for r in range(0, 8, 2) for c in range(8, 10)]
    c2 = [(r, c, 15.0) for r in range(0, 8, 2) for c in range(10, 20)]
    rows = np.array([r for r, _, _ in c1 + f1 + c2]); cols = np.array([c for _, c, _ in c1 + f1 + c2])
    rng = np.array([x for _, _, x in c1 + f1 + c2])
    xyz = np.stack([rng, cols * 0.05, rows * 0.05], 1)
    out = trim_image(labels, rows * W + cols, xyz, np.zeros(len(xyz), bool), 0.5, (3, 5))
    assert (out[:, 8:10] == 0).all()                          # instance 1's far part goes, though instance 2's
    assert (out[:, 6:8] == 0).all()                           # main-part returns are within the window
    assert (out[:, 10:20] == 2).all()                         # instance 1's far part is no evidence against 2
    assert (out[:, 0:6] == 1).all()


def test_an_instance_on_the_road_alone_loses_its_pixels_near_the_road():
    labels = np.zeros((6, 6), np.uint16)
    labels[2:5, 1:5] = 3
    rows, cols = np.meshgrid([2, 4], [1, 2, 3, 4], indexing="ij")
    xyz = np.stack([np.full(rows.size, 12.0), cols.ravel() * 0.05, np.full(rows.size, -1.7)], 1)
    pix, ground = (rows * 6 + cols).ravel(), np.ones(rows.size, bool)
    assert (trim_image(labels, pix, xyz, ground, 0.5, (3, 3)) == 0).all()
    assert np.array_equal(trim_image(labels, pix, xyz, ground, 0.5, (3, 3), road_margin=None), labels)


def test_figure_tool_writes_the_three_panels_and_names_a_bad_drive(tiny_drive, tmp_path, capsys):
    import sys
    from pathlib import Path
    import cv2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import part_trim_figure
    out = tmp_path / "fig.jpg"
    assert part_trim_figure.main(["--drive", str(tiny_drive), "--frame", "1", "--width", "200", "--out", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 200 and img.shape[0] % 3 == 0        # three panels, one above the other
    with pytest.raises(SystemExit):
        part_trim_figure.main(["--drive", str(tmp_path / "nope"), "--out", str(out)])
    assert "no such folder" in capsys.readouterr().err


def test_is_ground_accepts_only_a_near_horizontal_plane():
    from xmod_core.baselines import is_ground
    assert is_ground((np.array([0.0, 0.1, 0.995]), 1.7))
    assert not is_ground((np.array([0.0, 0.6, 0.8]), 1.7))         # the wall ground_plane may fall back to
    assert not is_ground(None)
