"""vision_msgs detections (xmod_ros.detections): 2D boxes around hand-made instance masks and 3D
oriented boxes of hand-made objects, checked value by value, and both arrays published by another
process over real DDS and received here with every field intact. Skipped where vision_msgs does
not import (built by tools/build_vision_msgs.sh from ../shared/third_party/vision_msgs)."""
import math
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")
from xmod_ros import detections  # noqa: E402

if not detections.available():
    pytest.skip("vision_msgs is not importable (tools/build_vision_msgs.sh builds it from "
                "../shared/third_party/vision_msgs)", allow_module_level=True)

import ros_helpers as H  # noqa: E402
from xmod_core.clusters import Object3D  # noqa: E402
from xmod_ros.tf import quat_to_matrix  # noqa: E402


def _labels() -> np.ndarray:
    lab = np.zeros((12, 20), np.uint16)
    lab[2:6, 4:10] = 3                   # rows 2..5, columns 4..9
    lab[0, 0] = 7                        # one pixel
    lab[10, 1] = lab[6, 15] = 1          # two pieces: columns 1..15, rows 6..10
    lab[11, 19] = 65535                  # the largest uint16 id, bottom-right corner
    return lab


def _objects() -> list:
    def obj(i, center, size, yaw, score):
        return Object3D(id=i, centroid=np.asarray(center, float), center=np.asarray(center, float),
                        size=np.asarray(size, float), yaw=yaw, num_points=10, score=score,
                        point_index=np.arange(10))
    return [obj(4, (12.0, -1.5, -0.8), (4.2, 1.8, 1.5), math.pi / 2, 0.75),
            obj(9, (5.5, 3.0, -1.0), (0.6, 0.6, 1.7), -0.3, 0.125)]


def _box(d) -> tuple:
    b = d.bbox
    return b.center.position.x, b.center.position.y, b.size_x, b.size_y, b.center.theta


def test_available():
    assert detections.available()


def test_detections_2d_boxes_ids_scores_and_header():
    hdr = H.header(1234.5, "camera")
    msg = detections.detections_2d(_labels(), {3: 0.9, 1: 0.25, 65535: 1.0, 42: 0.5}, hdr)
    assert msg.header.frame_id == "camera" and (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 500000000)
    assert [d.id for d in msg.detections] == ["1", "3", "7", "65535"]
    box = {d.id: _box(d) for d in msg.detections}
    assert box["3"] == (6.5, 3.5, 6.0, 4.0, 0.0)           # centre ((4+9)/2, (2+5)/2), size 6 x 4
    assert box["7"] == (0.0, 0.0, 1.0, 1.0, 0.0)
    assert box["1"] == (8.0, 8.0, 15.0, 5.0, 0.0)          # columns 1..15, rows 6..10
    assert box["65535"] == (19.0, 11.0, 1.0, 1.0, 0.0)
    for d in msg.detections:
        assert d.header.frame_id == "camera" and d.header.stamp.sec == 1234
        assert len(d.results) == 1 and d.results[0].hypothesis.class_id == "object"
    score = {d.id: d.results[0].hypothesis.score for d in msg.detections}
    assert score == {"1": 0.25, "3": 0.9, "7": 0.0, "65535": 1.0}


def test_detections_2d_from_given_boxes_equal_the_mask_boxes_and_take_projected_ones():
    """The Predictor's boxes (pixel edges): those of the masks give the masks' detections, and a
    box from a 3D object (fractional edges) keeps its edges."""
    from xmod_core.metrics import instance_boxes
    lab = _labels()
    want = [_box(d) for d in detections.detections_2d(lab, {3: 0.9}).detections]
    got = detections.detections_2d(lab, {3: 0.9}, None, instance_boxes(lab))
    assert [_box(d) for d in got.detections] == want and [d.id for d in got.detections] == ["1", "3", "7", "65535"]
    one = detections.detections_2d(lab, {4: 0.5}, None, (np.array([4]), np.array([[10.5, 2.0, 30.5, 12.0]])))
    assert [d.id for d in one.detections] == ["4"]
    assert _box(one.detections[0]) == (20.0, 6.5, 20.0, 10.0, 0.0)       # edges 10.5..30.5, 2..12
    assert one.detections[0].results[0].hypothesis.score == 0.5


def test_detections_2d_empty_and_bad_input():
    msg = detections.detections_2d(np.zeros((5, 6), np.uint16), {1: 0.5})
    assert list(msg.detections) == [] and msg.header.frame_id == ""
    assert list(detections.detections_2d(np.zeros((0, 0), np.uint16), None).detections) == []
    with pytest.raises(ValueError, match="shape"):
        detections.detections_2d(np.zeros((2, 3, 1), np.uint16), {})


