"""xmod_node (fused mode, started through its console script with --ros-args overrides) in its
own process over real DDS: outputs (types, encodings, frames, stamps, fields, marker lifetimes,
diagnostics) equal to the library's, parameters and their descriptions, the bounded one-frame
queue, and every kind of bad input (a throttled warning, the frame skipped, the node keeps
running). Messages can be lost between processes, so every check publishes again until the
expected output arrives, bounded by a timeout."""
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_helpers as H  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402

from xmod_ros import convert  # noqa: E402
from xmod_ros.node import PARAMETERS  # noqa: E402

CAM, VELO, IMAGE_TOPIC, CLOUD_TOPIC = H.CAM, H.VELO, H.IMAGE_TOPIC, H.CLOUD_TOPIC
base_params, outputs_at, status_value, pair, publish_pair, Stamps = (
    H.base_params, H.outputs_at, H.status_value, H.pair, H.publish_pair, H.Stamps)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return H.node_assets(tmp_path_factory.mktemp("xmod_node"))


@pytest.fixture(scope="module")
def probe():
    p = H.Probe()
    yield p
    p.close()


# ---------------------------------------------------------------------------------- fused
@pytest.fixture(scope="module")
def fused(assets, probe):
    # the console script with --ros-args overrides, as a user would run it
    exe = Path(sys.executable).parent / "xmod_node"
    node = H.NodeProcess(base_params(assets, calibration=str(assets["calib"]), marker_lifetime=0.7),
                         assets["dir"] / "fused.log", command=[str(exe)] if exe.exists() else None)
    assert probe.wait_for_subscribers(60), node.output()
    yield node
    assert node.alive(), node.output()
    assert node.stop() == 0, node.output()


def test_fused_outputs(fused, probe):
    st = Stamps(2000.0)
    s = st.next()
    im, cl = pair(s)
    ok = probe.wait_until(lambda: all(outputs_at(probe, k, s if k in ("instances", "overlay") else s + 0.001)
                                      for k in ("instances", "overlay", "clusters", "markers")),
                          30, 0.3, lambda: publish_pair(probe, im, cl))
    assert ok, fused.output()
    inst = outputs_at(probe, "instances", s)[-1]
    assert (inst.encoding, inst.width, inst.height, inst.header.frame_id) == ("mono16", H.TINY_W, H.TINY_H, CAM)
    labels = convert.image_to_numpy(inst)
    assert labels.dtype == np.uint16 and labels.shape == (H.TINY_H, H.TINY_W)
    over = outputs_at(probe, "overlay", s)[-1]
    assert (over.encoding, over.width, over.height, over.header.frame_id) == ("rgb8", H.TINY_W, H.TINY_H, CAM)
    cloud = outputs_at(probe, "clusters", s + 0.001)[-1]
    assert cloud.header.frame_id == VELO                    # the LiDAR's stamp and frame
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "instance"]
    cols = convert.read_cloud_fields(cloud, ("x", "y", "z", "intensity", "instance"))
    assert cols["instance"].dtype == np.uint16 and (cols["instance"] > 0).all()   # object points only
    assert set(np.unique(cols["instance"])) <= set(np.unique(labels)) - {0}
    markers = outputs_at(probe, "markers", s + 0.001)[-1].markers
    assert markers, "the tiny seeded model finds objects in the synthetic scene"
    from visualization_msgs.msg import Marker
    assert {m.type for m in markers} == {Marker.CUBE, Marker.TEXT_VIEW_FACING}
    assert all(m.header.frame_id == VELO and (m.lifetime.sec, m.lifetime.nanosec) == (0, 700_000_000) for m in markers)
    boxes = [m for m in markers if m.type == m.CUBE]
    assert {m.id for m in boxes} == set(np.unique(cols["instance"]).tolist())
    assert all(abs(m.pose.orientation.x) < 1e-12 and abs(m.pose.orientation.y) < 1e-12 for m in boxes)  # yaw only
    assert probe.wait_until(lambda: probe.latest_status().get("frames_processed", "0") != "0", 10)
    status = probe.outputs("status")[-1].status[0]
    assert status.name == "xmod_node: pipeline" and status.hardware_id == "cpu"
    values = probe.latest_status()
    assert values["mode"] == "fused" and values["device"] == "cpu" and "KITTI calibration" in values["calibration"]
    for key in ("e2e_ms_p50", "e2e_ms_p99", "model_ms_p50", "convert_ms_p50", "frames_dropped", "rate_hz"):
        assert key in values


