"""The scan trims a slot instance to its main 3D part (`PredictorConfig.part_voxel_m`).

A student's mask on its coarse slot grid spills past its object: over the car parked behind it,
the wall beside it, the pedestrian next to it. The LiDAR points inside the mask say where the
object ends: grouped by 3D connectivity (occupied voxels of `voxel` metres touching in 26
neighbours, never across instances; ground points left out), the part holding most of the
instance's points is its object and every other part is something the mask spilled over.

- In the image (camera resolution) a pixel of the instance goes to the background when the
  returns within a window around it (`window` rows x cols) include one of another part of the
  same instance and none of its main part (returns of other instances are no evidence). Pixels with no return nearby keep their id: far objects have gaps between the
  beams, and a mask is not cut where the scan says nothing.
- Road returns inside the mask count as another part's too when their range lies more than
  `road_margin` metres outside the range span of the instance's main part: the road in front of
  the bumper or behind the object is background, the road under its wheels (within its span) is
  no evidence either way, so the object's bottom stays.
- On the points, the instance keeps its main part only (its ground points go too).

Unlike a fixed range band around the instance's median range (`clusters.depth_gate_grid`), a
part follows the object's own extent, so a car seen end-on (4.5 m deep) is not cut. Measured in
docs/inference.md ("The scan trims each instance to its main 3D part").
"""
from __future__ import annotations

import cv2
import numpy as np

from .baselines import voxel_components

PART_WINDOW = (21, 9)          # rows, cols of camera pixels at KITTI's 375-row camera; scaled with the image height
ROAD_MARGIN = 0.5              # m: road returns this far outside the main part's range span count against the instance


def part_window(height: int) -> tuple[int, int]:
    """The odd (rows, cols) window of `PART_WINDOW` at a camera `height` pixels tall (the beams'
    spacing in pixels scales with the image): (21, 9) at 375 rows, (11, 5) at 188."""
    if height <= 0:
        raise ValueError(f"image height must be positive, got {height}")
    return tuple(max(1, 2 * int(round((k * height / 375 - 1) / 2)) + 1) for k in PART_WINDOW)


