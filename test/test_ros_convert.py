"""Message conversion (xmod_ros.convert): Image encodings and PointCloud2 layouts against buffers
built byte by byte with struct, round trips, and clear errors for bad messages. Where cv_bridge
and sensor_msgs_py import (a full ROS 2 install) both implementations are compared."""
import itertools
import struct

import numpy as np
import pytest

pytest.importorskip("rclpy")
from sensor_msgs.msg import Image, PointCloud2, PointField  # noqa: E402

from xmod_ros import convert  # noqa: E402

RNG = np.random.default_rng(0)


def _image(h, w, enc, data: bytes, step, big=0):
    return Image(height=h, width=w, encoding=enc, is_bigendian=big, step=step, data=data)


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("enc,dtype,ch", [("rgb8", np.uint8, 3), ("bgr8", np.uint8, 3), ("mono8", np.uint8, 1),
                                          ("mono16", np.uint16, 1), ("rgba8", np.uint8, 4)])
def test_image_round_trip(enc, dtype, ch):
    shape = (7, 11) if ch == 1 else (7, 11, ch)
    a = RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    msg = convert.numpy_to_image(a, enc)
    assert (msg.height, msg.width, msg.encoding, msg.step) == (7, 11, enc, 11 * ch * np.dtype(dtype).itemsize)
    assert msg.is_bigendian == 0
    b = convert.image_to_numpy(msg)
    assert b.dtype == dtype and np.array_equal(a, b)


def test_image_row_padding_and_big_endian_mono16():
    h, w, step = 3, 5, 16                                   # 10 bytes of pixels + 6 of padding per row
    a = np.arange(h * w, dtype=np.uint16).reshape(h, w) * 1000
    rows = b"".join(struct.pack(f">{w}H", *r) + b"\xee" * (step - 2 * w) for r in a.tolist())
    out = convert.image_to_numpy(_image(h, w, "mono16", rows, step, big=1))
    assert out.dtype == np.uint16 and np.array_equal(out, a)
    # the last row needs no padding
    out = convert.image_to_numpy(_image(h, w, "mono16", rows[:-(step - 2 * w)], step, big=1))
    assert np.array_equal(out, a)


def test_image_to_rgb_from_every_camera_encoding():
    rgb = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert np.array_equal(convert.image_to_rgb(convert.numpy_to_image(rgb, "rgb8")), rgb)
    assert np.array_equal(convert.image_to_rgb(convert.numpy_to_image(rgb[..., ::-1], "bgr8")), rgb)
    rgba = np.dstack([rgb, np.full((4, 6), 7, np.uint8)])
    assert np.array_equal(convert.image_to_rgb(convert.numpy_to_image(rgba, "rgba8")), rgb)
    bgra = np.dstack([rgb[..., ::-1], np.full((4, 6), 7, np.uint8)])
    assert np.array_equal(convert.image_to_rgb(convert.numpy_to_image(bgra, "bgra8")), rgb)
    mono = rgb[..., 0]
    out = convert.image_to_rgb(convert.numpy_to_image(mono, "mono8"))
    assert out.shape == (4, 6, 3) and np.array_equal(out[..., 1], mono)
    bgr = bytes(np.ascontiguousarray(rgb[..., ::-1]).reshape(-1))        # bgr8 built by hand
    assert np.array_equal(convert.image_to_rgb(_image(4, 6, "bgr8", bgr, 18)), rgb)


@pytest.mark.parametrize("msg,kind,text", [
    (_image(2, 2, "yuv422", b"\0" * 8, 4), "encoding", "unsupported camera image encoding 'yuv422'"),
    (_image(2, 2, "32FC1", b"\0" * 16, 8), "encoding", "unsupported camera image encoding '32FC1'"),
    (_image(2, 2, "rgb8", b"\0" * 11, 6), "truncated", "truncated image buffer: 11 bytes"),
    (_image(2, 2, "rgb8", b"\0" * 12, 5), "malformed", "step 5 is smaller"),
    (_image(0, 2, "rgb8", b"", 6), "malformed", "empty image"),
])
def test_bad_images(msg, kind, text):
    with pytest.raises(convert.ConversionError, match=text.replace("(", r"\(")) as e:
        convert.image_to_rgb(msg)
    assert e.value.kind == kind


def test_image_to_numpy_names_unknown_encodings():
    with pytest.raises(convert.UnsupportedEncoding, match="unsupported image encoding 'yuv422'"):
        convert.image_to_numpy(_image(2, 2, "yuv422", b"\0" * 8, 4))


def test_mono16_is_not_a_camera_image():
    msg = convert.numpy_to_image(np.zeros((2, 2), np.uint16), "mono16")
    with pytest.raises(convert.UnsupportedEncoding, match="camera image encoding 'mono16'"):
        convert.image_to_rgb(msg)


