"""Evaluation CLI: `python -m xmod_core.evaluate --data 'DRIVES' --ckpt-2d A --ckpt-3d B --mode all`.

Streams every frame of every drive (with ground truth: the simulator's instance_02/,
velodyne_labels/ and objects/) through the requested modes of the Predictor and two baselines
computed by the same code on the same frames:

1. the motion masks themselves (what the students learn from), and
2. classical LiDAR clustering (ground removal + Euclidean clustering, `baselines`), its clusters
   projected into the image for the 2D metrics.

Prints one table per domain (2D at the paper's resolution, the 1/4 grid of the input; 2D at full
camera resolution; 2D boxes at full resolution, as KITTI's 2D labels are scored, the ground
truth's around the objects' masks or, with `--gt-boxes kitti`, the image rectangles of their 3D
boxes as KITTI's labels are made, the predictions' by `--box-source`; 3D on the LiDAR points in
the camera's view) with FG-ARI, all-ARI, F1@50, P, R,
recall on still and on moving objects, frames/s; writes them as JSON and Markdown to --out.
Ground-truth objects under --min-area (share of the image; --min-points in 3D) are ignored.

Real KITTI ground truth (`kitti_gt`): `--data` also takes the KITTI object layout and the tracking
layout (one source per sequence). There, per source: 3D on the LiDAR points in the camera's view
(ground truth: the points inside each labelled 3D box; objects with fewer than --min-points points
count neither way, nor do predictions lying mostly in a DontCare region), 2D boxes (F1@50 of the
box around each predicted instance against the labelled 2D boxes), and on sequences the id
stability of the 3D matches. Methods needing images are skipped where a source has none; motion
masks need video and are not scored there.

Methods: `rgb`, `lidar`, `fused` (the students' instances, the paper's) and `hybrid:MODE`
(LiDAR clusters the students of MODE call objects, see `hybrid`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .baselines import EXTENTS, ClusterConfig, clusters_to_image, euclidean_clusters, ground_plane
from .clusters import cluster_objects
from .data import MOTION_DIR, find_drives, unknown_frames
from .frontview import grid_labels_to_points, project_scan
from .fusion import AGREEMENTS, MASKS
from .image_boxes import BOX_SOURCES, box_corners, frame_boxes, project_boxes, resolve_box_source
from .instances import FRAGMENTS
from .tiles import ZOOM_LIDAR
from .kitti import KittiRawDrive
from .kitti_gt import dont_care_boxes, find_gt_sources, object_boxes, points_in_boxes
from .metrics import F1Accumulator, IdStability, all_ari, box_area, box_intersection, box_iou, fg_ari, instance_boxes
from .predictor import DEFAULT_2D, DEFAULT_3D, MODES, Predictor, PredictorConfig

DOMAINS = ("2d_grid", "2d_full", "2d_box", "3d")
REAL_DOMAINS = ("3d", "2d_box")
GT_BOXES = ("masks", "kitti")
METHODS = (*MODES, *(f"hybrid:{m}" for m in MODES))
NAMES = {"rgb": "DIOD 2D (rgb)", "lidar": "DIOD-3D (lidar)", "fused": "fused"} | \
    {f"hybrid:{m}": f"hybrid ({m})" for m in MODES}


def method_config(method: str) -> dict:
    """'lidar' -> {mode: lidar, instances: slots}; 'hybrid:fused' -> {mode: fused, instances: hybrid}."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    inst, _, mode = method.rpartition(":")
    return {"mode": mode, "instances": inst or "slots"}


