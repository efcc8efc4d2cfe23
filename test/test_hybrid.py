"""Hybrid instances on a hand-made scene: clustering merges two pedestrians and keeps a wall; the
students tell the pedestrians apart, cover a car with two slots and ignore the wall."""
import numpy as np
import pytest

from xmod_core.baselines import ClusterConfig, euclidean_clusters
from xmod_core.frontview import project_scan
from xmod_core.hybrid import HybridConfig, hybrid_instances
from xmod_core.kitti import CameraCalib

H, W = 96, 320
T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)    # velo -> camera
CALIB = CameraCalib(np.array([[700, 0, 620, 0], [0, 700, 187, 0], [0, 0, 1, 0]], float), np.eye(3), T, 1242, 375)


def box_surface(x0, x1, y0, y1, z0, z1, step=0.1):
    """Points on the four vertical faces and the top of a box (a LiDAR sees surfaces)."""
    xs, ys, zs = (np.arange(a, b + 1e-9, step) for a, b in ((x0, x1), (y0, y1), (z0, z1)))
    faces = [np.stack(np.meshgrid(xs, [y], zs), -1).reshape(-1, 3) for y in (y0, y1)]
    faces += [np.stack(np.meshgrid([x], ys, zs), -1).reshape(-1, 3) for x in (x0, x1)]
    faces += [np.stack(np.meshgrid(xs, ys, [z1]), -1).reshape(-1, 3)]
    return np.unique(np.round(np.concatenate(faces), 3), axis=0)


@pytest.fixture(scope="module")
def scene():
    g = -1.73
    gx, gy = np.meshgrid(np.arange(4, 30, 0.2), np.arange(-8, 8, 0.2))
    parts = {"ground": np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, g)], 1),
             "ped_a": box_surface(10.0, 10.6, -1.3, -0.7, g + 0.25, g + 1.75),          # 0.3 m apart:
             "ped_b": box_surface(10.0, 10.6, -2.2, -1.6, g + 0.25, g + 1.75),          # one cluster
             "car": box_surface(15.0, 19.0, 2.0, 3.8, g + 0.3, g + 1.8),
             "wall": box_surface(20.0, 20.3, -7.0, -2.0, g + 0.25, g + 2.5),            # object-sized for clustering
             "bush": box_surface(21.0, 24.0, 6.5, 10.0, g + 0.25, g + 2.0)}   # beside the car in the image
    names = list(parts)
    pts = np.concatenate([parts[n] for n in names]).astype(np.float32)
    part = np.concatenate([np.full(len(parts[n]), i) for i, n in enumerate(names)])
    pp = project_scan(pts, CALIB.scaled(H, W)).point_pixel
    # the students: one slot per pedestrian, two slots on the car (front, back), nothing on the wall,
    # and an object above the scan (no LiDAR there)
    grid = np.zeros((H, W), np.int64)
    car_front = (part == names.index("car")) & (pts[:, 0] < 17.0)
    for slot, sel in ((1, part == names.index("ped_a")), (2, part == names.index("ped_b")), (3, car_front),
                      (4, (part == names.index("car")) & ~car_front)):
        grid.reshape(-1)[pp[sel & (pp >= 0)]] = slot
    grid[2:6, 10:20] = 5
    return pts, part, names, pp, grid


def ids_of(labels, part, names, name):
    return labels[part == names.index(name)]


def test_scene_is_hard_for_clustering(scene):
    pts, part, names, *_ = scene
    cl = euclidean_clusters(pts)
    a, b, wall = (ids_of(cl, part, names, n) for n in ("ped_a", "ped_b", "wall"))
    assert np.bincount(a).argmax() == np.bincount(b).argmax() > 0                # the pedestrians merged
    assert (wall > 0).mean() > 0.9                                              # the wall kept


