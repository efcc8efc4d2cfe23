"""2D boxes of instances from their pixels or from their 3D boxes (`image_boxes`), hand-computed
on a camera with an identity rotation (velo x forward = camera z, velo y left = -camera x, velo z
up = -camera y), and the simulator's KITTI-convention ground-truth boxes of the evaluator."""
import numpy as np
import pytest

from xmod_core.clusters import Object3D
from xmod_core.evaluate import gt_object_boxes
from xmod_core.image_boxes import box_corners, frame_boxes, lower_to_ground, project_boxes
from xmod_core.kitti import CameraCalib
from xmod_core.metrics import instance_boxes

T = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)    # velo -> camera
F, CU, CV, W, H = 700.0, 620.0, 187.0, 1242, 375
CALIB = CameraCalib(np.array([[F, 0, CU, 0], [0, F, CV, 0], [0, 0, 1, 0]], float), np.eye(3), T, W, H)


def expected_box(x0, x1, y0, y1, z0, z1):
    """The image rectangle of an axis-aligned velo box entirely in front: u = CU - F y / x, v = CV - F z / x,
    extremes at the nearest face (x0) for |y|, |z| and at the farthest for the other sign."""
    us = [CU - F * y / x for x in (x0, x1) for y in (y0, y1)]
    vs = [CV - F * z / x for x in (x0, x1) for z in (z0, z1)]
    return np.clip([min(us), min(vs), max(us), max(vs)], 0, [W, H, W, H])


def obj(i, center, size, yaw=0.0):
    return Object3D(i, np.array(center, float), np.array(center, float), np.array(size, float), yaw, 10, 0.5,
                    np.arange(10))


def test_box_corners_axis_aligned_and_turned():
    c = box_corners(np.array([[10.0, 0.0, 0.0]]), np.array([[4.0, 2.0, 1.5]]), np.array([0.0]))[0]    # (8, 3)
    assert sorted(set(c[:, 0].round(6))) == [8.0, 12.0] and sorted(set(c[:, 1].round(6))) == [-1.0, 1.0]
    assert np.allclose(c[:4, 2], -0.75) and np.allclose(c[4:, 2], 0.75)                 # bottom face first
    t = box_corners(np.array([[10.0, 0.0, 0.0]]), np.array([[4.0, 2.0, 1.5]]), np.array([np.pi / 2]))[0]
    assert np.allclose(sorted(set(t[:, 0].round(6))), [9.0, 11.0]) and np.allclose(sorted(set(t[:, 1].round(6))), [-2, 2])


def test_project_box_in_front_is_its_corners_rectangle():
    box, ok = project_boxes(box_corners(np.array([[10.0, 1.0, -0.5]]), np.array([[4.0, 2.0, 1.5]]), np.zeros(1)), CALIB)
    assert ok.all()
    assert np.allclose(box[0], expected_box(8, 12, 0, 2, -1.25, 0.25))


def test_project_box_reaching_behind_the_camera_keeps_what_is_in_front():
    # from 2 m behind to 6 m ahead, 2 m to the left: its image part runs off the left edge
    box, ok = project_boxes(box_corners(np.array([[2.0, 2.0, 0.0]]), np.array([[8.0, 1.0, 1.0]]), np.zeros(1)), CALIB)
    assert ok.all()
    assert box[0, 0] == 0.0                                                   # clipped at the image's left edge
    # its right edge: the farthest right side's corner (y = 1.5 at x = 6)
    assert np.isclose(box[0, 2], CU - F * 1.5 / 6)
    behind, ok2 = project_boxes(box_corners(np.array([[-5.0, 0.0, 0.0]]), np.ones((1, 3)), np.zeros(1)), CALIB)
    assert not ok2.any() and np.all(behind == 0)
    outside, ok3 = project_boxes(box_corners(np.array([[5.0, 50.0, 0.0]]), np.ones((1, 3)), np.zeros(1)), CALIB)
    assert not ok3.any()                                                      # in front, but left of the image


def test_lower_to_ground():
    plane = (np.array([0.0, 0.0, 1.0]), 1.73)                                 # z = -1.73
    c, s = lower_to_ground(np.array([[10.0, 0, -0.8], [10, 0, -1.5]]), np.array([[4, 2, 1.4], [4, 2, 1.0]]), plane)
    assert np.allclose(c[0], [10, 0, (-1.73 + -0.1) / 2]) and np.isclose(s[0, 2], 1.63)
    assert np.allclose(c[1], [10, 0, -1.5]) and np.isclose(s[1, 2], 1.0)      # already below: unchanged
    wall = (np.array([1.0, 0.0, 0.0]), -20.0)
    c2, s2 = lower_to_ground(np.array([[10.0, 0, -0.8]]), np.array([[4, 2, 1.4]]), wall)
    assert np.allclose(c2, [[10, 0, -0.8]]) and np.allclose(s2, [[4, 2, 1.4]])
    c3, _ = lower_to_ground(np.array([[10.0, 0, -0.8]]), np.array([[4, 2, 1.4]]), None)
    assert np.allclose(c3, [[10, 0, -0.8]])


