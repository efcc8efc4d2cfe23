"""rescue: unsure 3D instances kept where one object-sized LiDAR cluster confirms them, on hand-made
point sets and a hand-made scene (a car, a wall too long for the size filters, the ground)."""
import numpy as np
import pytest

from test_mining import box_points
from xmod_core.rescue import cluster_iou, confirmed


def test_cluster_iou_is_the_best_point_iou_of_each_instance():
    inst = np.array([1, 1, 1, 1, 2, 2, 0, 0, 3])
    clus = np.array([2, 2, 2, 2, 1, 0, 1, 1, 0])
    best = cluster_iou(inst, clus, 3)
    # 1: its 4 points are cluster 2's 4 points; 2: one of its 2 points in cluster 1 (3 points): 1 / 4;
    # 3: in no cluster; index 0 (background) is 0 whatever its overlap
    np.testing.assert_allclose(best, [0.0, 1.0, 0.25, 0.0])
    np.testing.assert_allclose(cluster_iou(inst, np.zeros_like(clus), 3), np.zeros(4))
    assert cluster_iou(np.zeros(0, int), np.zeros(0, int), 2).shape == (3,)
    with pytest.raises(ValueError, match="one length"):
        cluster_iou(inst, clus[:-1], 3)
    with pytest.raises(ValueError, match="instance ids must lie in 0..2"):
        cluster_iou(inst, clus, 2)


def test_confirmed_keeps_unsure_instances_on_an_object_sized_cluster_only():
    gx, gy = np.meshgrid(np.arange(2, 40, 0.3), np.arange(-12, 12, 0.3))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.73)], 1)
    car = box_points((15, 3), (4.0, 1.8, 1.5))
    wall = box_points((20, -6), (20.0, 0.3, 2.5))                     # longer than any object: no cluster
    other = box_points((25, 6), (4.0, 1.8, 1.5))                      # a car no instance is on
    pts = np.concatenate([ground, car, wall, other]).astype(np.float32)
    n = len(pts)
    # a processing grid of one row, one cell per point: the instance of every point is set directly
    grid = np.zeros((1, n), np.int64)
    a, b = len(ground), len(ground) + len(car)
    grid[0, a:b] = 1                                                  # the car: unsure
    grid[0, b:b + len(wall)] = 2                                      # the wall: unsure
    grid[0, :200] = 3                                                 # a patch of road: confident
    pixel = np.arange(n)
    scores = np.array([0.4, 0.4, 0.9, 0.2])                           # slot 4: absent from the grid, unsure
    np.testing.assert_array_equal(confirmed(grid, scores, pixel, pts, 0.6, 0.3, 0.5), [True, False, True, False])
    np.testing.assert_array_equal(confirmed(grid, scores, pixel, pts, 0.6, 0.45, 0.5), [False, False, True, False])
    # half of the car's cells taken by another instance: IoU 0.5 with its cluster is kept at 0.5, not at 0.6
    half = grid.copy()
    half[0, a:a + (b - a) // 2] = 0
    assert confirmed(half, scores, pixel, pts, 0.6, 0.3, 0.45)[0] and not confirmed(half, scores, pixel, pts, 0.6, 0.3, 0.6)[0]
    # out of view points count for no instance
    hidden = np.where((pixel >= a) & (pixel < b), -1, pixel)
    assert not confirmed(grid, scores, hidden, pts, 0.6, 0.3, 0.5)[0]
    # an instance id on the grid with no score is an error, not a silent merge into another instance
    with pytest.raises(ValueError, match="grid instance ids must lie in 0..2"):
        confirmed(grid, scores[:2], pixel, pts, 0.6, 0.3, 0.5)
