"""Is the car directly ahead an instance? Counted on an unlabelled real drive (issue #13: "the car
directly ahead in ../shared/kitti_raw is an instance in at least 25 of 30 frames, overlays saved
for a person to check").

The car ahead has no label here; `xmod_core.lead` finds it by geometry (the nearest LiDAR cluster
with returns in a straight corridor of the ego lane). A method finds it in a frame when one of its
instances matches the lead's points in the camera's view at point IoU >= 0.5 (F1@50's rule). Every
method runs the drive as a sequence (students and tracker keep their state), then per frame and
method an overlay is written: the instances on the image, the lead's returns as white dots in its
white box, the best IoU in the corner; plus one contact sheet per method.

    .venv/bin/python tools/car_ahead.py --out out/car_ahead
    .venv/bin/python tools/car_ahead.py --methods lidar hybrid:fused --ckpt-3d runs/NAME/student_lidar.pt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xmod_core.evaluate import METHODS, add_slot_arguments, method_config, slot_overrides  # noqa: E402
from xmod_core.fusion import AGREEMENTS  # noqa: E402
from xmod_core.frontview import project_scan  # noqa: E402
from xmod_core.kitti import KittiRawDrive  # noqa: E402
from xmod_core.lead import LeadConfig, best_iou, lead_object  # noqa: E402
from xmod_core.predictor import Predictor, PredictorConfig  # noqa: E402
from xmod_ros import render  # noqa: E402

DRIVE = Path(__file__).resolve().parents[2] / "shared/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync"


def picture(image, labels, uv, iou, title) -> np.ndarray:
    """The instances over the image, the lead's returns (uv (M, 2) pixels) and its box in white."""
    img = render.overlay(image, labels)
    if len(uv):
        H, W = labels.shape
        px = np.clip(np.floor(uv).astype(np.int32), 0, [W - 1, H - 1])            # (M, 2) in view: inside the image
        img[px[:, 1], px[:, 0]] = 255
        x0, y0 = px.min(0)
        x1, y1 = px.max(0)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (255, 255, 255), 2)
    text = f"{title}  lead IoU {iou:.2f} {'found' if iou >= 0.5 else 'missed'}" if len(uv) else f"{title}  no lead"
    cv2.putText(img, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def run(drive_dir, methods, ckpt_2d=None, ckpt_3d=None, out: Path | None = None, lead_cfg=LeadConfig(),
        sheet_frames=4, size=(96, 320), overrides=None) -> dict:
    """{method: {frames, with_lead, found, mean_iou, iou: [per frame, None without a lead]}}; `size`:
    the students' processing (height, width); `overrides`: further PredictorConfig fields."""
    drive = KittiRawDrive(drive_dir)
    preds = {m: Predictor(PredictorConfig(ckpt_2d=ckpt_2d, ckpt_3d=ckpt_3d, height=size[0], width=size[1],
                                          **method_config(m) | (overrides or {})), drive.calib)
             for m in methods}
    stamps = drive.timestamps
    result = {m: {"iou": []} for m in methods}
    sheets = {m: [] for m in methods}
    picks = set(np.linspace(0, len(drive) - 1, sheet_frames).round().astype(int).tolist())
    for t in range(len(drive)):
        image, scan = drive.image(t), drive.scan(t)
        in_view = project_scan(scan, drive.calib).point_pixel >= 0
        lead = lead_object(scan, lead_cfg)
        target = (lead & in_view) if lead is not None else np.zeros(len(scan), bool)
        uv = drive.calib.project(scan[target])[0] if target.any() else np.zeros((0, 2))
        for m, p in preds.items():
            res = p(image=image if p.cfg.mode != "lidar" else None, points=scan, stamp=float(stamps[t]))
            iou = best_iou(np.asarray(res.point_labels, np.int64)[in_view], target[in_view])[0] if target.any() else None
            result[m]["iou"].append(iou)
            if out is not None:
                img = picture(image, res.labels, uv, iou or 0.0, f"{m} {drive.frame_ids[t]}")
                (out / m.replace(":", "_")).mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / m.replace(":", "_") / f"{drive.frame_ids[t]}.png"), img[..., ::-1])
                if t in picks:
                    sheets[m].append(cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA))
    for m, r in result.items():
        ious = [v for v in r["iou"] if v is not None]
        r.update(frames=len(r["iou"]), with_lead=len(ious), found=int(sum(v >= 0.5 for v in ious)),
                 mean_iou=float(np.mean(ious)) if ious else None)
        if out is not None and sheets[m]:
            cv2.imwrite(str(out / f"sheet_{m.replace(':', '_')}.jpg"), np.concatenate(sheets[m], 0)[..., ::-1],
                        [cv2.IMWRITE_JPEG_QUALITY, 80])
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drive", type=Path, default=DRIVE, help="a KITTI raw drive folder (default: ../shared/kitti_raw's)")
    ap.add_argument("--methods", nargs="+", default=["rgb", "lidar", "fused", "hybrid:lidar", "hybrid:fused"],
                    choices=list(METHODS))
    ap.add_argument("--ckpt-2d", help="exported 2D student, or a shipped one by name (grid2, fine); default: the shipped one")
    ap.add_argument("--ckpt-3d", help="exported 3D student, or a shipped one by name (grid2 = the default, stride4, fine)")
    ap.add_argument("--out", type=Path, help="overlays per method and frame, and a contact sheet per method")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--height", type=int, default=96, help="the students' processing height")
    ap.add_argument("--width", type=int, default=320, help="the students' processing width")
    ap.add_argument("--zoom-tiles", type=int, default=0, help="tiles of the horizon band also seen at twice the resolution")
    ap.add_argument("--mirror", action="store_true", help="the students also see each frame mirrored left-right")
    ap.add_argument("--zoom-ckpt-2d", default="", help="the tiles' own 2D student: a path, or fine / grid2; default: the frame's")
    ap.add_argument("--zoom-ckpt-3d", default="", help="the tiles' own 3D student: a path, or fine / grid2; default: the frame's")
    ap.add_argument("--min-score", type=float, help="both students' instance threshold (default: each student's own)")
    ap.add_argument("--fusion-agreement", choices=("auto", *AGREEMENTS), default=PredictorConfig.fusion_agreement,
                    help="fused: what makes both students agree on an object (default: the Predictor's)")
    ap.add_argument("--fusion-foreground", type=float, default=PredictorConfig.fusion_foreground,
                    help="--fusion-agreement separate / either / foreground: the mean 2D foreground attention a 3D "
                         "instance needs")
    add_slot_arguments(ap)
    a = ap.parse_args(argv)
    if not a.drive.is_dir():
        ap.error(f"--drive {a.drive}: no such folder")
    res = run(a.drive, a.methods, a.ckpt_2d, a.ckpt_3d, a.out, size=(a.height, a.width),
              overrides={"zoom_tiles": a.zoom_tiles, "mirror": a.mirror, "zoom_ckpt_2d": a.zoom_ckpt_2d,
                         "zoom_ckpt_3d": a.zoom_ckpt_3d, "min_score": a.min_score,
                         "fusion_agreement": a.fusion_agreement, "fusion_foreground": a.fusion_foreground,
                         **slot_overrides(a)})
    print("| method | frames with a lead | lead found (IoU >= 0.5) | mean best IoU |\n| --- | ---: | ---: | ---: |")
    for m, r in res.items():
        mean = f"{r['mean_iou']:.3f}" if r["mean_iou"] is not None else "-"
        print(f"| {m} | {r['with_lead']} / {r['frames']} | {r['found']} | {mean} |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
