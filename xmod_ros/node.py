"""The ROS 2 node ``xmod_node``: synchronised camera + LiDAR in, instance masks and 3D object
clusters out. It only converts messages and calls :class:`xmod_core.predictor.Predictor`.

    ros2 run xmod_ros xmod_node --ros-args --params-file config/xmod.yaml -p mode:=fused
    xmod_node --ros-args -p calibration:=../shared/kitti_raw/2011_09_26      (pip install)

Threads: the executor thread only queues incoming frames (an approximate-time pair in ``fused``
mode, one message otherwise) into a one-slot buffer; a worker thread converts, runs the model and
publishes. A frame arriving while one is still pending replaces it (the older one is dropped and
counted), so latency stays bounded when the model is slower than the sensors.

Bad input never stops the node: the frame is skipped with a throttled warning naming the problem,
and counted per kind in ``~/status``. A missing calibration, camera_info or checkpoint stops it
at startup with a message saying which (exit status 2).
"""
from __future__ import annotations

import os

# Before PyTorch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared 2-core CPU
# spinning threads of several processes made the fused model 5 to 20 times slower (README, "The ROS 2 node").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import collections
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from builtin_interfaces.msg import Duration as DurationMsg
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Quaternion, Vector3
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.exceptions import ParameterException, ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from xmod_core.kitti import CameraCalib, KittiFormatError, load_calib
from xmod_core.predictor import DEFAULT_2D, DEFAULT_3D, INSTANCES, Predictor, PredictorConfig

from . import convert, render
from .dds import use_large_message_profile
from .sync import make_synchronizer
from .tf import transform_to_matrix, yaw_to_quat

NODE_NAME = "xmod_node"
MODES = ("rgb", "lidar", "fused")
KITTI_TOPICS = {"image": "/kitti/camera_color_left/image_raw",
                "camera_info": "/kitti/camera_color_left/camera_info",
                "cloud": "/kitti/velo/pointcloud"}