class _Row:
    def __init__(self):
        self.f1 = {d: F1Accumulator() for d in DOMAINS}
        self.fg = {d: [] for d in DOMAINS}
        self.all = {d: [] for d in DOMAINS}
        self.seconds, self.frames = 0.0, 0

    def add_boxes(self, gt_boxes, pred_boxes, scores, ignore, moving, sizes):
        """F1@50 of the predicted instances' boxes (ids, boxes) against the ground truth's (ids,
        boxes: around the masks or projected from the 3D boxes, `gt_boxes` of `evaluate`; the
        simulator's counterpart of KITTI's 2D boxes; no ARI for boxes)."""
        gids, gbox = gt_boxes
        pids, pbox = pred_boxes
        s = box_area(pbox) if scores is None else np.array([scores.get(int(p), 0.0) for p in pids])
        self.f1["2d_box"].count(box_iou(gbox, pbox), s, np.isin(gids, list(ignore)), None, np.isin(gids, list(moving)),
                                np.array([sizes.get(int(g), np.nan) for g in gids], np.float64))

    def add(self, domain, gt, pred, scores, ignore, moving, sizes):
        self.f1[domain].update(gt, pred, scores=scores, ignore_ids=ignore, moving_ids=moving, sizes=sizes)
        clean_gt = np.where(np.isin(gt, ignore), 0, gt)
        for store, fn in ((self.fg, fg_ari), (self.all, all_ari)):
            v = fn(clean_gt, pred)
            if v is not None:
                store[domain].append(v)

    def result(self, domain) -> dict:
        r = self.f1[domain].result()
        mean = lambda xs: float(np.mean(xs)) if xs else None
        return {"fg_ari": mean(self.fg[domain]), "all_ari": mean(self.all[domain]), "f1": r["f1"], "precision": r["precision"],
                "recall": r["recall"], "recall_still": r["recall_still"], "recall_moving": r["recall_moving"],
                "recall_by_size": r["recall_by_size"], "recall_still_by_size": r["recall_still_by_size"], "fps": self.frames / self.seconds if self.seconds else None}


def sim_point_ids(drive_dir: Path, fid: str) -> np.ndarray:
    """The simulator's instance id of every LiDAR point of frame `fid` (N,) int64, 0 = no object
    (velodyne_labels/: the id in the upper 16 bits of each uint32 label)."""
    return (np.fromfile(Path(drive_dir) / "velodyne_labels/data" / f"{fid}.label", np.uint32) >> 16).astype(np.int64)


def _small_ids(ids: np.ndarray, min_count: int) -> list:
    counts = np.bincount(ids.reshape(-1).astype(np.int64))
    return [int(i) for i in np.flatnonzero((counts > 0) & (counts < min_count)) if i]


def gt_object_boxes(objects: list, ids, calib) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's objects (objects/*.json) among `ids` as KITTI labels its 2D boxes: ids (P,)
    ascending and the image rectangles (P, 4) of their 3D boxes (`box_velo`), clipped to the image."""
    objs = sorted((o for o in objects if o["id"] in set(ids)), key=lambda o: o["id"])
    if not objs:
        return np.zeros(0, np.int64), np.zeros((0, 4))
    b = [o["box_velo"] for o in objs]
    box, ok = project_boxes(box_corners(np.array([x["center"] for x in b]), np.array([x["size"] for x in b]),
                                        np.array([x["yaw"] for x in b])), calib)
    return np.array([o["id"] for o in objs], np.int64)[ok], box[ok]


def _cluster_boxes(scan, cl, labels, calib, source):
    """Boxes of the clustering baseline's instances by `source` (image_boxes.BOX_SOURCES); its
    ground plane for 3d_ground is the clusters' own (ground removal)."""
    source = resolve_box_source(source, "clusters")
    if source == "mask":
        return instance_boxes(labels)
    objs, _ = cluster_objects(scan, cl, min_points=1, depth_gate=0.0)
    view = project_scan(scan, calib).point_pixel >= 0
    plane = ground_plane(scan[view], ClusterConfig()) if source == "3d_ground" else None
    return frame_boxes(labels, objs, calib, source, plane)