def main_part(ids: np.ndarray, xyz: np.ndarray, voxel: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """ids (N,) instance ids (0 = none) of points xyz (N, 3) -> (N,) bool: the point lies in the
    3D-connected part (voxels of `voxel` m, 26 neighbours, never across instances) that holds most
    of its instance's points (a tie keeps every largest part). Points with id 0 or `exclude`
    (N,) bool (ground) are never in a part: False."""
    ids = np.asarray(ids, np.int64)
    xyz = np.asarray(xyz, np.float64)
    if ids.ndim != 1 or xyz.shape != (len(ids), 3):
        raise ValueError(f"ids (N,) and xyz (N, 3) must match, got {ids.shape} and {xyz.shape}")
    if voxel <= 0:
        raise ValueError(f"voxel must be > 0 m, got {voxel}")
    ok = ids > 0 if exclude is None else (ids > 0) & ~np.asarray(exclude, bool)
    keep = np.zeros(len(ids), bool)
    if not ok.any():
        return keep
    comp, n = voxel_components(np.floor(xyz[ok] / voxel).astype(np.int64), ids[ok])   # (M,) part of each point
    size = np.bincount(comp, minlength=n)                                               # (n,) points of each part
    owner = np.zeros(n, np.int64)
    owner[comp] = ids[ok]                                                               # (n,) each part's instance
    best = np.zeros(int(ids.max()) + 1, np.int64)
    np.maximum.at(best, owner, size)                                                    # each instance's largest part
    keep[ok] = size[comp] == best[ids[ok]]
    return keep


def trim_image(labels: np.ndarray, point_pixel: np.ndarray, xyz: np.ndarray, ground: np.ndarray, voxel: float,
               window: tuple[int, int], road_margin: float | None = ROAD_MARGIN) -> np.ndarray:
    """labels (H, W) instance ids at camera resolution, point_pixel (N,) each point's linear pixel
    there (-1: out of view), xyz (N, 3) (sensor at the origin), ground (N,) bool -> a copy of labels
    with every instance pixel whose `window` holds a return of another part of its own instance
    and none of its main part given to the background (each point takes the instance of its pixel;
    `main_part`). With `road_margin` (m; None: the road is no evidence) a ground return counts as
    another part when its range lies more than that outside its instance's main part's range span;
    an instance without a main part (only road under it) then loses every pixel near the road.
    Instance ids must stay below 2^24 (the Predictor's are uint16)."""
    labels = np.asarray(labels)
    point_pixel = np.asarray(point_pixel, np.int64)
    if labels.ndim != 2:
        raise ValueError(f"labels must have shape (H, W), got {labels.shape}")
    if point_pixel.shape != (len(xyz),) or np.shape(ground) != point_pixel.shape:
        raise ValueError(f"point_pixel {point_pixel.shape}, xyz {np.shape(xyz)} and ground {np.shape(ground)} must match")
    H, W = labels.shape
    if point_pixel.size and point_pixel.max() >= H * W:
        raise ValueError(f"point_pixel index {point_pixel.max()} outside labels {labels.shape}")
    vis = point_pixel >= 0
    ids = np.zeros(len(point_pixel), np.int64)
    ids[vis] = labels.reshape(-1)[point_pixel[vis]]
    ground = np.asarray(ground, bool)
    if not (ids > 0).any():                                                             # no return on any instance
        return labels.copy()
    keep = main_part(ids, xyz, voxel, ground)
    other = (ids > 0) & ~keep & ~ground
    if road_margin is not None:
        r = np.linalg.norm(np.asarray(xyz, np.float64), axis=1)                        # (N,) range
        lo, hi = _span(ids[keep], r[keep], int(ids.max()) + 1)                          # each main part's span
        other |= (ids > 0) & ground & ((r < lo[ids] - road_margin) | (r > hi[ids] + road_margin))
    out = labels.copy()
    if not other.any():
        return out
    dtype = np.uint16 if labels.max() < 65535 else np.float32                          # uint16: the fast morphology
    lab = labels.astype(dtype)                                                          # (float32: ids < 2^24 exact)
    main_near = _near(point_pixel[keep], ids[keep], (H, W), window, lab, either=True)
    other_near = _near(point_pixel[other], ids[other], (H, W), window, lab, either=False)
    out[(labels > 0) & other_near & ~main_near] = 0
    return out


def _span(ids: np.ndarray, r: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n,) min and max of r (M,) per id of ids (M,) (inf / -inf for ids absent): one sort."""
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    if len(ids):
        order = np.lexsort((r, ids))
        ids_s, r_s = ids[order], r[order]
        start = np.flatnonzero(np.r_[True, ids_s[1:] != ids_s[:-1]])
        end = np.r_[start[1:], len(ids_s)] - 1
        lo[ids_s[start]], hi[ids_s[end]] = r_s[start], r_s[end]
    return lo, hi


def _near(pixel: np.ndarray, ids: np.ndarray, shape: tuple[int, int], window: tuple[int, int], lab: np.ndarray,
          either: bool) -> np.ndarray:
    """(H, W) bool: the pixel's own instance (`lab`: ids as uint16, or float32 past 65534) has one
    of these returns (linear `pixel`, instance `ids`) within `window`. From the largest and
    smallest id in the window (one dilation and one erosion): exact with up to two instances'
    returns in a window; with three or more, an id strictly between the two counts as present when
    `either`, else as absent."""
    H, W = shape
    big = 65535 if lab.dtype == np.uint16 else 2 ** 24
    hi_img, lo_img = np.zeros(H * W, lab.dtype), np.full(H * W, big, lab.dtype)
    hi_img[pixel] = ids                                                                 # a pixel's returns all
    lo_img[pixel] = ids                                                                 # carry its id
    k = np.ones(window, np.uint8)
    hi_img = cv2.dilate(hi_img.reshape(H, W), k)
    lo_img = cv2.erode(lo_img.reshape(H, W), k)
    near = (hi_img == lab) | (lo_img == lab)
    if either:
        near |= (lo_img < lab) & (lab < hi_img)
    return near


def trim_points(point_labels: np.ndarray, xyz: np.ndarray, ground: np.ndarray, voxel: float) -> np.ndarray:
    """(N,) point instance ids -> a copy where each instance keeps only its main part (`main_part`;
    its ground points and other parts go to 0)."""
    point_labels = np.asarray(point_labels)
    keep = main_part(point_labels, xyz, voxel, ground)
    return np.where(keep, point_labels, 0).astype(point_labels.dtype)
