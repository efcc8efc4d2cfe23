"""Bag tools (xmod_ros.bag) and static transforms (xmod_ros.tf): KITTI drive -> bag (topics,
types, stamps, frames, content, camera_info + /tf_static reproducing the KITTI projection; sqlite3
and mcap), bag -> KITTI drive (round trip of the real frames, pairing, --lidar-to-camera, errors),
playing a bag through rclpy with its timing (rate, restamp to the publication time at any rate
and in a loop, topics without an rclpy type skipped with one warning), recording topics into a bag."""
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

from xmod_core.kitti import KittiRawDrive, load_calib, read_timestamps_ns  # noqa: E402
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


def _derived_bag(src, dst, drop=(), edit=None) -> Path:
    """A copy of bag ``src`` without the topics in ``drop``; ``edit``: {topic: f(index, rclpy
    message) -> message, or None to leave it out}. Log times are kept."""
    from rclpy.serialization import deserialize_message, serialize_message
    from rosbags.rosbag2 import Reader, Writer
    edit, seen = edit or {}, {}
    with Reader(src) as r, Writer(dst, version=Writer.VERSION_LATEST) as w:
        conns = {c.id: w.add_connection(c.topic, c.msgtype, typestore=bag._typestore(), offered_qos_profiles=[bag._qos()])
                 for c in r.connections if c.topic not in drop}
        for c, t, raw in r.messages(connections=[c for c in r.connections if c.id in conns]):
            if c.topic in edit:
                n = seen[c.topic] = seen.get(c.topic, -1) + 1
                msg = edit[c.topic](n, deserialize_message(bytes(raw), bag.msg_class(c.msgtype)))
                if msg is None:
                    continue
                raw = serialize_message(msg)
            w.write(conns[c.id], t, raw)
    return Path(dst)


def _drive_dir(out: Path, day: str) -> Path:
    return out / day / f"{day}_drive_0000_sync"