def test_vision_msgs_detections_match_the_label_image(fused, probe):
    """~/detections: one box per instance of ~/instances (its mask's extent), ~/detections_3d: one
    oriented box per object of ~/markers, same ids and sizes (a marker is drawn at least 0.1 m thick,
    a detection keeps a flat object's true 0), the image's and the cloud's headers."""
    from xmod_ros import detections
    if not detections.available():
        pytest.skip("vision_msgs is not importable here (make setup builds it from ../shared/third_party/vision_msgs)")
    s = Stamps(2050.0).next()                          # between the neighbouring tests: stamps never go back
    im, cl = pair(s)
    keys = {"instances": s, "detections": s, "markers": s + 0.001, "detections_3d": s + 0.001}
    assert probe.wait_until(lambda: all(outputs_at(probe, k, t) for k, t in keys.items()), 30, 0.3,
                            lambda: publish_pair(probe, im, cl)), fused.output()
    labels = convert.image_to_numpy(outputs_at(probe, "instances", s)[-1])
    det = outputs_at(probe, "detections", s)[-1]
    assert det.header.frame_id == CAM and len(det.detections) == len(np.unique(labels[labels > 0])) > 0
    for d in det.detections:
        rows, cols = np.nonzero(labels == int(d.id))
        assert d.bbox.size_x == cols.max() - cols.min() + 1 and d.bbox.size_y == rows.max() - rows.min() + 1
        assert d.bbox.center.position.x == (cols.min() + cols.max()) / 2
        assert d.results[0].hypothesis.class_id == "object" and 0.0 <= d.results[0].hypothesis.score <= 1.0
    det3 = outputs_at(probe, "detections_3d", s + 0.001)[-1]
    cubes = {m.id: m for m in outputs_at(probe, "markers", s + 0.001)[-1].markers if m.type == m.CUBE}
    assert det3.header.frame_id == VELO and {int(d.id) for d in det3.detections} == set(cubes)
    for d in det3.detections:
        m = cubes[int(d.id)]
        size = (d.bbox.size.x, d.bbox.size.y, d.bbox.size.z)                    # the true extent; the marker is
        assert tuple(max(0.1, v) for v in size) == pytest.approx((m.scale.x, m.scale.y, m.scale.z))   # >= 0.1 m to be seen
        assert d.bbox.center.position.x == pytest.approx(m.pose.position.x)
        assert d.bbox.center.orientation.z == pytest.approx(m.pose.orientation.z)


def test_outputs_equal_the_library_on_the_same_input(fused, probe, assets):
    """The node only converts: its labels and clusters are the Predictor's for the same frame (a
    frame after a gap > max_gap starts a new sequence, so repeats do not change the result)."""
    from xmod_core.kitti import load_calib
    from xmod_core.predictor import Predictor, PredictorConfig
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                     # as in the node's process (OMP_NUM_THREADS=1): same arithmetic
    request = __import__("contextlib").ExitStack()
    request.callback(torch.set_num_threads, threads)
    pred = Predictor(PredictorConfig(mode="fused", ckpt_2d=str(assets["rgb"]), ckpt_3d=str(assets["lidar"]), device="cpu",
                                     height=48, width=160, min_score=0.0), load_calib(assets["calib"]))
    for k, s in enumerate((2100.0, 2110.0)):
        rgb, pts = H.synthetic_scene(k)
        im = convert.numpy_to_image(rgb[..., ::-1], "bgr8", H.header(s, CAM))       # BGR on the wire
        cl = convert.xyzi_to_cloud(pts, H.header(s + 0.001, VELO))
        assert probe.wait_until(lambda: outputs_at(probe, "instances", s) and outputs_at(probe, "clusters", s + 0.001),
                                30, 0.3, lambda: publish_pair(probe, im, cl))
        pred.reset()
        res = pred(image=rgb, points=pts, stamp=s)
        # the first output of that stamp (a repeat of the same stamp continues the sequence)
        assert np.array_equal(convert.image_to_numpy(outputs_at(probe, "instances", s)[0]), res.labels)
        got = convert.read_cloud_fields(outputs_at(probe, "clusters", s + 0.001)[0], ("x", "instance"))
        fg = res.point_labels > 0
        assert np.array_equal(got["instance"], res.point_labels[fg]) and np.array_equal(got["x"], pts[fg, 0])
    request.close()


