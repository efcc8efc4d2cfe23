"""Bag tools (xmod_ros.bag) and static transforms (xmod_ros.tf): KITTI drive -> bag (topics,
types, stamps, frames, content, camera_info + /tf_static reproducing the KITTI projection; sqlite3
and mcap), playing a bag through rclpy with its timing (rate, restamp, loop, topics without an
rclpy type skipped with one warning), recording topics into a bag."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_helpers as H  # noqa: E402
from conftest import make_tiny_drive  # noqa: E402

from xmod_core.kitti import KittiRawDrive, load_calib  # noqa: E402
from xmod_ros import bag, convert, tf  # noqa: E402
from xmod_ros.node import camera_info_to_calib  # noqa: E402

TOPICS = bag.DEFAULT_TOPICS
T0 = 1317042000                     # 2011-09-26 13:00:00 UTC: the tiny drive's first timestamp


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    return make_tiny_drive(tmp_path_factory.mktemp("bagdrive"), frames=8)


@pytest.fixture(scope="module")
def tiny_bag(drive, tmp_path_factory):
    return bag.from_kitti(drive, tmp_path_factory.mktemp("bags") / "tiny", progress=False)


def test_from_kitti_topics_stamps_and_content(drive, tiny_bag):
    d = KittiRawDrive(drive)
    info = bag.bag_info(tiny_bag)
    assert info["topics"] == {TOPICS["tf_static"]: {"type": "tf2_msgs/msg/TFMessage", "count": 1},
                              TOPICS["image"]: {"type": "sensor_msgs/msg/Image", "count": 8},
                              TOPICS["camera_info"]: {"type": "sensor_msgs/msg/CameraInfo", "count": 8},
                              TOPICS["cloud"]: {"type": "sensor_msgs/msg/PointCloud2", "count": 8}}
    t0 = T0 * 10**9                                         # from timestamps.txt
    msgs = list(bag.read_messages(tiny_bag, {TOPICS["image"], TOPICS["cloud"], TOPICS["camera_info"]}))
    images = [(t, m) for topic, t, m in msgs if topic == TOPICS["image"]]
    clouds = [(t, m) for topic, t, m in msgs if topic == TOPICS["cloud"]]
    for i, ((t, im), (tc, cl)) in enumerate(zip(images, clouds)):
        assert t == tc == t0 + i * 10**8 == im.header.stamp.sec * 10**9 + im.header.stamp.nanosec
        assert (im.header.frame_id, im.encoding) == ("camera_color_left", "bgr8")
        assert np.array_equal(convert.image_to_rgb(im), d.image(i))
        assert cl.header.frame_id == "velo_link" and cl.header.stamp == im.header.stamp
        assert np.array_equal(convert.cloud_to_xyzi(cl)[0], d.scan(i))
    info_msg = next(m for topic, _, m in msgs if topic == TOPICS["camera_info"])
    T = bag.static_transforms(tiny_bag).lookup(info_msg.header.frame_id, clouds[0][1].header.frame_id)
    # a quaternion orthonormalises the 7-digit KITTI rotation: equal to ~1e-6, projections to 1e-3 px
    assert np.allclose(T, d.calib.T_velo_to_cam, atol=1e-5)
    calib = camera_info_to_calib(info_msg, T)
    pts = d.scan(0)
    assert np.allclose(calib.project(pts)[0], d.calib.project(pts)[0], atol=1e-3)


def test_from_kitti_cli_real_drive_mcap(tmp_path):
    if not H.KITTI_DRIVE.is_dir():
        pytest.skip(f"real KITTI frames not found at {H.KITTI_DRIVE}")
    out = tmp_path / "kitti_mcap"
    proc = subprocess.run([sys.executable, "-m", "xmod_ros.bag", "from-kitti", str(H.KITTI_DRIVE), str(out),
                           "--storage", "mcap", "--frames", "2"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "10 Hz (no timestamps.txt)" in proc.stderr and list(out.glob("*.mcap"))
    info = json.loads(subprocess.run([sys.executable, "-m", "xmod_ros.bag", "info", str(out)], capture_output=True,
                                     text=True, check=True, timeout=60).stdout)
    assert info["topics"][TOPICS["image"]]["count"] == 2 and abs(info["duration_s"] - 0.1) < 1e-6
    (_, _, cl), = list(bag.read_messages(out, {TOPICS["cloud"]}))[:1]
    assert np.array_equal(convert.cloud_to_xyzi(cl)[0], KittiRawDrive(H.KITTI_DRIVE).scan(0))
    real = load_calib(H.KITTI_DATE)
    T = bag.static_transforms(out).lookup("camera_color_left", "velo_link")
    assert np.allclose(T, real.T_velo_to_cam, atol=1e-5)


def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "xmod_ros.bag", "from-kitti", str(tmp_path / "nope"), str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "drive directory not found" in proc.stderr and "Traceback" not in proc.stderr


class Listener:
    """Subscribes to the sensor topics and notes (receive time, header stamp)."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("bag_test_listener", context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.got = {"image": [], "cloud": []}
        for key, t in (("image", Image), ("cloud", PointCloud2)):
            self.node.create_subscription(t, TOPICS[key], lambda m, k=key: self.got[k].append((time.time(), H.stamp_of(m))),
                                          qos_profile_sensor_data)

    def spin(self, seconds, until=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            self.ex.spin_once(timeout_sec=0.02)

    def close(self):
        self.node.destroy_node()
        self.ctx.try_shutdown()


def test_play_keeps_the_timing_and_restamps(tiny_bag, tmp_path):
    lis = Listener()
    log = tmp_path / "restamp.jsonl"
    try:
        player = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "play", str(tiny_bag), "--rate", "2", "--restamp",
                                   "--restamp-log", str(log), "--wait-subscribers", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=H.ros_env())
        lis.spin(60, until=lambda: player.poll() is not None)
        lis.spin(0.5)
        out = player.communicate(timeout=30)[0]
    finally:
        lis.close()
    assert player.returncode == 0, out
    assert out.count("tf2_msgs/msg/TFMessage is not installed here") == (0 if _tf2_msgs() else 1), out
    imgs = lis.got["image"]
    assert len(imgs) >= 6, (imgs, out)                     # small messages: at most a rare loss
    recv, stamps = np.array([r for r, _ in imgs]), np.array([s for _, s in imgs])
    offset = json.loads(log.read_text().splitlines()[0])["offset_ns"] * 1e-9
    t0 = float(T0)
    k = np.round((stamps - offset - t0) / 0.1)             # frame index from the restamped stamp
    assert np.allclose(stamps - offset - t0, k * 0.1, atol=1e-6) and (np.diff(k) > 0).all()
    assert abs(np.median(recv - stamps)) < 0.5             # restamped: close to the receive time
    rate = np.median(np.diff(recv) / np.diff(k))          # 0.1 s of bag time at rate 2
    assert 0.035 < rate < 0.075, rate


