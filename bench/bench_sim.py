"""Simulator speed: seconds per frame at full resolution (1242x375) with a full 64-beam sweep,
split into render, LiDAR and writing, single process; then the CLI's wall time per frame with one
worker per core. Target: at most 0.5 s per frame on 2 cores. The per-stage times are measured
for both clutter settings side by side (`--clutter street` adds street furniture), with their ratio.

    .venv/bin/python bench/bench_sim.py [--frames 12]
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xmod_core.sim.engine import World
from xmod_core.sim.rig import Rig
from xmod_core.sim.scene import generate
from xmod_core.sim.writer import sequence_rngs, simulate_drive

TARGET = 0.5


def stages(frames: int, seed: int = 1234, clutter: str = "basic") -> dict:
    rngs = sequence_rngs(seed, 0)
    scene = generate(rngs[0], frames, clutter)
    t0 = time.perf_counter()
    world = World(scene, Rig(), rngs[1:])
    build = time.perf_counter() - t0
    times = {"render": [], "lidar": [], "rays": []}
    n_rays = []
    for t in range(frames):
        world.set_frame(t)
        a = time.perf_counter()
        world.render(t)
        b = time.perf_counter()
        pts, _ = world.lidar(t)
        c = time.perf_counter()
        times["render"].append(b - a)
        times["lidar"].append(c - b)
        n_rays.append(len(pts))
    world.close()
    return {"build": build, **{k: float(np.median(v)) for k, v in times.items() if v}, "points": int(np.median(n_rays))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=12)
    a = ap.parse_args()
    both = {c: stages(a.frames, clutter=c) for c in ("basic", "street")}
    for c, s in both.items():
        print(f"clutter {c}: scene build {s['build']:.2f} s (once per drive); median per frame: render "
              f"{s['render'] * 1e3:.0f} ms, LiDAR {s['lidar'] * 1e3:.0f} ms ({s['points']} points)")
    print(f"street / basic, per frame: render {both['street']['render'] / both['basic']['render']:.2f}x, "
          f"LiDAR {both['street']['lidar'] / both['basic']['lidar']:.2f}x")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        simulate_drive(Path(d), 1234, 0, a.frames, Rig(), preview=False)
        one = (time.perf_counter() - t0) / a.frames
        t0 = time.perf_counter()
        simulate_drive(Path(d), 1234, 1, a.frames, Rig(), preview=False, lidar_process=True)
        split = (time.perf_counter() - t0) / a.frames
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xmod_core.sim", "--out", d, "--seed", "99", "--sequences", "2",
                        "--frames", str(a.frames), "--no-preview"], check=True, capture_output=True)
        two = (time.perf_counter() - t0) / (2 * a.frames)
    print(f"end to end, 1 process: {one:.3f} s/frame (incl. writing; ratio to the {TARGET} s target: {one / TARGET:.2f})")
    print(f"end to end, 1 drive, camera and LiDAR in 2 processes (the CLI's choice for one drive): {split:.3f} s/frame "
          f"(ratio to target: {split / TARGET:.2f})")
    print(f"end to end, CLI with 2 workers (2 drives): {two:.3f} s/frame wall (ratio to target: {two / TARGET:.2f})")


if __name__ == "__main__":
    main()
