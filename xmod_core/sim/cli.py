"""`python -m xmod_core.sim`: simulate KITTI-format driving sequences with ground truth."""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .rig import AZIMUTH_STEP, FOLIAGE_DEPTH
from .scene import CLUTTER, PARKING


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xmod_core.sim", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("data/sim"), help="output root (default: data/sim)")
    p.add_argument("--sequences", type=int, default=1, help="number of drives (default: 1)")
    p.add_argument("--frames", type=int, default=40, help="frames per drive at 10 Hz (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="seed; drive i of seed s is the same whatever --sequences is")
    p.add_argument("--first", type=int, default=0, help="index of the first drive (default: 0)")
    p.add_argument("--scale", type=float, default=1.0, help="image scale of the 1242x375 camera (default: 1.0)")
    p.add_argument("--shadows", action="store_true", help="cast sun shadows (slower: about +0.25 s per frame)")
    p.add_argument("--clutter", choices=CLUTTER, default="basic",
                   help="basic: buildings, walls, fences, hedges, trees, poles (the shipped models' drives); street: "
                        "also object-sized street furniture (bushes, young trees, signs, bollards, cabinets, benches, "
                        "kiosks, planters) as real streets hold (default: basic)")
    p.add_argument("--parking", choices=PARKING, default="sparse",
                   help="sparse: a parking bay every 6-9 m, half of them taken (the shipped models' drives); tight: rows "
                        "of 3-8 parked vehicles 0.3-1.2 m apart, as city streets are lined (default: sparse)")
    p.add_argument("--object-density", type=float, default=1.0,
                   help="share of the objects kept, in (0, 1]; 1 (default) keeps the scenes as they are, 0.25 brings "
                        "them near KITTI's labelled objects per image (docs/data.md)")
    p.add_argument("--azimuth-step", type=float, default=AZIMUTH_STEP,
                   help=f"degrees between a LiDAR beam's returns (default {AZIMUTH_STEP}: about 230k points a scan; "
                        "0.18 gives the 110-120k of KITTI's real scans, docs/data.md)")
    p.add_argument("--foliage-depth", type=float, default=FOLIAGE_DEPTH,
                   help=f"metres, mean depth at which a LiDAR return comes from inside a bush or tree crown "
                        f"(exponential, capped at 3x; default {FOLIAGE_DEPTH}: foliage returns from its box faces as "
                        "hard surfaces do; 0.4: volumetric vegetation, as real scans show it, docs/data.md)")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (default: one per core, at most one per drive)")
    p.add_argument("--no-preview", action="store_true", help="do not write preview.png per drive")
    return p


def _one(args: tuple) -> str:
    out, seed, seq, frames, scale, shadows, preview, lidar_process, clutter, density, az, foliage, parking, position = args
    from tqdm import tqdm

    from .rig import Rig
    from .writer import simulate_drive
    with tqdm(total=frames, desc=f"drive {seq:04d}", position=position, leave=True, unit="frame") as bar:
        return str(simulate_drive(out, seed, seq, frames, Rig.scaled(scale, az, foliage), shadows, bar, preview, lidar_process,
                                  clutter, density, parking))


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    for name in ("sequences", "frames"):
        if getattr(a, name) < 1:
            _parser().error(f"--{name} must be at least 1")
    if not 0.0 < a.object_density <= 1.0:
        _parser().error("--object-density must be within (0, 1]")
    if not 0.05 <= a.scale <= 4:
        _parser().error("--scale must be within [0.05, 4]")
    if not 0.01 <= a.azimuth_step <= 2.0:
        _parser().error("--azimuth-step must be within [0.01, 2] degrees")
    if not 0.0 <= a.foliage_depth <= 2.0:
        _parser().error("--foliage-depth must be within [0, 2] m")
    cores = os.cpu_count() or 1
    workers = a.workers or min(a.sequences, cores)
    # fewer drives than cores: split each drive's camera and LiDAR over two processes instead
    split = workers * 2 <= cores
    jobs = [(a.out, a.seed, a.first + i, a.frames, a.scale, a.shadows, not a.no_preview, split, a.clutter, a.object_density, a.azimuth_step,
             a.foliage_depth, a.parking, i)
            for i in range(a.sequences)]
    t0 = time.perf_counter()
    if workers == 1:
        drives = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers) as ex:
            drives = list(ex.map(_one, [(*j[:-1], i % workers) for i, j in enumerate(jobs)]))
    dt = time.perf_counter() - t0
    n = a.sequences * a.frames
    print(f"wrote {a.sequences} drive(s), {n} frames in {dt:.1f} s ({dt / n:.2f} s/frame wall):")
    for d in drives:
        print(f"  {d}" + ("" if a.no_preview else f"  (preview: {Path(d) / 'preview.png'})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