def test_play_loops_and_stamps_go_back_without_restamp(tiny_bag):
    lis = Listener()
    try:
        player = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "play", str(tiny_bag), "--rate", "4", "--loop",
                                   "--duration", "2.5", "--wait-subscribers", "30", "--topics", TOPICS["cloud"]],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=H.ros_env())
        lis.spin(60, until=lambda: player.poll() is not None)
        lis.spin(0.3)
        out = player.communicate(timeout=30)[0]
    finally:
        lis.close()
    assert player.returncode == 0, out
    stamps = np.array([s for _, s in lis.got["cloud"]])
    assert not lis.got["image"] and len(stamps) > 10, out  # only the chosen topic, more than one pass
    assert (np.diff(stamps) < 0).sum() >= 1               # the loop went back in time
    assert stamps.min() >= T0 - 1e-6


def test_record_writes_what_was_published(tmp_path):
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    out = tmp_path / "rec"
    rec = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "record", str(out), "--topics", "/t/image", "/t/status",
                            "--idle-stop", "1.5"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=H.ros_env())
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("rec_test_pub", context=ctx)
    from sensor_msgs.msg import Image
    pi = node.create_publisher(Image, "/t/image", 10)
    ps = node.create_publisher(DiagnosticArray, "/t/status", 10)
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end and not (pi.get_subscription_count() and ps.get_subscription_count()):
            time.sleep(0.1)
        assert pi.get_subscription_count() and ps.get_subscription_count(), "recorder did not subscribe"
        for k in range(5):
            pi.publish(convert.numpy_to_image(np.full((4, 6), k, np.uint16), "mono16", H.header(10 + k, "cam")))
            ps.publish(DiagnosticArray(status=[DiagnosticStatus(name=f"s{k}")]))
            time.sleep(0.05)
        text = rec.communicate(timeout=60)[0]
    finally:
        node.destroy_node()
        ctx.try_shutdown()
    assert rec.returncode == 0, text
    got = list(bag.read_messages(out))
    images = [m for t, _, m in got if t == "/t/image"]
    assert [int(convert.image_to_numpy(m)[0, 0]) for m in images] == [0, 1, 2, 3, 4]
    assert [m.status[0].name for t, _, m in got if t == "/t/status"] == [f"s{k}" for k in range(5)]
    assert bag.bag_info(out)["topics"]["/t/status"]["type"] == "diagnostic_msgs/msg/DiagnosticArray"


