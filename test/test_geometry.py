"""The LiDAR geometry gate of teacher labels: ground plane, per-object quantile extents, the gate,
and its use in merge_targets and in the stages' data."""
import numpy as np
import pytest
import torch

from xmod_core.distill import DistillConfig, merge_targets
from xmod_core.frontview import normalise
from xmod_core.geometry import (GateConfig, LidarView, geometry_gate, ground_plane, group_quantiles, metric_xyz,
                                object_geometry)

H, W = 32, 64


def scene() -> tuple[torch.Tensor, torch.Tensor, dict]:
    """A hand-made front view (1, 4, H, W) in rectified camera metres (y down): a flat road
    1.65 m below the camera in the lower half, a car-sized box (4 m long, 1.5 m tall) on it, a
    wall 30 m long on the right, sky (no returns) above; and the regions of each as (rows, cols)."""
    xyz = np.zeros((3, H, W))
    valid = np.zeros((H, W), bool)
    r, c = np.mgrid[0:H, 0:W].astype(float)
    road = r >= 16
    xyz[0][road], xyz[1][road], xyz[2][road] = (c[road] - 32) * 0.5, 1.65, 60 - (r[road] - 16) * 3.5   # 4..60 m ahead
    valid |= road
    car = (slice(10, 20), slice(8, 20))
    xyz[0][car] = -6 + (c[car] - 8) / 11 * 1.8                           # 1.8 m wide ...
    xyz[1][car] = 0.15 + (r[car] - 10) / 9 * 1.5                          # ... 1.5 m tall, standing on the road
    xyz[2][car] = 12 + (c[car] - 8) / 11 * 4.0                            # ... 4 m long (seen at an angle)
    xyz[2][10, 8] = 55.0                                                  # a stray return far behind
    valid[car] = True
    wall = (slice(2, 16), slice(40, 64))
    xyz[0][wall], xyz[1][wall], xyz[2][wall] = 8.0, -2 + (r[wall] - 2) / 13 * 3.0, 5 + (c[wall] - 40) / 23 * 30
    valid[wall] = True
    dist = np.sqrt((xyz ** 2).sum(0))
    feats = normalise(np.concatenate([xyz, dist[None]]).reshape(4, -1).T).T.reshape(4, H, W) * valid
    return torch.from_numpy(feats)[None], torch.from_numpy(valid)[None], {"car": car, "wall": wall}


def test_metric_xyz_inverts_the_normalisation():
    feats, valid, regions = scene()
    xyz = metric_xyz(feats)
    assert xyz.shape == (1, 3, H, W)
    torch.testing.assert_close(xyz[0, 1, 20, 30], torch.tensor(1.65), atol=1e-4, rtol=0)
    torch.testing.assert_close(xyz[0, 0, 5, 50], torch.tensor(8.0), atol=1e-4, rtol=0)


def test_ground_plane_finds_the_road_not_the_objects():
    feats, valid, regions = scene()
    g = ground_plane(metric_xyz(feats), valid, GateConfig(), torch.Generator().manual_seed(0))[0]
    road = torch.zeros(H, W, dtype=torch.bool)
    road[16:] = True
    road[regions["car"]] = False
    assert g[road].float().mean() > 0.99
    assert not g[regions["wall"]].any() and not g[:16].any()
    car_y = metric_xyz(feats)[0, 1][regions["car"]]
    assert torch.equal(g[regions["car"]], car_y > 1.65 - 0.2)          # only its lowest rows, within ground_tol
    none = ground_plane(metric_xyz(feats), torch.zeros_like(valid), GateConfig())
    assert not none.any()                                                # no returns: no plane, no ground


def test_ground_plane_never_picks_a_steep_plane(monkeypatch):
    """Plane 0 through three wall returns (steep), plane 1 through three road returns (flat) that
    no scored return lies on: the road plane must win, not the first plane by an argmax over
    inlier counts zeroed for steep planes (which made the wall the ground)."""
    pts = torch.tensor([[0.0, 1.65, 5.0], [2.0, 1.65, 6.0], [1.0, 1.65, 9.0],             # road, 1.65 m below
                        [3.0, 1.10, 5.0], [3.0, 1.25, 7.0], [3.0, 1.40, 6.0],             # a wall x = 3 m, low
                        [3.0, 1.15, 9.0], [3.0, 1.30, 11.0]])
    xyz = pts.T.reshape(1, 3, 1, 8)
    draws = iter([torch.tensor([[3, 4, 5, 0, 1, 2]]), torch.tensor([[3, 4, 5, 6, 7]])])  # triples, then scored returns
    monkeypatch.setattr(torch, "multinomial", lambda *a, **k: next(draws))
    g = ground_plane(xyz, torch.ones(1, 1, 8, dtype=torch.bool), GateConfig(ground_iters=2, ground_sample=5))
    assert g[0, 0].tolist() == [True] * 3 + [False] * 5


def test_gate_bounds_are_the_clustering_baselines():
    from xmod_core.baselines import ClusterConfig
    g, c = GateConfig(), ClusterConfig()
    assert (g.min_height, g.max_height, g.max_length, g.ground_tol, g.min_points) == \
        (c.min_height, c.max_height, c.max_length, c.ground_tol, c.min_points)


