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

Rows whose run is missing are left out (and named). Prints one table per domain (2D on the
students' 1/4 grid, 3D on the LiDAR points in view) with FG-ARI, all-ARI, F1@50, P, R and recall
on still and on moving objects, then the paper's claims checked against the figures.
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

from xmod_core.data import find_drives  # noqa: E402
from xmod_core.evaluate import DOMAINS, evaluate  # noqa: E402

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
# the paper's claims: (text, better row, worse row, metric)
CLAIMS = [
    ("xMOD 2D >= DIOD 2D", "xMOD 2D", "DIOD 2D (ts)"),
    ("xMOD 3D >= DIOD-3D", "xMOD 3D", "DIOD-3D (ts)"),
    ("xMOD fused >= DIOD fused", "xMOD fused", "DIOD fused (2D ts + 3D ts)"),
    ("fused > 2D alone", "xMOD fused", "xMOD 2D"),
    ("fused > 3D alone", "xMOD fused", "xMOD 3D"),
    ("scene completion helps 3D", "DIOD-3D burn-in", "DIOD-3D w/o scene completion"),
    ("cross-modal > same-modal (fused)", "xMOD fused", "xMOD same-modal fused"),
    ("cross-modal > same-modal (2D)", "xMOD 2D", "xMOD same-modal 2D"),
    ("cross-modal > same-modal (3D)", "xMOD 3D", "xMOD same-modal 3D"),
]
COLS = [("fg_ari", "FG-ARI"), ("all_ari", "all-ARI"), ("f1", "F1@50"), ("precision", "P"), ("recall", "R"),
        ("recall_still", "R still"), ("recall_moving", "R moving")]


def make_test_drives(out: Path, seed: int, sequences: int, frames: int, scale: float) -> list[Path]:
    """Simulate the held-out drives (skipped when already there) and their motion masks."""
    py = sys.executable
    if not find_drives([str(out / "*" / "*_sync")]):
        subprocess.run([py, "-m", "xmod_core.sim", "--out", str(out), "--seed", str(seed), "--sequences", str(sequences),
                        "--frames", str(frames), "--scale", str(scale), "--no-preview"], check=True, cwd=ROOT)
    drives = find_drives([str(out / "*" / "*_sync")])
    subprocess.run([py, "-m", "xmod_core.motion", "--quiet", *map(str, drives)], check=True, cwd=ROOT)
    return drives


def table(results: dict, domain: str) -> str:
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
    lines = ["| method | " + " | ".join(c[1] for c in COLS) + " |", "|---|" + "---:|" * len(COLS)]
    lines += [f"| {name} | " + " | ".join(fmt(r[domain][k]) for k, _ in COLS) + " |" for name, r in results.items()]
    return "\n".join(lines)


def claims(results: dict, domain: str) -> list[str]:
    out = []
    for text, a, b in CLAIMS:
        if a not in results or b not in results:
            continue
        fa, fb = (results[n][domain]["f1"] or 0.0 for n in (a, b))
        ga, gb = (results[n][domain]["fg_ari"] or 0.0 for n in (a, b))
        verdict = "holds" if fa >= fb and ga >= gb else "refuted" if fa < fb and ga < gb else "mixed"
        out.append(f"- {text}: {verdict} (F1@50 {fa:.3f} vs {fb:.3f}, FG-ARI {ga:.3f} vs {gb:.3f})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs/demo/pipeline", help="the pipeline's out_dir")
    ap.add_argument("--seed", type=int, default=300, help="seed of the held-out test drives (not a training seed)")
    ap.add_argument("--sequences", type=int, default=3)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--scale", type=float, default=0.5, help="camera scale of the test drives (demo training: 0.5)")
    ap.add_argument("--data-root", type=Path, default=ROOT / "data/table", help="where the test drives are written")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    drives = make_test_drives(a.data_root / f"seed{a.seed}", a.seed, a.sequences, a.frames, a.scale)
    base = evaluate(drives, [], progress=False, device=a.device)
    results = {name: {d: base[d][name] for d in DOMAINS} for name in ("motion masks", "LiDAR clustering")}
    missing = []
    for name, mode, runs in ROWS:
        paths = {m: a.runs / run / f"student_{m}.pt" for m, run in runs.items()}
        if not all(p.is_file() for p in paths.values()):
            missing.append(f"{name} ({', '.join(str(p) for p in paths.values() if not p.is_file())})")
            continue
        r = evaluate(drives, [mode], ckpt_2d=str(paths.get("rgb", "")) or None, ckpt_3d=str(paths.get("lidar", "")) or None,
                     device=a.device, progress=False, baselines=False, names={mode: name})
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
