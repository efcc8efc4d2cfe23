"""Pictures of results (no ROS): instance colours, the camera overlay with ids, and a bird's-eye
view of the 3D clusters. Vectorised: a colour lookup table indexed by the label image, centroids
by bincount; loops only over instances (text and boxes)."""
from __future__ import annotations

import cv2
import numpy as np


def palette(n: int = 65536) -> np.ndarray:
    """(n, 3) uint8 RGB: id 0 black, then well-separated hues (golden-ratio steps), fixed per id."""
    ids = np.arange(n)
    hue = (ids * 0.618033988749895) % 1.0
    sat = 0.65 + 0.35 * ((ids * 7) % 3) / 2
    val = np.full(n, 0.95)
    h6 = hue * 6
    i = np.floor(h6).astype(int) % 6
    f = h6 - np.floor(h6)
    p, q, t = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    r = np.choose(i, [val, q, p, p, t, val])
    g = np.choose(i, [t, val, val, q, p, p])
    b = np.choose(i, [p, p, t, val, val, q])
    out = (np.stack([r, g, b], 1) * 255).round().astype(np.uint8)
    out[0] = 0
    return out


_PALETTE = palette()


def colours(ids) -> np.ndarray:
    """Colours (..., 3) uint8 RGB of instance ids (any integer array)."""
    return _PALETTE[np.asarray(ids, np.int64) % len(_PALETTE)]


def instance_centres(labels: np.ndarray, step: int = 1) -> dict[int, tuple[int, int]]:
    """{id: (x, y) pixel centroid} of every id > 0 in a label image (from every ``step``-th
    pixel in both directions: 1 is exact, 4 is 16 times cheaper and plenty to place a text)."""
    sub = labels[::step, ::step]
    flat = sub.reshape(-1).astype(np.int64)
    n = int(flat.max()) + 1 if flat.size else 1
    if n <= 1:
        return {}
    cnt = np.bincount(flat, minlength=n)
    w = sub.shape[1]
    sx = np.bincount(flat, np.tile(np.arange(w, dtype=np.float64), sub.shape[0]), n)
    sy = np.bincount(flat, np.repeat(np.arange(sub.shape[0], dtype=np.float64), w), n)
    return {int(i): (int(step * sx[i] / cnt[i]), int(step * sy[i] / cnt[i])) for i in np.flatnonzero(cnt[1:]) + 1}


def overlay(rgb: np.ndarray | None, labels: np.ndarray, alpha: float = 0.5, ids: bool = True,
            edges: bool = True) -> np.ndarray:
    """(H, W, 3) uint8 RGB camera image (None: dark grey) with instances blended in their colour,
    their outlines and their ids at their centroids. About 10 ms at 1242x375 (whole-image
    OpenCV operations; loops only over instances)."""
    H, W = labels.shape
    base = np.full((H, W, 3), 40, np.uint8) if rgb is None else np.ascontiguousarray(rgb, np.uint8)
    fg = (labels > 0).view(np.uint8)
    if not fg.any():
        return base.copy()
    top = int(labels.max())
    col = _PALETTE[: top + 1][labels] if top < len(_PALETTE) else colours(labels)   # (H, W, 3)
    blended = cv2.addWeighted(base, 1.0 - alpha, col, alpha, 0.0)
    out = base.copy()
    cv2.copyTo(blended, fg, out)
    if edges:
        kernel = np.ones((3, 3), np.uint8)
        lab = labels if labels.dtype in (np.uint8, np.uint16) else labels.astype(np.uint16)
        edge = (cv2.dilate(lab, kernel) != cv2.erode(lab, kernel)) & (labels > 0)
        cv2.copyTo(col, edge.view(np.uint8), out)
    if ids:
        scale = max(0.35, min(1.0, H / 400))
        for i, (x, y) in instance_centres(labels, 4 if H * W > 100_000 else 1).items():
            text = str(i)
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            org = (int(np.clip(x - tw // 2, 0, max(0, W - tw))), int(np.clip(y + th // 2, th, H - 1)))
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def box_corners_xy(center, size, yaw) -> np.ndarray:
    """(4, 2) ground-plane corners of an oriented box (l along yaw, w across)."""
    l, w = float(size[0]) / 2, float(size[1]) / 2
    c, s = np.cos(yaw), np.sin(yaw)
    local = np.array([[l, w], [l, -w], [-l, -w], [-l, w]])
    return local @ np.array([[c, s], [-s, c]]) + np.asarray(center, np.float64)[:2]


def birds_eye(points: np.ndarray, labels: np.ndarray | None = None, objects=(), x_range=(0.0, 60.0),
              y_range=(-25.0, 25.0), res: float = 0.1) -> np.ndarray:
    """Top view (RGB uint8) of a LiDAR cloud in its own frame (x forward up the image, y left):
    background points grey, instance points in their colour, oriented boxes and ids of ``objects``
    (anything with id, center, size, yaw)."""
    Hpx, Wpx = int(round((x_range[1] - x_range[0]) / res)), int(round((y_range[1] - y_range[0]) / res))
    img = np.full((Hpx, Wpx, 3), 15, np.uint8)
    pts = np.asarray(points)
    lab = np.zeros(len(pts), np.int64) if labels is None else np.asarray(labels, np.int64)

    def to_px(xy):
        return np.stack([(y_range[1] - xy[:, 1]) / res, (x_range[1] - xy[:, 0]) / res], 1)

    finite = np.isfinite(pts[:, :2]).all(1) if len(pts) else np.zeros(0, bool)
    if finite.any():
        pts, lab = pts[finite], lab[finite]
        pxf = to_px(pts[:, :2])
        ok = (pxf[:, 0] >= 0) & (pxf[:, 0] < Wpx) & (pxf[:, 1] >= 0) & (pxf[:, 1] < Hpx)
        px = pxf[ok].astype(np.int64)
        order = np.argsort(lab[ok] > 0, kind="stable")                # instances drawn last (on top)
        p, l_ = px[order], lab[ok][order]
        col = np.where((l_ > 0)[:, None], colours(l_), np.uint8(110)).astype(np.uint8)
        img[p[:, 1], p[:, 0]] = col
        big = l_ > 0                                                   # thicker instance points
        for dx, dy in ((1, 0), (0, 1), (1, 1)):
            q = p[big] + [dx, dy]
            k = (q[:, 0] < Wpx) & (q[:, 1] < Hpx)
            img[q[k, 1], q[k, 0]] = col[big][k]
    for o in objects:
        corners = to_px(box_corners_xy(o.center, o.size, o.yaw)).round().astype(np.int32)
        c = tuple(int(v) for v in colours(o.id))
        cv2.polylines(img, [corners], True, c, 1, cv2.LINE_8)
        cx, cy = corners.mean(0).astype(int)
        cv2.putText(img, str(o.id), (int(cx) + 4, int(cy) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    ego = to_px(np.array([[0.0, 0.0]]))[0].astype(int)
    cv2.drawMarker(img, (int(ego[0]), int(ego[1]) - 3), (255, 255, 255), cv2.MARKER_TRIANGLE_UP, 10, 1)
    return img