def test_group_quantiles_match_numpy_nearest_rank():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(3, 200))
    g = rng.integers(0, 5, (3, 200))
    m = rng.random((3, 200)) > 0.3
    q = np.array([0.1, 0.5, 0.9])
    out = group_quantiles(torch.from_numpy(v), torch.from_numpy(g), torch.from_numpy(m), 6, torch.from_numpy(q)).numpy()
    for f in range(3):
        for k in range(6):
            sel = np.sort(v[f][(g[f] == k) & m[f]])
            if len(sel) == 0:
                assert (out[f, k] == 0).all()
                continue
            expect = sel[np.round(q * (len(sel) - 1)).astype(int)]
            np.testing.assert_allclose(out[f, k], expect, rtol=0, atol=1e-6)


def test_object_geometry_extents_ignore_a_stray_return():
    feats, valid, regions = scene()
    ids = torch.zeros(1, H, W, dtype=torch.long)
    ids[0][regions["car"]] = 1
    ids[0][regions["wall"]] = 2
    geo = object_geometry(ids, LidarView.of(feats, valid, GateConfig(), torch.Generator().manual_seed(0)))
    assert geo["points"][0, 1] == 120 and geo["points"][0, 2] == 14 * 24
    assert 1.0 < geo["height"][0, 1] < 1.5 and 2.5 < geo["length"][0, 1] < 4.0     # not stretched to 55 m
    assert geo["length"][0, 2] > 20


def test_geometry_gate_keeps_the_car_drops_road_wall_and_empty_objects():
    feats, valid, regions = scene()
    ids = torch.zeros(1, H // 4, W // 4, dtype=torch.long)               # teacher objects on the 1/4 grid
    ids[0, 3:5, 2:5] = 1                                                 # the car (rows 12-19, cols 8-19)
    ids[0, 6:8, 8:12] = 2                                                # a patch of road
    ids[0, 1:3, 11:15] = 3                                               # the wall
    ids[0, 0:2, 0:4] = 4                                                 # sky: no returns at all
    view = LidarView.of(feats, valid, GateConfig(), torch.Generator().manual_seed(0))
    keep = geometry_gate(ids, view, GateConfig())
    assert keep.shape == (1, 5)
    assert keep[0].tolist() == [False, True, False, False, False]
    loose = geometry_gate(ids, view, GateConfig(max_length=40.0, max_ground_share=1.0, min_height=0.0, min_points=0))
    assert loose[0].tolist() == [False, True, True, True, True]         # each drop above came from its own bound


def test_merge_targets_adds_only_gated_teacher_objects():
    feats, valid, _ = scene()
    K, h, w = 4, H // 4, W // 4
    logits = torch.full((1, 1, K, h, w), -5.0)
    logits[..., K - 1, :, :] = 5.0
    logits[0, 0, 0, 3:5, 2:5] = 10.0                                   # the car
    logits[0, 0, 1, 6:8, 8:12] = 10.0                                  # road
    masks = torch.softmax(logits, 2)
    motion = torch.zeros(1, 1, h, w, dtype=torch.long)
    mv = torch.ones(1, 1, dtype=torch.bool)
    cfg = DistillConfig(min_size=4)
    ids, _ = merge_targets(motion, mv, masks, cfg)
    assert ids.max() == 2                                              # ungated: car and road
    gated = DistillConfig(min_size=4, geometry_gate=True)
    view = LidarView.of(feats[:, None], valid[:, None], gated.gate, torch.Generator().manual_seed(0))   # (B, T) frames
    ids, weights = merge_targets(motion, mv, masks, gated, view)
    assert ids.max() == 1 and ids[0, 0, 4, 3] == 1 and ids[0, 0, 7, 9] == 0 and weights.shape == (1, 1)
    with pytest.raises(ValueError, match="geometry_gate needs the LiDAR"):
        merge_targets(motion, mv, masks, gated)


def test_gated_2d_stage_loads_the_lidar():
    from xmod_core.losses import LossConfig
    from xmod_core.stages import build_stage
    from test_distill import TINY
    assert build_stage("2d_ts", TINY, LossConfig(), DistillConfig()).data_modalities == ("rgb",)
    assert build_stage("2d_ts", TINY, LossConfig(), DistillConfig(geometry_gate=True)).data_modalities == ("rgb", "lidar")
    assert build_stage("3d_ts", TINY, LossConfig(), DistillConfig(geometry_gate=True)).data_modalities == ("lidar",)
    assert build_stage("2d_burn_in", TINY, LossConfig()).data_modalities == ("rgb",)


def test_gated_2d_teacher_student_trains_two_steps(tiny_drive, tmp_path):
    """A 2D student's teacher is judged on the LiDAR: the stage's clips must carry it (else merge_targets raises)."""
    from test_distill import _cfg
    from xmod_core.train import train
    train(_cfg(tiny_drive, tmp_path / "b2", "2d_burn_in"), progress=False)
    train(_cfg(tiny_drive, tmp_path / "t2", "2d_ts", init_from=str(tmp_path / "b2/student_rgb.pt"),
               **{"distill.geometry_gate": True, "distill.gate.min_points": 1}), progress=False)
    assert (tmp_path / "t2/student_rgb.pt").is_file()
