"""Helpers for the ROS tests: an isolated DDS domain per test run, tiny calibrations and
students, the node in its own process, and a probe node (publishers and subscribers over real
DDS) in the test process. Large messages between processes can be lost under load, so every
wait publishes repeatedly until the expected output arrives, bounded by a timeout."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
KITTI_RAW = Path(__file__).resolve().parents[2] / "shared" / "kitti_raw"
KITTI_DATE = KITTI_RAW / "2011_09_26"
KITTI_DRIVE = KITTI_DATE / "2011_09_26_drive_sfnd_sync"
PY = sys.executable

# one DDS domain per test run (1..200), discovery limited to this machine
DOMAIN_ID = str(1 + os.getpid() % 200)
os.environ["ROS_DOMAIN_ID"] = DOMAIN_ID
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RCUTILS_LOGGING_BUFFERED_STREAM", "0")
os.environ["RCUTILS_COLORIZED_OUTPUT"] = "0"

TINY_W, TINY_H = 160, 48


def ros_env(**extra) -> dict:
    env = {**os.environ, "ROS_DOMAIN_ID": DOMAIN_ID, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",
           "PYTHONFAULTHANDLER": "1"}          # a hung process stopped with SIGABRT leaves its threads' stacks in its log
    env.update({k: str(v) for k, v in extra.items()})
    return env


def kitti_like_T() -> np.ndarray:
    """velo (x fwd, y left, z up) -> camera (x right, y down, z fwd), with a small offset."""
    T = np.eye(4)
    T[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    T[:3, 3] = [0.0, -0.08, -0.27]
    return T


def write_tiny_calib(date_dir: Path, width: int = TINY_W, height: int = TINY_H) -> Path:
    from xmod_core import kitti
    s = width / 1242
    P = np.array([[721.5 * s, 0, 609.6 * s, 44.9 * s], [0, 721.5 * height / 375, 172.9 * height / 375, 0.2],
                  [0, 0, 1, 0.0027]])
    kitti.write_calib_files(date_dir, P, np.eye(3), kitti_like_T(), width=width, height=height)
    return Path(date_dir)


TINY_MODEL = dict(widths=(8, 8, 8, 8, 8), blocks=(1, 1, 1, 1), num_slots=4, slot_dim=16, mlp_hidden=32,
                  gru_hidden=16, decoder_channels=8, norm="group")


def export_tiny_students(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    import torch

    from xmod_core.model import DIOD, ModelConfig
    from xmod_core.stages import student_config
    from xmod_core.train import export_student
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = ModelConfig(**TINY_MODEL)
    paths = []
    for m in ("rgb", "lidar"):
        torch.manual_seed(seed)
        p = out_dir / f"student_{m}.pt"
        export_student(p, "test", m, cfg, DIOD(student_config(cfg, m)).state_dict(), {})
        paths.append(p)
    return paths[0], paths[1]


def synthetic_scene(t: int = 0, width: int = TINY_W, height: int = TINY_H, seed: int = 0):
    """A textured RGB image and a KITTI-like cloud (wall + ground + a box) for frame t."""
    rng = np.random.default_rng(seed + t)
    img = (rng.random((height, width, 3)) * 255).astype(np.uint8)
    img[height // 3: height // 3 + 12, 10 + 3 * t: 40 + 3 * t] = (220, 40, 40)
    ys, zs = np.meshgrid(np.linspace(-12, 12, 120), np.linspace(-1.7, 2.0, 20))
    wall = np.stack([np.full(ys.size, 25.0), ys.ravel(), zs.ravel()], 1)
    gx, gy = np.meshgrid(np.linspace(3, 25, 60), np.linspace(-10, 10, 40))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.73)], 1)
    bx, by, bz = np.meshgrid(np.linspace(10, 14, 10), np.linspace(-1 + 0.1 * t, 1 + 0.1 * t, 8), np.linspace(-1.7, 0, 6))
    box = np.stack([bx.ravel(), by.ravel(), bz.ravel()], 1)
    xyz = np.concatenate([wall, ground, box])
    pts = np.c_[xyz, rng.random(len(xyz))].astype(np.float32)
    return img, pts


class NodeProcess:
    """``python -m xmod_ros.node`` in its own process, output captured to a file."""

    def __init__(self, params: dict, log: Path, extra_args=(), module: str = "xmod_ros.node", command=None, env=None):
        args = [*(command or [PY, "-m", module]), *extra_args, "--ros-args"]
        for k, v in params.items():
            if isinstance(v, bool):
                v = str(v).lower()
            elif isinstance(v, (list, tuple)):
                v = "[" + ",".join(repr(float(x)) for x in v) + "]"
            args += ["-p", f"{k}:={v}"]
        self.log = Path(log)
        self._f = open(self.log, "w")
        self.proc = subprocess.Popen(args, stdout=self._f, stderr=subprocess.STDOUT, env=ros_env(**(env or {})), cwd=ROOT)

    def output(self) -> str:
        if not self._f.closed:
            self._f.flush()
        return self.log.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_for_output(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.output():
                return True
            if not self.alive():
                return text in self.output()
            time.sleep(0.1)
        return False

    def stop(self, timeout: float = 10.0) -> int:
        if self.alive():
            self.proc.send_signal(2)      # SIGINT
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(6)  # SIGABRT: the faulthandler writes where every thread hangs to the log
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        self._f.close()
        return self.proc.returncode


class Probe:
    """A node in the test process: publishes inputs and collects the node's outputs."""

    def __init__(self, name: str = "xmod_test_probe", node_name: str = "xmod_node"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)
        self.lock = threading.Lock()
        types = {"instances": Image, "overlay": Image, "clusters": PointCloud2, "markers": MarkerArray,
                 "status": DiagnosticArray}
        try:                                                   # built by make setup where ../shared has it
            from vision_msgs.msg import Detection2DArray, Detection3DArray
            types |= {"detections": Detection2DArray, "detections_3d": Detection3DArray}
        except ImportError:
            pass
        self.got: dict[str, list] = {k: [] for k in types}
        for k, t in types.items():
            self.node.create_subscription(t, f"/{node_name}/{k}", self._collector(k), 10)
        self.pub_image = self.node.create_publisher(Image, "/kitti/camera_color_left/image_raw", qos_profile_sensor_data)
        self.pub_cloud = self.node.create_publisher(PointCloud2, "/kitti/velo/pointcloud", qos_profile_sensor_data)
        self.pub_info = self.node.create_publisher(CameraInfo, "/kitti/camera_color_left/camera_info", 10)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        while not self._stop and self.ctx.ok():
            try:
                self.ex.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutting down
                break

    def _collector(self, key):
        def cb(msg):
            with self.lock:
                self.got[key].append(msg)
        return cb

    def outputs(self, key) -> list:
        with self.lock:
            return list(self.got[key])

    def clear(self):
        with self.lock:
            for v in self.got.values():
                v.clear()

    def latest_status(self) -> dict:
        st = self.outputs("status")
        return {kv.key: kv.value for kv in st[-1].status[0].values} if st else {}

    def wait_until(self, cond, timeout: float, every: float = 0.1, action=None) -> bool:
        """Poll ``cond()`` until true; run ``action()`` (e.g. publish again) every ``every`` s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if action is not None:
                action()
            if cond():
                return True
            time.sleep(every)
        return bool(cond())

    def wait_for_subscribers(self, timeout: float = 20.0, image=True, cloud=True) -> bool:
        return self.wait_until(lambda: (not image or self.pub_image.get_subscription_count() > 0)
                               and (not cloud or self.pub_cloud.get_subscription_count() > 0), timeout)

    def close(self):
        self._stop = True
        self._thread.join(5)
        self.node.destroy_node()
        self.ctx.try_shutdown()


def header(stamp: float, frame: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    sec = int(np.floor(stamp))
    return Header(stamp=Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9))), frame_id=frame)


def stamp_of(msg) -> float:
    """Header stamp in seconds (a MarkerArray: its first marker's; NaN when it is empty)."""
    if not hasattr(msg, "header"):
        if not getattr(msg, "markers", None):
            return float("nan")
        msg = msg.markers[0]
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


# ---------------------------------------------------------------------------------- node tests
CAM, VELO = "camera_color_left", "velo_link"
IMAGE_TOPIC, CLOUD_TOPIC = "/kitti/camera_color_left/image_raw", "/kitti/velo/pointcloud"


def node_assets(d: Path) -> dict:
    """A tiny calibration folder and tiny students under d."""
    return {"dir": d, "calib": write_tiny_calib(d / "2030_01_01"), **dict(zip(("rgb", "lidar"), export_tiny_students(d / "models")))}


def base_params(assets, **kw) -> dict:
    p = {"checkpoint_rgb": str(assets["rgb"]), "checkpoint_lidar": str(assets["lidar"]), "height": 48, "width": 160,
         "status_period": 0.25, "warn_period": 60.0, "device": "cpu",
         "min_score": 0.0}                  # untrained seeded students are unsure of everything: keep their instances
    p.update(kw)
    return p


class Stamps:
    def __init__(self, t0=1000.0):
        self.t = t0

    def next(self, dt=0.1):
        self.t += dt
        return round(self.t, 3)


def pair(stamp, t=0, image=None, cloud=None):
    """(Image, PointCloud2) of the synthetic scene at frame t; the cloud 1 ms after the image."""
    from xmod_ros import convert
    img, pts = synthetic_scene(t)
    im = image if image is not None else convert.numpy_to_image(img, "rgb8", header(stamp, CAM))
    cl = cloud if cloud is not None else convert.xyzi_to_cloud(pts, header(stamp + 0.001, VELO))
    return im, cl


def node_subscriptions(probe, node: str = "xmod_node") -> set:
    """Topics the node subscribes to, as the probe's graph knows them (empty until discovery has
    the node's name: the graph may see a subscription before it)."""
    try:
        return set(dict(probe.node.get_subscriber_names_and_types_by_node(node, "/")))
    except Exception:  # noqa: BLE001 - NodeNameNonExistentError: not (or no longer) in the graph
        return set()


def publish_pair(probe, im, cl):
    probe.pub_image.publish(im)
    probe.pub_cloud.publish(cl)


def outputs_at(probe, key, stamp):
    return [m for m in probe.outputs(key) if abs(stamp_of(m) - stamp) < 1e-6]


def status_value(probe, key, default=0):
    v = probe.latest_status().get(key)
    return default if v is None else float(v)
