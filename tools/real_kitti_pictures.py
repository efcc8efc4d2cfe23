"""Pictures of the real-KITTI benchmark frames for a person to check: per frame, LiDAR clustering
and a learned mode side by side in a bird's-eye view (points in the camera's view, each instance
in its colour, labelled 3D boxes in white, DontCare-free), and where the frame has an image the
camera overlay of the learned mode with the labelled 2D boxes in white.

    .venv/bin/python tools/real_kitti_pictures.py --data ../shared/kitti_object --frames 000001 000004 \\
        --method hybrid:fused --out out/real_pictures
    .venv/bin/python tools/real_kitti_pictures.py --data ../shared/kitti_tracking --frames 000010 000040 \\
        --method hybrid:lidar --out out/real_pictures

A sequence runs from its first frame up to the last one asked for (the students and the tracker
carry state), single frames run alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.baselines import euclidean_clusters  # noqa: E402
from xmod_core.evaluate import NAMES, method_config  # noqa: E402
from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.kitti_gt import DONT_CARE, find_gt_sources  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402
from xmod_ros import render  # noqa: E402

X_RANGE, Y_RANGE, RES = (0.0, 50.0), (-20.0, 20.0), 0.08


def box_corners_velo(label, calib) -> np.ndarray:
    """(4, 2) bird's-eye corners (LiDAR frame) of a labelled 3D box (camera coordinates)."""
    h, w, l = label.dims
    c, s = np.cos(label.rotation_y), np.sin(label.rotation_y)
    local = np.array([[l, w], [l, -w], [-l, -w], [-l, w]]) / 2                       # (along, across)
    cam = np.stack([label.location[0] + local[:, 0] * c + local[:, 1] * s, np.full(4, label.location[1] - h / 2),
                    label.location[2] - local[:, 0] * s + local[:, 1] * c], 1)
    T = np.linalg.inv(calib.T_velo_to_rect)
    return (cam @ T[:3, :3].T + T[:3, 3])[:, :2]


def bev(points, labels, gt, calib, title) -> np.ndarray:
    img = render.birds_eye(points, labels, (), X_RANGE, Y_RANGE, RES)
    to_px = lambda xy: np.stack([(Y_RANGE[1] - xy[:, 1]) / RES, (X_RANGE[1] - xy[:, 0]) / RES], 1)
    for lb in gt:
        cv2.polylines(img, [to_px(box_corners_velo(lb, calib)).round().astype(np.int32)], True, (255, 255, 255), 1)
    cv2.putText(img, title, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def picture(fr, res, method: str) -> np.ndarray:
    in_view = project_scan(fr.scan, fr.calib).point_pixel >= 0
    pts = fr.scan[in_view]
    gt = [lb for lb in fr.labels if lb.type != DONT_CARE]
    cl = euclidean_clusters(fr.scan)[in_view]
    top = np.concatenate([bev(pts, cl, gt, fr.calib, f"LiDAR clustering ({len(np.unique(cl)) - 1})"),
                          np.full((int((X_RANGE[1] - X_RANGE[0]) / RES), 4, 3), 255, np.uint8),
                          bev(pts, res.point_labels[in_view], gt, fr.calib,
                              f"{NAMES[method]} ({len(np.unique(res.point_labels)) - 1})")], 1)
    if fr.image is None:
        return top
    cam = render.overlay(fr.image, res.labels)
    for lb in gt:
        x0, y0, x1, y1 = lb.bbox.round().astype(int)
        cv2.rectangle(cam, (x0, y0), (x1, y1), (255, 255, 255), 1)
    cam = cv2.resize(cam, (top.shape[1], round(cam.shape[0] * top.shape[1] / cam.shape[1])))
    return np.concatenate([cam, top], 0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a KITTI object or tracking folder")
    ap.add_argument("--frames", nargs="+", required=True, help="frame names, e.g. 000004")
    ap.add_argument("--method", default="hybrid:fused", choices=list(NAMES))
    ap.add_argument("--out", type=Path, default=Path("out/real_pictures"))
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for src in find_gt_sources([a.data]):
        want = {n: i for i, n in enumerate(src.names) if n in a.frames}
        cfg = method_config(a.method)
        if cfg["mode"] != "lidar" and not src.has_images:
            cfg["mode"] = "lidar"
        pred, last = None, max(want.values(), default=-1)
        for i in (range(last + 1) if src.is_sequence else sorted(want.values())):
            fr = src.frame(i)
            if pred is None:
                pred = Predictor(PredictorConfig(**cfg), fr.calib)
            elif not src.is_sequence:
                pred.set_calib(fr.calib)
            res = pred(image=fr.image if cfg["mode"] != "lidar" else None, points=fr.scan, stamp=fr.stamp)
            if fr.name in want:
                path = a.out / f"{src.name.replace('/', '_')}_{fr.name}_{a.method.replace(':', '_')}.png"
                cv2.imwrite(str(path), picture(fr, res, f"{cfg['instances']}:{cfg['mode']}".replace("slots:", ""))[..., ::-1])
                print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
