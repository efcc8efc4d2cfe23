"""Zoomed tiles of the horizon band and the mirrored frame: geometry, merging, the Predictor path
and the picture tool."""
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from xmod_core.frontview import project_scan
from xmod_core.kitti import CameraCalib, KittiRawDrive
from xmod_core.tiles import Tile, band_tiles, merge_mirror, merge_tiles, tile_calib, tile_image, tile_points, zoom_view

from test_predictor import predictor, students  # noqa: F401  (the module's fixture of tiny students)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import zoom_picture  # noqa: E402


def calib(height=96, width=320, cy=44.0):
    P = np.array([[300.0, 0, 160.0, 4.0], [0, 300.0, cy, -2.0], [0, 0, 1, 0.01]])
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    return CameraCalib(P, np.eye(3), T, width, height)


def test_band_tiles_spread_over_the_width_on_the_principal_point_row():
    c = calib(cy=44.0)
    assert band_tiles(c, 0) == []
    assert band_tiles(c, 1) == [Tile(20, 80)]                        # centred
    assert band_tiles(c, 3) == [Tile(20, 0), Tile(20, 80), Tile(20, 160)]   # overlapping by half a tile
    assert band_tiles(c, 2) == [Tile(20, 0), Tile(20, 160)]
    assert band_tiles(calib(cy=5.0), 1)[0].row == 0                  # clipped to the grid
    assert band_tiles(calib(cy=95.0), 1)[0].row == 48
    with pytest.raises(ValueError, match="zoom tiles must be >= 0"):
        band_tiles(c, -1)
    with pytest.raises(ValueError, match="multiples of 4"):
        band_tiles(calib(height=94), 2)