def test_hybrid_splits_merges_and_drops(scene):
    pts, part, names, pp, grid = scene
    out_grid, labels, scores = hybrid_instances(pts, pp, [grid], grid, {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.7, 5: 0.6})
    a, b, car, wall, ground = (ids_of(labels, part, names, n) for n in ("ped_a", "ped_b", "car", "wall", "ground"))
    main = lambda x: np.bincount(x).argmax()
    assert main(a) > 0 and main(b) > 0 and main(a) != main(b)                  # split along the students' slots
    assert (a == main(a)).mean() > 0.95 and (b == main(b)).mean() > 0.95
    assert main(car) > 0 and (car == main(car)).mean() > 0.95                   # two slots, one connected car
    assert (wall == 0).all() and (ground == 0).mean() > 0.99                    # no student covers the wall
    assert (ids_of(labels, part, names, "bush") == 0).all()
    assert len(np.unique(labels[labels > 0])) == 3
    # in the image: the three objects' hulls, and the slot above the scan keeps its own mask
    pix_a = pp[(part == names.index("ped_a")) & (pp >= 0)]
    assert np.bincount(out_grid.reshape(-1)[pix_a]).argmax() == main(a)
    sky = out_grid[2:6, 10:20]
    assert (sky > 0).all() and len(np.unique(sky)) == 1 and sky[0, 0] not in (main(a), main(b), main(car))
    assert scores[int(sky[0, 0])] == pytest.approx(0.6)
    # objectness: the merged cluster's IoU with pedestrian a's slot (about half its points), and the slot's score
    peds = np.isin(part, [names.index("ped_a"), names.index("ped_b")]) & (pp >= 0)
    slot1 = (grid.reshape(-1)[pp] == 1) & (pp >= 0) & (part != names.index("ground"))   # the wall behind a too
    inter = (slot1 & peds).sum()
    iou_a = inter / (peds.sum() + slot1.sum() - inter)
    assert scores[int(main(a))] == pytest.approx((iou_a + 0.9) / 2)


def test_unsure_instances_split_nothing(scene):
    pts, part, names, pp, grid = scene
    _, labels, _ = hybrid_instances(pts, pp, [grid], grid, {1: 0.3, 2: 0.3, 3: 0.7, 4: 0.7})
    a, b = ids_of(labels, part, names, "ped_a"), ids_of(labels, part, names, "ped_b")
    assert (a > 0).all() and len(np.unique(np.concatenate([a, b]))) == 1     # one object: the cluster
    _, labels, _ = hybrid_instances(pts, pp, [grid], grid, {1: 0.3, 2: 0.3}, HybridConfig(split_score=0.2))
    assert np.bincount(ids_of(labels, part, names, "ped_a")).argmax() != np.bincount(ids_of(labels, part, names, "ped_b")).argmax()


def test_hybrid_objectness_threshold_and_no_split(scene):
    pts, part, names, pp, grid = scene
    half = grid.copy()
    half.reshape(-1)[pp[(part == names.index("ped_b")) & (pp >= 0)]] = 0          # the students miss pedestrian b
    share = lambda obj: HybridConfig(objectness=obj, agreement="share")
    _, labels, _ = hybrid_instances(pts, pp, [half], half, {}, share(0.9))
    assert (ids_of(labels, part, names, "ped_a") == 0).all()                     # half the cluster covered: dropped
    _, labels, _ = hybrid_instances(pts, pp, [half], half, {}, share(0.3))
    a, b = ids_of(labels, part, names, "ped_a"), ids_of(labels, part, names, "ped_b")
    assert (a > 0).all() and (a == b[0]).all() and (b == b[0]).all()              # kept whole: b joins a's slot
    with pytest.raises(ValueError, match="agreement"):
        HybridConfig(agreement="vote")
    with pytest.raises(ValueError, match="objectness"):
        HybridConfig(objectness=1.5)
    with pytest.raises(ValueError, match="fine_gap"):
        HybridConfig(fine_gap=0)


