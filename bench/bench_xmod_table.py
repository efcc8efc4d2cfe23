"""The paper's table (xMOD, CVPR 2025, Tables 1-3 in spirit), reproduced on simulated drives with
the students of the demo pipeline and the ablations:

    .venv/bin/python -m xmod_core.train --pipeline config/demo/ablations.yaml      # trains runs/demo/pipeline
    .venv/bin/python bench/bench_xmod_table.py --runs runs/demo/pipeline --seed 300 --sequences 3

Test drives are simulated here from the seed given on the command line (the demo pipeline trains
on seed 10: keep them disjoint), their motion masks computed with config/motion.yaml, and every
row scored by the evaluator of `xmod_core.evaluate` on the same frames. Rows (the run folder under
--runs whose exported students they use):

    motion masks, LiDAR clustering                 baselines
    DIOD 2D burn-in / DIOD 2D (ts)                 2d_burn_in / 2d_ts              rgb
    DIOD-3D w/o scene completion / DIOD-3D burn-in 3d_burn_in_no_sc / 3d_burn_in  lidar
    DIOD-3D (ts), DIOD fused (2D ts + 3D ts)       3d_ts (+ 2d_ts)                 lidar, fused
    xMOD 2D / 3D / fused                           2d_3d_ts                        rgb, lidar, fused
    xMOD same-modal 2D / 3D / fused                2d_3d_ts_same_modal             rgb, lidar, fused

Rows whose run is missing are left out (and named). With --real DRIVE_DIR (default: the 30 real
KITTI frames in ../shared/kitti_raw, which have no ground truth) the xMOD 3D and fused students
also run there and write, per frame, the instances over the image and a bird's-eye view of the
3D clusters to --out/real/<mode>/ for a person to judge. Prints one table per domain (2D on the
students' 1/4 grid, 3D on the LiDAR points in view) with FG-ARI, all-ARI, F1@50, P, R and recall
on still and on moving objects, then the paper's claims checked against the figures. The fused rows
use the paper's late fusion (`--fusion-agreement iou`, the default here; the Predictor's own default
since 2026-12-03 is `auto`, docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from xmod_core.evaluate import DOMAINS, evaluate  # noqa: E402
from xmod_core.fusion import AGREEMENTS  # noqa: E402

# (row name, mode, {modality: run folder})
ROWS = [
    ("DIOD 2D burn-in", "rgb", {"rgb": "2d_burn_in"}),
    ("DIOD 2D (ts)", "rgb", {"rgb": "2d_ts"}),
    ("DIOD-3D w/o scene completion", "lidar", {"lidar": "3d_burn_in_no_sc"}),
    ("DIOD-3D burn-in", "lidar", {"lidar": "3d_burn_in"}),
    ("DIOD-3D (ts)", "lidar", {"lidar": "3d_ts"}),
    ("DIOD fused (2D ts + 3D ts)", "fused", {"rgb": "2d_ts", "lidar": "3d_ts"}),
    ("xMOD 2D", "rgb", {"rgb": "2d_3d_ts"}),
    ("xMOD 3D", "lidar", {"lidar": "2d_3d_ts"}),
    ("xMOD fused", "fused", {"rgb": "2d_3d_ts", "lidar": "2d_3d_ts"}),
    ("xMOD same-modal 2D", "rgb", {"rgb": "2d_3d_ts_same_modal"}),
    ("xMOD same-modal 3D", "lidar", {"lidar": "2d_3d_ts_same_modal"}),
    ("xMOD same-modal fused", "fused", {"rgb": "2d_3d_ts_same_modal", "lidar": "2d_3d_ts_same_modal"}),
]
# the paper's claims: (text, row a, row b, strict): a >= b (strict: a > b) in F1@50 and FG-ARI
CLAIMS = [
    ("xMOD 2D >= DIOD 2D", "xMOD 2D", "DIOD 2D (ts)", False),
    ("xMOD 3D >= DIOD-3D", "xMOD 3D", "DIOD-3D (ts)", False),
    ("xMOD fused >= DIOD fused", "xMOD fused", "DIOD fused (2D ts + 3D ts)", False),
    ("fused > 2D alone", "xMOD fused", "xMOD 2D", True),
    ("fused > 3D alone", "xMOD fused", "xMOD 3D", True),
    ("scene completion helps 3D", "DIOD-3D burn-in", "DIOD-3D w/o scene completion", True),
    ("cross-modal > same-modal (fused)", "xMOD fused", "xMOD same-modal fused", True),
    ("cross-modal > same-modal (2D)", "xMOD 2D", "xMOD same-modal 2D", True),
    ("cross-modal > same-modal (3D)", "xMOD 3D", "xMOD same-modal 3D", True),
    ("learned rows recall more still objects than the motion masks", "xMOD fused", "motion masks", True),
]
COLS = [("fg_ari", "FG-ARI"), ("all_ari", "all-ARI"), ("f1", "F1@50"), ("precision", "P"), ("recall", "R"),
        ("recall_still", "R still"), ("recall_moving", "R moving")]


def make_test_drives(out: Path, seed: int, sequences: int, frames: int, scale: float) -> list[Path]:
    """Simulate the held-out drives (skipped when already there) and their motion masks."""
    from xmod_core.sim.writer import drive_dir
    py = sys.executable
    drives = [drive_dir(out, seed, i) for i in range(sequences)]
    missing = [i for i, d in enumerate(drives) if not (d / "sim.json").is_file()]   # sim.json is written last
    for i in missing:
        subprocess.run([py, "-m", "xmod_core.sim", "--out", str(out), "--seed", str(seed), "--first", str(i),
                        "--sequences", "1", "--frames", str(frames), "--scale", str(scale), "--no-preview"],
                       check=True, cwd=ROOT)
    subprocess.run([py, "-m", "xmod_core.motion", "--quiet", *map(str, drives)], check=True, cwd=ROOT)
    return drives


def table(results: dict, domain: str) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    lines = ["| method | " + " | ".join(c[1] for c in COLS) + " |", "|---|" + "---:|" * len(COLS)]
    lines += [f"| {name} | " + " | ".join(fmt(r[domain][k]) for k, _ in COLS) + " |" for name, r in results.items()]
    return "\n".join(lines)


def claims(results: dict, domain: str) -> list[str]:
    """Each claim whose rows exist: 'holds' when row a beats row b (>=, or > for strict claims) on
    both metrics, 'refuted' when it loses on both, else 'mixed'; 'n/a' where a metric is missing.
    The still-objects claim compares recall on still objects instead."""
    out = []
    for text, a, b, strict in CLAIMS:
        if a not in results or b not in results:
            continue
        keys = (("recall_still", "R still"),) if "still" in text else (("f1", "F1@50"), ("fg_ari", "FG-ARI"))
        vals = [(name, results[a][domain][k], results[b][domain][k]) for k, name in keys]
        figures = ", ".join(f"{name} {'n/a' if va is None else f'{va:.3f}'} vs {'n/a' if vb is None else f'{vb:.3f}'}"
                            for name, va, vb in vals)
        if any(va is None or vb is None for _, va, vb in vals):
            verdict = "n/a"
        else:
            wins = [va > vb if strict else va >= vb for _, va, vb in vals]
            losses = [va < vb if not strict else va <= vb for _, va, vb in vals]
            verdict = "holds" if all(wins) else "refuted" if all(losses) else "mixed"
        out.append(f"- {text}: {verdict} ({figures})")
    return out


def real_views(drive_dir: Path, runs: Path, out: Path, device: str, fusion_agreement: str = "iou") -> list[str]:
    """xMOD 3D (lidar) and fused on a drive without ground truth: overlay + bird's-eye PNG per frame."""
    import cv2
    import numpy as np
    from xmod_core.kitti import KittiRawDrive
    from xmod_core.predictor import Predictor, PredictorConfig
    from xmod_ros.render import birds_eye, overlay
    drive = KittiRawDrive(drive_dir)
    ck = {m: runs / "2d_3d_ts" / f"student_{m}.pt" for m in ("rgb", "lidar")}
    if len(drive) == 0:
        return [f"real frames: {drive_dir} has no frames"]
    lines = []
    for mode in ("lidar", "fused"):
        need = ("lidar",) if mode == "lidar" else ("rgb", "lidar")
        if not all(ck[m].is_file() for m in need):
            lines.append(f"real frames, xMOD {mode}: skipped, no xMOD students in {runs / '2d_3d_ts'}")
            continue
        pred = Predictor(PredictorConfig(mode=mode, ckpt_2d=str(ck["rgb"]), ckpt_3d=str(ck["lidar"]), device=device,
                                         fusion_agreement=fusion_agreement),
                         drive.calib)
        d = out / mode
        d.mkdir(parents=True, exist_ok=True)
        counts = []
        for t in range(len(drive)):
            image, scan = drive.image(t), drive.scan(t)
            res = pred(image=image, points=scan, stamp=float(drive.timestamps[t]))
            over = overlay(image, res.labels)
            bev = birds_eye(scan, res.point_labels, res.objects)
            h = over.shape[0]
            bev = cv2.resize(bev, (int(bev.shape[1] * h / bev.shape[0]), h))
            cv2.imwrite(str(d / f"{drive.frame_ids[t]}.png"), cv2.cvtColor(np.concatenate([over, bev], 1), cv2.COLOR_RGB2BGR))
            counts.append(len(res.objects))
        lines.append(f"real frames, xMOD {mode}: {len(drive)} frames, {np.mean(counts):.1f} 3D objects per frame "
                     f"(min {min(counts)}, max {max(counts)}); views in {d}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/demo/pipeline", help="the pipeline's out_dir")
    ap.add_argument("--seed", type=int, default=300, help="seed of the held-out test drives (not a training seed)")
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--scale", type=float, default=0.5, help="camera scale of the test drives (demo training: 0.5)")
    ap.add_argument("--data-root", type=Path, default=ROOT / "data/table", help="where the test drives are written")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fusion-agreement", default="iou", choices=("auto", *AGREEMENTS),
                    help="the fused rows' late fusion (default: the paper's, iou)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--real", type=Path, default=ROOT.parent / "shared/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync",
                    help="a drive without ground truth for the xMOD 3D and fused views ('' to skip)")
    ap.add_argument("--out", type=Path, default=ROOT / "out/table", help="where the real-frame views go")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    drives = make_test_drives(a.data_root / f"seed{a.seed}_{a.sequences}x{a.frames}_scale{a.scale:g}", a.seed,
                              a.sequences, a.frames, a.scale)
    base = evaluate(drives, [], progress=False, device=a.device)
    results = {name: {d: base[d][name] for d in DOMAINS} for name in ("motion masks", "LiDAR clustering")}
    missing = []
    for name, mode, runs in ROWS:
        paths = {m: a.runs / run / f"student_{m}.pt" for m, run in runs.items()}
        if not all(p.is_file() for p in paths.values()):
            missing.append(f"{name} ({', '.join(str(p) for p in paths.values() if not p.is_file())})")
            continue
        r = evaluate(drives, [mode], ckpt_2d=str(paths.get("rgb", "")) or None, ckpt_3d=str(paths.get("lidar", "")) or None,
                     device=a.device, progress=False, baselines=False, names={mode: name},
                     predictor_overrides={"fusion_agreement": a.fusion_agreement})
        results[name] = {d: r[d][name] for d in DOMAINS}
    n_frames = sum(len(list((d / "image_02/data").glob("*.png"))) for d in drives)
    print(f"xMOD table: {len(drives)} held-out simulated drives (seed {a.seed}), {n_frames} frames, "
          f"students from {a.runs}; {time.perf_counter() - t0:.0f} s")
    for dom, title in (("2d_grid", "2D (1/4 grid of the 96x320 input)"), ("3d", "3D (LiDAR points in the camera's view)")):
        print(f"\n{title}\n{table(results, dom)}\n\nThe paper's claims ({title.split()[0]}):")
        print("\n".join(claims(results, dom)) or "- (no rows to compare)")
    if missing:
        print("\nrows left out (run not trained): " + "; ".join(missing))
    if a.json:
        a.json.write_text(json.dumps(results, indent=1))
    if str(a.real) not in ("", ".") and a.real.is_dir():
        print("\n" + "\n".join(real_views(a.real, a.runs, a.out / "real", a.device, a.fusion_agreement)))
    elif str(a.real) not in ("", "."):
        print(f"\nreal frames skipped: {a.real} is absent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