def test_tile_calib_and_tile_image_see_the_same_point_at_twice_the_resolution():
    cam = calib(192, 640, cy=88.0)                           # the camera; the processing grid is half its size
    c = cam.scaled(96, 320)
    tile = Tile(20, 80)
    pts = np.array([[20.0, -1.0, 0.5], [30.0, 2.0, -0.3], [15.0, 0.0, 0.0]])
    uv, _ = c.project(pts)
    uv_t, _ = tile_calib(c, tile).project(pts)
    np.testing.assert_allclose(uv_t, 2 * (uv - [tile.col, tile.row]) + 0.5, atol=1e-9)
    # a bright square in a camera image twice the grid's size lands where the tile's camera puts it
    img = np.zeros((192, 640, 3), np.uint8)
    u, v = cam.project(pts[:1])[0][0]
    img[int(v) - 2:int(v) + 2, int(u) - 2:int(u) + 2] = 255
    t_img = tile_image(img, tile, 96, 320)
    assert t_img.shape == (96, 320, 3)
    r, col = np.argwhere(t_img[..., 0] > 127).mean(0)
    ut, vt = tile_calib(c, tile).project(pts[:1])[0][0]
    assert abs(col - ut) <= 2 and abs(r - vt) <= 2
    # the scan projected with the tile's camera: points of the tile only, spread over twice the pixels
    rng = np.random.default_rng(0)
    scan = np.concatenate([rng.uniform([5, -10, -2], [40, 10, 2], (4000, 3))]).astype(np.float32)
    fv, fv_t = project_scan(scan, c), project_scan(scan, tile_calib(c, tile))
    inside = (fv.point_pixel >= 0) & (fv.point_pixel // 320 >= 21) & (fv.point_pixel // 320 < 67) \
        & (fv.point_pixel % 320 >= 81) & (fv.point_pixel % 320 < 239)
    assert (fv_t.point_pixel[inside] >= 0).all()
    assert fv_t.valid.sum() > fv.valid[20:68, 80:240].sum()
    # the points found under the tile on the frame's grid hold every point the tile's camera keeps, and few more
    near = tile_points(fv.point_pixel, tile, 96, 320)
    assert not ((fv_t.point_pixel >= 0) & ~near).any() and near.sum() < (fv.point_pixel >= 0).sum()
    np.testing.assert_array_equal(project_scan(scan[near], tile_calib(c, tile)).features, fv_t.features)


def test_zoom_view_repeats_the_window_of_the_frame():
    f = np.arange(2 * 8 * 12, dtype=np.float32).reshape(2, 8, 12)
    z = zoom_view(f, Tile(2, 3))
    assert z.shape == f.shape
    np.testing.assert_array_equal(z[:, ::2, ::2], f[:, 2:6, 3:9])
    np.testing.assert_array_equal(z[:, 1::2, 1::2], f[:, 2:6, 3:9])


def test_merge_tiles_adds_free_confident_whole_instances_only():
    H, W, K = 8, 16, 4
    tiles = [Tile(2, 0), Tile(2, 8)]
    ids = torch.zeros(3, H, W, dtype=torch.int64)
    ids[0, 0:2, 0:3] = 1                                   # the full frame's own instance
    ids[0, 3, 9] = 2
    t1 = ids[1]                                            # tile 1: grid rows 2-5, cols 0-7 at twice the resolution
    t1[2:6, 0:4] = 1                                       # grid rows 3-4, cols 0-1: free -> joins as id K + 1
    t1[0:2, 8:12] = 2                                      # touches the tile's top side (row 2 > 0: inside) -> cut
    t1[4:6, 6:10] = 3                                      # free but scores too little
    t1[2:6, 14:16] = 4                                     # touches the tile's right side (col 8 < W: inside) -> cut
    t2 = ids[2]                                            # tile 2: grid rows 2-5, cols 8-15
    t2[2:4, 2:4] = 1                                       # grid (3, 9) is the full frame's: claimed -> dropped
    t2[4:6, 6:10] = 2                                      # grid row 4, cols 11-12: free -> joins as id 2K + 2
    t2[2:4, 14:16] = 3                                     # on the image's right side: allowed, but under min_pixels
    scores = torch.tensor([[0.9] * K, [0.9, 0.9, 0.3, 0.9], [0.9, 0.9, 0.9, 0.9]])
    out, s = merge_tiles(ids, scores, tiles, max_claimed=0.5, min_score=0.5, min_pixels=2)
    assert s.shape == (3 * K,) and torch.equal(s, scores.reshape(-1))
    want = ids[0].clone()
    want[3:5, 0:2] = K + 1
    want[4, 11:13] = 2 * K + 2
    assert torch.equal(out, want)
    # with no limits the tiny one joins too, and a claimed pixel is never repainted
    out, _ = merge_tiles(ids, scores, tiles, max_claimed=1.0)
    assert out[3, 15] == 2 * K + 3 and out[4, 3:5].tolist() == [K + 3] * 2 and out[3, 9] == 2 and out[0, 0] == 1
    with pytest.raises(ValueError, match="3 instance maps for 1 tiles"):
        merge_tiles(ids, scores, tiles[:1])


def test_predictor_runs_the_students_on_frame_and_tiles_in_one_batch(students, tiny_drive, monkeypatch):  # noqa: F811
    """With zoom_tiles the students see the frame and each tile (their own state each), the
    tiles' instances join through merge_tiles, in every mode; without, one frame as before."""
    import xmod_core.predictor as pred
    seen, merged = [], []

    def spy(ids, conf, *args):
        seen.append(tuple(ids.shape))
        out = merge_tiles(ids, conf, *args)
        merged.append(out[0].clone())
        return out
    monkeypatch.setattr(pred, "merge_tiles", spy)
    d = KittiRawDrive(tiny_drive)
    for mode in ("rgb", "lidar", "fused"):
        seen.clear(), merged.clear()
        p = predictor(students, tiny_drive, mode, min_score=0.0, zoom_tiles=2, zoom_min_score=0.0, zoom_min_pixels=0,
                      zoom_claimed=1.0)
        for t in range(2):
            r = p(image=d.image(t), points=d.scan(t), stamp=0.1 * t)
        assert seen == [(3, 32, 96)] * (2 if mode == "fused" else 1) * 2
        assert all(s.slots.shape[0] == 3 for s in p.states.values())
        for m, want in zip(p.models, merged[-len(p.models):]):         # the students' maps are the merged ones
            assert np.array_equal(r.students[m], want.numpy())
        assert r.labels.shape == (d.calib.height, d.calib.width)
    with pytest.raises(ValueError, match="zoom_claimed"):
        predictor(students, tiny_drive, "rgb", zoom_claimed=1.5)
    with pytest.raises(ValueError, match="zoom_min_score must be within"):
        predictor(students, tiny_drive, "rgb", zoom_min_score=1.0)
    with pytest.raises(ValueError, match="zoom_min_pixels >= 0"):
        predictor(students, tiny_drive, "rgb", zoom_min_pixels=-1)
    with pytest.raises(ValueError, match="zoom_lidar must be one of"):
        predictor(students, tiny_drive, "lidar", zoom_lidar="stretch")
    seen.clear()
    p = predictor(students, tiny_drive, "rgb", min_score=0.0)
    p(image=d.image(0), stamp=0.0)
    assert seen == [] and p.states["rgb"].slots.shape[0] == 1


@pytest.mark.parametrize("view", ["project", "upsample"])
def test_the_lidar_student_sees_each_tile_as_asked(students, tiny_drive, view):  # noqa: F811
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "lidar", zoom_tiles=3, zoom_lidar=view)
    seen = []
    step = p.steps["lidar"]
    p.steps["lidar"] = lambda x, state: seen.append(x.clone()) or step(x, state)
    p(points=d.scan(0), stamp=0.0)
    x = seen[0].numpy()
    assert x.shape == (4, 4, 32, 96)
    np.testing.assert_array_equal(x[0], project_scan(d.scan(0), p.calib_small).features)
    for k, tile in enumerate(p.tiles, 1):
        want = project_scan(d.scan(0), tile_calib(p.calib_small, tile)).features if view == "project" else \
            zoom_view(x[0], tile)
        np.testing.assert_array_equal(x[k], want)