def test_frame_boxes_sources():
    labels = np.zeros((H, W), np.uint16)
    labels[150:200, 500:560] = 3                                              # an instance with a 3D object
    labels[10:20, 30:40] = 5                                                  # one without (above the scan)
    o = obj(3, [10.0, 1.0, -0.5], [4.0, 2.0, 1.5])
    ids, boxes = frame_boxes(labels, [o], CALIB, "mask")
    assert ids.tolist() == [3, 5] and np.allclose(boxes, instance_boxes(labels)[1])
    ids, boxes = frame_boxes(labels, [o], CALIB, "3d")
    assert ids.tolist() == [3, 5]
    assert np.allclose(boxes[0], expected_box(8, 12, 0, 2, -1.25, 0.25))      # the projected 3D box
    assert np.allclose(boxes[1], [30, 10, 40, 20])                           # the mask box
    ids, boxes = frame_boxes(labels, [o], CALIB, "3d_ground", (np.array([0.0, 0.0, 1.0]), 1.73))
    assert np.isclose(boxes[0, 3], CV + F * 1.73 / 8)                         # the bottom reaches the ground
    ids, _ = frame_boxes(labels, [obj(7, [10.0, 0.0, 0.0], [1, 1, 1])], CALIB, "3d")
    assert ids.tolist() == [3, 5, 7]                                          # an object without pixels gets its box
    with pytest.raises(ValueError, match="box source"):
        frame_boxes(labels, [o], CALIB, "hull")


def test_gt_object_boxes_of_visible_objects():
    objects = [{"id": 4, "box_velo": {"center": [10.0, 1.0, -0.5], "size": [4.0, 2.0, 1.5], "yaw": 0.0}},
               {"id": 2, "box_velo": {"center": [20.0, -3.0, -1.0], "size": [4.0, 2.0, 1.5], "yaw": 0.3}},
               {"id": 9, "box_velo": {"center": [-20.0, 0.0, 0.0], "size": [4.0, 2.0, 1.5], "yaw": 0.0}}]
    ids, boxes = gt_object_boxes(objects, [4, 9], CALIB)                      # 2 is not visible, 9 behind
    assert ids.tolist() == [4] and np.allclose(boxes[0], expected_box(8, 12, 0, 2, -1.25, 0.25))
    ids, boxes = gt_object_boxes(objects, [2, 4], CALIB)
    assert ids.tolist() == [2, 4] and boxes.shape == (2, 4)


def test_auto_box_source_per_kind_of_instance():
    from xmod_core.image_boxes import resolve_box_source
    assert resolve_box_source("auto", "hybrid") == "3d_ground" == resolve_box_source("auto", "clusters")
    assert resolve_box_source("auto", "slots") == "mask"
    assert resolve_box_source("3d", "slots") == "3d" and resolve_box_source("mask", "hybrid") == "mask"
    with pytest.raises(ValueError, match="box_source"):
        resolve_box_source("hull", "slots")


@pytest.mark.parametrize("grid_hw,out_hw", [((24, 80), (375, 1242)), ((48, 160), (375, 1242)), ((24, 80), (188, 621)),
                                            ((8, 12), (8, 12)), ((7, 9), (50, 31))])
def test_upsampled_boxes_equal_the_boxes_of_the_upscaled_image(grid_hw, out_hw):
    from xmod_core.image_boxes import upsampled_boxes
    import cv2
    rng = np.random.default_rng(sum(grid_hw))
    grid = (rng.integers(0, 6, grid_hw) * (rng.random(grid_hw) < 0.3)).astype(np.uint16)
    grid[0, 0], grid[-1, -1] = 7, 8                                            # ids touching the corners
    up = cv2.resize(grid, out_hw[::-1], interpolation=cv2.INTER_NEAREST)
    ids, boxes = upsampled_boxes(grid, *out_hw)
    want_ids, want = instance_boxes(up)
    assert (ids == want_ids).all() and np.array_equal(boxes, want)
    assert np.array_equal(frame_boxes(up, [], CALIB, "mask", grid=grid)[1], want)
    with pytest.raises(ValueError, match="upscale"):
        upsampled_boxes(grid, grid_hw[0] - 1, grid_hw[1])
