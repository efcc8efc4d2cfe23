"""vision_msgs detections from the core's outputs (pure conversion, no node):

- :func:`detections_2d`: an instance label image -> ``vision_msgs/Detection2DArray``, one axis-aligned
  box around each instance's mask;
- :func:`detections_3d`: :class:`xmod_core.clusters.Object3D` list -> ``vision_msgs/Detection3DArray``,
  one box oriented by the object's yaw about z.

Every detection carries one hypothesis, class ``"object"`` (xMOD discovers objects, it does not
classify them) with the instance's score, and ``id`` = the instance id as a string; the
hypothesis' pose is left at its default (zero pose, zero covariance).

vision_msgs has no PyPI wheel: a full ROS 2 install has it, a pip environment gets it built from
``../shared/third_party/vision_msgs`` by ``tools/build_vision_msgs.sh`` (run by ``make setup``).
:func:`available` says whether it imports; without it the converters raise ImportError.
"""
from __future__ import annotations

import numpy as np

from .tf import yaw_to_quat

try:
    from geometry_msgs.msg import Point, Quaternion, Vector3
    from vision_msgs.msg import Detection2D, Detection2DArray, Detection3D, Detection3DArray, ObjectHypothesisWithPose
    _IMPORT_ERROR: Exception | None = None
except ImportError as e:  # no full ROS 2 install and vision_msgs not built
    _IMPORT_ERROR = e

CLASS_ID = "object"


def available() -> bool:
    """True when vision_msgs imports (the converters below work)."""
    return _IMPORT_ERROR is None


def _require():
    if _IMPORT_ERROR is not None:
        raise ImportError(f"vision_msgs is not importable ({_IMPORT_ERROR}): build it with "
                          "tools/build_vision_msgs.sh (make setup) or install ros-<distro>-vision-msgs")


def _hypothesis(score: float):
    h = ObjectHypothesisWithPose()
    h.hypothesis.class_id, h.hypothesis.score = CLASS_ID, float(score)
    return h


def mask_boxes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) instance ids (0 = background) -> ids (K,) of the instances present, ascending, and
    boxes (K, 4) int64 ``c0, r0, c1, r1``: the first and last column and row of each mask
    (inclusive). Vectorised over the foreground pixels (np.minimum.at / np.maximum.at)."""
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ValueError(f"labels must be an (H, W) image of instance ids, got shape {lab.shape}")
    r, c = np.nonzero(lab > 0)                          # (F,) rows, columns of the foreground
    if r.size == 0:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.int64)
    v = lab[r, c].astype(np.int64)                      # (F,) their ids
    n = int(v.max()) + 1
    lo = np.full((2, n), np.iinfo(np.int64).max)        # (2, n) min column, min row per id
    hi = np.full((2, n), -1, np.int64)                  # (2, n) max column, max row per id
    for k, pix in enumerate((c, r)):
        np.minimum.at(lo[k], v, pix)
        np.maximum.at(hi[k], v, pix)
    ids = np.flatnonzero(hi[0] >= 0)                    # (K,) ids with at least one pixel
    return ids.astype(np.int64), np.stack([lo[0, ids], lo[1, ids], hi[0, ids], hi[1, ids]], 1)


def detections_2d(labels: np.ndarray, scores: dict | None, header=None, boxes=None) -> Detection2DArray:
    """(H, W) instance ids (uint16, 0 = background) -> Detection2DArray, one Detection2D per id > 0
    present, ascending by id. Boxes in pixel coordinates with pixel (column c, row r) at (c, r): a
    mask spanning columns c0..c1 and rows r0..r1 gives ``bbox.center.position`` =
    ((c0 + c1) / 2, (r0 + r1) / 2), ``size_x`` = c1 - c0 + 1, ``size_y`` = r1 - r0 + 1 (the box's
    edges lie on the outer pixel edges), ``theta`` = 0. ``boxes``: (ids (P,), boxes (P, 4) left,
    top, right, bottom in pixel edges; ``FrameResult.box_ids, boxes``) replaces the mask boxes by
    these (each pixel-edge box (l, t, r, b) as the mask of columns l..r - 1 would be). ``scores``:
    {instance id: score}, 0.0 for ids missing from it. ``header`` (std_msgs/Header, the image's)
    goes on the array and on each detection."""
    _require()
    if boxes is None:
        ids, boxes = mask_boxes(labels)
    else:                                                  # pixel edges -> first and last pixel
        ids, edges = np.asarray(boxes[0], np.int64), np.asarray(boxes[1], np.float64).reshape(-1, 4)
        boxes = edges - np.array([0.0, 0.0, 1.0, 1.0])
    scores = scores or {}
    out = Detection2DArray()
    if header is not None:
        out.header = header
    dets = []
    for i, (c0, r0, c1, r1) in zip(ids.tolist(), boxes.tolist()):
        d = Detection2D(id=str(i))
        if header is not None:
            d.header = header
        d.bbox.center.position.x, d.bbox.center.position.y = (c0 + c1) / 2, (r0 + r1) / 2
        d.bbox.size_x, d.bbox.size_y = float(c1 - c0 + 1), float(r1 - r0 + 1)
        d.results = [_hypothesis(scores.get(i, 0.0))]
        dets.append(d)
    out.detections = dets
    return out


def detections_3d(objects, header=None) -> Detection3DArray:
    """Objects (``xmod_core.clusters.Object3D``: id, center (3,), size (3,) = length along yaw,
    width, height, yaw in radians about z, score) -> Detection3DArray in the objects' frame (the
    LiDAR's), in the given order: ``bbox.center.position`` = center, ``bbox.center.orientation`` =
    the rotation by yaw about z, ``bbox.size`` = (length, width, height), ``id`` = str(id), one
    hypothesis with the object's score. ``header`` (the cloud's) goes on the array and on each
    detection."""
    _require()
    out = Detection3DArray()
    if header is not None:
        out.header = header
    dets = []
    for o in objects:
        d = Detection3D(id=str(int(o.id)))
        if header is not None:
            d.header = header
        cx, cy, cz = (float(x) for x in o.center)
        qx, qy, qz, qw = yaw_to_quat(float(o.yaw))
        sl, sw, sh = (float(x) for x in o.size)
        d.bbox.center.position = Point(x=cx, y=cy, z=cz)
        d.bbox.center.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
        d.bbox.size = Vector3(x=sl, y=sw, z=sh)
        d.results = [_hypothesis(o.score)]
        dets.append(d)
    out.detections = dets
    return out
