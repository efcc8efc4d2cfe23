"""2D boxes of instances in the camera image, from their pixels or from their 3D extent.

KITTI's objects were annotated as 3D boxes in the point clouds (the devkit's readme), and their
image boxes follow from those: a box covers the whole object, also where it is hidden or where
the LiDAR has no return. The box around an instance's pixels covers only what was seen. So an
instance's image box can come from (`BOX_SOURCES`):

- `mask`: the box around its pixels;
- `3d`: the image rectangle of its oriented 3D box (`clusters.Object3D`, the extent of its points),
  clipped to the image;
- `3d_ground`: the same with the box's bottom lowered to the ground plane under its centre (ground
  removal and the beams leave the lowest part of an object without points).

Instances without a 3D object keep their mask box. `auto` (`resolve_box_source`) picks per kind of
instance. Boxes are (left, top, right, bottom) in pixel
edges (a pixel (c, r) spans [c, c + 1) x [r, r + 1)), as `metrics.instance_boxes`. Vectorised over
boxes (corners and edges as arrays); the 3D boxes are clipped at a near plane in front of the
camera before projection, so a box reaching behind the camera gives the image part in front.
"""
from __future__ import annotations

import cv2
import numpy as np

from .baselines import is_ground
from .kitti import CameraCalib
from .metrics import instance_boxes