def test_merge_mirror_adds_free_confident_instances_only():
    H, W, K = 6, 10, 4
    ids = torch.zeros(H, W, dtype=torch.int64)
    ids[0:2, 0:3] = 1                                      # the frame's own instances (scores of 5 ids)
    ids[4, 8] = 5
    m = torch.zeros(H, W, dtype=torch.int64)
    m[0:2, 2:4] = 1                                        # half on the frame's instance 1 (3 of 4 px free)
    m[3:5, 0:3] = 2                                        # free, confident -> joins as id 5 + 2
    m[3:5, 5:7] = 3                                        # free, scores too little
    m[4, 8:10] = 4                                         # one of two pixels claimed
    scores, ms = torch.full((5,), 0.9), torch.tensor([0.9, 0.9, 0.3, 0.9])
    out, s = merge_mirror(ids, scores, m, ms, max_claimed=0.4, min_score=0.5, min_pixels=2)
    assert torch.equal(s, torch.cat([scores, ms]))
    want = ids.clone()
    want[3:5, 0:3] = 7
    assert torch.equal(out, want)
    out, _ = merge_mirror(ids, scores, m, ms, max_claimed=0.5, min_score=0.0, min_pixels=0)
    assert out[0, 3] == 6 and out[0, 2] == 1 and out[3, 5] == 8 and out[4, 9] == 9 and out[4, 8] == 5   # never repaints
    out, _ = merge_mirror(ids, scores, m, ms, max_claimed=1.0, min_score=0.0, min_pixels=7)
    assert torch.equal(out, ids)                           # every mirrored instance under 7 px