_D = ParameterType
# name: (default, type, description). Defaults here equal config/xmod.yaml (a test checks it).
PARAMETERS: dict[str, tuple] = {
    "image_topic": (KITTI_TOPICS["image"], _D.PARAMETER_STRING, "camera image input (sensor_msgs/Image: rgb8, bgr8, mono8)"),
    "camera_info_topic": (KITTI_TOPICS["camera_info"], _D.PARAMETER_STRING,
                          "camera_info input, read once at startup when `calibration` is empty"),
    "cloud_topic": (KITTI_TOPICS["cloud"], _D.PARAMETER_STRING,
                    "LiDAR input (sensor_msgs/PointCloud2 with x, y, z and optionally intensity)"),
    "mode": ("fused", _D.PARAMETER_STRING,
             "rgb (camera only), lidar (LiDAR only) or fused (both, late fusion); read at startup"),
    "checkpoint_rgb": ("", _D.PARAMETER_STRING,
                       "exported 2D student (student_rgb.pt); empty: the shipped demo model xmod_core/assets/student_rgb.pt"),
    "checkpoint_lidar": ("", _D.PARAMETER_STRING,
                         "exported 3D student (student_lidar.pt); empty: the shipped demo model xmod_core/assets/student_lidar.pt"),
    "device": ("auto", _D.PARAMETER_STRING, "auto (CUDA when present, else CPU), cpu or cuda"),
    "amp": (False, _D.PARAMETER_BOOL, "bf16 autocast for the students on CUDA (ignored on the CPU): less memory, not faster at one frame"),
    "cuda_graphs": (True, _D.PARAMETER_BOOL, "replay the students' per-frame step as a CUDA graph (ignored on the CPU)"),
    "threads": (0, _D.PARAMETER_INTEGER, "CPU threads of the model (torch.set_num_threads); 0: PyTorch's default"),
    "height": (96, _D.PARAMETER_INTEGER, "processing height in pixels (multiple of 4)"),
    "width": (320, _D.PARAMETER_INTEGER, "processing width in pixels (multiple of 4)"),
    "sync_slop": (0.05, _D.PARAMETER_DOUBLE, "approximate-time pairing of image and cloud: largest stamp difference, s"),
    "sync_queue_size": (5, _D.PARAMETER_INTEGER, "approximate-time pairing: messages kept per input"),
    "fusion_iou": (0.1, _D.PARAMETER_DOUBLE, "late fusion: 2D-3D IoU above which both modalities agree on an object"),
    "keep_single": (False, _D.PARAMETER_BOOL, "late fusion: also keep confident objects seen by one modality only"),
    "min_pixels": (20, _D.PARAMETER_INTEGER, "smallest instance, in pixels of the processing grid"),
    "min_score": (0.5, _D.PARAMETER_DOUBLE,
                  "smallest instance score (mean slot attention over its pixels); unsure instances are dropped"),
    "min_points": (5, _D.PARAMETER_INTEGER, "smallest 3D cluster, in LiDAR points"),
    "instances": ("slots", _D.PARAMETER_STRING,
                  "slots: the students' instances (the paper's); hybrid: LiDAR clusters the students call objects, "
                  "split and merged by their instances (needs the cloud in every mode); read at startup"),
    "hybrid_objectness": (0.1, _D.PARAMETER_DOUBLE,
                          "hybrid: agreement of a LiDAR cluster with the students' instances for it to be kept"),
    "hybrid_agreement": ("iou", _D.PARAMETER_STRING,
                         "hybrid: iou (a cluster's best point IoU with one student instance) or share (of its points in any)"),
    "max_gap": (0.5, _D.PARAMETER_DOUBLE, "a larger gap between input stamps starts a new sequence (temporal state reset), s"),
    "state_horizon": (3, _D.PARAMETER_INTEGER,
                      "frames the students carry their temporal state before restarting it (they train on 3-frame "
                      "clips; carried longer it drifts); 0: never"),
    "track_iou": (0.3, _D.PARAMETER_DOUBLE, "IoU with an object of the previous frame for an instance to keep its id"),
    "calibration": ("", _D.PARAMETER_STRING,
                    "KITTI calibration folder (e.g. ../shared/kitti_raw/2011_09_26); empty: camera_info plus TF "
                    "(or lidar_to_camera)"),
    "camera": (2, _D.PARAMETER_INTEGER, "camera index in the KITTI calibration (2: left colour)"),
    "lidar_to_camera": ([], _D.PARAMETER_DOUBLE_ARRAY,
                        "16 floats, row-major 4x4 transform from the LiDAR frame into the camera_info frame; "
                        "used with an empty `calibration` instead of TF (needed where tf2_ros is not installed)"),
    "calibration_timeout": (10.0, _D.PARAMETER_DOUBLE,
                            "with an empty `calibration`: how long to wait for camera_info and TF at startup, s"),
    "camera_frame_id": ("", _D.PARAMETER_STRING,
                        "frame of ~/instances and ~/overlay; empty: the input image's (else camera_info's) frame"),
    "lidar_frame_id": ("", _D.PARAMETER_STRING, "frame of ~/clusters and ~/markers; empty: the input cloud's frame"),
    "marker_lifetime": (0.5, _D.PARAMETER_DOUBLE, "lifetime of boxes and labels in ~/markers, s (stale ones disappear)"),
    "clusters_background": (False, _D.PARAMETER_BOOL, "~/clusters also carries points of no instance (instance 0)"),
    "overlay_alpha": (0.5, _D.PARAMETER_DOUBLE, "opacity of instance colours in ~/overlay"),
    "output_reliable": (True, _D.PARAMETER_BOOL, "outputs use reliable QoS (rviz's default); false: best effort"),
    "status_period": (1.0, _D.PARAMETER_DOUBLE, "period of ~/status diagnostics, s"),
    "warn_period": (5.0, _D.PARAMETER_DOUBLE, "at most one warning per problem kind in this period, s"),
}

