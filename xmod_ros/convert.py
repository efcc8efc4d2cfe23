"""Message conversion: sensor_msgs/Image and sensor_msgs/PointCloud2 to and from numpy.

Images: encodings ``rgb8``, ``bgr8``, ``mono8``, ``mono16`` (and ``rgba8``/``bgra8``, ``8UC1``,
``16UC1`` as aliases a camera driver may use), any row ``step`` (padding), both endiannesses.
Clouds: any field order, offsets, padding inside a point (``point_step``) and at row ends
(``row_step``), either endianness, all eight PointField datatypes, optional fields.

Every problem with a message raises :class:`ConversionError` (a ValueError) whose text says what
is wrong (encoding, sizes, missing field, truncated buffer), so a node can log it and skip the
frame. The checks always run here; the decoding itself is delegated to ``cv_bridge`` and
``sensor_msgs_py`` when they import (a full ROS 2 install), and done with numpy otherwise. Set
``XMOD_CONVERT_BACKEND=numpy`` to force the numpy path. All hot paths are vectorised.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import Header

try:  # a full ROS 2 install
    from cv_bridge import CvBridge as _CvBridge
    _BRIDGE = _CvBridge()
except Exception:  # noqa: BLE001 - any import problem means: not available
    _BRIDGE = None
try:
    from sensor_msgs_py import point_cloud2 as _pc2
    if not hasattr(_pc2, "read_points"):
        _pc2 = None
except Exception:  # noqa: BLE001
    _pc2 = None


class ConversionError(ValueError):
    """A message that cannot be converted; the text names the problem. ``kind`` says which
    problem it is (for counters): encoding, size, field, truncated."""
    kind = "malformed"


class UnsupportedEncoding(ConversionError):
    kind = "encoding"


class MissingField(ConversionError):
    kind = "missing_field"


class TruncatedBuffer(ConversionError):
    kind = "truncated"


def backends() -> dict:
    """Which implementation decodes what: {'image': 'cv_bridge'|'numpy', 'cloud': 'sensor_msgs_py'|'numpy'}."""
    force = os.environ.get("XMOD_CONVERT_BACKEND", "") == "numpy"
    return {"image": "cv_bridge" if _BRIDGE is not None and not force else "numpy",
            "cloud": "sensor_msgs_py" if _pc2 is not None and not force else "numpy"}


# --------------------------------------------------------------------------- images
# encoding -> (numpy base dtype, channels)
IMAGE_ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1), "mono16": (np.uint16, 1), "16UC1": (np.uint16, 1),
}
CAMERA_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC1")


def _check_image(msg) -> tuple[np.dtype, int, int, int, int]:
    """Validate an Image header against its buffer; returns (dtype, channels, h, w, step)."""
    enc = msg.encoding
    if enc not in IMAGE_ENCODINGS:
        raise UnsupportedEncoding(f"unsupported image encoding {enc!r} (supported: {', '.join(IMAGE_ENCODINGS)})")
    base, ch = IMAGE_ENCODINGS[enc]
    dt = np.dtype(base).newbyteorder(">" if msg.is_bigendian else "<")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h <= 0 or w <= 0:
        raise ConversionError(f"empty image ({w}x{h})")
    row = w * ch * dt.itemsize
    if step < row:
        raise ConversionError(f"image step {step} is smaller than a {enc} row of {w} pixels ({row} bytes)")
    need = step * (h - 1) + row
    if len(msg.data) < need:
        raise TruncatedBuffer(f"truncated image buffer: {len(msg.data)} bytes for {w}x{h} {enc} "
                              f"with step {step} (needs {need})")
    return dt, ch, h, w, step


def image_to_numpy(msg) -> np.ndarray:
    """Image -> (H, W) or (H, W, C) array of the encoding's dtype in native byte order, channels
    in the message's order (rgb8 stays RGB, bgr8 stays BGR). A read-only view when possible."""
    dt, ch, h, w, step = _check_image(msg)
    if backends()["image"] == "cv_bridge" and msg.encoding not in ("8UC1", "16UC1"):
        out = np.asarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="passthrough"))
        return out.reshape(h, w) if ch == 1 else out.reshape(h, w, ch)
    buf = np.frombuffer(msg.data, np.uint8)
    rows = np.lib.stride_tricks.as_strided(buf, shape=(h, w * ch * dt.itemsize), strides=(step, 1))
    arr = np.ascontiguousarray(rows).view(dt).reshape((h, w) if ch == 1 else (h, w, ch))
    if not dt.isnative:
        arr = arr.astype(dt.newbyteorder("="))
    arr.flags.writeable = False
    return arr


def image_to_rgb(msg) -> np.ndarray:
    """A camera Image -> (H, W, 3) uint8 RGB. rgb8/bgr8/rgba8/bgra8/mono8 only: a 16-bit image
    is not a camera image for the model and raises ConversionError."""
    if msg.encoding not in CAMERA_ENCODINGS:
        raise UnsupportedEncoding(f"unsupported camera image encoding {msg.encoding!r} "
                              f"(expected one of {', '.join(CAMERA_ENCODINGS)})")
    arr = image_to_numpy(msg)
    enc = msg.encoding
    if enc == "rgb8":
        return arr
    if enc == "bgr8":
        return arr[..., ::-1]
    if enc == "rgba8":
        return arr[..., :3]
    if enc == "bgra8":
        return arr[..., 2::-1]
    return np.repeat(arr[..., None], 3, axis=2)                  # mono8