def test_parameters_are_declared_with_descriptions(fused, probe):
    from rcl_interfaces.srv import DescribeParameters, GetParameters
    cli = probe.node.create_client(DescribeParameters, "/xmod_node/describe_parameters")
    assert cli.wait_for_service(20)
    fut = cli.call_async(DescribeParameters.Request(names=list(PARAMETERS)))
    assert probe.wait_until(fut.done, 20)
    desc = {d.name: d.description for d in fut.result().descriptors}
    assert set(desc) == set(PARAMETERS) and all(len(v) > 10 for v in desc.values()), desc
    get = probe.node.create_client(GetParameters, "/xmod_node/get_parameters")
    assert get.wait_for_service(20)
    fut = get.call_async(GetParameters.Request(names=["height", "width", "mode", "marker_lifetime"]))
    assert probe.wait_until(fut.done, 20)
    vals = fut.result().values
    assert (vals[0].integer_value, vals[1].integer_value, vals[2].string_value, vals[3].double_value) == (48, 160, "fused", 0.7)


BAD_CASES = {
    # name: (kind, text in the warning, output for that frame?, make(stamp) -> (image, cloud))
    "encoding": ("encoding", "unsupported camera image encoding 'yuv422'", False,
                 lambda s: pair(s, image=Image(header=H.header(s, CAM), height=H.TINY_H, width=H.TINY_W, encoding="yuv422",
                                               step=2 * H.TINY_W, data=bytes(2 * H.TINY_W * H.TINY_H)))),
    "image_size": ("image_size", "image 100x40 on /kitti/camera_color_left/image_raw differs from the calibration's 160x48",
                   False, lambda s: pair(s, image=convert.numpy_to_image(np.zeros((40, 100, 3), np.uint8), "rgb8",
                                                                         H.header(s, CAM)))),
    "no_xyz": ("missing_field", "no field(s) 'x', 'y', 'z'", False,
               lambda s: pair(s, cloud=convert.numpy_to_cloud({"a": np.ones(50, np.float32), "b": np.ones(50, np.float32)},
                                                              H.header(s + 0.001, VELO)))),
    "truncated_image": ("truncated", "truncated image buffer", False,
                        lambda s: pair(s, image=Image(header=H.header(s, CAM), height=H.TINY_H, width=H.TINY_W,
                                                      encoding="rgb8", step=3 * H.TINY_W, data=bytes(1000)))),
    "truncated_cloud": ("truncated", "truncated cloud buffer", False,
                        lambda s: pair(s, cloud=PointCloud2(
                            header=H.header(s + 0.001, VELO), height=1, width=1000, point_step=16, row_step=16000,
                            fields=[PointField(name=n, offset=4 * k, datatype=7, count=1) for k, n in enumerate("xyz")],
                            data=bytes(160)))),
    "empty_cloud": ("empty_cloud", "empty cloud on /kitti/velo/pointcloud: frame skipped", False,
                    lambda s: pair(s, cloud=convert.xyzi_to_cloud(np.zeros((0, 4), np.float32), H.header(s + 0.001, VELO)))),
    "all_nan": ("empty_cloud", "has no finite point (all 30 have NaN or infinite coordinates)", False,
                lambda s: pair(s, cloud=convert.xyzi_to_cloud(np.full((30, 4), np.nan, np.float32), H.header(s + 0.001, VELO)))),
    "some_nan": ("non_finite", "NaN or infinite coordinates: they are ignored", True,
                 lambda s: pair(s, cloud=convert.xyzi_to_cloud(
                     np.where(np.arange(len(H.synthetic_scene(0)[1]))[:, None] % 10 == 0, np.inf, H.synthetic_scene(0)[1]),
                     H.header(s + 0.001, VELO)))),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_is_skipped_with_a_warning(fused, probe, case):
    kind, text, has_output, make = BAD_CASES[case]
    st = Stamps(3000.0 + 10 * list(BAD_CASES).index(case))
    s = st.next()
    im, cl = make(s)
    assert probe.wait_until(lambda: probe.latest_status(), 10)
    before = status_value(probe, f"bad_{kind}")
    ok = probe.wait_until(lambda: status_value(probe, f"bad_{kind}") > before, 30, 0.3, lambda: publish_pair(probe, im, cl))
    assert ok, fused.output()
    assert fused.wait_for_output(text, 5), fused.output()
    assert fused.alive()
    if has_output:
        assert probe.wait_until(lambda: outputs_at(probe, "instances", s), 10)
    else:
        time.sleep(0.3)
        assert not outputs_at(probe, "instances", s)
    # the node goes on with good frames
    s2 = st.next()
    im, cl = pair(s2)
    assert probe.wait_until(lambda: outputs_at(probe, "instances", s2), 30, 0.3, lambda: publish_pair(probe, im, cl))


def test_warnings_are_throttled(fused, probe):
    s0 = 3500.0
    _, _, _, make = BAD_CASES["encoding"]
    before = status_value(probe, "bad_encoding")
    for k in range(6):
        publish_pair(probe, *make(s0 + 0.1 * k))
        time.sleep(0.05)
    assert probe.wait_until(lambda: status_value(probe, "bad_encoding") >= before + 2, 20, 0.3,
                            lambda: publish_pair(probe, *make(s0 + 5)))
    assert fused.output().count("unsupported camera image encoding 'yuv422'") == 1   # warn_period is 60 s here


def test_stamp_going_backwards_resets_and_goes_on(fused, probe):
    st = Stamps(4000.0)
    s = st.next()
    im, cl = pair(s)
    assert probe.wait_until(lambda: outputs_at(probe, "instances", s), 30, 0.3, lambda: publish_pair(probe, im, cl))
    before = status_value(probe, "bad_stamp_backwards")
    back = s - 50.0
    im, cl = pair(back)
    assert probe.wait_until(lambda: outputs_at(probe, "instances", back), 30, 0.3, lambda: publish_pair(probe, im, cl))
    assert probe.wait_until(lambda: status_value(probe, "bad_stamp_backwards") > before, 10)
    assert fused.wait_for_output("input stamp went back by 50.000 s", 5)
    assert fused.wait_for_output("temporal state reset", 1)


def test_a_slow_model_drops_the_oldest_pending_frame(fused, probe):
    """Frames arriving faster than inference: at most one waits, older ones are dropped and
    counted, and the latest frame is still processed with a bounded delay."""
    st = Stamps(5000.0)
    msgs = [pair(st.next(0.01), t=k % 3) for k in range(40)]
    dropped0 = status_value(probe, "frames_dropped")
    for im, cl in msgs:                                     # a burst at ~ 1 kHz
        publish_pair(probe, im, cl)
    last = H.stamp_of(msgs[-1][0])
    assert probe.wait_until(lambda: outputs_at(probe, "instances", last), 30, 0.5, lambda: publish_pair(probe, *msgs[-1]))
    assert probe.wait_until(lambda: status_value(probe, "frames_dropped") > dropped0, 10)
    assert status_value(probe, "pending") <= 1
    assert status_value(probe, "pipeline_ms_p99") < 2000