BOX_SOURCES = ("mask", "3d", "3d_ground")
# auto: what validation drives scored best against boxes made as KITTI's are (docs/evaluation.md): the
# projected box down to the ground for LiDAR clusters (hybrid instances, the clustering baseline), the
# mask box for the students' slot instances (their points hold background, their 3D boxes are too wide)
AUTO = {"hybrid": "3d_ground", "clusters": "3d_ground", "slots": "mask"}
NEAR_M = 0.1                                      # m, the near plane the 3D boxes are clipped at
# the 12 edges of a box as pairs of corner indices (corners: bottom 0-3, top 4-7, same order)
EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def box_corners(center: np.ndarray, size: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(n, 8, 3) corners of boxes given by centre (n, 3), size (n, 3) = length along yaw, width,
    height, and yaw (n,) about z: the bottom face first (counter-clockwise from +length, +width),
    then the top face in the same order."""
    center, size, yaw = np.atleast_2d(center), np.atleast_2d(size), np.atleast_1d(yaw)
    su = np.array([1, -1, -1, 1, 1, -1, -1, 1], np.float64) * 0.5              # (8,) length sign
    sv = np.array([1, 1, -1, -1, 1, 1, -1, -1], np.float64) * 0.5              # (8,) width sign
    sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1], np.float64) * 0.5              # (8,) height sign
    u, v = su * size[:, :1], sv * size[:, 1:2]                                  # (n, 8)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack([center[:, :1] + u * c - v * s, center[:, 1:2] + u * s + v * c,
                     center[:, 2:3] + sz * size[:, 2:3]], -1)                   # (n, 8, 3)


def project_boxes(corners: np.ndarray, calib: CameraCalib) -> tuple[np.ndarray, np.ndarray]:
    """Image rectangles (n, 4) of 3D boxes given by their corners (n, 8, 3) in the LiDAR frame,
    clipped to the image, and (n,) bool: the box is in front of the camera and overlaps the image.
    Each edge is cut at the near plane (z_rect = NEAR_M) so that only what lies in front projects."""
    n = len(corners)
    if n == 0:
        return np.zeros((0, 4)), np.zeros(0, bool)
    rect = calib.velo_to_rect(corners.reshape(-1, 3)).reshape(n, 8, 3)          # (n, 8, 3) camera frame
    a, b = rect[:, EDGES[:, 0]], rect[:, EDGES[:, 1]]                          # (n, 12, 3) edge ends
    za, zb = a[..., 2:], b[..., 2:]
    t = np.clip((NEAR_M - za) / np.where(np.abs(zb - za) > 1e-12, zb - za, 1e-12), 0, 1)
    cut = a + t * (b - a)                                                      # (n, 12, 3) the edge at the plane
    cross = (za < NEAR_M) != (zb < NEAR_M)                                     # (n, 12, 1) edges through the plane
    pts = np.concatenate([rect, cut], 1)                                       # (n, 20, 3)
    ok = np.concatenate([rect[..., 2] >= NEAR_M, cross[..., 0]], 1)           # (n, 20) in front (or on the plane)
    uvw = pts @ calib.P_rect[:, :3].T + calib.P_rect[:, 3]                     # (n, 20, 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[..., :2] / uvw[..., 2:]
    lo = np.where(ok[..., None], uv, np.inf).min(1)                            # (n, 2)
    hi = np.where(ok[..., None], uv, -np.inf).max(1)
    W, H = calib.width, calib.height
    box = np.stack([np.clip(lo[:, 0], 0, W), np.clip(lo[:, 1], 0, H), np.clip(hi[:, 0], 0, W),
                    np.clip(hi[:, 1], 0, H)], 1)
    valid = ok.any(1) & (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
    return np.where(valid[:, None], box, 0.0), valid


def lower_to_ground(center: np.ndarray, size: np.ndarray, plane: tuple[np.ndarray, float] | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (centre (n, 3), size (n, 3)) whose bottom is lowered to the ground plane (n . p + d = 0,
    LiDAR frame) under their centre; boxes already reaching below it, and all of them when the
    plane is missing or not a ground (normal z < 0.9), are unchanged."""
    if len(center) == 0 or not is_ground(plane):
        return center, size
    n, d = plane
    ground = -(n[0] * center[:, 0] + n[1] * center[:, 1] + d) / n[2]          # (n,) ground height under each
    bottom, top = center[:, 2] - size[:, 2] / 2, center[:, 2] + size[:, 2] / 2
    bottom = np.minimum(bottom, ground)
    center, size = center.copy(), size.copy()
    center[:, 2], size[:, 2] = (bottom + top) / 2, top - bottom
    return center, size


def resolve_box_source(source: str, instances: str) -> str:
    """The box source of `instances` (slots, hybrid or clusters) for `source` (one of BOX_SOURCES or
    auto)."""
    if source == "auto":
        return AUTO[instances]
    if source not in BOX_SOURCES:
        raise ValueError(f"box_source must be one of {BOX_SOURCES} or auto, got {source!r}")
    return source


def upsampled_boxes(grid: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """`metrics.instance_boxes` of `cv2.resize(grid, (width, height), INTER_NEAREST)` for an upscale
    (height >= grid rows, width >= grid columns), from the grid's boxes: the resize maps each output
    column (row) to a source one, monotonically, so a source span [c0, c1] covers the output columns
    from the first that maps to c0 to the last that maps to c1. Far cheaper than boxing the
    camera-resolution image (a 24x80 grid against 1242x375 pixels)."""
    h, w = grid.shape
    if height < h or width < w:
        raise ValueError(f"upsampled_boxes needs an upscale, got {w}x{h} -> {width}x{height}")
    ids, gb = instance_boxes(grid)
    col = cv2.resize(np.arange(w, dtype=np.uint16)[None], (width, 1), interpolation=cv2.INTER_NEAREST)[0]   # (W,)
    row = cv2.resize(np.arange(h, dtype=np.uint16)[:, None], (1, height), interpolation=cv2.INTER_NEAREST)[:, 0]
    return ids, np.stack([np.searchsorted(col, gb[:, 0], "left"), np.searchsorted(row, gb[:, 1], "left"),
                          np.searchsorted(col, gb[:, 2] - 1, "right"), np.searchsorted(row, gb[:, 3] - 1, "right")],
                         1).astype(np.float64)


def frame_boxes(labels: np.ndarray, objects: list, calib: CameraCalib, source: str = "mask",
                plane: tuple[np.ndarray, float] | None = None, grid: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Ids (P,) ascending and boxes (P, 4) of the instances of a frame: those of the (H, W) id image
    `labels` (camera resolution, as `calib`) and of the 3D `objects` (`clusters.Object3D`, ids in
    the same space). `source` as in the module docstring; `plane` (3d_ground) the ground; `grid`:
    the ids on a coarser grid that `labels` is the nearest-neighbour upscale of (the Predictor's),
    whose boxes are then scaled instead of boxing `labels`."""
    if source not in BOX_SOURCES:
        raise ValueError(f"box source must be one of {BOX_SOURCES}, got {source!r}")
    upscale = grid is not None and grid.shape[0] <= labels.shape[0] and grid.shape[1] <= labels.shape[1]
    ids, boxes = upsampled_boxes(grid, *labels.shape) if upscale else instance_boxes(labels)
    if source == "mask" or not objects:
        return ids, boxes
    oid = np.array([o.id for o in objects], np.int64)
    center = np.array([o.center for o in objects], np.float64)
    size = np.array([o.size for o in objects], np.float64)
    if source == "3d_ground":
        center, size = lower_to_ground(center, size, plane)
    obox, valid = project_boxes(box_corners(center, size, np.array([o.yaw for o in objects])), calib)
    oid, obox = oid[valid], obox[valid]
    keep = ~np.isin(ids, oid)                                                  # mask boxes of instances without one
    all_ids = np.concatenate([ids[keep], oid])
    order = np.argsort(all_ids, kind="stable")
    return all_ids[order], np.concatenate([boxes[keep], obox])[order]