def test_iou_agreement_drops_a_cluster_inside_a_larger_instance(scene):
    """One student instance over the wall and the bush beside it: every wall point is covered
    (share 1) but the wall is the smaller part of that instance (IoU under 0.5)."""
    pts, part, names, pp, grid = scene
    blob = grid.copy()
    wall, bush = part == names.index("wall"), part == names.index("bush")
    blob.reshape(-1)[pp[(wall | bush) & (pp >= 0)]] = 7
    assert wall.sum() / (wall | bush).sum() < 0.45
    for agreement, kept in (("share", True), ("iou", False)):
        _, labels, _ = hybrid_instances(pts, pp, [blob], grid, {}, HybridConfig(objectness=0.5, agreement=agreement))
        assert ((labels[wall] > 0).mean() > 0.9) == kept, agreement


def test_ground_feet_pixels_keep_feet_outside_the_image():
    """A point 1 m above the road, 3 m ahead: its foot projects below the image's bottom edge and
    keeps its row there (the hull painter clips it); a point behind the camera has no foot."""
    from xmod_core.baselines import ground_feet_pixels
    pts = np.array([[3.0, 0.0, -0.73], [15.0, 3.0, -1.43], [-5.0, 0.0, -1.0]])
    rows, cols, ok = ground_feet_pixels(pts, np.array([0.0, 0.0, 1.0]), 1.73, CALIB)
    assert ok.tolist() == [True, True, False] and len(rows) == len(cols) == 2
    uv, _ = CALIB.project(np.array([[3.0, 0.0, -1.73], [15.0, 3.0, -1.73]]))
    assert rows.tolist() == np.floor(uv[:, 1] + 0.5).astype(int).tolist() and rows[0] > CALIB.height
    assert cols.tolist() == np.floor(uv[:, 0] + 0.5).astype(int).tolist()


def test_combine_two_students_agreements(scene):
    """Fused mode: one student covers the car (best IoU of the car's cluster with one of its
    instances: about 0.83), the other sees nothing there (0). Their mean, about 0.41, keeps the car
    at 0.4 and drops it at 0.6; at 0.4 `min` (both must agree) drops it and `max` keeps it."""
    pts, part, names, pp, grid = scene
    car_only = np.where(np.isin(grid, [3, 4]), grid, 0)
    empty = np.zeros_like(grid)
    kept = lambda combine: (ids_of(hybrid_instances(pts, pp, [car_only, empty], car_only, {3: 0.7, 4: 0.7},
                                                    HybridConfig(objectness=0.4, combine=combine))[1],
                                   part, names, "car") > 0).mean() > 0.9
    assert kept("mean") and kept("max") and not kept("min")
    assert not (ids_of(hybrid_instances(pts, pp, [car_only, empty], car_only, {3: 0.7, 4: 0.7},
                                        HybridConfig(objectness=0.6))[1], part, names, "car") > 0).any()
    with pytest.raises(ValueError, match="combine"):
        HybridConfig(combine="vote")


def test_ground_feet_extend_image_hulls_down_to_the_ground(scene):
    """The car's lowest points are 0.3 m above the road (ground removal takes lower ones); with
    `ground_feet` its image hull reaches the row where its near face meets the ground plane, and
    the per-point labels do not change."""
    pts, part, names, pp, grid = scene
    scores = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.7}
    g0, labels0, _ = hybrid_instances(pts, pp, [grid], grid, scores)
    g1, labels1, _ = hybrid_instances(pts, pp, [grid], grid, scores, HybridConfig(ground_feet=True), CALIB)
    assert (labels0 == labels1).all()
    car = np.bincount(ids_of(labels1, part, names, "car")).argmax()
    bottom = lambda g: np.nonzero(g == car)[0].max()
    uv, _ = CALIB.scaled(H, W).project(np.array([[15.0, 3.0, -1.73], [15.0, 3.0, -1.73 + 0.3]]))
    foot, lowest = np.floor(uv[:, 1] + 0.5).astype(int)                             # rows of the near face's foot, lowest point
    assert bottom(g0) == lowest and bottom(g1) == foot and foot >= lowest + 2
    assert (g1[g0 > 0] > 0).all()                                                  # hulls only grow
    with pytest.raises(ValueError, match="calibration"):
        hybrid_instances(pts, pp, [grid], grid, scores, HybridConfig(ground_feet=True))