def test_record_stops_cleanly_on_sigint(tmp_path):
    out = tmp_path / "rec_int"
    log = tmp_path / "rec.log"
    with open(log, "w") as f:
        rec = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "record", str(out), "--storage", "mcap"],
                               stdout=f, stderr=subprocess.STDOUT, env=H.ros_env())
        end = time.monotonic() + 60
        while time.monotonic() < end and "recording into" not in log.read_text() and rec.poll() is None:
            time.sleep(0.1)
        time.sleep(0.5)
        rec.send_signal(2)
        rec.wait(30)
    text = log.read_text()
    assert rec.returncode == 0 and (out / "metadata.yaml").is_file(), text
    assert bag.bag_info(out)["messages"] == 0


def _tf2_msgs() -> bool:
    try:
        import tf2_msgs.msg  # noqa: F401
        return True
    except ImportError:
        return False


def test_restamp_shifts_the_header_in_place():
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image
    msg = convert.numpy_to_image(np.zeros((2, 3), np.uint8), "mono8", H.header(100.75, "f"))
    out = deserialize_message(bag._restamp(serialize_message(msg), 2_500_000_000), Image)
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (103, 250_000_000, "f")
    assert bytes(out.data) == bytes(msg.data)


# ---------------------------------------------------------------------------------- transforms
def test_quaternions_and_static_chains():
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = tf.quat_to_matrix(*q)
        assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)
        assert np.allclose(tf.quat_to_matrix(*tf.matrix_to_quat(R)), R)
    assert np.allclose(tf.quat_to_matrix(*tf.yaw_to_quat(0.3))[:2, :2], [[np.cos(.3), -np.sin(.3)], [np.sin(.3), np.cos(.3)]])
    buf = tf.StaticTransformBuffer()
    A = np.eye(4)
    A[:3, :3], A[:3, 3] = tf.quat_to_matrix(*tf.yaw_to_quat(0.5)), [1, 2, 3]
    B = np.eye(4)
    B[:3, :3], B[:3, 3] = tf.quat_to_matrix(0.1, 0.2, 0.3, 0.9), [-1, 0, 0.5]
    buf.set_transform("base", "velo", A)                  # velo points -> base
    buf.set_transform("base", "cam", B)
    T = buf.lookup("cam", "velo")                          # velo -> cam = inv(B) @ A
    assert np.allclose(T, np.linalg.inv(B) @ A)
    assert np.allclose(buf.lookup("velo", "cam"), np.linalg.inv(T)) and np.allclose(buf.lookup("cam", "cam"), np.eye(4))
    buf.set_transform("other", "x", np.eye(4))
    with pytest.raises(LookupError, match="not connected"):
        buf.lookup("cam", "x")
    with pytest.raises(LookupError, match="no transform"):
        buf.lookup("cam", "nowhere")
    with pytest.raises(ValueError, match="invalid quaternion"):
        tf.quat_to_matrix(0, 0, 0, 0)