def evaluate(drives, modes, ckpt_2d=None, ckpt_3d=None, height=96, width=320, device="auto",
             min_area=0.001, min_points=10, progress=True, predictor_overrides=None, baselines=True,
             names=None, gt_boxes="masks") -> dict:
    """Scores of the requested modes (and, with `baselines`, of the motion masks and LiDAR
    clustering) per domain: {domain: {row name: metrics}}. `names` renames the modes' rows.
    `gt_boxes`: the ground-truth boxes of domain 2d_box, around the objects' masks (masks) or the
    image rectangles of their 3D boxes (kitti, as KITTI's labels are made); the predicted boxes
    follow `predictor_overrides["box_source"]` (the clustering row's too)."""
    if gt_boxes not in GT_BOXES:
        raise ValueError(f"gt_boxes must be one of {GT_BOXES}, got {gt_boxes!r}")
    box_source = (predictor_overrides or {}).get("box_source", PredictorConfig.box_source)
    names = NAMES | (names or {})
    rows: dict[str, _Row] = {}
    row = lambda name: rows.setdefault(name, _Row())
    grid_hw = (height // 4, width // 4)
    for drive_dir in drives:
        drive = KittiRawDrive(drive_dir)
        if not (drive.drive_dir / "instance_02").is_dir():
            raise FileNotFoundError(f"{drive.drive_dir}: no ground truth (instance_02/); evaluate needs simulated drives")
        calib = drive.calib
        preds = {m: Predictor(PredictorConfig(ckpt_2d=ckpt_2d, ckpt_3d=ckpt_3d, device=device, height=height, width=width,
                                              **method_config(m) | (predictor_overrides or {})), calib) for m in modes}
        unknown = unknown_frames(drive.drive_dir, MOTION_DIR)
        stamps = drive.timestamps
        it = tqdm(range(len(drive)), desc=drive.drive_dir.name, disable=not progress, unit="frame")
        for t in it:
            fid = drive.frame_ids[t]
            image, scan = drive.image(t), drive.scan(t)
            gt = cv2.imread(str(drive.drive_dir / "instance_02/data" / f"{fid}.png"), cv2.IMREAD_UNCHANGED).astype(np.int64)
            gt_pts = sim_point_ids(drive.drive_dir, fid)
            objs = json.loads((drive.drive_dir / "objects/data" / f"{fid}.json").read_text())["objects"]
            moving = [o["id"] for o in objs if o["moving"]]
            fv_full = project_scan(scan, calib)
            in_view = fv_full.point_pixel >= 0
            gts = {"2d_full": gt, "2d_grid": cv2.resize(gt.astype(np.uint16), grid_hw[::-1], interpolation=cv2.INTER_NEAREST),
                   "3d": gt_pts[in_view]}
            area = np.bincount(gt.reshape(-1))
            sizes = {int(i): int(area[i]) for i in np.flatnonzero(area[1:]) + 1}       # pixels at camera resolution
            gbox = instance_boxes(gt) if gt_boxes == "masks" else gt_object_boxes(objs, np.flatnonzero(area[1:]) + 1, calib)
            ignore = {"2d_full": _small_ids(gts["2d_full"], max(4, min_area * gt.size)),
                      "2d_grid": _small_ids(gts["2d_grid"], max(4, min_area * gts["2d_grid"].size)),
                      "3d": _small_ids(gts["3d"], min_points)}

            def score(name, labels_full, point_labels, scores, seconds, boxes=None):
                r = row(name)
                r.seconds, r.frames = r.seconds + seconds, r.frames + 1
                grid = cv2.resize(labels_full.astype(np.uint16), grid_hw[::-1], interpolation=cv2.INTER_NEAREST)
                for dom, pred in (("2d_full", labels_full), ("2d_grid", grid), ("3d", point_labels[in_view])):
                    r.add(dom, gts[dom], pred.astype(np.int64), scores, ignore[dom], moving, sizes)
                r.add_boxes(gbox, instance_boxes(labels_full) if boxes is None else boxes, scores, ignore["2d_full"],
                            moving, sizes)

            if baselines:
                # baseline 1: the motion masks
                t0 = time.perf_counter()
                mpath = drive.drive_dir / MOTION_DIR / f"{fid}.png"
                motion = cv2.imread(str(mpath), cv2.IMREAD_UNCHANGED) if mpath.is_file() and fid not in unknown else None
                motion = np.zeros(gt.shape, np.int64) if motion is None else motion.astype(np.int64)
                score("motion masks", motion, grid_labels_to_points(motion, fv_full.point_pixel), None, time.perf_counter() - t0)
                # baseline 2: LiDAR Euclidean clustering
                t0 = time.perf_counter()
                cl = euclidean_clusters(scan, ClusterConfig())
                cl_img = clusters_to_image(scan, cl, calib, *gt.shape)
                score("LiDAR clustering", cl_img, cl, None, time.perf_counter() - t0,
                      _cluster_boxes(scan, cl, cl_img, calib, box_source))
            for m, p in preds.items():
                t0 = time.perf_counter()
                res = p(image=image if p.cfg.mode != "lidar" else None, points=scan, stamp=float(stamps[t]))
                score(names[m], res.labels, res.point_labels, res.scores, time.perf_counter() - t0, (res.box_ids, res.boxes))
    return {dom: {name: r.result(dom) for name, r in rows.items()} for dom in DOMAINS}


class _RealRow:
    def __init__(self):
        self.f1 = {d: F1Accumulator() for d in REAL_DOMAINS}
        self.fg, self.ids = [], IdStability()
        self.seconds, self.frames = 0.0, 0

    def result(self, domain) -> dict:
        r = self.f1[domain].result()
        out = {"f1": r["f1"], "precision": r["precision"], "recall": r["recall"], "tp": r["tp"], "fp": r["fp"], "fn": r["fn"],
               "recall_by_size": r["recall_by_size"], "fps": self.frames / self.seconds if self.seconds else None,
               "per_frame": self.f1[domain].frames}                    # [tp, fp, fn] per frame (tools/real_veto.py)
        if domain == "3d":
            out |= {"fg_ari": float(np.mean(self.fg)) if self.fg else None} | self.ids.result()
        return out


def _share_in_boxes(uv: np.ndarray, ids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted ids present among points (ids > 0) and the share of each one's points whose
    pixel (uv) lies inside any of `boxes`."""
    sel = ids > 0
    u, inv = np.unique(ids[sel], return_inverse=True)
    if not len(boxes) or not len(u):
        return u, np.zeros(len(u))
    p = uv[sel]
    inside = ((p[:, None, 0] >= boxes[:, 0]) & (p[:, None, 0] <= boxes[:, 2]) & (p[:, None, 1] >= boxes[:, 1]) &
              (p[:, None, 1] <= boxes[:, 3])).any(1)
    return u, np.bincount(inv, inside.astype(np.float64), len(u)) / np.bincount(inv, minlength=len(u))


def evaluate_real(sources, methods, ckpt_2d=None, ckpt_3d=None, height=96, width=320, device="auto", min_points=10,
                  progress=True, predictor_overrides=None, baselines=True, dont_care_share=0.5) -> dict:
    """Scores against real KITTI labels: {source name: {domain: {row name: metrics}}} with domains
    `3d` (LiDAR points in view) and `2d_box`. Methods needing a camera are skipped for sources
    without images; a method's Predictor restarts its sequence at every frame of the object layout.
    The predicted boxes follow `predictor_overrides["box_source"]` (the clustering row's too)."""
    box_source = (predictor_overrides or {}).get("box_source", PredictorConfig.box_source)
    out = {}
    for src in sources:
        rows: dict[str, _RealRow] = {}
        use = [m for m in methods if src.has_images or method_config(m)["mode"] == "lidar"]
        preds = {}
        it = tqdm(range(len(src)), desc=src.name, disable=not progress, unit="frame")
        for i in it:
            fr = src.frame(i)
            for m in use:
                if m not in preds:
                    preds[m] = Predictor(PredictorConfig(ckpt_2d=ckpt_2d, ckpt_3d=ckpt_3d, device=device, height=height, width=width,
                                                         **method_config(m) | (predictor_overrides or {})), fr.calib)
                elif not src.is_sequence:
                    preds[m].set_calib(fr.calib)
            H, W = fr.calib.height, fr.calib.width
            fv = project_scan(fr.scan, fr.calib)
            in_view = fv.point_pixel >= 0
            uv = fr.calib.project(fr.scan[in_view])[0]
            objs = [lb for lb in fr.labels if lb.type != "DontCare"]
            gt_index = points_in_boxes(fr.scan[in_view], fr.calib, fr.labels)                       # (V,) 1 + label index
            obj_of_label = np.cumsum([lb.type != "DontCare" for lb in fr.labels])                   # label -> object number
            gt_obj = np.where(gt_index > 0, obj_of_label[np.maximum(gt_index, 1) - 1], 0)           # (V,) 1..B
            track = np.array([lb.track_id + 1 if lb.track_id >= 0 else k + 1 for k, lb in enumerate(objs)], np.int64)
            gt = np.concatenate([[0], track])[gt_obj]                                               # (V,) object ids
            npts = np.bincount(gt_obj, minlength=len(objs) + 1)[1:]
            ignore = track[npts < min_points]
            gt_boxes, dc = object_boxes(fr.labels), dont_care_boxes(fr.labels)
            box_px = box_area(gt_boxes)                                                              # (B,) size in pixels
            sizes = dict(zip(track.tolist(), box_px.tolist()))

            def score(name, point_labels, labels, scores, seconds, boxes=None):
                r = rows.setdefault(name, _RealRow())
                r.seconds, r.frames = r.seconds + seconds, r.frames + 1
                pl = np.asarray(point_labels, np.int64)[in_view]
                u, share = _share_in_boxes(uv, pl, dc)
                hits = r.f1["3d"].update(gt, pl, scores, ignore_ids=ignore, ignore_pred_ids=u[share > dont_care_share],
                                         sizes=sizes)
                if src.is_sequence:
                    r.ids.update(track[npts >= min_points], hits)
                v = fg_ari(np.where(np.isin(gt, ignore), 0, gt), pl)
                if v is not None:
                    r.fg.append(v)
                pids, pbox = instance_boxes(labels) if boxes is None else boxes
                area = box_area(pbox)
                in_dc = box_intersection(pbox, dc).max(1, initial=0) / np.maximum(area, 1) > dont_care_share
                s = np.array([scores.get(int(p), 0.0) for p in pids]) if scores is not None else area
                r.f1["2d_box"].count(box_iou(gt_boxes, pbox), s, npts < min_points, in_dc, size=box_px)

            if baselines:
                t0 = time.perf_counter()
                cl = euclidean_clusters(fr.scan, ClusterConfig())
                cl_img = clusters_to_image(fr.scan, cl, fr.calib, H, W)
                score("LiDAR clustering", cl, cl_img, None, time.perf_counter() - t0,
                      _cluster_boxes(fr.scan, cl, cl_img, fr.calib, box_source))
            for m, p in preds.items():
                t0 = time.perf_counter()
                res = p(image=fr.image if p.cfg.mode != "lidar" else None, points=fr.scan, stamp=fr.stamp)
                score(NAMES[m], res.point_labels, res.labels, res.scores, time.perf_counter() - t0, (res.box_ids, res.boxes))
        out[src.name] = {dom: {name: r.result(dom) for name, r in rows.items()} for dom in REAL_DOMAINS}
    return out


def tables(results: dict, title: str = "") -> str:
    cols = [("fg_ari", "FG-ARI"), ("all_ari", "all-ARI"), ("f1", "F1@50"), ("precision", "P"), ("recall", "R"),
            ("recall_still", "R still"), ("recall_moving", "R moving"), *_size_cols(results), ("fps", "frames/s")]
    names = {"2d_grid": "2D, 1/4 grid of the input", "2d_full": "2D, full camera resolution",
             "2d_box": "2D boxes, full camera resolution (box F1@50; no ARI)", "3d": "3D, LiDAR points in view"}
    out = [f"# {title}".rstrip()] if title else []
    for dom, rows in results.items():
        out += [f"\n## {names[dom]}\n", "| method | " + " | ".join(c[1] for c in cols) + " |",
                "|---|" + "---:|" * len(cols)]
        out += [f"| {name} | " + " | ".join(_fmt(_get(r, k)) for k, _ in cols) + " |" for name, r in rows.items()]
    return "\n".join(out) + "\n"


def _size_cols(results: dict) -> list:
    """Columns of the recall by object size: ('size:<1k', 'R <1k px (n)'), ... from the first row."""
    first = next((r for rows in results.values() for r in rows.values()), {})
    return [(f"size:{b}", f"R {b} px") for b in first.get("recall_by_size", {})]


def _get(row: dict, key: str):
    """A metric of a row; 'size:BIN' is the recall of that size bin with its count, e.g. '0.05 (158)'."""
    if key.startswith("size:"):
        rec, n = row["recall_by_size"][key[5:]]
        return "n/a (0)" if rec is None else f"{rec:.2f} ({n})"
    return row.get(key)


def _fmt(v) -> str:
    if isinstance(v, str):
        return v
    return "n/a" if v is None else str(v) if isinstance(v, int) else f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


def real_tables(results: dict) -> str:
    """Markdown tables of `evaluate_real`'s results, two per source."""
    cols = {"3d": [("fg_ari", "FG-ARI"), ("f1", "F1@50"), ("precision", "P"), ("recall", "R"), ("tp", "TP"), ("fp", "FP"),
                   ("fn", "FN"), ("id_switches_per_track", "id switches / track"), ("same_id_share", "same id"), ("fps", "frames/s")],
            "2d_box": [("f1", "F1@50"), ("precision", "P"), ("recall", "R"), ("tp", "TP"), ("fp", "FP"), ("fn", "FN")]}
    titles = {"3d": "3D, LiDAR points in view (point F1@50)", "2d_box": "2D boxes (box F1@50)"}
    out = []
    for src, doms in results.items():
        for dom, rows in doms.items():
            c = cols[dom] if dom == "2d_box" or any(r.get("tracks") for r in rows.values()) else \
                [x for x in cols[dom] if x[0] not in ("id_switches_per_track", "same_id_share")]
            c = c + _size_cols({dom: rows})
            out += [f"\n## {src}: {titles[dom]}\n", "| method | " + " | ".join(x[1] for x in c) + " |", "|---|" + "---:|" * len(c)]
            out += [f"| {name} | " + " | ".join(_fmt(_get(r, k)) for k, _ in c) + " |" for name, r in rows.items()]
    return "\n".join(out) + "\n"


SLOT_ARGUMENTS = {"grid_depth_gate": "grid_depth_gate_m", "part_voxel": "part_voxel_m", "part_road": "part_road",
                  "fused_min_score_3d": "fused_min_score_3d", "rescue_iou": "rescue_iou",
                  "rescue_min_score": "rescue_min_score"}   # argparse dest -> PredictorConfig field


def add_slot_arguments(ap: argparse.ArgumentParser) -> None:
    """The scan's trims and checks of the slot instances and the 3D threshold of fused mode
    (`--grid-depth-gate`, `--part-voxel`, `--[no-]part-road`, `--fused-min-score-3d`, `--rescue-iou`,
    `--rescue-min-score`), shared by this CLI, tools/car_ahead.py and tools/miss_causes.py; their
    values go to the Predictor by `slot_overrides`, defaults the Predictor's."""
    ap.add_argument("--grid-depth-gate", type=float, default=PredictorConfig.grid_depth_gate_m,
                    help="lidar / fused slot instances: grid cells whose LiDAR return lies this many metres from their "
                         "instance's median range go to the background (0: off; default: the Predictor's)")
    ap.add_argument("--part-voxel", type=float, default=PredictorConfig.part_voxel_m,
                    help="lidar / fused slot instances: each keeps its main 3D part, points grouped by voxels of this "
                         "many metres (0: off; default: the Predictor's)")
    ap.add_argument("--part-road", action=argparse.BooleanOptionalAction, default=PredictorConfig.part_road,
                    help="with --part-voxel: road returns in an instance's mask outside its main part's range span "
                         "count against it (default: the Predictor's)")
    ap.add_argument("--fused-min-score-3d", type=float, default=PredictorConfig.fused_min_score_3d,
                    help="fused slot instances: the 3D student's instance threshold in fused mode only (default: "
                         "the Predictor's)")
    ap.add_argument("--rescue-iou", type=float, default=PredictorConfig.rescue_iou,
                    help="lidar / fused slot instances: keep a 3D instance under its threshold (down to "
                         "--rescue-min-score) when a LiDAR cluster overlaps its points at this IoU (0: off; default: "
                         "the Predictor's)")
    ap.add_argument("--rescue-min-score", type=float, default=PredictorConfig.rescue_min_score,
                    help="the least score of such an instance (default: the Predictor's)")


def slot_overrides(a: argparse.Namespace) -> dict:
    """The PredictorConfig fields of `add_slot_arguments`' parsed values."""
    return {field: getattr(a, dest) for dest, field in SLOT_ARGUMENTS.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xmod_core.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, nargs="+",
                    help="simulated drive folders, KITTI object or tracking folders, or glob patterns (with ground truth)")
    ap.add_argument("--ckpt-2d", default=DEFAULT_2D, help="exported 2D student, or a shipped one by name: grid2 (slot "
                    "grid at 1/2 of the input), fine (fine-mask head)")
    ap.add_argument("--ckpt-3d", default=DEFAULT_3D, help="exported 3D student, or a shipped one by name: grid2 (the default one), "
                    "stride4 (slot grid at 1/4 of the input), fine (stride4 with the fine-mask head)")
    ap.add_argument("--mode", default=["all"], nargs="+", choices=[*METHODS, "all"],
                    help="methods (all: every one); hybrid:MODE = LiDAR clusters the students of MODE call objects")
    ap.add_argument("--height", type=int, default=96, help="processing (input) height of the students")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--min-area", type=float, default=0.001, help="ignore ground-truth objects under this share of the image")
    ap.add_argument("--min-points", type=int, default=10, help="ignore ground-truth objects with fewer LiDAR points (3D)")
    ap.add_argument("--fusion-agreement", choices=("auto", *AGREEMENTS), default=PredictorConfig.fusion_agreement,
                    help="late fusion: iou (a 2D instance overlaps a 3D one; the paper's), foreground (a 3D instance "
                         "the 2D student attends to as foreground), either (iou's objects plus foreground's), separate "
                         "(both tests, nothing merged), or auto (separate for slot instances, iou for hybrid ones; "
                         "the default)")
    ap.add_argument("--fusion-foreground", type=float, default=PredictorConfig.fusion_foreground,
                    help="--fusion-agreement separate / either / foreground: the mean 2D foreground attention a 3D "
                         "instance needs")
    add_slot_arguments(ap)
    ap.add_argument("--fusion-iou", type=float, default=0.1, help="late fusion IoU threshold (paper: 0.1)")
    ap.add_argument("--fusion-mask", choices=MASKS, default=PredictorConfig.fusion_mask,
                    help="late fusion: an agreed object's pixels, its matched 3D instances' (lidar), both masks "
                         "(union, the paper's) or its 2D mask (rgb) (default: the Predictor's)")
    ap.add_argument("--keep-single", action="store_true", help="fused (agreement iou / either): also keep confident single-modality objects")
    ap.add_argument("--single-score", type=float, default=0.9, help="--keep-single: from this slot score on")
    ap.add_argument("--hybrid-objectness", type=float, default=PredictorConfig.hybrid_objectness,
                    help="hybrid: agreement for a cluster to be kept (default: the Predictor's)")
    ap.add_argument("--hybrid-agreement", default=PredictorConfig.hybrid_agreement, choices=("iou", "share"),
                    help="hybrid: how agreement is measured (default: the Predictor's)")
    ap.add_argument("--hybrid-ground-feet", action=argparse.BooleanOptionalAction, default=PredictorConfig.hybrid_ground_feet,
                    help="hybrid: image hulls reach down to the ground plane (default: the Predictor's)")
    ap.add_argument("--zoom-ckpt-2d", default="",
                    help="the tiles' own 2D student: a path, or fine (the shipped one with finer masks) / grid2; "
                         "default: the frame's")
    ap.add_argument("--zoom-ckpt-3d", default="",
                    help="the tiles' own 3D student: a path, or fine (the shipped one with finer masks) / grid2; "
                         "default: the frame's")
    ap.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=PredictorConfig.mirror,
                    help="each student also sees the frame mirrored left-right; its new instances join "
                         "(default: the Predictor's)")
    ap.add_argument("--hybrid-far", action=argparse.BooleanOptionalAction, default=PredictorConfig.hybrid_far,
                    help="hybrid: student instances mostly beyond the clustering range keep their own mask "
                         "(default: the Predictor's)")
    ap.add_argument("--hybrid-extent", choices=EXTENTS, default=PredictorConfig.hybrid_extent,
                    help="hybrid: a cluster's sides for the size filters, along its own axes or the sensor's "
                         "(default: the Predictor's)")
    ap.add_argument("--hybrid-split-voxel", type=float, default=PredictorConfig.hybrid_split_voxel,
                    help="hybrid: clusters too large for the size filters are clustered again at this distance, m "
                         "(0: dropped; default: the Predictor's)")
    ap.add_argument("--hybrid-hold", type=float, default=PredictorConfig.hybrid_hold,
                    help="hybrid: hysteresis, how much lower the agreement may be for a cluster on an object of the "
                         "previous frame (default: the Predictor's)")
    ap.add_argument("--hybrid-movable", type=float, default=PredictorConfig.hybrid_movable,
                    help="hybrid: weight of the movers' shape in the objectness (default: the Predictor's)")
    ap.add_argument("--movable-model", default="", help="hybrid: the movable model file (default: the shipped one)")
    ap.add_argument("--min-score", type=float, default=PredictorConfig.min_score,
                    help="students' instances: the least mean attention of a slot over its pixels, for both students "
                         "(default: each student's own, named in its file, else 0.5)")
    ap.add_argument("--fragments", default="largest", choices=FRAGMENTS,
                    help="students' instances: largest (a slot keeps its largest connected component) or keep (all of it)")
    ap.add_argument("--hybrid-fragments", default="keep", choices=FRAGMENTS, help="the same for hybrid instances")
    ap.add_argument("--zoom-tiles", type=int, default=PredictorConfig.zoom_tiles,
                    help="tiles of the horizon band the students also see at twice the resolution (0: off; "
                         "default: the Predictor's)")
    ap.add_argument("--zoom-lidar", choices=ZOOM_LIDAR, default=PredictorConfig.zoom_lidar,
                    help="a tile's LiDAR front view: projected by the tile's camera or the frame's magnified")
    ap.add_argument("--zoom-claimed", type=float, default=PredictorConfig.zoom_claimed,
                    help="a tile's instance joins if at most this share of its pixels is claimed (default: the Predictor's)")
    ap.add_argument("--zoom-min-score", type=float, default=PredictorConfig.zoom_min_score,
                    help="a tile's instance joins if it scores at least this much (default: the Predictor's)")
    ap.add_argument("--zoom-min-pixels", type=int, default=PredictorConfig.zoom_min_pixels,
                    help="a tile's instance joins if it covers this many processing pixels (default: the Predictor's)")
    ap.add_argument("--box-source", choices=(*BOX_SOURCES, "auto"), default=PredictorConfig.box_source,
                    help="predicted 2D boxes: around the instance's pixels (mask), the image rectangle of its 3D box "
                         "(3d) or of that box down to the ground plane (3d_ground); auto: 3d_ground for LiDAR clusters "
                         "(hybrid, clustering), mask for slot instances (default: the Predictor's)")
    ap.add_argument("--gt-boxes", choices=GT_BOXES, default="masks",
                    help="simulated drives' ground-truth 2D boxes: around the visible masks, or the image rectangles "
                         "of the objects' 3D boxes as KITTI's labels are made (kitti)")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                    help="also score the motion masks and LiDAR clustering (--no-baselines: the requested modes only, "
                         "about a third less time when comparing students)")
    ap.add_argument("--out", type=Path, default=Path("out/eval"))
    a = ap.parse_args(argv)
    try:
        real = find_gt_sources(a.data)
        try:
            drives = find_drives(a.data)
        except FileNotFoundError:
            if not real:
                raise
            drives = []
        methods = list(METHODS) if "all" in a.mode else list(dict.fromkeys(a.mode))
        t0 = time.perf_counter()
        over = {"fusion_iou": a.fusion_iou, "keep_single": a.keep_single, "single_score": a.single_score,
                "fusion_mask": a.fusion_mask, "fusion_agreement": a.fusion_agreement, "fusion_foreground": a.fusion_foreground,
                **slot_overrides(a), "hybrid_objectness": a.hybrid_objectness,
                "hybrid_agreement": a.hybrid_agreement, "hybrid_ground_feet": a.hybrid_ground_feet,
                "hybrid_far": a.hybrid_far, "hybrid_movable": a.hybrid_movable, "movable_model": a.movable_model,
                "hybrid_extent": a.hybrid_extent, "hybrid_hold": a.hybrid_hold, "hybrid_split_voxel": a.hybrid_split_voxel,
                "min_score": a.min_score, "fragments": a.fragments,
                "hybrid_fragments": a.hybrid_fragments, "zoom_tiles": a.zoom_tiles,
                "zoom_claimed": a.zoom_claimed, "zoom_lidar": a.zoom_lidar, "zoom_min_score": a.zoom_min_score,
                "zoom_min_pixels": a.zoom_min_pixels, "zoom_ckpt_2d": a.zoom_ckpt_2d, "zoom_ckpt_3d": a.zoom_ckpt_3d,
                "mirror": a.mirror, "box_source": a.box_source}
        res = evaluate(drives, methods, a.ckpt_2d, a.ckpt_3d, a.height, a.width, a.device, a.min_area, a.min_points,
                       predictor_overrides=over, baselines=a.baselines, gt_boxes=a.gt_boxes) if drives else {}
        res_real = evaluate_real(real, methods, a.ckpt_2d, a.ckpt_3d, a.height, a.width, a.device, a.min_points,
                                 predictor_overrides=over, baselines=a.baselines) if real else {}
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = tables(res, f"Evaluation of {len(drives)} simulated drive(s); 2D boxes: predicted from {a.box_source}, "
                       f"ground truth from {'the masks' if a.gt_boxes == 'masks' else 'the 3D boxes (kitti)'}") \
        if drives else ""
    text += real_tables(res_real) if real else ""
    text += f"\n({time.perf_counter() - t0:.0f} s)\n"
    print(text)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "results.json").write_text(json.dumps({"simulated": res, "real": res_real} if real else res, indent=1))
    (a.out / "results.md").write_text(text)
    print(f"written: {a.out / 'results.json'}, {a.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