def test_hybrid_without_points_in_view(scene):
    *_, grid = scene
    g, labels, scores = hybrid_instances(np.zeros((3, 4), np.float32), np.full(3, -1), [grid], grid, {5: 0.5})
    assert (labels == 0).all() and set(np.unique(g)) == set(range(len(np.unique(grid))))    # slots keep their masks


@pytest.mark.parametrize("dim", [2, 3])
def test_voxel_components_equal_dense_labelling(dim):
    from scipy import ndimage

    from xmod_core.baselines import voxel_components
    rng = np.random.default_rng(dim)
    cells = rng.integers(-6, 7, (150, dim))
    comp, n = voxel_components(cells)
    grid = np.zeros((13,) * dim, bool)
    grid[tuple((cells + 6).T)] = True
    ref, n_ref = ndimage.label(grid, structure=np.ones((3,) * dim, bool))
    ref = ref[tuple((cells + 6).T)]
    assert n == n_ref and len(np.unique(np.stack([comp, ref], 1), axis=0)) == n      # the same partition
    group = (cells[:, 0] > 0).astype(int)                                            # a cut no component crosses
    comp_g, _ = voxel_components(cells, group)
    assert all(len(np.unique(group[comp_g == k])) == 1 for k in np.unique(comp_g))
    assert voxel_components(np.zeros((0, dim), int))[1] == 0


def test_oriented_extent_keeps_a_car_seen_at_45_degrees():
    """A 4.5 x 1.8 m car turned 45 degrees spans 4.5 m along both sensor axes: the axis-aligned size
    filter (shorter side <= 3.5 m) drops it, the cluster's own axes keep it; a 15 m wall stays out
    either way, and a car along the axes is kept by both."""
    g = -1.73
    gx, gy = np.meshgrid(np.arange(4, 40, 0.2), np.arange(-12, 12, 0.2))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, g)], 1)
    car = box_surface(-2.25, 2.25, -0.9, 0.9, g + 0.3, g + 1.5)
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    turned = car @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + [15.0, 4.0, 0]
    straight = car + [15.0, -5.0, 0]
    wall = box_surface(-7.5, 7.5, -0.15, 0.15, g + 0.3, g + 2.5) @ np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]]) + [30.0, 0, 0]
    pts = np.concatenate([ground, turned, straight, wall]).astype(np.float32)
    part = np.repeat([0, 1, 2, 3], [len(ground), len(turned), len(straight), len(wall)])
    axes = euclidean_clusters(pts, ClusterConfig())
    oriented = euclidean_clusters(pts, ClusterConfig(extent="oriented"))
    assert (axes[part == 1] == 0).all() and (oriented[part == 1] > 0).all()
    assert (axes[part == 2] > 0).all() and (oriented[part == 2] > 0).all()
    assert (axes[part == 3] == 0).all() and (oriented[part == 3] == 0).all()
    with pytest.raises(ValueError, match="extent"):
        ClusterConfig(extent="diagonal")


def test_hold_keeps_an_object_of_the_previous_frame(scene):
    """Hysteresis (`hold`): the students cover only part of the car's front (point IoU 0.17 with that
    slot), under an objectness of 0.3, so the car is dropped; lying on an object of the previous
    frame it is kept from 0.3 - hold on; an object elsewhere last frame, no previous frame, or hold 0
    keep nothing."""
    pts, part, names, pp, grid = scene
    front = np.where(grid == 3, 3, 0)
    car = (part == names.index("car")) & (pp >= 0)
    prev_car, prev_wall = np.zeros_like(grid), np.zeros_like(grid)
    prev_car.reshape(-1)[pp[car]] = 9
    prev_wall.reshape(-1)[pp[(part == names.index("wall")) & (pp >= 0)]] = 9
    kept = lambda cfg, prev: (hybrid_instances(pts, pp, [front], front, {3: 0.9}, cfg, previous=prev)[1][car] > 0).mean()
    held = HybridConfig(objectness=0.3, hold=0.2)
    assert kept(held, None) == 0 and kept(held, prev_wall) == 0
    assert kept(held, prev_car) == 1
    assert kept(HybridConfig(objectness=0.3), prev_car) == 0
    assert kept(HybridConfig(objectness=0.3, hold=0.05), prev_car) == 0          # IoU 0.17 < 0.3 - 0.05
    with pytest.raises(ValueError, match="hold"):
        HybridConfig(objectness=0.3, hold=0.4)