def test_predictor_adds_the_mirrored_frame_to_the_batch(students, tiny_drive, monkeypatch):  # noqa: F811
    """With `mirror` each student sees the frame (and its tiles) and last the frame mirrored
    left-right (the image's columns reversed, the front view through the training's mirror_x); the
    mirrored instances are flipped back and join through merge_mirror, with or without tiles."""
    import xmod_core.predictor as pred
    from xmod_core.data import mirror_x
    d = KittiRawDrive(tiny_drive)
    calls = []

    def spy(ids, scores, m_ids, m_scores, *args):
        calls.append((m_ids.clone(), m_scores.clone()))
        return merge_mirror(ids, scores, m_ids, m_scores, *args)
    monkeypatch.setattr(pred, "merge_mirror", spy)
    for tiles in (0, 2):
        p = predictor(students, tiny_drive, "fused", min_score=0.0, zoom_tiles=tiles, mirror=True, zoom_min_score=0.0)
        seen = {}
        for m in ("rgb", "lidar"):
            step = p.steps[m]
            p.steps[m] = lambda x, state, m=m, step=step: seen.setdefault(m, (x.clone(), *step(x, state)))[1:]
        calls.clear()
        r = p(image=d.image(0), points=d.scan(0), stamp=0.0)
        for m in ("rgb", "lidar"):
            x, ids, conf, _, _ = seen[m]
            assert x.shape[0] == tiles + 2 and p.states[m].slots.shape[0] == tiles + 2
            want = x[0].flip(-1) if m == "rgb" else torch.from_numpy(mirror_x(x[0].numpy(), x[0].numpy()[3] > 0))
            torch.testing.assert_close(x[-1], want)
        assert len(calls) == 2
        for (m_ids, m_scores), m in zip(calls, ("rgb", "lidar")):
            assert torch.equal(m_ids, seen[m][1][-1].flip(-1)) and torch.equal(m_scores, seen[m][2][-1])
        assert r.labels.shape == (d.calib.height, d.calib.width)
    calls.clear()
    predictor(students, tiny_drive, "rgb", min_score=0.0)(image=d.image(0), stamp=0.0)
    assert calls == []


def test_tiles_can_have_their_own_students(students, tiny_drive, tmp_path):  # noqa: F811
    """zoom_ckpt_2d / zoom_ckpt_3d: the tiles go through another student (with its own state), the
    frame and its mirror through the frame's; the maps come back in the frame, tiles, mirror order
    and merge as before. A tiles' student with another slot count is refused by name."""
    from dataclasses import replace as dc_replace
    from xmod_core.model import DIOD
    from xmod_core.stages import student_config
    from xmod_core.train import export_student
    from test_predictor import TINY
    torch.manual_seed(1)
    other = {}
    for m, k in (("rgb", 4), ("lidar", 4), ("lidar6", 6)):
        cfg = dc_replace(TINY, num_slots=k)
        mod = m[:5]
        other[m] = tmp_path / f"zoom_{m}.pt"
        export_student(other[m], "test", mod, cfg, DIOD(student_config(cfg, mod)).state_dict(), {})
    d = KittiRawDrive(tiny_drive)
    p = predictor(students, tiny_drive, "fused", min_score=0.0, zoom_tiles=2, mirror=True, zoom_min_score=0.0,
                  zoom_ckpt_2d=str(other["rgb"]), zoom_ckpt_3d=str(other["lidar"]))
    assert set(p.zoom_steps) == {"rgb", "lidar"}
    batches = {}
    for key, steps in (("frame", p.steps), ("zoom", p.zoom_steps)):
        for m in ("rgb", "lidar"):
            step = steps[m]
            steps[m] = lambda x, state, step=step, k=(key, m): batches.setdefault(k, (x.clone(), *step(x, state)))[1:]
    p(image=d.image(0), points=d.scan(0), stamp=0.0)
    for m in ("rgb", "lidar"):
        fx, zx = batches[("frame", m)][0], batches[("zoom", m)][0]
        assert fx.shape[0] == 2 and zx.shape[0] == 2                  # frame + mirror; two tiles
        assert p.states[m].slots.shape[0] == 2 and p.states[m + ":zoom"].slots.shape[0] == 2
        ref = predictor(students, tiny_drive, m, min_score=0.0, zoom_tiles=2, mirror=True)
        seen = []
        step = ref.steps[m]
        ref.steps[m] = lambda x, state: seen.append(x.clone()) or step(x, state)
        ref(image=d.image(0), points=d.scan(0), stamp=0.0)
        torch.testing.assert_close(torch.cat([fx[:1], zx, fx[1:]]), seen[0])   # the same views, the same order
    p.reset()
    assert p.states == {"rgb": None, "lidar": None}
    with pytest.raises(ValueError, match="6 slots"):
        predictor(students, tiny_drive, "lidar", zoom_tiles=2, zoom_ckpt_3d=str(other["lidar6"]))
    assert predictor(students, tiny_drive, "lidar", zoom_ckpt_3d=str(other["lidar"])).zoom_steps == {}   # no tiles
    for m, key in (("rgb", "zoom_ckpt_2d"), ("lidar", "zoom_ckpt_3d")):     # "fine": the shipped fine-mask students
        with pytest.raises(ValueError, match=f"student_{m}_fine.pt has 16 slots"):
            predictor(students, tiny_drive, m, zoom_tiles=2, **{key: "fine"})