def test_to_kitti_round_trip_of_the_real_frames(tmp_path):
    if not H.KITTI_DRIVE.is_dir():
        pytest.skip(f"real KITTI frames not found at {H.KITTI_DRIVE}")
    src = KittiRawDrive(H.KITTI_DRIVE)
    b = bag.from_kitti(H.KITTI_DRIVE, tmp_path / "bag", frames=3, progress=False)
    proc = subprocess.run([sys.executable, "-m", "xmod_ros.bag", "to-kitti", str(b), str(tmp_path / "kitti")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 frames from 3 images and 3 clouds" in proc.stderr and "0 images, 0 clouds" in proc.stderr, proc.stderr
    d = KittiRawDrive(_drive_dir(tmp_path / "kitti", "2011_09_26"))
    assert len(d) == 3 and not list((tmp_path / "kitti" / "2011_09_26").glob(".*"))       # no partial folder left
    for i in range(3):
        assert np.array_equal(d.image(i), src.image(i))
        assert d.scan_path(i).read_bytes() == src.scan_path(i).read_bytes()                 # bit-identical scans
    cam_ns, velo_ns, _ = bag.drive_stamps_ns(src)
    assert np.array_equal(read_timestamps_ns(d.image_dir.parent / "timestamps.txt"), cam_ns[:3])
    assert np.array_equal(read_timestamps_ns(d.velo_dir.parent / "timestamps.txt"), velo_ns[:3])
    real, back = src.calib, d.calib
    assert np.array_equal(back.P_rect, real.P_rect) and np.array_equal(back.R_rect, real.R_rect)
    assert (back.width, back.height) == (real.width, real.height)
    assert np.allclose(back.T_velo_to_cam, real.T_velo_to_cam, atol=1e-5)   # the quaternion orthonormalised R
    pts = src.scan(0)
    front = real.project(pts)[1] > 1.0
    assert front.sum() > 1000
    assert np.abs(back.project(pts)[0][front] - real.project(pts)[0][front]).max() < 1e-3


def test_to_kitti_lidar_to_camera_mono8_and_pairing(drive, tiny_bag, tmp_path):
    d0 = KittiRawDrive(drive)
    gray = lambda i: d0.image(i)[..., 1]                                    # noqa: E731

    def image(n, m):                                    # mono8; frame 3's image is lost
        return None if n == 3 else convert.numpy_to_image(gray(n), "mono8", m.header)

    def cloud(n, m):                                    # clouds stamped 20 ms after their image
        m.header.stamp.nanosec += 20_000_000
        return m
    b = _derived_bag(tiny_bag, tmp_path / "b", drop=(TOPICS["tf_static"],),
                     edit={TOPICS["image"]: image, TOPICS["cloud"]: cloud})
    T = H.kitti_like_T()
    T[:3, :3] = tf.quat_to_matrix(0.01, -0.02, 0.03, 1.0) @ T[:3, :3]
    summary = bag.to_kitti(b, tmp_path / "k", lidar_to_camera=T.ravel().tolist(), progress=False)
    assert (summary["frames"], summary["dropped_images"], summary["dropped_clouds"]) == (7, 0, 1)
    d = KittiRawDrive(_drive_dir(tmp_path / "k", "2011_09_26"))
    kept = [0, 1, 2, 4, 5, 6, 7]
    assert len(d) == 7 and all(np.array_equal(d.image(k), np.repeat(gray(i)[..., None], 3, 2)) for k, i in enumerate(kept))
    assert all(np.array_equal(d.scan(k), d0.scan(i)) for k, i in enumerate(kept))
    t0 = T0 * 10**9 + np.array(kept, np.int64) * 10**8
    assert np.array_equal(read_timestamps_ns(d.image_dir.parent / "timestamps.txt"), t0)
    assert np.array_equal(read_timestamps_ns(d.velo_dir.parent / "timestamps.txt"), t0 + 20_000_000)
    assert np.allclose(d.calib.T_velo_to_cam, T, rtol=0, atol=1e-12) and np.array_equal(d.calib.P_rect, d0.calib.P_rect)
    assert bag.pair_stamps([0, 100, 200, 300], [5, 95, 290, 1000], 10) == [(0, 0), (1, 1), (3, 2)]
    assert bag.pair_stamps([100, 104], [101], 10) == [(0, 0)]              # one partner each, the closest


def test_to_kitti_errors_name_the_problem(tiny_bag, tmp_path, capsys):
    def cli(b, *args):
        out = tmp_path / "never"
        rc = bag.main(["to-kitti", str(b), str(out), *args])
        assert rc == 1 and not out.exists(), rc                           # nothing written
        return capsys.readouterr().err

    err = cli(tiny_bag, "--image-topic", "/nope")
    assert "no image topic /nope" in err and TOPICS["cloud"] in err and TOPICS["tf_static"] in err, err
    assert "no cloud topic /x" in cli(tiny_bag, "--cloud-topic", "/x")
    assert "no camera_info topic /c" in cli(tiny_bag, "--camera-info-topic", "/c")
    assert "no image/cloud pair within 1e-09 s" in cli(_derived_bag(tiny_bag, tmp_path / "late", edit={
        TOPICS["cloud"]: lambda n, m: (setattr(m.header.stamp, "nanosec", m.header.stamp.nanosec + 5), m)[1]}),
        "--slop", "1e-9")
    no_tf = _derived_bag(tiny_bag, tmp_path / "no_tf", drop=(TOPICS["tf_static"],))
    err = cli(no_tf)
    assert "no LiDAR -> camera extrinsics" in err and "--lidar-to-camera" in err, err
    assert "16 finite numbers" in cli(no_tf, "--lidar-to-camera", *["1"] * 15, "nan")
    assert "no camera_info message" in cli(_derived_bag(tiny_bag, tmp_path / "no_info",
                                                        edit={TOPICS["camera_info"]: lambda n, m: None}))
    err = cli(_derived_bag(tiny_bag, tmp_path / "mono16", edit={
        TOPICS["image"]: lambda n, m: convert.numpy_to_image(np.zeros((4, 6), np.uint16), "mono16", m.header)}))
    assert "image encoding 'mono16' is not supported" in err, err
    err = cli(_derived_bag(tiny_bag, tmp_path / "f64", edit={TOPICS["cloud"]: lambda n, m: convert.numpy_to_cloud(
        {k: np.zeros(5) for k in "xyz"}, m.header)}))
    assert "point field 'x' is 1 x float64" in err, err
    err = cli(_derived_bag(tiny_bag, tmp_path / "cut", edit={                # found while writing: the frames go
        TOPICS["image"]: lambda n, m: (setattr(m, "data", bytes(m.data)[:10] if n == 5 else m.data), m)[1]}))
    assert "message 5: truncated image buffer" in err, err                  # written so far are removed
    assert "Traceback" not in err
    bag.to_kitti(tiny_bag, tmp_path / "k", progress=False)
    with pytest.raises(bag.ToKittiError, match="2011_09_26_drive_0000_sync exists; not overwriting"):
        bag.to_kitti(tiny_bag, tmp_path / "k", progress=False)


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


def _play_restamped(tiny_bag, log, *args):
    """Play the tiny bag with --restamp (and `args`) in its own process, received by a Listener."""
    lis = Listener()
    try:
        player = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "play", str(tiny_bag), *args, "--restamp",
                                   "--restamp-log", str(log), "--wait-subscribers", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=H.ros_env())
        lis.spin(60, until=lambda: player.poll() is not None)
        lis.spin(0.5)
        out = player.communicate(timeout=30)[0]
    finally:
        lis.close()
    assert player.returncode == 0, out
    return lis, out


def test_play_keeps_the_timing_and_restamps(tiny_bag, tmp_path):
    log = tmp_path / "restamp.jsonl"
    lis, out = _play_restamped(tiny_bag, log, "--rate", "2")
    assert out.count("tf2_msgs/msg/TFMessage is not installed here") == (0 if _tf2_msgs() else 1), out
    imgs = lis.got["image"]
    assert len(imgs) >= 6, (imgs, out)                     # small messages: at most a rare loss
    recv, stamps = np.array([r for r, _ in imgs]), np.array([s for _, s in imgs])
    entry = json.loads(log.read_text().splitlines()[0])
    assert entry["rate"] == 2 and entry["offset_ns"] == entry["wall_start_ns"] - entry["bag_start_ns"]
    orig = np.array([bag.original_stamp_ns(round(s * 1e9), entry) for s in stamps]) * 1e-9 - T0
    k = np.round(orig / 0.1)                               # frame index from the restamped stamp
    assert np.allclose(orig, k * 0.1, atol=1e-6) and (np.diff(k) > 0).all()
    assert abs(np.median(recv - stamps)) < 0.5             # restamped: close to the receive time
    rate = np.median(np.diff(recv) / np.diff(k))          # 0.1 s of bag time at rate 2
    assert 0.035 < rate < 0.075, rate


def test_play_restamps_to_the_publication_time_at_half_rate_and_in_a_loop(tiny_bag, tmp_path):
    log = tmp_path / "restamp.jsonl"
    lis, out = _play_restamped(tiny_bag, log, "--rate", "0.5", "--loop", "--duration", "3.5")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(entries) >= 2 and all(e["rate"] == 0.5 for e in entries), entries   # 0.7 s of bag = 1.4 s a pass
    for key in ("image", "cloud"):
        got = np.array(lis.got[key])
        assert len(got) >= 10, (key, len(got), out)
        recv, stamps = got[:, 0], got[:, 1]
        late = recv - stamps                               # receive time - stamp: a constant offset would grow 0.1 s a frame
        assert np.abs(late).max() < 0.15 and abs(np.median(late)) < 0.05, (key, late)
        d = np.diff(stamps)
        assert (d > -1e-3).all(), d                        # a new pass starts where the last one ended
        step = d[d > 0.1] / 0.2                            # within a pass 0.1 s of bag is 0.2 s (2 steps: a loss)
        assert (d <= 0.1).sum() <= len(entries) and np.allclose(step, np.round(step), atol=1e-5), d


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
    out = deserialize_message(bag._restamp(serialize_message(msg), 100_000_000_000, 102_500_000_000), Image)
    assert (out.header.stamp.sec, out.header.stamp.nanosec, out.header.frame_id) == (103, 250_000_000, "f")
    assert bytes(out.data) == bytes(msg.data)
    out = deserialize_message(bag._restamp(serialize_message(msg), 100_000_000_000, 102_500_000_000, 0.5), Image)
    assert (out.header.stamp.sec, out.header.stamp.nanosec) == (104, 0)   # 0.75 s of bag = 1.5 s at rate 0.5
    entry = {"bag_start_ns": 100_000_000_000, "wall_start_ns": 102_500_000_000, "rate": 0.5, "offset_ns": 2_500_000_000}
    assert bag.original_stamp_ns(104 * 10**9, entry) == 100_750_000_000
    assert bag.original_stamp_ns(103_250_000_000, {"bag_start_ns": 0, "offset_ns": 2_500_000_000}) == 100_750_000_000


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