BAD_INPUT_KINDS = ("encoding", "image_size", "missing_field", "truncated", "malformed", "non_finite",
                   "empty_cloud", "stamp_backwards", "model_error")


class StartupError(RuntimeError):
    """The node cannot start; the message says what is missing."""


class BadInput(ValueError):
    """A frame that cannot be used; ``kind`` counts it in ~/status, ``key`` throttles its warning."""

    def __init__(self, kind: str, text: str, key: str | None = None):
        super().__init__(text)
        self.kind, self.key = kind, key or kind


@dataclass
class Frame:
    image: Image | None
    cloud: PointCloud2 | None
    received: float          # time.monotonic() at queueing


def stamp_seconds(stamp) -> float:
    return int(stamp.sec) + int(stamp.nanosec) * 1e-9


def _percentile(values, q) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q)) if len(values) else float("nan")


def camera_info_to_calib(info: CameraInfo, T_lidar_to_camera: np.ndarray | None) -> CameraCalib:
    """CameraInfo (P, R of the rectified camera) + LiDAR -> camera_info frame transform ->
    CameraCalib: projection P @ pad(R) @ T, the KITTI convention (R = R_rect_00, P = P_rect_02)."""
    P = np.asarray(info.p, np.float64).reshape(3, 4)
    if not P.any():
        K = np.asarray(info.k, np.float64).reshape(3, 3)
        if not K.any():
            raise StartupError("camera_info has neither P nor K")
        P = np.hstack([K, np.zeros((3, 1))])
    R = np.asarray(info.r, np.float64).reshape(3, 3)
    if not R.any():
        R = np.eye(3)
    T = np.eye(4) if T_lidar_to_camera is None else np.asarray(T_lidar_to_camera, np.float64)
    if info.width <= 0 or info.height <= 0:
        raise StartupError(f"camera_info has no image size ({info.width}x{info.height})")
    return CameraCalib(P, R, T, int(info.width), int(info.height))


def markers_msg(objects, header: Header, lifetime_s: float) -> MarkerArray:
    """An oriented box (CUBE, translucent, the instance's colour) and a text label (id, points,
    score) per object, in ``header``'s frame, both with the given lifetime so stale ones vanish."""
    lifetime = DurationMsg(sec=int(lifetime_s), nanosec=int(round((lifetime_s % 1) * 1e9)))
    out = MarkerArray()
    for o in objects:
        r, g, b = (float(c) / 255 for c in render.colours(o.id))
        qx, qy, qz, qw = yaw_to_quat(o.yaw)
        cx, cy, cz = (float(v) for v in o.center)
        box = Marker(header=header, ns="boxes", id=int(o.id), type=Marker.CUBE, action=Marker.ADD,
                     lifetime=lifetime, color=ColorRGBA(r=r, g=g, b=b, a=0.45),
                     scale=Vector3(x=max(0.1, float(o.size[0])), y=max(0.1, float(o.size[1])),
                                   z=max(0.1, float(o.size[2]))))
        box.pose.position = Point(x=cx, y=cy, z=cz)
        box.pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
        label = Marker(header=header, ns="ids", id=int(o.id), type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                       lifetime=lifetime, color=ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0), scale=Vector3(z=0.8),
                       text=f"{o.id} ({o.num_points} pts, {o.score:.2f})")
        label.pose.position = Point(x=cx, y=cy, z=cz + float(o.size[2]) / 2 + 0.6)
        label.pose.orientation.w = 1.0
        out.markers += [box, label]
    return out