def test_mask_boxes_match_a_per_instance_loop():
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 9, (37, 53)).astype(np.uint16) * (rng.random((37, 53)) < 0.3)
    lab[lab == 5] = 0                                           # a gap in the ids
    ids, boxes = detections.mask_boxes(lab)
    want = [i for i in range(1, 9) if (lab == i).any()]
    assert ids.tolist() == want
    for i, (c0, r0, c1, r1) in zip(ids, boxes):
        r, c = np.nonzero(lab == i)
        assert (c0, r0, c1, r1) == (c.min(), r.min(), c.max(), r.max())


def test_detections_3d_pose_size_quaternion_and_score():
    hdr = H.header(99.25, "velo_link")
    msg = detections.detections_3d(_objects(), hdr)
    assert msg.header.frame_id == "velo_link" and [d.id for d in msg.detections] == ["4", "9"]
    for d, o in zip(msg.detections, _objects()):
        c, q, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        assert d.header.frame_id == "velo_link" and d.header.stamp.nanosec == 250000000
        assert (c.x, c.y, c.z) == tuple(o.center) and (s.x, s.y, s.z) == tuple(o.size)
        assert (q.x, q.y) == (0.0, 0.0)
        assert q.z == pytest.approx(math.sin(o.yaw / 2)) and q.w == pytest.approx(math.cos(o.yaw / 2))
        # the box's length axis (x of the box) points along yaw in the LiDAR frame
        assert quat_to_matrix(q.x, q.y, q.z, q.w)[:, 0] == pytest.approx([math.cos(o.yaw), math.sin(o.yaw), 0.0])
        assert len(d.results) == 1 and d.results[0].hypothesis.class_id == "object"
        assert d.results[0].hypothesis.score == o.score
    assert list(detections.detections_3d([], None).detections) == []


# A child process builds both arrays with xmod_ros.detections from the same inputs and publishes
# them (reliable, 10 Hz) until stopped; the test process receives them over DDS.
CHILD = """
import os, sys
sys.path.insert(0, sys.argv[1])
ros = {k: os.environ[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
import rclpy
from vision_msgs.msg import Detection2DArray, Detection3DArray
import test_ros_detections as T, ros_helpers as H
from xmod_ros import detections
os.environ.update(ros)                     # ros_helpers picked a domain of its own: use the test's
rclpy.init()
node = rclpy.create_node("xmod_detections_publisher")
p2 = node.create_publisher(Detection2DArray, "/xmod_det_test/detections_2d", 10)
p3 = node.create_publisher(Detection3DArray, "/xmod_det_test/detections_3d", 10)
m2 = detections.detections_2d(T._labels(), {3: 0.9, 1: 0.25}, H.header(1000.125, "camera"))
m3 = detections.detections_3d(T._objects(), H.header(1000.5, "velo_link"))
print("publishing", flush=True)
try:
    while rclpy.ok():
        p2.publish(m2)
        p3.publish(m3)
        rclpy.spin_once(node, timeout_sec=0.1)
except KeyboardInterrupt:
    pass
"""


def test_detections_cross_process(tmp_path):
    from vision_msgs.msg import Detection2DArray, Detection3DArray
    proc = H.NodeProcess({}, tmp_path / "publisher.log", command=[sys.executable, "-c", CHILD, str(H.ROOT / "test")])
    probe = H.Probe(name="xmod_detections_probe", node_name="xmod_det_test")
    got = {"2d": [], "3d": []}
    try:
        probe.node.create_subscription(Detection2DArray, "/xmod_det_test/detections_2d",
                                       lambda m: got["2d"].append(m), 10)
        probe.node.create_subscription(Detection3DArray, "/xmod_det_test/detections_3d",
                                       lambda m: got["3d"].append(m), 10)
        assert proc.wait_for_output("publishing", 20), proc.output()
        assert probe.wait_until(lambda: got["2d"] and got["3d"], 15), proc.output()
    finally:
        probe.close()
        proc.stop()
    m2, m3 = got["2d"][0], got["3d"][0]
    want2 = detections.detections_2d(_labels(), {3: 0.9, 1: 0.25}, H.header(1000.125, "camera"))
    want3 = detections.detections_3d(_objects(), H.header(1000.5, "velo_link"))
    assert m2 == want2 and m3 == want3                     # rosidl messages compare field by field
    assert m2.header.frame_id == "camera" and (m2.header.stamp.sec, m2.header.stamp.nanosec) == (1000, 125000000)
    assert [(d.id, _box(d), d.results[0].hypothesis.score) for d in m2.detections][:2] == \
        [("1", (8.0, 8.0, 15.0, 5.0, 0.0), 0.25), ("3", (6.5, 3.5, 6.0, 4.0, 0.0), 0.9)]
    d = m3.detections[0]
    assert (d.id, d.bbox.size.x, d.bbox.center.position.x, d.results[0].hypothesis.score) == ("4", 4.2, 12.0, 0.75)
    assert d.bbox.center.orientation.z == pytest.approx(math.sin(math.pi / 4))