def test_numpy_to_image_rejects_mismatches():
    with pytest.raises(convert.ConversionError, match="shape"):
        convert.numpy_to_image(np.zeros((2, 2)), "rgb8")
    with pytest.raises(convert.ConversionError, match="dtype"):
        convert.numpy_to_image(np.full((2, 2), 70000), "mono16")
    assert convert.numpy_to_image(np.full((2, 2), 65535, np.int64), "mono16").data[:2].tobytes() == b"\xff\xff"


# --------------------------------------------------------------------------- clouds
FMT = {PointField.INT8: "b", PointField.UINT8: "B", PointField.INT16: "h", PointField.UINT16: "H",
       PointField.INT32: "i", PointField.UINT32: "I", PointField.FLOAT32: "f", PointField.FLOAT64: "d"}


def packed_cloud(points: dict, layout, point_step, big=False, height=1, row_pad=0):
    """A PointCloud2 built with struct: layout [(name, offset, datatype)], points {name: values}."""
    n = len(next(iter(points.values())))
    width = n // height
    order = ">" if big else "<"
    rows = []
    for r in range(height):
        row = bytearray()
        for i in range(r * width, (r + 1) * width):
            p = bytearray(b"\xab" * point_step)                     # padding bytes are garbage
            for name, off, dt in layout:
                struct.pack_into(order + FMT[dt], p, off, points[name][i])
            row += p
        rows.append(bytes(row) + b"\xcd" * row_pad)
    fields = [PointField(name=nm, offset=off, datatype=dt, count=1) for nm, off, dt in layout]
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=big, point_step=point_step,
                       row_step=width * point_step + row_pad, data=b"".join(rows), is_dense=True)


def _xyzi(n=6):
    return {"x": RNG.normal(size=n).astype(np.float32).tolist(), "y": RNG.normal(size=n).astype(np.float32).tolist(),
            "z": RNG.normal(size=n).astype(np.float32).tolist(), "intensity": RNG.random(n).astype(np.float32).tolist()}


@pytest.mark.parametrize("order", list(itertools.permutations(["x", "y", "z", "intensity"]))[::5])
@pytest.mark.parametrize("big", [False, True])
def test_cloud_any_field_order_padding_endianness(order, big):
    pts = _xyzi()
    layout = [(name, 4 + 6 * k, PointField.FLOAT32) for k, name in enumerate(order)]   # unaligned, gaps
    msg = packed_cloud(pts, layout, point_step=32, big=big)
    out, has_i = convert.cloud_to_xyzi(msg)
    assert has_i and out.dtype == np.float32
    want = np.stack([pts["x"], pts["y"], pts["z"], pts["intensity"]], 1).astype(np.float32)
    assert np.array_equal(out, want)


def test_cloud_organised_with_row_padding_and_other_types():
    n = 8
    pts = {"x": np.arange(n, dtype=np.float64) * 0.5, "y": -np.arange(n, dtype=np.float64),
           "z": np.arange(n) % 3, "i": np.arange(n) * 1000, "ring": np.arange(n)}
    layout = [("ring", 0, PointField.UINT16), ("x", 2, PointField.FLOAT64), ("y", 10, PointField.FLOAT64),
              ("z", 18, PointField.INT8), ("i", 19, PointField.UINT16)]            # 'i' as in kitti2bag
    msg = packed_cloud(pts, layout, point_step=24, height=2, row_pad=5)
    out, has_i = convert.cloud_to_xyzi(msg)
    assert has_i and out.shape == (n, 4)
    assert np.array_equal(out, np.stack([pts["x"], pts["y"], pts["z"], pts["i"]], 1).astype(np.float32))
    cols = convert.read_cloud_fields(msg, ("ring",))
    assert cols["ring"].dtype == np.uint16 and np.array_equal(cols["ring"], np.arange(n))


@pytest.mark.parametrize("dt", list(FMT))
def test_every_pointfield_datatype(dt):
    vals = {PointField.INT8: [-5, 7], PointField.UINT8: [0, 255], PointField.INT16: [-300, 300],
            PointField.UINT16: [0, 65535], PointField.INT32: [-70000, 70000], PointField.UINT32: [0, 4000000000],
            PointField.FLOAT32: [1.5, -2.25], PointField.FLOAT64: [1e-3, -1e10]}[dt]
    for big in (False, True):
        msg = packed_cloud({"x": vals, "y": vals, "z": vals}, [("x", 0, dt), ("y", 8, dt), ("z", 16, dt)], 24, big)
        out, has_i = convert.cloud_to_xyzi(msg)
        assert not has_i and np.array_equal(out[:, 3], [0, 0])
        assert np.array_equal(out[:, 0], np.asarray(vals, np.float32))