class XmodNode(Node):
    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        p = {}
        for name, (default, ptype, text) in PARAMETERS.items():
            desc = ParameterDescriptor(description=text, type=ptype)
            if isinstance(default, list) and not default:   # an empty list has no type: declare by type
                self.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY, desc)
                try:
                    p[name] = list(self.get_parameter(name).value)
                except ParameterUninitializedException:
                    p[name] = []
            else:
                p[name] = self.declare_parameter(name, default, desc).value
        self.p = p
        if p["mode"] not in MODES:
            raise StartupError(f"parameter mode must be one of {', '.join(MODES)}, got {p['mode']!r}")
        self.mode = p["mode"]
        if p["instances"] not in INSTANCES:
            raise StartupError(f"parameter instances must be one of {', '.join(INSTANCES)}, got {p['instances']!r}")
        self.uses_image, self.uses_cloud = self.mode in ("rgb", "fused"), self.mode in ("lidar", "fused")
        self.uses_cloud |= self.p["instances"] == "hybrid"          # hybrid instances are LiDAR clusters
        self.predictor = None
        self.sync = None
        self.sync_kind = "none"
        self.calib: CameraCalib | None = None
        self.calib_source = ""
        self.camera_info: CameraInfo | None = None
        self.started = time.monotonic()
        # counters and recent figures for ~/status
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.bad = collections.Counter()
        self.recent = {k: collections.deque(maxlen=200) for k in ("e2e", "pipeline", "model", "convert", "publish")}
        self.done_times = collections.deque(maxlen=200)
        self._warned: dict[str, tuple[float, int]] = {}
        self._last_stamp: float | None = None
        self._last_status_counts = collections.Counter()
        # one pending frame, consumed by the worker
        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._running = True
        self._worker = None

        out_qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE if p["output_reliable"] else ReliabilityPolicy.BEST_EFFORT)
        self.pub_instances = self.create_publisher(Image, "~/instances", out_qos)
        self.pub_overlay = self.create_publisher(Image, "~/overlay", out_qos)
        self.pub_clusters = self.create_publisher(PointCloud2, "~/clusters", out_qos) if self.uses_cloud else None
        self.pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos) if self.uses_cloud else None
        self.pub_status = self.create_publisher(DiagnosticArray, "~/status", 10)
        self.status_timer = self.create_timer(max(0.05, p["status_period"]), self.publish_status)
        self._info_sub = None
        self._tf = None

    # ------------------------------------------------------------------ startup
    def start(self, spin=None) -> None:
        """Get the calibration (KITTI folder, or camera_info + extrinsics, spinning ``spin`` while
        waiting), load the models, subscribe, start the worker. StartupError says what is missing."""
        p = self.p
        if p["calibration"]:
            try:
                self.calib = load_calib(p["calibration"], p["camera"])
            except (KittiFormatError, OSError) as e:
                raise StartupError(f"calibration {p['calibration']!r} cannot be loaded: {e}") from None
            self.calib_source = f"KITTI calibration {p['calibration']} (camera {p['camera']})"
        else:
            self._wait_for_camera_info(spin)
        self._load_predictor()
        self._subscribe()
        self._worker = threading.Thread(target=self._work, name="xmod_inference", daemon=True)
        self._worker.start()
        dev = self.predictor.device
        self.get_logger().info(
            f"{self.mode} mode on {dev}; calibration: {self.calib_source} ({self.calib.width}x{self.calib.height}); "
            f"processing {p['width']}x{p['height']}; inputs: "
            + ", ".join(t for t, use in ((p["image_topic"], self.uses_image), (p["cloud_topic"], self.uses_cloud)) if use)
            + f"; sync: {self.sync_kind}; conversion: {convert.backends()}")

    def _wait_for_camera_info(self, spin) -> None:
        p = self.p
        timeout = float(p["calibration_timeout"])

        def on_info(msg):
            if self.camera_info is None:
                self.camera_info = msg

        self._info_sub = self.create_subscription(CameraInfo, p["camera_info_topic"], on_info, qos_profile_sensor_data)
        T = None
        if self.uses_cloud:
            if len(p["lidar_to_camera"]) == 16:
                T = np.asarray(p["lidar_to_camera"], np.float64).reshape(4, 4)
                source = "parameter lidar_to_camera"
            elif len(p["lidar_to_camera"]):
                raise StartupError(f"parameter lidar_to_camera needs 16 values (row-major 4x4), got {len(p['lidar_to_camera'])}")
            else:
                try:
                    import tf2_ros
                    self._tf_buffer = tf2_ros.Buffer()
                    self._tf = tf2_ros.TransformListener(self._tf_buffer, self)
                    source = "TF"
                except ImportError:
                    raise StartupError(
                        "no calibration: `calibration` is empty, `lidar_to_camera` is not set and tf2_ros is not "
                        "installed, so the LiDAR-to-camera transform is unknown; set calibration:=KITTI_CALIB_DIR "
                        "(e.g. ../shared/kitti_raw/2011_09_26) or lidar_to_camera:=[16 floats]") from None
        deadline = time.monotonic() + timeout
        cloud_frame = p["lidar_frame_id"]
        self._first_cloud_frame = None
        if self.uses_cloud and T is None and not cloud_frame:
            def on_cloud(msg):
                self._first_cloud_frame = self._first_cloud_frame or msg.header.frame_id
            probe = self.create_subscription(PointCloud2, p["cloud_topic"], on_cloud, qos_profile_sensor_data)
        else:
            probe = None
        while time.monotonic() < deadline:
            if self.camera_info is not None:
                if T is not None or not self.uses_cloud:
                    break
                frame = cloud_frame or self._first_cloud_frame
                cam_frame = self.camera_info.header.frame_id
                if frame:
                    try:
                        tr = self._tf_buffer.lookup_transform(cam_frame, frame, Time())
                        T = transform_to_matrix(tr.transform)
                        source = f"TF {frame} -> {cam_frame}"
                        break
                    except Exception:  # noqa: BLE001 - not yet available
                        pass
            if spin is not None:
                spin(0.05)
            else:
                rclpy.spin_once(self, timeout_sec=0.05)
        if probe is not None:
            self.destroy_subscription(probe)
        if self.camera_info is None:
            raise StartupError(f"no camera_info received on {p['camera_info_topic']} within {timeout:g} s and "
                               "`calibration` is empty: publish camera_info or set calibration:=KITTI_CALIB_DIR")
        if self.uses_cloud and T is None:
            what = (f"the transform {cloud_frame or self._first_cloud_frame} -> {self.camera_info.header.frame_id}"
                    if (cloud_frame or self._first_cloud_frame) else f"a first cloud on {p['cloud_topic']} (to know its frame)")
            raise StartupError(f"no calibration: {what} was not available within {timeout:g} s; publish TF, set "
                               "lidar_to_camera:=[16 floats] or calibration:=KITTI_CALIB_DIR")
        self.calib = camera_info_to_calib(self.camera_info, T)
        self.calib_source = f"camera_info on {p['camera_info_topic']}" + (f" + {source}" if self.uses_cloud else "")
        self.destroy_subscription(self._info_sub)
        self._info_sub = None

    def _load_predictor(self) -> None:
        p = self.p
        ck2, ck3 = p["checkpoint_rgb"] or DEFAULT_2D, p["checkpoint_lidar"] or DEFAULT_3D
        for use, path, name in ((self.uses_image, ck2, "checkpoint_rgb"), (self.mode != "rgb", ck3, "checkpoint_lidar")):
            if use and not Path(path).is_file():
                raise StartupError(f"{name}: checkpoint {path} not found (train one and export it, or set {name}:=PATH)")
        cfg = PredictorConfig(mode=self.mode, ckpt_2d=ck2, ckpt_3d=ck3, device=p["device"], height=p["height"],
                              width=p["width"], min_pixels=p["min_pixels"], min_score=p["min_score"], fusion_iou=p["fusion_iou"],
                              keep_single=p["keep_single"], max_gap_s=p["max_gap"], min_points=p["min_points"],
                              state_horizon=p["state_horizon"], track_iou=p["track_iou"], amp=p["amp"],
                              cuda_graphs=p["cuda_graphs"], instances=p["instances"], hybrid_objectness=p["hybrid_objectness"],
                              hybrid_agreement=p["hybrid_agreement"])
        if p["threads"] > 0:
            import torch
            torch.set_num_threads(int(p["threads"]))
        try:
            self.predictor = Predictor(cfg, self.calib)
            self._warm_up()
        except Exception as e:  # noqa: BLE001 - a bad checkpoint or device: say which and stop
            raise StartupError(f"cannot build the model: {type(e).__name__}: {e}") from None

    def _warm_up(self) -> None:
        """One inference on a blank frame so the first real frame does not pay for allocations."""
        c = self.calib
        image = np.zeros((c.height, c.width, 3), np.uint8) if self.uses_image else None
        points = np.array([[10.0, 0.0, 0.0, 0.0]], np.float32) if self.uses_cloud else None
        self.predictor(image=image, points=points, stamp=0.0)
        self.predictor.reset()

    def _subscribe(self) -> None:
        p, qos = self.p, qos_profile_sensor_data
        self.sync = None
        if self.mode == "fused":
            self.sync, self.sync_kind = make_synchronizer(
                self, [(Image, p["image_topic"]), (PointCloud2, p["cloud_topic"])], p["sync_queue_size"],
                p["sync_slop"], qos, lambda img, cloud: self.enqueue(img, cloud))
        elif self.mode == "rgb":
            self.sub = self.create_subscription(Image, p["image_topic"], lambda m: self.enqueue(m, None), qos)
        else:
            self.sub = self.create_subscription(PointCloud2, p["cloud_topic"], lambda m: self.enqueue(None, m), qos)

    # ------------------------------------------------------------------ frames
    def enqueue(self, image, cloud) -> None:
        """Executor thread: hand a frame to the worker; a frame still pending is dropped."""
        frame = Frame(image, cloud, time.monotonic())
        with self._cond:
            self.counts["received"] += 1
            if self._pending is not None:
                self.counts["dropped"] += 1
            self._pending = frame
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and self._running:
                    self._cond.wait(0.5)
                if not self._running:
                    return
                frame, self._pending = self._pending, None
            try:
                self.process(frame)
            except BadInput as e:
                self.bad_input(e.kind, str(e), e.key)
            except Exception as e:  # noqa: BLE001 - never let one frame stop the node
                self.bad_input("model_error", f"{type(e).__name__}: {e}")
                self.get_logger().debug(traceback.format_exc())

    def bad_input(self, kind: str, text: str, key: str | None = None) -> None:
        with self.lock:
            self.bad[kind] += 1
        self.warn(key or kind, text)

    def warn(self, kind: str, text: str) -> None:
        """At most one warning per kind (of problem, on a topic) and warn_period; the next one says
        how many were suppressed."""
        now = time.monotonic()
        last, suppressed = self._warned.get(kind, (-1e9, 0))
        if now - last >= self.p["warn_period"]:
            more = f" ({suppressed} more since the last warning)" if suppressed else ""
            self.get_logger().warning(f"{text}{more}")
            self._warned[kind] = (now, 0)
        else:
            self._warned[kind] = (last, suppressed + 1)

    def _frame_ids(self, frame: Frame) -> tuple[str, str]:
        cam = self.p["camera_frame_id"] or (frame.image.header.frame_id if frame.image is not None else "") \
            or (self.camera_info.header.frame_id if self.camera_info is not None else "") or "camera"
        lidar = self.p["lidar_frame_id"] or (frame.cloud.header.frame_id if frame.cloud is not None else "") or "lidar"
        return cam, lidar

    def convert(self, frame: Frame):
        """Frame -> (rgb or None, points or None, stamp seconds); BadInput for anything unusable."""
        rgb = pts = None
        try:
            if frame.image is not None:
                rgb = convert.image_to_rgb(frame.image)
                if rgb.shape[:2] != (self.calib.height, self.calib.width):
                    raise BadInput("image_size", f"image {rgb.shape[1]}x{rgb.shape[0]} on {self.p['image_topic']} differs "
                                   f"from the calibration's {self.calib.width}x{self.calib.height}: frame skipped")
            if frame.cloud is not None:
                pts, _ = convert.cloud_to_xyzi(frame.cloud)
        except convert.ConversionError as e:
            topic = self.p["image_topic"] if rgb is None and frame.image is not None else self.p["cloud_topic"]
            raise BadInput(e.kind, f"bad message on {topic}: {e}: frame skipped", f"{e.kind}@{topic}") from None
        if pts is not None:
            n = len(pts)
            if n == 0:
                raise BadInput("empty_cloud", f"empty cloud on {self.p['cloud_topic']}: frame skipped")
            pts, keep = convert.finite_points(pts)
            if len(pts) == 0:
                raise BadInput("empty_cloud", f"cloud on {self.p['cloud_topic']} has no finite point (all {n} have NaN "
                               "or infinite coordinates): frame skipped", "no_finite_point")
            if len(pts) < n:       # organised clouds mark missing returns so: use the others
                self.bad_input("non_finite", f"cloud on {self.p['cloud_topic']} has {n - len(pts)} of {n} points with "
                               "NaN or infinite coordinates: they are ignored")
        ref = frame.image if frame.image is not None else frame.cloud
        return rgb, pts, stamp_seconds(ref.header.stamp)

    def process(self, frame: Frame) -> None:
        t0 = time.perf_counter()
        rgb, pts, stamp = self.convert(frame)
        t1 = time.perf_counter()
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.bad_input("stamp_backwards", f"input stamp went back by {self._last_stamp - stamp:.3f} s "
                           f"({self._last_stamp:.3f} -> {stamp:.3f}): temporal state reset (new sequence)")
            self.predictor.reset()
        self._last_stamp = stamp
        res = self.predictor(image=rgb, points=pts, stamp=stamp)
        t2 = time.perf_counter()
        self.publish(frame, rgb, pts, res)
        t3 = time.perf_counter()
        now_ros = self.get_clock().now().nanoseconds * 1e-9
        with self.lock:
            self.counts["processed"] += 1
            ref = frame.image if frame.image is not None else frame.cloud
            self.recent["e2e"].append((now_ros - stamp_seconds(ref.header.stamp)) * 1e3)
            self.recent["pipeline"].append((time.monotonic() - frame.received) * 1e3)
            self.recent["convert"].append((t1 - t0) * 1e3)
            self.recent["model"].append((t2 - t1) * 1e3)
            self.recent["publish"].append((t3 - t2) * 1e3)
            self.done_times.append(time.monotonic())

    # ------------------------------------------------------------------ outputs
    def publish(self, frame: Frame, rgb, pts, res) -> None:
        cam_frame, lidar_frame = self._frame_ids(frame)
        img_ref = frame.image if frame.image is not None else frame.cloud
        cam_header = Header(stamp=img_ref.header.stamp, frame_id=cam_frame)
        self.pub_instances.publish(convert.numpy_to_image(res.labels, "mono16", cam_header))
        if self.pub_overlay.get_subscription_count():
            over = render.overlay(rgb, res.labels, self.p["overlay_alpha"])
            self.pub_overlay.publish(convert.numpy_to_image(over, "rgb8", cam_header))
        if frame.cloud is None or res.point_labels is None:
            return
        lidar_header = Header(stamp=frame.cloud.header.stamp, frame_id=lidar_frame)
        if self.pub_clusters.get_subscription_count():
            keep = slice(None) if self.p["clusters_background"] else res.point_labels > 0
            self.pub_clusters.publish(convert.xyzi_to_cloud(pts[keep], lidar_header,
                                                            {"instance": res.point_labels[keep].astype(np.uint16)}))
        if self.pub_markers.get_subscription_count():
            self.pub_markers.publish(self.markers(res.objects, lidar_header))

    def markers(self, objects, header: Header) -> MarkerArray:
        return markers_msg(objects, header, float(self.p["marker_lifetime"]))

    def status(self) -> dict:
        """The figures of ~/status as a dict (also used by tests and the benchmark)."""
        now = time.monotonic()
        with self.lock:
            rec = {k: list(v) for k, v in self.recent.items()}
            done = [t for t in self.done_times if now - t <= 5.0]
            counts, bad = dict(self.counts), dict(self.bad)
        span = (done[-1] - done[0]) if len(done) > 1 else 0.0
        out = {"mode": self.mode, "device": str(self.predictor.device) if self.predictor else "",
               "calibration": self.calib_source,
               "frames_received": counts.get("received", 0), "frames_processed": counts.get("processed", 0),
               "frames_dropped": counts.get("dropped", 0), "pending": int(self._pending is not None),
               "rate_hz": (len(done) - 1) / span if span > 0 else 0.0,
               "bad_input": sum(bad.values())}
        for k in BAD_INPUT_KINDS:
            out[f"bad_{k}"] = bad.get(k, 0)
        for k in ("e2e", "pipeline", "model", "convert", "publish"):
            out[f"{k}_ms_p50"] = _percentile(rec[k], 50)
            out[f"{k}_ms_p99"] = _percentile(rec[k], 99)
        if self.sync is not None and hasattr(self.sync, "dropped"):
            out["sync_unpaired"] = int(sum(self.sync.dropped))
        if self.sync is not None and hasattr(self.sync, "queues"):
            out["sync_queued"] = int(sum(len(q) for q in list(self.sync.queues)))
        out["sync"] = self.sync_kind
        return out

    def publish_status(self) -> None:
        s = self.status()
        level, problems = DiagnosticStatus.OK, []
        new_bad = s["bad_input"] - self._last_status_counts["bad_input"]
        new_drop = s["frames_dropped"] - self._last_status_counts["frames_dropped"]
        if self.predictor is None:
            level, problems = DiagnosticStatus.WARN, ["waiting for calibration"]
        if new_bad:
            level = DiagnosticStatus.WARN
            problems.append(f"{new_bad} bad input(s)")
        if new_drop:
            level = DiagnosticStatus.WARN
            problems.append(f"{new_drop} frame(s) dropped (model slower than the sensors)")
        self._last_status_counts = collections.Counter(bad_input=s["bad_input"], frames_dropped=s["frames_dropped"])
        lat = (f"latency p50 {s['e2e_ms_p50']:.0f} ms" if 0 <= s["e2e_ms_p50"] < 60e3
               else f"pipeline p50 {s['pipeline_ms_p50']:.0f} ms")
        msg = (f"{s['mode']} on {s['device']}: {s['rate_hz']:.1f} Hz, {lat}"
               + ("; " + "; ".join(problems) if problems else ""))
        st = DiagnosticStatus(level=level, name=f"{self.get_name()}: pipeline", message=msg, hardware_id=s["device"],
                              values=[KeyValue(key=k, value=(f"{v:.2f}" if isinstance(v, float) else str(v)))
                                      for k, v in s.items()])
        arr = DiagnosticArray(status=[st])
        arr.header.stamp = self.get_clock().now().to_msg()
        self.pub_status.publish(arr)

    def shutdown(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)


def main(args=None) -> int:
    use_large_message_profile()
    rclpy.init(args=args)
    node, rc = None, 0
    try:
        node = XmodNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.start(spin=lambda t: executor.spin_once(timeout_sec=t))
        while rclpy.ok():
            try:
                executor.spin_once(timeout_sec=0.5)
            except RuntimeError as e:
                # rclpy occasionally fails to take one message (seen as a pybind11 conversion
                # error); that message is lost, the node goes on.
                if not rclpy.ok():
                    break
                node.get_logger().warning(f"a message could not be taken and is dropped: {e}",
                                          throttle_duration_sec=5.0)
    except (StartupError, ParameterException) as e:       # ParameterException: e.g. a parameter of the wrong type
        (node.get_logger() if node else rclpy.logging.get_logger(NODE_NAME)).fatal(f"cannot start: {e}")
        print(f"xmod_node: cannot start: {e}", file=sys.stderr)
        rc = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