def test_zoom_picture_tool_stacks_both_settings(tiny_drive, tmp_path, capsys, monkeypatch):
    """tools/zoom_picture.py: the frame without and with tiles (with `--finer`: the finer
    configuration), one panel each at camera size."""
    from xmod_core.predictor import FINER
    seen = []

    class Recorder(zoom_picture.Predictor):
        def __init__(self, cfg, calib):
            seen.append(cfg)
            super().__init__(cfg, calib)
    monkeypatch.setattr(zoom_picture, "Predictor", Recorder)
    d = KittiRawDrive(tiny_drive)
    assert zoom_picture.main([str(tiny_drive), "--frame", "1", "--out", str(tmp_path / "z.jpg")]) == 0
    img = cv2.imread(str(tmp_path / "z.jpg"))
    assert img.shape == (2 * d.calib.height, d.calib.width, 3)
    assert "instances gained pixels from the tiles" in capsys.readouterr().out
    assert zoom_picture.main([str(tiny_drive), "--frame", "1", "--finer", "--out", str(tmp_path / "f.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "f.jpg")).shape == img.shape
    assert "instances gained pixels from the tiles and the mirror" in capsys.readouterr().out
    plain, tiles, frame, finer = seen
    assert plain == frame == zoom_picture.PredictorConfig() and tiles.zoom_tiles == 3 and not tiles.mirror
    assert all(getattr(finer, k) == v for k, v in FINER.items())
    with pytest.raises(SystemExit):
        zoom_picture.main([str(tiny_drive), "--frame", "99", "--out", str(tmp_path / "y.jpg")])
    # --agreements: the same frame fused by two late-fusion agreements, no tiles
    seen.clear()
    assert zoom_picture.main([str(tiny_drive), "--frame", "1", "--agreements", "iou", "separate",
                              "--out", str(tmp_path / "a.jpg")]) == 0
    assert cv2.imread(str(tmp_path / "a.jpg")).shape == img.shape
    assert "instances gained pixels from the agreement separate" in capsys.readouterr().out
    assert [(c.fusion_agreement, c.zoom_tiles) for c in seen] == [("iou", 0), ("separate", 0)]
    with pytest.raises(SystemExit):
        zoom_picture.main([str(tiny_drive), "--agreements", "iou", "separate", "--finer", "--out", str(tmp_path / "b.jpg")])