def numpy_to_image(arr: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """(H, W) or (H, W, C) array -> Image with ``encoding`` (channels taken as given: pass RGB
    data for rgb8, BGR for bgr8). mono16 is written little-endian (is_bigendian = 0)."""
    if encoding not in IMAGE_ENCODINGS:
        raise ConversionError(f"unsupported image encoding {encoding!r} (supported: {', '.join(IMAGE_ENCODINGS)})")
    base, ch = IMAGE_ENCODINGS[encoding]
    arr = np.asarray(arr)
    shape_ok = arr.ndim == 2 if ch == 1 else (arr.ndim == 3 and arr.shape[2] == ch)
    if ch == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr, shape_ok = arr[..., 0], True
    if not shape_ok:
        raise ConversionError(f"array of shape {arr.shape} does not fit encoding {encoding!r} ({ch} channel(s))")
    if arr.dtype != base:
        if arr.dtype.kind not in "uib" or (arr.size and (arr.min() < 0 or arr.max() > np.iinfo(base).max)):
            raise ConversionError(f"array of dtype {arr.dtype} does not fit encoding {encoding!r} ({np.dtype(base)})")
    data = np.ascontiguousarray(arr, dtype=np.dtype(base).newbyteorder("<"))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding, msg.is_bigendian = encoding, 0
    msg.step = msg.width * ch * data.dtype.itemsize
    msg.data = data.tobytes()
    return msg


# --------------------------------------------------------------------------- point clouds
POINTFIELD_DTYPES = {PointField.INT8: np.int8, PointField.UINT8: np.uint8, PointField.INT16: np.int16,
                     PointField.UINT16: np.uint16, PointField.INT32: np.int32, PointField.UINT32: np.uint32,
                     PointField.FLOAT32: np.float32, PointField.FLOAT64: np.float64}
NUMPY_POINTFIELD = {np.dtype(v): k for k, v in POINTFIELD_DTYPES.items()}
INTENSITY_NAMES = ("intensity", "i", "reflectance", "remission")   # kitti2bag writes 'i'


def cloud_field_table(msg) -> dict[str, tuple[int, np.dtype, int]]:
    """{name: (offset, dtype with the message's byte order, count)}; the first of duplicate
    names wins. ConversionError for an unknown datatype or a field outside point_step."""
    order = ">" if msg.is_bigendian else "<"
    table = {}
    for f in msg.fields:
        if f.datatype not in POINTFIELD_DTYPES:
            raise ConversionError(f"point field {f.name!r} has unknown datatype {f.datatype}")
        dt = np.dtype(POINTFIELD_DTYPES[f.datatype]).newbyteorder(order)
        count = max(1, int(f.count))
        if f.offset + dt.itemsize * count > msg.point_step:
            raise ConversionError(f"point field {f.name!r} (offset {f.offset}, {count} x {dt.itemsize} bytes) "
                                  f"does not fit in point_step {msg.point_step}")
        table.setdefault(f.name, (int(f.offset), dt, count))
    return table


def _check_cloud(msg) -> int:
    """Validate sizes against the buffer; returns the number of points."""
    h, w, ps, rs = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    n = h * w
    if n == 0:
        return 0
    if ps <= 0:
        raise ConversionError(f"point_step is {ps} for {n} points")
    if rs < w * ps:
        raise ConversionError(f"row_step {rs} is smaller than width {w} x point_step {ps}")
    need = rs * (h - 1) + w * ps
    if len(msg.data) < need:
        raise TruncatedBuffer(f"truncated cloud buffer: {len(msg.data)} bytes for {w}x{h} points of "
                              f"{ps} bytes (row_step {rs}, needs {need})")
    return n


def read_cloud_fields(msg, names, optional=()) -> dict[str, np.ndarray]:
    """The named fields of every point, {name: (N,) or (N, count) array, native byte order}.
    ``names`` must exist (ConversionError naming the missing ones and those present);
    ``optional`` ones are returned only when present."""
    table = cloud_field_table(msg)
    missing = [n for n in names if n not in table]
    if missing:
        raise MissingField(f"point cloud has no field(s) {', '.join(map(repr, missing))} "
                              f"(fields: {', '.join(table) or 'none'})")
    want = list(names) + [n for n in optional if n in table and n not in names]
    n = _check_cloud(msg)
    if n == 0:
        return {k: np.zeros((0,) if table[k][2] == 1 else (0, table[k][2]), table[k][1].newbyteorder("=")) for k in want}
    if backends()["cloud"] == "sensor_msgs_py" and all(table[k][2] == 1 for k in want):
        arr = _pc2.read_points(msg, field_names=want, skip_nans=False)
        arr = np.asarray(arr).reshape(-1)
        return {k: np.ascontiguousarray(arr[k]).astype(table[k][1].newbyteorder("="), copy=False) for k in want}
    h, w, ps, rs = int(msg.height), int(msg.width), int(msg.point_step), int(msg.row_step)
    dtype = np.dtype({"names": want, "formats": [table[k][1] if table[k][2] == 1 else (table[k][1], (table[k][2],))
                                                for k in want],
                      "offsets": [table[k][0] for k in want], "itemsize": ps})
    buf = np.frombuffer(msg.data, np.uint8)
    if rs != w * ps and h > 1:          # padding at row ends: gather the rows first
        buf = np.lib.stride_tricks.as_strided(buf, shape=(h, w * ps), strides=(rs, 1)).reshape(-1)
    pts = np.frombuffer(np.ascontiguousarray(buf[:n * ps]), dtype=dtype, count=n)
    return {k: np.ascontiguousarray(pts[k]).astype(table[k][1].newbyteorder("="), copy=False) for k in want}


def cloud_to_xyzi(msg) -> tuple[np.ndarray, bool]:
    """PointCloud2 -> ((N, 4) float32 x, y, z, intensity; whether an intensity field exists).
    The intensity is the first of INTENSITY_NAMES present, 0 when none is. Non-finite points
    are kept (see :func:`finite_points`)."""
    table = cloud_field_table(msg)
    inten = next((k for k in INTENSITY_NAMES if k in table and table[k][2] == 1), None)
    cols = read_cloud_fields(msg, ("x", "y", "z"), (inten,) if inten else ())
    for k in ("x", "y", "z"):
        if cols[k].ndim != 1:
            raise ConversionError(f"point field {k!r} has count {cols[k].shape[1]}, expected 1")
    n = len(cols["x"])
    out = np.empty((n, 4), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = cols["x"], cols["y"], cols["z"]
    out[:, 3] = cols[inten] if inten else 0.0
    return out, inten is not None


def finite_points(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points whose x, y, z are all finite, the boolean mask of those rows)."""
    if np.isfinite(points[:, 0] + points[:, 1] + points[:, 2]).all():   # fast path: a sum is finite iff its terms are
        return points, np.ones(len(points), bool)
    keep = np.isfinite(points[:, :3]).all(1)
    return points[keep], keep


def numpy_to_cloud(columns, header: Header | None = None, point_step: int | None = None,
                   bigendian: bool = False) -> PointCloud2:
    """{name: (N,) array} (in order; a structured array works too) -> unorganised PointCloud2
    (height 1), fields packed in that order, each at its natural alignment, point_step rounded
    up to the largest field alignment unless given (padding allowed)."""
    if isinstance(columns, np.ndarray) and columns.dtype.names:
        columns = {k: columns[k] for k in columns.dtype.names}
    cols = {k: np.asarray(v) for k, v in columns.items()}
    if not cols:
        raise ConversionError("a cloud needs at least one field")
    lens = {len(v) for v in cols.values()}
    if len(lens) != 1 or any(v.ndim != 1 for v in cols.values()):
        raise ConversionError(f"cloud columns must be 1-D and of equal length, got "
                              f"{ {k: v.shape for k, v in cols.items()} }")
    n = lens.pop()
    order = ">" if bigendian else "<"
    names, formats, offsets, fields, off, align = [], [], [], [], 0, 1
    for k, v in cols.items():
        dt = np.dtype(v.dtype)
        if dt.newbyteorder("=") not in NUMPY_POINTFIELD:
            raise ConversionError(f"cloud column {k!r} has unsupported dtype {dt}")
        size = dt.itemsize
        off = -(-off // size) * size
        names.append(k), formats.append(dt.newbyteorder(order)), offsets.append(off)
        fields.append(PointField(name=k, offset=off, datatype=NUMPY_POINTFIELD[dt.newbyteorder("=")], count=1))
        off += size
        align = max(align, size)
    step = -(-off // align) * align if point_step is None else int(point_step)
    if step < off:
        raise ConversionError(f"point_step {step} is smaller than the fields' {off} bytes")
    arr = np.zeros(n, np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step}))
    for k in names:
        arr[k] = cols[k]
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, n
    msg.fields = fields
    msg.is_bigendian = bool(bigendian)
    msg.point_step, msg.row_step = step, step * n
    msg.is_dense = bool(all(np.isfinite(v).all() for v in cols.values() if v.dtype.kind == "f"))
    msg.data = arr.tobytes()
    return msg


def xyzi_to_cloud(points: np.ndarray, header: Header | None = None, extra: dict | None = None) -> PointCloud2:
    """(N, 4) x, y, z, intensity (+ ``extra`` columns, e.g. {'instance': uint16 (N,)}) -> PointCloud2."""
    pts = np.asarray(points, np.float32)
    if pts.ndim != 2 or pts.shape[1] < 3:
        raise ConversionError(f"points must have shape (N, 3|4), got {pts.shape}")
    cols = {"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2],
            "intensity": pts[:, 3] if pts.shape[1] > 3 else np.zeros(len(pts), np.float32)}
    cols.update(extra or {})
    return numpy_to_cloud(cols, header)


def native_is_bigendian() -> bool:
    return sys.byteorder == "big"
