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

Managed (lifecycle) node, on request: ``-p lifecycle:=true`` (read at startup, also from a params
file) makes ``xmod_node`` an ``rclpy`` lifecycle node, driven through ``~/change_state``:
configure reads the parameters and loads the calibration and the students (a failure returns
FAILURE with the message above and the node stays unconfigured), activate subscribes and starts
the worker and the output publishers, deactivate unsubscribes, stops the worker and drops queued
frames, cleanup frees the models and the output publishers, shutdown ends the process (status 0).
Outputs: ``~/instances``, ``~/overlay`` and, with the scan, ``~/clusters`` and ``~/markers``; where
vision_msgs imports, also ``~/detections`` (Detection2DArray) and ``~/detections_3d``
(Detection3DArray, with the scan), built by :mod:`xmod_ros.detections` (else logged once and off).
Both nodes share one implementation (:class:`XmodPipeline`); the steps are its methods
``configure``/``activate``/``deactivate``/``cleanup``, which the plain node runs at startup.
"""
from __future__ import annotations

import os

# Before PyTorch loads OpenMP: idle OpenMP threads sleep instead of spinning. On a shared 2-core CPU
# spinning threads of several processes made the fused model 5 to 20 times slower (README, "The ROS 2 node").
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import collections
import gc
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
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.time import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from xmod_core.kitti import CameraCalib, KittiFormatError, load_calib
from xmod_core.baselines import EXTENTS
from xmod_core.fusion import AGREEMENTS, MASKS
from xmod_core.instances import FRAGMENTS
from xmod_core.predictor import INSTANCES, Predictor, PredictorConfig, student_path

from . import convert, detections, render
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
                       "exported 2D student (student_rgb.pt); empty: the shipped demo model xmod_core/assets/student_rgb.pt; "
                       "grid2: the shipped one with a slot grid at 1/2 of the input (student_rgb_grid2.pt)"),
    "checkpoint_lidar": ("", _D.PARAMETER_STRING,
                         "exported 3D student (student_lidar.pt); empty: the shipped demo model xmod_core/assets/student_lidar.pt "
                         "(a slot grid at 1/2 of the input; grid2 names it too); stride4: the shipped one at 1/4, "
                         "the default until 2026-12-03 (student_lidar_stride4.pt)"),
    "device": ("auto", _D.PARAMETER_STRING, "auto (CUDA when present, else CPU), cpu or cuda"),
    "amp": (False, _D.PARAMETER_BOOL, "bf16 autocast for the students on CUDA (ignored on the CPU): less memory, not faster at one frame"),
    "cuda_graphs": (True, _D.PARAMETER_BOOL, "replay the students' per-frame step as a CUDA graph (ignored on the CPU)"),
    "parallel_students": (True, _D.PARAMETER_BOOL, "fused on the CPU: the 2D student on a second thread beside the 3D one"),
    "threads": (0, _D.PARAMETER_INTEGER, "CPU threads of the model (torch.set_num_threads); 0: one per student thread "
                "when the students run in parallel, else PyTorch's default"),
    "height": (96, _D.PARAMETER_INTEGER, "processing height in pixels (multiple of 4)"),
    "width": (320, _D.PARAMETER_INTEGER, "processing width in pixels (multiple of 4)"),
    "sync_slop": (0.05, _D.PARAMETER_DOUBLE, "approximate-time pairing of image and cloud: largest stamp difference, s"),
    "sync_queue_size": (5, _D.PARAMETER_INTEGER, "approximate-time pairing: messages kept per input"),
    "fusion_agreement": (PredictorConfig.fusion_agreement, _D.PARAMETER_STRING,
                         "late fusion: iou (a 2D instance overlaps a 3D one by fusion_iou; the paper's), either (also "
                         "each 3D instance the 2D student attends to as foreground, fusion_foreground on average), "
                         "separate (both tests, every kept 3D instance its own object), foreground (the attention "
                         "test only) or auto (separate for slot instances, iou for hybrid ones)"),
    "fusion_foreground": (PredictorConfig.fusion_foreground, _D.PARAMETER_DOUBLE,
                          "late fusion by separate / either / foreground: the mean 2D foreground attention a 3D "
                          "instance needs"),
    "grid_depth_gate": (PredictorConfig.grid_depth_gate_m, _D.PARAMETER_DOUBLE,
                        "lidar / fused slot instances: grid cells whose LiDAR return lies this many metres from their "
                        "instance's median range go to the background (0: off)"),
    "part_voxel": (PredictorConfig.part_voxel_m, _D.PARAMETER_DOUBLE,
                   "lidar / fused slot instances: each keeps its main 3D part, its points grouped by voxels of this "
                   "many metres; pixels and points of its other parts go to the background (0: off)"),
    "part_road": (PredictorConfig.part_road, _D.PARAMETER_BOOL,
                  "with part_voxel: road returns in an instance's mask outside its main part's range span count "
                  "against it"),
    "fusion_iou": (0.1, _D.PARAMETER_DOUBLE, "late fusion: 2D-3D IoU above which both modalities agree on an object"),
    "fusion_mask": (PredictorConfig.fusion_mask, _D.PARAMETER_STRING,
                    "late fusion: an agreed object's pixels: lidar (its 3D partners'), union (both masks, the paper's) "
                    "or rgb (its 2D mask)"),
    "keep_single": (False, _D.PARAMETER_BOOL, "late fusion: also keep confident objects seen by one modality only"),
    "min_pixels": (20, _D.PARAMETER_INTEGER, "smallest instance, in pixels of the processing grid"),
    "fragments": ("largest", _D.PARAMETER_STRING,
                  "largest: a slot keeps only its largest connected component; keep: every pixel it wins (the paper's)"),
    "min_score": (-1.0, _D.PARAMETER_DOUBLE,
                  "smallest instance score (mean slot attention over its pixels); unsure instances are dropped; "
                  "negative: each student's own (named in its file, else 0.5)"),
    "fused_min_score_3d": (-1.0, _D.PARAMETER_DOUBLE,
                           "fused, slot instances: the 3D student's instance threshold in fused mode only (late fusion still asks the "
                           "2D student's agreement); negative: min_score's"),
    "rescue_iou": (PredictorConfig.rescue_iou, _D.PARAMETER_DOUBLE,
                   "lidar / fused slot instances: a 3D instance under its threshold but scoring rescue_min_score is "
                   "kept when one object-sized LiDAR cluster overlaps its points at this IoU (0: off)"),
    "rescue_min_score": (PredictorConfig.rescue_min_score, _D.PARAMETER_DOUBLE,
                         "with rescue_iou: the least score of such an instance"),
    "min_points": (5, _D.PARAMETER_INTEGER, "smallest 3D cluster, in LiDAR points"),
    "instances": ("slots", _D.PARAMETER_STRING,
                  "slots: the students' instances (the paper's); hybrid: LiDAR clusters the students call objects, "
                  "split and merged by their instances (needs the cloud in every mode); read at startup"),
    "box_source": (PredictorConfig.box_source, _D.PARAMETER_STRING,
                   "~/detections' boxes: around an instance's pixels (mask), the image rectangle of its 3D box (3d) or "
                   "of that box down to the ground plane (3d_ground); auto: 3d_ground for hybrid instances, mask for "
                   "slots"),
    "hybrid_objectness": (PredictorConfig.hybrid_objectness, _D.PARAMETER_DOUBLE,
                          "hybrid: agreement of a LiDAR cluster with the students' instances for it to be kept"),
    "hybrid_agreement": (PredictorConfig.hybrid_agreement, _D.PARAMETER_STRING,
                         "hybrid: iou (a cluster's best point IoU with one student instance) or share (of its points in any)"),
    "hybrid_fragments": ("keep", _D.PARAMETER_STRING,
                         "hybrid: fragments of the students' instances (keep: all their pixels; largest: largest component)"),
    "hybrid_ground_feet": (PredictorConfig.hybrid_ground_feet, _D.PARAMETER_BOOL,
                           "hybrid: an object's image mask reaches down to the ground plane (its points dropped onto it)"),
    "hybrid_far": (PredictorConfig.hybrid_far, _D.PARAMETER_BOOL,
                   "hybrid: student instances mostly beyond the clustering range keep their own mask"),
    "hybrid_extent": (PredictorConfig.hybrid_extent, _D.PARAMETER_STRING,
                      "hybrid: a cluster's sides for the size filters, along its own axes (oriented) or the sensor's (axes)"),
    "hybrid_split_voxel": (PredictorConfig.hybrid_split_voxel, _D.PARAMETER_DOUBLE,
                           "hybrid: a cluster too large for the size filters is clustered again at this distance, m "
                           "(0: dropped)"),
    "hybrid_hold": (PredictorConfig.hybrid_hold, _D.PARAMETER_DOUBLE,
                    "hybrid: a cluster on an object of the previous frame is kept from an agreement of "
                    "hybrid_objectness - hybrid_hold on (hysteresis); 0: off"),
    "hybrid_movable": (PredictorConfig.hybrid_movable, _D.PARAMETER_DOUBLE,
                       "hybrid: weight of the movers' shape (xmod_core.movable) in a cluster's objectness; 0: off"),
    "movable_model": (PredictorConfig.movable_model, _D.PARAMETER_STRING,
                      "hybrid_movable > 0: the movable model file (empty: the shipped one)"),
    "hybrid_min_score": (0.0, _D.PARAMETER_DOUBLE,
                         "hybrid: min_score of the students' instances (the clusters check them instead of their own score)"),
    "zoom_tiles": (PredictorConfig.zoom_tiles, _D.PARAMETER_INTEGER,
                   "tiles of the horizon band the students also see at twice the resolution, for far objects (0: off; "
                   "each tile costs one more student pass a frame); read at startup"),
    "zoom_min_score": (PredictorConfig.zoom_min_score, _D.PARAMETER_DOUBLE,
                       "zoom_tiles: smallest score of a tile's instance for it to join the frame's"),
    "zoom_checkpoint_rgb": (PredictorConfig.zoom_ckpt_2d, _D.PARAMETER_STRING,
                            "zoom_tiles: the tiles' own 2D student (empty: the frame's; fine: the shipped one with finer masks; "
                            "grid2; or a path); read at startup"),
    "zoom_checkpoint_lidar": (PredictorConfig.zoom_ckpt_3d, _D.PARAMETER_STRING,
                              "zoom_tiles: the tiles' own 3D student (empty: the frame's; fine: the shipped one with finer masks; "
                              "grid2 (the default one); stride4; or a path); read at startup"),
    "mirror": (PredictorConfig.mirror, _D.PARAMETER_BOOL,
               "the students also see each frame mirrored left-right; its new instances join (one more student pass "
               "a frame); read at startup"),
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
    "lifecycle": (False, _D.PARAMETER_BOOL,
                  "run as a managed (lifecycle) node: start unconfigured and wait for configure and activate on "
                  "~/change_state; read at startup"),
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


def predictor_config(p: dict, mode: str, ck2: str, ck3: str) -> PredictorConfig:
    """The Predictor's settings from the node's parameters `p` (a negative `min_score`: each
    student's own threshold, None) and the students' checkpoint paths."""
    return PredictorConfig(mode=mode, ckpt_2d=ck2, ckpt_3d=ck3, device=p["device"], height=p["height"],
                           width=p["width"], min_pixels=p["min_pixels"], fragments=p["fragments"],
                           min_score=p["min_score"] if p["min_score"] >= 0 else None, fusion_iou=p["fusion_iou"],
                           fused_min_score_3d=p["fused_min_score_3d"] if p["fused_min_score_3d"] >= 0 else None,
                           rescue_iou=p["rescue_iou"], rescue_min_score=p["rescue_min_score"],
                           fusion_agreement=p["fusion_agreement"], fusion_foreground=p["fusion_foreground"],
                           grid_depth_gate_m=p["grid_depth_gate"], part_voxel_m=p["part_voxel"], part_road=p["part_road"],
                           keep_single=p["keep_single"], fusion_mask=p["fusion_mask"], max_gap_s=p["max_gap"], min_points=p["min_points"],
                           state_horizon=p["state_horizon"], track_iou=p["track_iou"], amp=p["amp"],
                           cuda_graphs=p["cuda_graphs"], parallel_students=p["parallel_students"],
                           instances=p["instances"], hybrid_objectness=p["hybrid_objectness"],
                           hybrid_agreement=p["hybrid_agreement"], hybrid_min_score=p["hybrid_min_score"],
                           hybrid_fragments=p["hybrid_fragments"], hybrid_ground_feet=p["hybrid_ground_feet"],
                           hybrid_far=p["hybrid_far"],
                           hybrid_extent=p["hybrid_extent"], hybrid_hold=p["hybrid_hold"],
                           hybrid_split_voxel=p["hybrid_split_voxel"],
                           hybrid_movable=p["hybrid_movable"], movable_model=p["movable_model"],
                           zoom_tiles=p["zoom_tiles"], zoom_min_score=p["zoom_min_score"],
                           zoom_ckpt_2d=p["zoom_checkpoint_rgb"], zoom_ckpt_3d=p["zoom_checkpoint_lidar"],
                           mirror=p["mirror"], box_source=p["box_source"])


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


class XmodPipeline:
    """The work of xmod_node, shared by :class:`XmodNode` (plain) and :class:`XmodLifecycleNode`
    (managed): parameters, calibration, students, input subscriptions, the worker thread,
    conversion, outputs and ~/status. Mixed in before an rclpy node class; the node's
    ``__init__`` calls :meth:`_setup`.

    The steps, each undoing the one before it:
    ``configure`` (calibration + students) / ``cleanup`` (frees them),
    ``activate`` (subscribes, starts the worker) / ``deactivate`` (unsubscribes, stops the worker,
    drops queued frames). Output publishers are made by ``_create_outputs`` and removed by
    ``_destroy_outputs`` (add a new output in both; ``_output_publisher`` makes it a lifecycle
    publisher in the managed node).
    """

    def _setup(self) -> None:
        """Declare the parameters, read them (not yet checked), set up counters and ~/status."""
        for name, (default, ptype, text) in PARAMETERS.items():
            desc = ParameterDescriptor(description=text, type=ptype)
            if isinstance(default, list) and not default:   # an empty list has no type: declare by type
                self.declare_parameter(name, Parameter.Type.DOUBLE_ARRAY, desc)
            else:
                self.declare_parameter(name, default, desc)
        self.p = self._parameter_values()
        self.mode = self.p["mode"]
        self.uses_image = self.uses_cloud = False
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
        # one pending frame, consumed by the worker; the worker ends when its stop event is set
        self._cond = threading.Condition()
        self._pending: Frame | None = None
        self._worker: threading.Thread | None = None
        self._worker_stop = threading.Event()
        self._input_subs: list = []
        self._forget_outputs()
        self.pub_status = self.create_publisher(DiagnosticArray, "~/status", 10)
        self.status_timer = self.create_timer(max(0.05, self.p["status_period"]), self.publish_status)
        self._info_sub = None
        self._tf = None

    def _parameter_values(self) -> dict:
        p = {}
        for name, (default, _, _) in PARAMETERS.items():
            try:
                value = self.get_parameter(name).value
            except ParameterUninitializedException:
                value = None
            p[name] = (list(value) if value is not None else []) if isinstance(default, list) else value
        return p

    def _read_parameters(self) -> None:
        """Current parameter values -> self.p, mode and the inputs used; StartupError if invalid."""
        p = self._parameter_values()
        if p["mode"] not in MODES:
            raise StartupError(f"parameter mode must be one of {', '.join(MODES)}, got {p['mode']!r}")
        if p["instances"] not in INSTANCES:
            raise StartupError(f"parameter instances must be one of {', '.join(INSTANCES)}, got {p['instances']!r}")
        for name in ("fragments", "hybrid_fragments"):
            if p[name] not in FRAGMENTS:
                raise StartupError(f"parameter {name} must be one of {', '.join(FRAGMENTS)}, got {p[name]!r}")
        if p["fusion_mask"] not in MASKS:
            raise StartupError(f"parameter fusion_mask must be one of {', '.join(MASKS)}, got {p['fusion_mask']!r}")
        if p["fusion_agreement"] not in ("auto", *AGREEMENTS):
            raise StartupError(f"parameter fusion_agreement must be one of auto, {', '.join(AGREEMENTS)}, "
                               f"got {p['fusion_agreement']!r}")
        if p["hybrid_extent"] not in EXTENTS:
            raise StartupError(f"parameter hybrid_extent must be one of {', '.join(EXTENTS)}, got {p['hybrid_extent']!r}")
        self.p, self.mode = p, p["mode"]
        self.uses_image, self.uses_cloud = self.mode in ("rgb", "fused"), self.mode in ("lidar", "fused")
        self.uses_cloud |= self.p["instances"] == "hybrid"          # hybrid instances are LiDAR clusters

    # ------------------------------------------------------------------ outputs (publishers)
    def _output_publisher(self, msg_type, topic: str, qos):
        return self.create_publisher(msg_type, topic, qos)

    def _create_outputs(self) -> None:
        p = self.p
        out_qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE if p["output_reliable"] else ReliabilityPolicy.BEST_EFFORT)
        self.pub_instances = self._output_publisher(Image, "~/instances", out_qos)
        self.pub_overlay = self._output_publisher(Image, "~/overlay", out_qos)
        self.pub_clusters = self._output_publisher(PointCloud2, "~/clusters", out_qos) if self.uses_cloud else None
        self.pub_markers = self._output_publisher(MarkerArray, "~/markers", out_qos) if self.uses_cloud else None
        self.pub_det2d = self.pub_det3d = None
        if detections.available():
            from vision_msgs.msg import Detection2DArray, Detection3DArray
            self.pub_det2d = self._output_publisher(Detection2DArray, "~/detections", out_qos)
            self.pub_det3d = self._output_publisher(Detection3DArray, "~/detections_3d", out_qos) if self.uses_cloud else None
        elif not getattr(self, "_said_no_vision_msgs", False):
            self._said_no_vision_msgs = True
            self.get_logger().info("vision_msgs is not installed: ~/detections and ~/detections_3d are off "
                                   "(make setup builds it from ../shared/third_party; a full ROS 2 install has it)")
        self._outputs = [x for x in (self.pub_instances, self.pub_overlay, self.pub_clusters, self.pub_markers,
                                     self.pub_det2d, self.pub_det3d) if x]

    def _forget_outputs(self) -> None:
        self._outputs = []
        self.pub_instances = self.pub_overlay = self.pub_clusters = self.pub_markers = None
        self.pub_det2d = self.pub_det3d = None

    def _destroy_outputs(self) -> None:
        for pub in self._outputs:
            self.destroy_publisher(pub)
        self._forget_outputs()

    # ------------------------------------------------------------------ steps
    def configure(self, spin=None, wait_node=None) -> None:
        """Get the calibration (KITTI folder, or camera_info + extrinsics, spinning ``spin`` while
        waiting; the subscriptions for it on ``wait_node``, default this node) and load the
        students. StartupError says what is missing."""
        p = self.p
        if p["calibration"]:
            try:
                self.calib = load_calib(p["calibration"], p["camera"])
            except (KittiFormatError, OSError) as e:
                raise StartupError(f"calibration {p['calibration']!r} cannot be loaded: {e}") from None
            self.calib_source = f"KITTI calibration {p['calibration']} (camera {p['camera']})"
        else:
            self._wait_for_camera_info(spin, wait_node)
        self._load_predictor()

    def activate(self) -> None:
        """Subscribe to the inputs and start the worker (a new sequence: temporal state reset)."""
        if self._worker is not None:          # a worker still finishing its frame after deactivate
            self._worker.join(timeout=30.0)
            if self._worker.is_alive():
                raise RuntimeError("the previous inference has not ended within 30 s")
        self.predictor.reset()
        self._last_stamp = None
        self._worker_stop = threading.Event()
        self._worker = threading.Thread(target=self._work, args=(self._worker_stop,), name="xmod_inference", daemon=True)
        self._worker.start()
        self._subscribe()

    def deactivate(self) -> int:
        """Unsubscribe (the synchronizer's queued messages go with it), stop the worker after the
        frame it is on, drop the pending frame. Returns how many frames were dropped."""
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs = []
        sync, self.sync = self.sync, None
        dropped = 0
        if sync is not None and hasattr(sync, "queues"):
            dropped += int(sum(len(q) for q in list(sync.queues)))
        self._stop_worker()
        with self._cond:
            dropped += int(self._pending is not None)
            self._pending = None
        return dropped

    def cleanup(self) -> None:
        """Free the students and forget the calibration (configure reads them again)."""
        self.predictor = None
        self.calib, self.calib_source, self.camera_info = None, "", None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _stop_worker(self, timeout: float = 10.0) -> None:
        self._worker_stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=timeout)
            if not self._worker.is_alive():
                self._worker = None

    def _describe(self) -> str:
        p = self.p
        return (f"{self.mode} mode on {self.predictor.device}; calibration: {self.calib_source} "
                f"({self.calib.width}x{self.calib.height}); processing {p['width']}x{p['height']}; inputs: "
                + ", ".join(t for t, use in ((p["image_topic"], self.uses_image), (p["cloud_topic"], self.uses_cloud)) if use)
                + f"; students: {', '.join(self.student_files)}; sync: {self.sync_kind}; conversion: {convert.backends()}")

    def _wait_for_camera_info(self, spin, node=None) -> None:
        """camera_info (+ TF or lidar_to_camera) -> self.calib. The subscriptions are made on
        ``node`` (default: this one), whose executor ``spin`` spins."""
        p, node = self.p, node or self
        timeout = float(p["calibration_timeout"])

        def on_info(msg):
            if self.camera_info is None:
                self.camera_info = msg

        self._info_sub = node.create_subscription(CameraInfo, p["camera_info_topic"], on_info, qos_profile_sensor_data)
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
                    self._tf = tf2_ros.TransformListener(self._tf_buffer, node)
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
            probe = node.create_subscription(PointCloud2, p["cloud_topic"], on_cloud, qos_profile_sensor_data)
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
            node.destroy_subscription(probe)
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
        node.destroy_subscription(self._info_sub)
        self._info_sub = None

    def _load_predictor(self) -> None:
        p = self.p
        ck2, ck3 = student_path(p["checkpoint_rgb"], "rgb"), student_path(p["checkpoint_lidar"], "lidar")
        self.student_files = [Path(ck).name for use, ck in ((self.uses_image, ck2), (self.mode != "rgb", ck3)) if use]
        for use, path, name in ((self.uses_image, ck2, "checkpoint_rgb"), (self.mode != "rgb", ck3, "checkpoint_lidar")):
            if use and not Path(path).is_file():
                raise StartupError(f"{name}: checkpoint {path} not found (train one and export it, or set {name}:=PATH or :=grid2)")
        cfg = predictor_config(p, self.mode, ck2, ck3)
        try:
            self.predictor = Predictor(cfg, self.calib)
            import torch
            torch.set_num_threads(self.predictor.cpu_threads(int(p["threads"])))
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
        if self.uses_image and self.uses_cloud:       # fused, or rgb with hybrid instances: pairs
            self.sync, self.sync_kind = make_synchronizer(
                self, [(Image, p["image_topic"]), (PointCloud2, p["cloud_topic"])], p["sync_queue_size"],
                p["sync_slop"], qos, lambda img, cloud: self.enqueue(img, cloud))
            self._input_subs = list(getattr(self.sync, "subscriptions", None)
                                    or [s.sub for s in getattr(self.sync, "_xmod_subscribers", [])])
        elif self.uses_image:
            self._input_subs = [self.create_subscription(Image, p["image_topic"], lambda m: self.enqueue(m, None), qos)]
        else:
            self._input_subs = [self.create_subscription(PointCloud2, p["cloud_topic"], lambda m: self.enqueue(None, m), qos)]

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

    def _work(self, stop: threading.Event) -> None:
        while True:
            with self._cond:
                while self._pending is None and not stop.is_set():
                    self._cond.wait(0.5)
                if stop.is_set():
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
        if self.pub_det2d is not None and self.pub_det2d.get_subscription_count():
            self.pub_det2d.publish(detections.detections_2d(res.labels, res.scores, cam_header, (res.box_ids, res.boxes)))
        if frame.cloud is None or res.point_labels is None:
            return
        lidar_header = Header(stamp=frame.cloud.header.stamp, frame_id=lidar_frame)
        if self.pub_clusters.get_subscription_count():
            keep = slice(None) if self.p["clusters_background"] else res.point_labels > 0
            self.pub_clusters.publish(convert.xyzi_to_cloud(pts[keep], lidar_header,
                                                            {"instance": res.point_labels[keep].astype(np.uint16)}))
        if self.pub_markers.get_subscription_count():
            self.pub_markers.publish(self.markers(res.objects, lidar_header))
        if self.pub_det3d is not None and self.pub_det3d.get_subscription_count():
            self.pub_det3d.publish(detections.detections_3d(res.objects, lidar_header))

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
        predictor, sync = self.predictor, self.sync
        out = {"mode": self.mode, "device": str(predictor.device) if predictor else "",
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
        if sync is not None and hasattr(sync, "dropped"):
            out["sync_unpaired"] = int(sum(sync.dropped))
        if sync is not None and hasattr(sync, "queues"):
            out["sync_queued"] = int(sum(len(q) for q in list(sync.queues)))
        out["sync"] = self.sync_kind
        state = self.lifecycle_state()
        if state is not None:
            out["lifecycle_state"] = state
        return out

    def lifecycle_state(self) -> str | None:
        """The managed node's state label (unconfigured, inactive, active, ...); None for the plain node."""
        return None

    def publish_status(self) -> None:
        s = self.status()
        level, problems = DiagnosticStatus.OK, []
        new_bad = s["bad_input"] - self._last_status_counts["bad_input"]
        new_drop = s["frames_dropped"] - self._last_status_counts["frames_dropped"]
        state = s.get("lifecycle_state")
        if state is not None and state != "active":
            problems = [state]                # a managed node not (yet) active: not a problem
        elif self.predictor is None:
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
        """Stop the worker (the process is ending)."""
        self._stop_worker(timeout=5.0)


class XmodNode(XmodPipeline, Node):
    """The plain node (the default): checks its parameters when built, and ``start`` configures
    and activates it at once; a failure is a StartupError (main exits with status 2)."""

    def __init__(self, **kwargs):
        Node.__init__(self, NODE_NAME, **kwargs)
        self._setup()
        self._read_parameters()
        self._create_outputs()

    def start(self, spin=None) -> None:
        """Get the calibration (spinning ``spin`` while waiting for camera_info), load the models,
        subscribe, start the worker. StartupError says what is missing."""
        self.configure(spin)
        self.activate()
        self.get_logger().info(self._describe())


_FAILURE, _ERROR = TransitionCallbackReturn.FAILURE, TransitionCallbackReturn.ERROR


def _transition(callback):
    """A transition callback that raises is logged with its traceback and returns ERROR (rclpy
    would turn it into ERROR silently); on_error then takes the node back to unconfigured."""
    def wrapped(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            return callback(self, state)
        except ExternalShutdownException:     # SIGINT/SIGTERM during configure's camera_info wait
            return _ERROR
        except Exception as e:  # noqa: BLE001
            self.get_logger().error(f"{callback.__name__} from {state.label} failed: {type(e).__name__}: {e}\n"
                                    + traceback.format_exc())
            return _ERROR
    wrapped.__name__ = wrapped.__qualname__ = callback.__name__
    wrapped.__doc__ = callback.__doc__
    return wrapped


class XmodLifecycleNode(XmodPipeline, LifecycleNode):
    """The managed node (``lifecycle:=true``): starts unconfigured; its transitions run the
    shared steps. Output publishers are lifecycle publishers (they publish only while active),
    made on configure and removed on cleanup; ~/status always publishes, with the state.
    Transitions run in the executor's thread (as every callback of the node); a configure that
    waits for camera_info does so on a short-lived helper node spun by its own executor."""

    def __init__(self, **kwargs):
        LifecycleNode.__init__(self, NODE_NAME, **kwargs)
        self._setup()
        self.finalized = False                 # after the shutdown transition: main exits

    def lifecycle_state(self) -> str:
        return self._state_machine.current_state[1]

    def _output_publisher(self, msg_type, topic: str, qos):
        return self.create_lifecycle_publisher(msg_type, topic, qos)

    def _destroy_outputs(self) -> None:
        for pub in self._outputs:
            self.destroy_lifecycle_publisher(pub)
        self._forget_outputs()

    def _unconfigure(self) -> None:
        self._stop_worker()
        self._destroy_outputs()
        self.cleanup()

    def _configure(self) -> None:
        if self.p["calibration"]:
            self.configure()
            return
        # camera_info (and TF) arrive while this transition runs in the node's executor: they are
        # received by a helper node in the same context, spun by its own executor (the node's
        # executor cannot be spun from one of its callbacks)
        helper = rclpy.create_node(f"{self.get_name()}_calibration", namespace=self.get_namespace(),
                                   context=self.context, use_global_arguments=False,
                                   start_parameter_services=False, enable_rosout=False)
        executor = SingleThreadedExecutor(context=self.context)
        executor.add_node(helper)
        try:
            self.configure(spin=lambda t: executor.spin_once(timeout_sec=t), wait_node=helper)
        finally:
            executor.remove_node(helper)
            executor.shutdown()
            helper.destroy_node()             # with it the camera_info subscription and the TF listener
            self._info_sub = self._tf = None

    @_transition
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._read_parameters()            # parameters set while unconfigured take effect here
            self._create_outputs()
            self._configure()
        except StartupError as e:
            self._unconfigure()
            self.get_logger().error(f"cannot configure: {e}")
            return _FAILURE
        self.get_logger().info(f"configured: {self.mode} mode on {self.predictor.device}; calibration: "
                               f"{self.calib_source} ({self.calib.width}x{self.calib.height})")
        return super().on_configure(state)

    @_transition
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        ret = super().on_activate(state)       # enables the lifecycle publishers
        self.activate()
        self.get_logger().info(f"active: {self._describe()}")
        return ret

    @_transition
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        dropped = self.deactivate()
        self.get_logger().info(f"inactive: inputs unsubscribed, {dropped} queued frame(s) dropped")
        return super().on_deactivate(state)

    @_transition
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unconfigure()
        self.get_logger().info("unconfigured: models freed")
        return super().on_cleanup(state)

    @_transition
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        if state.label == "active":
            self.deactivate()
        self._unconfigure()
        self.finalized = True
        self.get_logger().info(f"shut down (from {state.label})")
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # a transition raised: back to unconfigured with nothing running
        self.get_logger().error(f"a transition from {state.label} failed; back to unconfigured")
        try:
            self.deactivate()
            self._unconfigure()
        except Exception as e:  # noqa: BLE001 - FAILURE: finalized
            self.get_logger().fatal(f"cannot recover: {type(e).__name__}: {e}")
            return _FAILURE
        return super().on_error(state)


def lifecycle_requested(context=None) -> bool:
    """The ``lifecycle`` parameter as given at startup (``-p lifecycle:=true`` or a params file).
    It decides the node's class, so it is read before the node exists, by a short-lived node of
    the same name (its overrides resolve the same way); a value of the wrong type is a
    ParameterException (main: exit status 2). The probe offers no service at all: destroying a node
    a moment after creating it, with its ~/get_type_description service up, once ended in SIGSEGV
    inside rclpy (12 nodes starting at once on 2 cores), and the exit status was lost."""
    default, ptype, text = PARAMETERS["lifecycle"]
    probe = Node(NODE_NAME, context=context, start_parameter_services=False, enable_rosout=False,
                 parameter_overrides=[Parameter("start_type_description_service", Parameter.Type.BOOL, False)])
    try:
        return bool(probe.declare_parameter("lifecycle", default, ParameterDescriptor(description=text, type=ptype)).value)
    finally:
        probe.destroy_node()


def _spin(executor, node, done) -> None:
    while rclpy.ok() and not done():
        try:
            executor.spin_once(timeout_sec=0.5)
        except RuntimeError as e:
            # rclpy occasionally fails to take one message (seen as a pybind11 conversion
            # error); that message is lost, the node goes on.
            if not rclpy.ok():
                break
            node.get_logger().warning(f"a message could not be taken and is dropped: {e}",
                                      throttle_duration_sec=5.0)


def main(args=None) -> int:
    use_large_message_profile()
    rclpy.init(args=args)
    node, rc = None, 0
    try:
        if lifecycle_requested():
            node = XmodLifecycleNode()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            node.get_logger().info(f"managed node, unconfigured: configure and activate it through "
                                   f"{node.get_fully_qualified_name()}/change_state")
            _spin(executor, node, done=lambda: node.finalized)
            # the shutdown transition's response left in the spin that set `finalized`
        else:
            node = XmodNode()
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            node.start(spin=lambda t: executor.spin_once(timeout_sec=t))
            _spin(executor, node, done=lambda: False)
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
    if rc:
        # A refused start has nothing to save: leave now, before the interpreter's teardown of the
        # middleware's threads (under load, with several nodes refusing at once, that teardown once
        # ended in SIGSEGV after the message was out, and the exit status 2 was lost).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


if __name__ == "__main__":
    sys.exit(main())