def test_cloud_round_trip_with_instance_field():
    pts = RNG.normal(size=(50, 4)).astype(np.float32)
    inst = RNG.integers(0, 9, 50).astype(np.uint16)
    msg = convert.xyzi_to_cloud(pts, extra={"instance": inst})
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity", "instance"]
    assert msg.point_step == 20 and msg.row_step == 20 * 50 and msg.height == 1 and msg.is_dense
    out, _ = convert.cloud_to_xyzi(msg)
    assert np.array_equal(out, pts)
    assert np.array_equal(convert.read_cloud_fields(msg, ("instance",))["instance"], inst)
    big = convert.numpy_to_cloud({"x": pts[:, 0], "y": pts[:, 1], "z": pts[:, 2]}, bigendian=True)
    assert np.array_equal(convert.cloud_to_xyzi(big)[0][:, :3], pts[:, :3])


def test_bad_clouds():
    pts = _xyzi(4)
    good = packed_cloud(pts, [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7)], 16)
    no_xyz = packed_cloud({"a": pts["x"], "b": pts["y"]}, [("a", 0, 7), ("b", 4, 7)], 8)
    with pytest.raises(convert.MissingField, match=r"no field\(s\) 'x', 'y', 'z' \(fields: a, b\)"):
        convert.cloud_to_xyzi(no_xyz)
    trunc = PointCloud2(height=1, width=4, fields=good.fields, point_step=16, row_step=64, data=bytes(good.data)[:50])
    with pytest.raises(convert.TruncatedBuffer, match="truncated cloud buffer: 50 bytes"):
        convert.cloud_to_xyzi(trunc)
    outside = PointCloud2(height=1, width=4, fields=good.fields, point_step=12, row_step=48, data=bytes(48))
    with pytest.raises(convert.ConversionError, match="does not fit in point_step 12"):
        convert.cloud_to_xyzi(outside)
    weird = PointCloud2(height=1, width=1, fields=[PointField(name="x", offset=0, datatype=42, count=1)],
                        point_step=4, row_step=4, data=bytes(4))
    with pytest.raises(convert.ConversionError, match="unknown datatype 42"):
        convert.cloud_to_xyzi(weird)
    empty = PointCloud2(height=1, width=0, fields=good.fields, point_step=16, row_step=0, data=b"")
    out, _ = convert.cloud_to_xyzi(empty)
    assert out.shape == (0, 4)


def test_finite_points():
    pts = np.array([[1, 2, 3, 0], [np.nan, 0, 0, 0], [0, np.inf, 0, 0], [4, 5, 6, np.nan]], np.float32)
    kept, mask = convert.finite_points(pts)
    assert mask.tolist() == [True, False, False, True] and len(kept) == 2


# --------------------------------------------------------------------------- cross-checks (full ROS 2 install)
def test_against_cv_bridge():
    cv_bridge = pytest.importorskip("cv_bridge", reason="cv_bridge is not installed (full ROS 2 install only)")
    bridge = cv_bridge.CvBridge()
    for enc, shape, dt in (("rgb8", (5, 7, 3), np.uint8), ("bgr8", (5, 7, 3), np.uint8), ("mono8", (5, 7), np.uint8),
                           ("mono16", (5, 7), np.uint16)):
        a = RNG.integers(0, 200, shape).astype(dt)
        ours, theirs = convert.numpy_to_image(a, enc), bridge.cv2_to_imgmsg(a, encoding=enc)
        assert np.array_equal(bridge.imgmsg_to_cv2(ours), a)
        import os
        os.environ["XMOD_CONVERT_BACKEND"] = "numpy"
        try:
            assert np.array_equal(convert.image_to_numpy(theirs), a)
        finally:
            del os.environ["XMOD_CONVERT_BACKEND"]


def test_against_sensor_msgs_py():
    pc2 = pytest.importorskip("sensor_msgs_py.point_cloud2", reason="sensor_msgs_py is not installed (full ROS 2 install only)")
    from std_msgs.msg import Header
    pts = RNG.normal(size=(20, 4)).astype(np.float32)
    fields = [PointField(name=n, offset=4 * k, datatype=PointField.FLOAT32, count=1)
              for k, n in enumerate(("x", "y", "z", "intensity"))]
    theirs = pc2.create_cloud(Header(), fields, pts.tolist())
    import os
    os.environ["XMOD_CONVERT_BACKEND"] = "numpy"
    try:
        assert np.array_equal(convert.cloud_to_xyzi(theirs)[0], pts)
    finally:
        del os.environ["XMOD_CONVERT_BACKEND"]
    ours = convert.xyzi_to_cloud(pts)
    back = pc2.read_points(ours, field_names=("x", "y", "z", "intensity"), skip_nans=False)
    assert np.array_equal(np.stack([np.asarray(back)[k] for k in ("x", "y", "z", "intensity")], 1), pts)
