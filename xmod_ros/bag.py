"""ROS 2 bags without ``ros2 bag``: convert a KITTI raw drive into a bag and a bag back into a KITTI
raw drive, play a bag through rclpy with its original timing, record topics into a bag. Bags are
written and read with ``rosbags`` (sqlite3 by default, mcap as an option) and are ordinary rosbag2
bags (``ros2 bag info`` reads them).

    python -m xmod_ros.bag from-kitti DRIVE_DIR OUT [--storage sqlite3|mcap] [--frames N]
    python -m xmod_ros.bag to-kitti BAG OUT [--image-topic T] [--cloud-topic T] [--camera-info-topic T]
                                            [--lidar-to-camera 16 numbers] [--slop S]
    python -m xmod_ros.bag play BAG [--rate R] [--loop] [--restamp] [--wait-subscribers S]
    python -m xmod_ros.bag record OUT [--topics T ...] [--duration S] [--idle-stop S]
    python -m xmod_ros.bag info BAG

``from-kitti`` writes the topics and frames of the common KITTI-to-rosbag converters:
``/kitti/camera_color_left/image_raw`` (bgr8, frame ``camera_color_left``),
``/kitti/camera_color_left/camera_info`` (P = P_rect_0X, R = R_rect_00, so that
P @ [R|0] @ T_velo_to_cam is the KITTI projection), ``/kitti/velo/pointcloud`` (x, y, z,
intensity float32, frame ``velo_link``) and ``/tf_static`` (``velo_link`` -> ``camera_color_left``,
the camera's pose in the LiDAR frame, i.e. inv(T_velo_to_cam)). Stamps come from the drive's
timestamps.txt files, or 10 Hz from the drive's date when there are none.

``to-kitti`` reads those topics (by default) and writes OUT/DATE/calib_cam_to_cam.txt,
calib_velo_to_cam.txt and OUT/DATE/DATE_drive_0000_sync/{image_02,velodyne_points}/ (frames
and exact timestamps), images and clouds paired by header stamp; see :func:`to_kitti`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import json
import signal
import struct
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_TOPICS = {"image": "/kitti/camera_color_left/image_raw", "camera_info": "/kitti/camera_color_left/camera_info",
                  "cloud": "/kitti/velo/pointcloud", "tf_static": "/tf_static"}
CAMERA_FRAME, LIDAR_FRAME = "camera_color_left", "velo_link"
NODE_OUTPUTS = ("/xmod_node/instances", "/xmod_node/overlay", "/xmod_node/clusters", "/xmod_node/markers",
                "/xmod_node/detections", "/xmod_node/detections_3d",
                "/xmod_node/status")


def _typestore():
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores.ROS2_KILTED)


def _storage(name: str):
    from rosbags.rosbag2 import StoragePlugin
    try:
        return {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[name]
    except KeyError:
        raise ValueError(f"storage must be sqlite3 or mcap, got {name!r}") from None


def _qos(transient_local: bool = False, depth: int = 10):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, depth, QosReliability.RELIABLE,
               QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


def register_installed_type(ts, msgtype: str) -> None:
    """Teach the rosbags typestore ``ts`` a message type it does not ship (e.g. vision_msgs), from
    the .msg files of the installed package: every message of that package at once, so types that
    refer to each other register together. ImportError when the package is not installed."""
    if msgtype in ts.types:
        return
    from rosbags.typesys import get_types_from_msg
    pkg = msgtype.split("/")[0]
    mod = importlib.import_module(pkg)
    # .../lib/pythonX.Y/site-packages/PKG/__init__.py -> the install prefix -> share/PKG/msg
    share = Path(mod.__file__).resolve().parents[4] / "share" / pkg / "msg"
    files = sorted(share.glob("*.msg"))
    if not files:
        raise ImportError(f"{msgtype}: no .msg files in {share}")
    types = {}
    for f in files:
        types |= get_types_from_msg(f.read_text(), f"{pkg}/msg/{f.stem}")
    ts.register(types)


def msg_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class; ImportError when not installed."""
    pkg, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _ns_to_time(ns: int):
    from builtin_interfaces.msg import Time
    return Time(sec=int(ns // 10**9), nanosec=int(ns % 10**9))


# --------------------------------------------------------------------------- KITTI -> bag
def drive_stamps_ns(drive) -> tuple[np.ndarray, np.ndarray, str]:
    """(camera stamps, LiDAR stamps, source) in ns for a KittiRawDrive: each sensor's
    timestamps.txt, else the other's, else 10 Hz from midnight (UTC) of the drive's date."""
    from xmod_core import kitti
    files = {"camera": drive.image_dir.parent / "timestamps.txt", "lidar": drive.velo_dir.parent / "timestamps.txt"}
    got = {}
    for k, f in files.items():
        if f.is_file():
            ns = kitti.read_timestamps_ns(f)
            if len(ns) != len(drive):
                raise kitti.KittiFormatError(f"{f}: {len(ns)} timestamps for {len(drive)} frames")
            got[k] = ns
    if got:
        cam = got.get("camera", got.get("lidar"))
        return cam, got.get("lidar", cam), "timestamps.txt"
    try:
        day = _dt.datetime.strptime(drive.drive_dir.name[:10], "%Y_%m_%d").replace(tzinfo=_dt.timezone.utc)
        base = int(day.timestamp()) * 10**9
    except ValueError:
        base = 10**9
    ns = base + np.arange(len(drive), dtype=np.int64) * 10**8
    return ns, ns.copy(), "10 Hz (no timestamps.txt)"


def camera_info_msg(calib, stamp_ns: int, frame_id: str = CAMERA_FRAME):
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header
    P = np.asarray(calib.P_rect, np.float64)
    return CameraInfo(header=Header(stamp=_ns_to_time(stamp_ns), frame_id=frame_id), height=calib.height,
                      width=calib.width, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=P[:, :3].reshape(-1).tolist(), r=np.asarray(calib.R_rect).reshape(-1).tolist(),
                      p=P.reshape(-1).tolist())


def from_kitti(drive_dir, out, storage: str = "sqlite3", frames: int | None = None, camera: int = 2,
               encoding: str = "bgr8", progress: bool = True) -> Path:
    """Write a KITTI raw drive as a ROS 2 bag; returns the bag path."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from std_msgs.msg import Header

    from xmod_core.kitti import KittiRawDrive

    from . import convert
    from .tf import invert, matrix_to_xyz_quat
    drive = KittiRawDrive(drive_dir, camera)
    n = len(drive) if frames is None else min(int(frames), len(drive))
    cam_ns, velo_ns, source = drive_stamps_ns(drive)
    ts = _typestore()
    out = Path(out)
    if encoding not in ("bgr8", "rgb8"):
        raise ValueError(f"encoding must be bgr8 or rgb8, got {encoding!r}")
    t0 = time.perf_counter()
    with Writer(out, version=Writer.VERSION_LATEST, storage_plugin=_storage(storage)) as w:
        c_tf = w.add_connection(DEFAULT_TOPICS["tf_static"], "tf2_msgs/msg/TFMessage", typestore=ts,
                                offered_qos_profiles=[_qos(transient_local=True, depth=1)])
        c_img = c_info = c_cloud = None
        if drive.has_camera:
            c_img = w.add_connection(DEFAULT_TOPICS["image"], "sensor_msgs/msg/Image", typestore=ts,
                                     offered_qos_profiles=[_qos()])
            c_info = w.add_connection(DEFAULT_TOPICS["camera_info"], "sensor_msgs/msg/CameraInfo", typestore=ts,
                                      offered_qos_profiles=[_qos()])
        if drive.has_lidar:
            c_cloud = w.add_connection(DEFAULT_TOPICS["cloud"], "sensor_msgs/msg/PointCloud2", typestore=ts,
                                       offered_qos_profiles=[_qos()])
        # static TF: the camera's pose in the LiDAR frame
        first = int(min(cam_ns[0], velo_ns[0])) if n else 0
        (x, y, z), (qx, qy, qz, qw) = matrix_to_xyz_quat(invert(drive.calib.T_velo_to_cam))
        T = ts.types
        tfm = T["tf2_msgs/msg/TFMessage"](transforms=[T["geometry_msgs/msg/TransformStamped"](
            header=T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=first // 10**9, nanosec=first % 10**9),
                                            frame_id=LIDAR_FRAME),
            child_frame_id=CAMERA_FRAME,
            transform=T["geometry_msgs/msg/Transform"](translation=T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z),
                                                       rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)))])
        w.write(c_tf, first, bytes(ts.serialize_cdr(tfm, "tf2_msgs/msg/TFMessage")))
        for i in range(n):
            if c_img is not None:
                rgb = drive.image(i)
                hdr = Header(stamp=_ns_to_time(int(cam_ns[i])), frame_id=CAMERA_FRAME)
                img = convert.numpy_to_image(rgb[..., ::-1] if encoding == "bgr8" else rgb, encoding, hdr)
                w.write(c_img, int(cam_ns[i]), serialize_message(img))
                w.write(c_info, int(cam_ns[i]), serialize_message(camera_info_msg(drive.calib, int(cam_ns[i]))))
            if c_cloud is not None:
                hdr = Header(stamp=_ns_to_time(int(velo_ns[i])), frame_id=LIDAR_FRAME)
                w.write(c_cloud, int(velo_ns[i]), serialize_message(convert.xyzi_to_cloud(drive.scan(i), hdr)))
            if progress and (i + 1) % 10 == 0:
                print(f"  {i + 1}/{n} frames", file=sys.stderr)
    if progress:
        print(f"wrote {out}: {n} frames of {drive.drive_dir.name} (stamps: {source}) in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


# --------------------------------------------------------------------------- reading
def bag_info(bag) -> dict:
    from rosbags.rosbag2 import Reader
    with Reader(bag) as r:
        return {"path": str(bag), "duration_s": r.duration * 1e-9, "start_ns": r.start_time, "messages": r.message_count,
                "topics": {c.topic: {"type": c.msgtype, "count": c.msgcount} for c in r.connections}}


def read_messages(bag, topics=None, deserialize: bool = True):
    """Yield (topic, log time ns, message) in log-time order; messages are rclpy objects when the
    type imports, else rosbags typestore objects (or raw bytes when deserialize is False)."""
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader
    ts = _typestore()
    with Reader(bag) as r:
        conns = [c for c in r.connections if topics is None or c.topic in topics]
        classes = {}
        for c in conns:
            try:
                classes[c.id] = msg_class(c.msgtype)
            except (ImportError, AttributeError):
                classes[c.id] = None
        for c, t, raw in r.messages(connections=conns):
            if not deserialize:
                yield c.topic, t, raw
            elif classes[c.id] is not None:
                yield c.topic, t, deserialize_message(bytes(raw), classes[c.id])
            else:
                yield c.topic, t, ts.deserialize_cdr(raw, c.msgtype)


def static_transforms(bag):
    """A StaticTransformBuffer filled from the bag's /tf_static."""
    from .tf import StaticTransformBuffer
    buf = StaticTransformBuffer()
    for _, _, msg in read_messages(bag, {DEFAULT_TOPICS["tf_static"]}):
        buf.add_message(msg)
    return buf


# --------------------------------------------------------------------------- bag -> KITTI
class ToKittiError(ValueError):
    """A bag that to-kitti cannot convert; the text names the problem."""


KITTI_IMAGE_ENCODINGS = ("bgr8", "rgb8", "mono8")


def _header_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def pair_stamps(a_ns, b_ns, slop_ns: int) -> list[tuple[int, int]]:
    """Index pairs (i, j) with |a[i] - b[j]| <= slop_ns, each index in at most one pair, the
    closest pairs taken first; sorted by a's stamp."""
    a, b = np.asarray(a_ns, np.int64), np.asarray(b_ns, np.int64)
    order = np.argsort(b, kind="stable")
    bs = b[order]
    cands = []
    for i, t in enumerate(a):
        lo, hi = np.searchsorted(bs, t - slop_ns, "left"), np.searchsorted(bs, t + slop_ns, "right")
        cands += [(abs(int(bs[k]) - int(t)), i, int(order[k])) for k in range(lo, hi)]
    used_a, used_b, pairs = set(), set(), []
    for _, i, j in sorted(cands):
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j), pairs.append((i, j))
    return sorted(pairs, key=lambda p: (int(a[p[0]]), p[0]))


def _check_cloud_fields(msg, topic: str) -> None:
    """x, y, z (and the intensity convert.cloud_to_xyzi would read, if any) must be float32."""
    from . import convert
    try:
        table = convert.cloud_field_table(msg)
    except convert.ConversionError as e:
        raise ToKittiError(f"{topic}: {e}") from None
    inten = next((k for k in convert.INTENSITY_NAMES if k in table and table[k][2] == 1), None)
    for k in ("x", "y", "z") + ((inten,) if inten else ()):
        if k not in table:
            raise ToKittiError(f"{topic}: point cloud has no field {k!r} (fields: {', '.join(table) or 'none'})")
        if table[k][1].newbyteorder("=") != np.float32 or table[k][2] != 1:
            raise ToKittiError(f"{topic}: point field {k!r} is {table[k][2]} x {table[k][1].newbyteorder('=')}; "
                               "KITTI scans need x, y, z(, intensity) as single float32 values")


def to_kitti(bag, out, image_topic: str = DEFAULT_TOPICS["image"], cloud_topic: str = DEFAULT_TOPICS["cloud"],
             camera_info_topic: str = DEFAULT_TOPICS["camera_info"], lidar_to_camera=None, slop: float = 0.05,
             progress: bool = True) -> dict:
    """Write a bag's camera images and LiDAR clouds as a KITTI raw drive (camera 2):
    OUT/DATE/calib_{cam_to_cam,velo_to_cam}.txt and OUT/DATE/DATE_drive_0000_sync/{image_02,
    velodyne_points}/{data/NNNNNNNNNN.png|.bin, timestamps.txt}, DATE (UTC) from the first frame.

    Images and clouds are paired by header stamp (nearest within ``slop`` s, one partner each);
    unpaired ones are dropped and counted. Timestamps are the exact header stamps (ns). The
    calibration: P_rect_02 = camera_info P, R_rect_00 = camera_info R (identity when all zero),
    T_velo_to_cam = ``lidar_to_camera`` (4x4 or 16 numbers row-major, mapping LiDAR points into
    the camera frame) when given, else the /tf_static transform from the clouds' frame to the
    images' frame. Images must be bgr8, rgb8 or mono8 (written as 3 channels); clouds need x, y,
    z(, intensity) float32 fields (others are ignored; no intensity field gives 0). The bag is
    read with rosbags only. Everything is checked before frames are written, which go to a
    temporary folder renamed at the end: an error leaves no partial drive. Raises ToKittiError
    (a ValueError). Returns a summary dict (paths, frame and drop counts)."""
    import shutil

    import cv2
    from rosbags.rosbag2 import Reader

    from xmod_core import kitti

    from . import convert
    from .tf import StaticTransformBuffer, TransformLookupError
    ts = _typestore()
    out, slop_ns = Path(out), int(round(float(slop) * 1e9))
    if slop_ns < 0:
        raise ToKittiError(f"slop must be >= 0 s, got {slop}")
    T_given = None
    if lidar_to_camera is not None:
        T_given = np.asarray(lidar_to_camera, np.float64)
        if T_given.size != 16 or not np.isfinite(T_given).all():
            raise ToKittiError(f"--lidar-to-camera needs 16 finite numbers (a row-major 4x4), got {T_given.size}")
        T_given = T_given.reshape(4, 4)
        if not np.allclose(T_given[3], [0, 0, 0, 1]):
            raise ToKittiError(f"--lidar-to-camera: last row must be 0 0 0 1, got {T_given[3].tolist()}")
    t0 = time.perf_counter()
    with Reader(bag) as r:
        types = {c.topic: c.msgtype for c in r.connections}
        present = ", ".join(sorted(types)) or "none"
        for what, topic, want in (("image", image_topic, "sensor_msgs/msg/Image"),
                                  ("cloud", cloud_topic, "sensor_msgs/msg/PointCloud2"),
                                  ("camera_info", camera_info_topic, "sensor_msgs/msg/CameraInfo")):
            if topic not in types:
                raise ToKittiError(f"{bag}: no {what} topic {topic} (topics: {present})")
            if types[topic] != want:
                raise ToKittiError(f"{bag}: {topic} is {types[topic]}, expected {want}")
        # pass 1: stamps, checks, calibration (no file written yet)
        stamps = {image_topic: [], cloud_topic: []}
        info, first, tfbuf = None, {}, StaticTransformBuffer()
        topics = (image_topic, cloud_topic, camera_info_topic, DEFAULT_TOPICS["tf_static"])
        for c, _, raw in r.messages(connections=[c for c in r.connections if c.topic in topics]):
            msg = ts.deserialize_cdr(raw, c.msgtype)
            if c.topic == DEFAULT_TOPICS["tf_static"]:
                tfbuf.add_message(msg)
            elif c.topic == camera_info_topic:
                info = msg if info is None else info
            else:
                stamps[c.topic].append(_header_ns(msg))
                first.setdefault(c.topic, msg)
                if c.topic == image_topic and msg.encoding not in KITTI_IMAGE_ENCODINGS:
                    raise ToKittiError(f"{image_topic}: image encoding {msg.encoding!r} is not supported "
                                       f"(to-kitti takes {', '.join(KITTI_IMAGE_ENCODINGS)})")
                if c.topic == image_topic and (msg.width, msg.height) != (first[c.topic].width, first[c.topic].height):
                    raise ToKittiError(f"{image_topic}: image size changes from {first[c.topic].width}x"
                                       f"{first[c.topic].height} to {msg.width}x{msg.height}")
                if c.topic == cloud_topic:
                    _check_cloud_fields(msg, cloud_topic)
        if info is None:
            raise ToKittiError(f"{bag}: no camera_info message on {camera_info_topic}")
        for topic in (image_topic, cloud_topic):
            if not stamps[topic]:
                raise ToKittiError(f"{bag}: no message on {topic}")
        im0, cl0 = first[image_topic], first[cloud_topic]
        P, R = np.asarray(info.p, np.float64).reshape(3, 4), np.asarray(info.r, np.float64).reshape(3, 3)
        if not P.any():
            raise ToKittiError(f"{camera_info_topic}: camera_info has no projection matrix P (all zero)")
        R = R if R.any() else np.eye(3)
        if info.width and info.height and (info.width, info.height) != (im0.width, im0.height):
            raise ToKittiError(f"{camera_info_topic}: camera_info is for {info.width}x{info.height} images, "
                               f"{image_topic} has {im0.width}x{im0.height}")
        cam_frame = (im0.header.frame_id or info.header.frame_id).lstrip("/")
        velo_frame = cl0.header.frame_id.lstrip("/")
        if T_given is not None:
            T, t_source = T_given, "--lidar-to-camera"
        else:
            try:
                T = tfbuf.lookup(cam_frame, velo_frame)
                t_source = f"{DEFAULT_TOPICS['tf_static']} {velo_frame} -> {cam_frame}"
            except TransformLookupError as e:
                raise ToKittiError(f"{bag}: no LiDAR -> camera extrinsics: {e} in {DEFAULT_TOPICS['tf_static']}; "
                                   "give --lidar-to-camera (16 numbers, row-major 4x4)") from None
        cam_ns, velo_ns = np.array(stamps[image_topic], np.int64), np.array(stamps[cloud_topic], np.int64)
        pairs = pair_stamps(cam_ns, velo_ns, slop_ns)
        if not pairs:
            raise ToKittiError(f"{bag}: no image/cloud pair within {slop:g} s ({len(cam_ns)} images on {image_topic}, "
                               f"{len(velo_ns)} clouds on {cloud_topic})")
        img_frame, cloud_frame = {i: k for k, (i, _) in enumerate(pairs)}, {j: k for k, (_, j) in enumerate(pairs)}
        pair_cam = cam_ns[[i for i, _ in pairs]]
        pair_velo = velo_ns[[j for _, j in pairs]]
        day = _dt.datetime.fromtimestamp(int(pair_cam[0]) // 10**9, _dt.timezone.utc).strftime("%Y_%m_%d")
        date_dir = out / day
        drive_dir = date_dir / f"{day}_drive_0000_sync"
        if drive_dir.exists():
            raise ToKittiError(f"{drive_dir} exists; not overwriting it")
        # pass 2: calibration and frames into a temporary folder, moved into place when complete
        made = [d for d in (out, date_dir) if not d.exists()]
        tmp = date_dir / f".{drive_dir.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            kitti.write_calib_files(tmp / "calib", P, R, T, width=int(im0.width), height=int(im0.height), fmt="%.12e")
            calib_files = sorted((tmp / "calib").iterdir())
            for f in calib_files:
                if (date_dir / f.name).exists() and (date_dir / f.name).read_bytes() != f.read_bytes():
                    raise ToKittiError(f"{date_dir / f.name} exists with another calibration; choose another OUT")
            for d in ("image_02/data", "velodyne_points/data"):
                (tmp / d).mkdir(parents=True)
            seen = {image_topic: 0, cloud_topic: 0}
            sensors = [c for c in r.connections if c.topic in (image_topic, cloud_topic)]
            for c, _, raw in r.messages(connections=sensors):
                n, seen[c.topic] = seen[c.topic], seen[c.topic] + 1
                k = (img_frame if c.topic == image_topic else cloud_frame).get(n)
                if k is None:
                    continue
                msg = ts.deserialize_cdr(raw, c.msgtype)
                try:
                    if c.topic == image_topic:
                        path = tmp / f"image_02/data/{k:010d}.png"
                        if not cv2.imwrite(str(path), convert.image_to_rgb(msg)[..., ::-1]):
                            raise ToKittiError(f"{path}: cannot write the image")
                    else:
                        convert.cloud_to_xyzi(msg)[0].astype("<f4").tofile(tmp / f"velodyne_points/data/{k:010d}.bin")
                except convert.ConversionError as e:
                    raise ToKittiError(f"{c.topic}: message {n}: {e}") from None
                if progress and c.topic == image_topic and (k + 1) % 50 == 0:
                    print(f"  {k + 1}/{len(pairs)} frames", file=sys.stderr)
            base = int(min(pair_cam.min(), pair_velo.min())) // 10**9 * 10**9
            start = _dt.datetime.fromtimestamp(base // 10**9, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            for sub, ns in (("image_02", pair_cam), ("velodyne_points", pair_velo)):
                kitti.write_timestamps(tmp / sub / "timestamps.txt", (ns - base) / 1e9, start=start)  # exact to the ns
                if not np.array_equal(kitti.read_timestamps_ns(tmp / sub / "timestamps.txt"), ns):
                    raise ToKittiError(f"{sub}/timestamps.txt: stamps span too long to write exactly to the ns")
            for f in calib_files:
                f.replace(date_dir / f.name)
            (tmp / "calib").rmdir()
            tmp.rename(drive_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            for d in reversed(made):
                if d.is_dir() and not any(d.iterdir()):
                    d.rmdir()
            raise
    summary = {"drive": str(drive_dir), "frames": len(pairs), "images": len(cam_ns), "clouds": len(velo_ns),
               "dropped_images": len(cam_ns) - len(pairs), "dropped_clouds": len(velo_ns) - len(pairs),
               "extrinsics": t_source}
    if progress:
        print(f"wrote {drive_dir}: {len(pairs)} frames from {len(cam_ns)} images and {len(velo_ns)} clouds "
              f"(dropped without a partner within {slop:g} s: {summary['dropped_images']} images, "
              f"{summary['dropped_clouds']} clouds; extrinsics from {t_source}) in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return summary


# --------------------------------------------------------------------------- play
def _restamp(raw: bytes, t_bag0: int, t_now0: int, rate: float = 1.0) -> bytes:
    """Map the std_msgs/Header stamp at the start of a CDR message to the time ``play`` publishes
    it: t_now0 + (stamp - t_bag0) / rate, in whole ns (:func:`original_stamp_ns` maps back)."""
    fmt = "<iI" if raw[1] & 1 else ">iI"
    sec, nsec = struct.unpack_from(fmt, raw, 4)
    total = t_now0 + round((sec * 10**9 + nsec - t_bag0) / rate)
    out = bytearray(raw)
    struct.pack_into(fmt, out, 4, total // 10**9, total % 10**9)
    return bytes(out)


def original_stamp_ns(stamp_ns: int, entry: dict) -> int:
    """The recorded stamp of a message that ``play --restamp`` stamped ``stamp_ns``, from that
    pass's ``--restamp-log`` entry: bag_start_ns + (stamp_ns - wall_start_ns) * rate. Exact for
    rate <= 1; at higher rates within rate / 2 ns (restamped stamps are whole ns)."""
    wall0 = entry.get("wall_start_ns", entry["bag_start_ns"] + entry["offset_ns"])
    return int(entry["bag_start_ns"] + round((int(stamp_ns) - wall0) * float(entry.get("rate", 1.0))))


def _has_header(cls) -> bool:
    slots = getattr(cls, "_fields_and_field_types", {})
    return bool(slots) and next(iter(slots.items())) == ("header", "std_msgs/Header")


def _wait_for_subscribers(reader, conns, pubs, headers, timeout: float) -> None:
    """Wait until a stamped sensor topic has a subscriber (then up to 2 s more for one on each).
    Meanwhile the first camera_info message is published every 0.5 s, since a node may need it
    before it subscribes to its sensors."""
    info = [c for c in conns if headers[c.id] and c.topic.endswith("camera_info")]
    sensors = [pubs[c.id] for c in conns if headers[c.id] and c not in info]
    first_info = {}
    for c, _, raw in (reader.messages(connections=info) if info else ()):   # () would mean: every topic
        first_info.setdefault(c.id, bytes(raw))
        if len(first_info) == len(info):
            break
    end, last = time.monotonic() + timeout, 0.0
    while time.monotonic() < end and not any(p.get_subscription_count() for p in sensors):
        if time.monotonic() - last > 0.5:
            for cid, raw in first_info.items():
                pubs[cid].publish(raw)
            last = time.monotonic()
        time.sleep(0.05)
    end = min(end, time.monotonic() + 2.0)
    while time.monotonic() < end and not all(p.get_subscription_count() for p in sensors):
        time.sleep(0.05)


def play(bag, rate: float = 1.0, loop: bool = False, restamp: bool = False, topics=None,
         wait_subscribers: float = 0.0, duration: float | None = None, restamp_log=None, quiet: bool = False) -> int:
    """Publish a bag through rclpy with its original timing (scaled by ``rate``). ``restamp``
    gives each header stamp the wall-clock time of its publication, at any rate and on every pass
    of a loop: a stamp s becomes t_now0 + (s - t_bag0) / rate, where t_bag0 is the pass's first
    log time and t_now0 the wall clock when that first message goes out (for bags whose stamps
    are their log times, as from-kitti writes, that is when the message is due; messages with
    equal stamps keep them equal). ``restamp_log`` gets one JSON line per pass: bag_start_ns,
    wall_start_ns, rate and offset_ns = wall_start_ns - bag_start_ns (the shift of every stamp
    at rate 1 only; :func:`original_stamp_ns` undoes the mapping at any rate). Without restamp
    stamps are the recorded ones (a loop then goes back in time). Topics whose rclpy message
    type does not import are skipped with one warning. Returns messages published."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosbags.rosbag2 import Reader
    from .dds import use_large_message_profile
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    use_large_message_profile()
    rclpy.init(args=None)
    node = rclpy.create_node("xmod_bag_player")
    log = node.get_logger()
    published = 0
    try:
        with Reader(bag) as r:
            conns, pubs, headers = [], {}, {}
            for c in r.connections:
                if topics is not None and c.topic not in topics:
                    continue
                try:
                    cls = msg_class(c.msgtype)
                except (ImportError, AttributeError):
                    log.warning(f"{c.topic}: message type {c.msgtype} is not installed here; topic not played")
                    continue
                static = c.topic in ("/tf_static",)
                qos = QoSProfile(depth=1 if static else 10, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL if static else DurabilityPolicy.VOLATILE)
                pubs[c.id] = node.create_publisher(cls, c.topic, qos)
                headers[c.id] = _has_header(cls)
                conns.append(c)
            if not conns:
                log.error(f"{bag}: nothing to play")
                return 0
            if wait_subscribers > 0:
                _wait_for_subscribers(r, conns, pubs, headers, wait_subscribers)
            t_start = time.monotonic()
            while True:
                t_bag0 = None
                for c, t, raw in r.messages(connections=conns):
                    if t_bag0 is None:            # a pass starts: its first message goes out now
                        t_wall0, t_now0, t_bag0 = time.monotonic(), time.time_ns(), t
                        if restamp and restamp_log:
                            with open(restamp_log, "a") as f:
                                f.write(json.dumps({"bag_start_ns": t_bag0, "wall_start_ns": t_now0, "rate": rate,
                                                    "offset_ns": t_now0 - t_bag0}) + "\n")
                    delay = t_wall0 + (t - t_bag0) * 1e-9 / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if duration is not None and time.monotonic() - t_start > duration:
                        return published
                    if not rclpy.ok():
                        return published
                    data = bytes(raw)
                    if restamp and headers[c.id]:
                        data = _restamp(data, t_bag0, t_now0, rate)
                    pubs[c.id].publish(data)
                    published += 1
                if not loop:
                    break
            time.sleep(0.2)              # let the last messages go out
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if not quiet:
            log.info(f"published {published} messages from {bag}")
        node.destroy_node()
        rclpy.try_shutdown()
    return published


# --------------------------------------------------------------------------- record
def record(out, topics=NODE_OUTPUTS, storage: str = "sqlite3", duration: float | None = None,
           idle_stop: float | None = None, quiet: bool = False) -> dict:
    """Record ``topics`` (subscribed as they appear, any type, raw CDR) into a bag until SIGINT /
    SIGTERM, ``duration`` seconds, or ``idle_stop`` seconds without a message after the first one.
    Log times are receive times (system clock, ns). Returns {topic: messages}."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from rosbags.rosbag2 import Writer
    from .dds import use_large_message_profile
    ts = _typestore()
    use_large_message_profile()
    rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("xmod_bag_recorder")
    stop = {"flag": False}

    def on_signal(*_):
        stop["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    counts = {t: 0 for t in topics}
    subs, last_msg, t0 = {}, [None], time.monotonic()
    writer = Writer(Path(out), version=Writer.VERSION_LATEST, storage_plugin=_storage(storage))
    writer.open()
    if not quiet:
        print(f"recording into {out}, waiting for {', '.join(topics)}", file=sys.stderr, flush=True)
    try:
        while not stop["flag"]:
            for name, types in node.get_topic_names_and_types():
                if name in counts and name not in subs and types:
                    try:
                        cls = msg_class(types[0])
                        register_installed_type(ts, types[0])
                    except (ImportError, AttributeError):
                        node.get_logger().warning(f"{name}: type {types[0]} not installed; not recorded")
                        subs[name] = None
                        continue
                    conn = writer.add_connection(name, types[0], typestore=ts, offered_qos_profiles=[_qos()])

                    def cb(raw, conn=conn, name=name):
                        writer.write(conn, time.time_ns(), raw)
                        counts[name] += 1
                        last_msg[0] = time.monotonic()

                    subs[name] = node.create_subscription(cls, name, cb, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE),
                                                          raw=True)
                    if not quiet:
                        print(f"recording {name} ({types[0]})", file=sys.stderr, flush=True)
            end = time.monotonic() + 0.5
            while time.monotonic() < end and not stop["flag"]:
                rclpy.spin_once(node, timeout_sec=0.05)
            now = time.monotonic()
            if duration is not None and now - t0 > duration:
                break
            if idle_stop is not None and last_msg[0] is not None and now - last_msg[0] > idle_stop:
                break
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        writer.close()
        for s, h in old.items():
            signal.signal(s, h)
        node.destroy_node()
        rclpy.try_shutdown()
        if not quiet:
            print(f"recorded {sum(counts.values())} messages into {out}: {counts}", file=sys.stderr)
    return counts


# --------------------------------------------------------------------------- CLI
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xmod_ros.bag", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("from-kitti", help="convert a KITTI raw drive (or a simulated one) into a ROS 2 bag")
    k.add_argument("drive", type=Path, help="drive folder, e.g. ../shared/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync")
    k.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    k.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    k.add_argument("--frames", type=int, default=None, help="at most this many frames")
    k.add_argument("--camera", type=int, default=2, help="KITTI camera (2: left colour)")
    k.add_argument("--encoding", choices=("bgr8", "rgb8"), default="bgr8", help="image encoding (default bgr8, as kitti2bag)")
    pl = sub.add_parser("play", help="publish a bag through rclpy with its original timing")
    pl.add_argument("bag", type=Path)
    pl.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    pl.add_argument("--loop", action="store_true", help="play again and again")
    pl.add_argument("--restamp", action="store_true", help="stamp each message with its publication time")
    pl.add_argument("--restamp-log", type=Path, default=None,
                    help="append each pass's stamp mapping (JSON lines: bag_start_ns, wall_start_ns, rate, offset_ns)")
    pl.add_argument("--topics", nargs="+", default=None, help="only these topics")
    pl.add_argument("--wait-subscribers", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for a subscriber on every sensor topic")
    pl.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    rc = sub.add_parser("record", help="record topics (default: the node's outputs) into a bag")
    rc.add_argument("out", type=Path, help="bag folder to create (must not exist)")
    rc.add_argument("--topics", nargs="+", default=list(NODE_OUTPUTS))
    rc.add_argument("--storage", choices=("sqlite3", "mcap"), default="sqlite3")
    rc.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    rc.add_argument("--idle-stop", type=float, default=None, metavar="S",
                    help="stop S seconds after the last message (once one arrived)")
    tk = sub.add_parser("to-kitti", help="write a bag's images and clouds as a KITTI raw drive")
    tk.add_argument("bag", type=Path)
    tk.add_argument("out", type=Path, help="folder to write DATE/DATE_drive_0000_sync and the calibration into")
    tk.add_argument("--image-topic", default=DEFAULT_TOPICS["image"])
    tk.add_argument("--cloud-topic", default=DEFAULT_TOPICS["cloud"])
    tk.add_argument("--camera-info-topic", default=DEFAULT_TOPICS["camera_info"])
    tk.add_argument("--lidar-to-camera", type=float, nargs=16, default=None, metavar="T",
                    help="row-major 4x4 mapping LiDAR points into the camera frame (default: from /tf_static)")
    tk.add_argument("--slop", type=float, default=0.05, metavar="S",
                    help="pair an image and a cloud whose stamps are at most S seconds apart (default 0.05)")
    inf = sub.add_parser("info", help="print a bag's topics, types, counts and duration")
    inf.add_argument("bag", type=Path)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in argv:                     # as started by launch_ros: ROS arguments go to rclpy
        argv = argv[:argv.index("--ros-args")]
    a = _parser().parse_args(argv)
    try:
        if a.cmd == "from-kitti":
            from_kitti(a.drive, a.out, a.storage, a.frames, a.camera, a.encoding)
        elif a.cmd == "play":
            play(a.bag, a.rate, a.loop, a.restamp, a.topics, a.wait_subscribers, a.duration, a.restamp_log)
        elif a.cmd == "record":
            record(a.out, a.topics, a.storage, a.duration, a.idle_stop)
        elif a.cmd == "to-kitti":
            to_kitti(a.bag, a.out, a.image_topic, a.cloud_topic, a.camera_info_topic, a.lidar_to_camera, a.slop)
        else:
            print(json.dumps(bag_info(a.bag), indent=2))
    except Exception as e:  # noqa: BLE001 - one clear line for the user
        from rosbags.rosbag2 import ReaderError, WriterError
        from xmod_core.kitti import KittiFormatError
        if isinstance(e, (KittiFormatError, ReaderError, WriterError, ValueError, FileNotFoundError)):
            print(f"xmod_ros.bag {a.cmd}: {e}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