def test_split_voxel_frees_a_car_parked_against_a_wall():
    """A car 0.3 m from a 15 m wall: at 0.4 m voxels they are one cluster, too long for the size
    filters, and both are dropped; `split_voxel` 0.2 clusters that one again, finer: the car comes
    back alone, the wall stays out. Clusters that pass the filters are untouched."""
    g = -1.73
    gx, gy = np.meshgrid(np.arange(4, 40, 0.2), np.arange(-12, 12, 0.2))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, g)], 1)
    car = box_surface(15.0, 19.5, -4.0, -2.2, g + 0.3, g + 1.5)
    wall = box_surface(10.0, 25.0, -4.6, -4.3, g + 0.3, g + 2.0)
    ped = box_surface(20.0, 20.6, 3.0, 3.6, g + 0.25, g + 1.75)
    pts = np.concatenate([ground, car, wall, ped]).astype(np.float32)
    part = np.repeat([0, 1, 2, 3], [len(ground), len(car), len(wall), len(ped)])
    plain = euclidean_clusters(pts, ClusterConfig(extent="oriented"))
    split = euclidean_clusters(pts, ClusterConfig(extent="oriented", split_voxel=0.2))
    assert (plain[part == 1] == 0).all() and (plain[part == 2] == 0).all()
    car_ids = split[part == 1]
    assert (car_ids > 0).all() and len(np.unique(car_ids)) == 1 and (split[part == 2] == 0).all()
    assert (plain[part == 3] > 0).all() and (split[part == 3] == plain[part == 3]).all()
    with pytest.raises(ValueError, match="split_voxel"):
        ClusterConfig(split_voxel=-0.2)


def test_far_instances_keep_their_mask_beyond_the_clustering_range(scene):
    """With the clustering range cut at 14 m, the car (15-19 m) has LiDAR points but no cluster:
    hybrid drops its two slots unless `far`, which hands them back their own masks and their
    non-ground points; the wall behind (no student instance) stays out, the pedestrians are clustered."""
    pts, part, names, pp, grid = scene
    scores = {1: 0.9, 2: 0.8, 3: 0.7, 4: 0.6}
    car = part == names.index("car")
    car_pix = np.unique(pp[car & (pp >= 0)])
    for far in (False, True):
        cfg = HybridConfig(far=far, clusters=ClusterConfig(max_range=14.0, extent="oriented"))
        g, labels, out_scores = hybrid_instances(pts, pp, [grid], grid, scores, cfg)
        peds = ids_of(labels, part, names, "ped_a"), ids_of(labels, part, names, "ped_b")
        assert all((p > 0).mean() > 0.95 for p in peds)                          # clustered either way
        on_car = g.reshape(-1)[car_pix]
        if not far:
            assert (on_car == 0).all() and (labels[car] == 0).all()
            continue
        front, back = grid.reshape(-1)[car_pix] == 3, grid.reshape(-1)[car_pix] == 4
        assert (on_car > 0).all() and len(np.unique(on_car[front])) == 1 and len(np.unique(on_car[back])) == 1
        assert on_car[front][0] != on_car[back][0]                               # the students' two instances
        assert out_scores[int(on_car[front][0])] == pytest.approx(0.7)
        assert (labels[car] > 0).mean() > 0.95 and set(np.unique(labels[car])) <= set(np.unique(on_car))
        assert (ids_of(labels, part, names, "wall") == 0).all() and (ids_of(labels, part, names, "ground") == 0).all()
