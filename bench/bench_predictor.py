"""Predictor speed per mode at a given model configuration and processing resolution: the model
work of one frame (front view, students, instances, fusion, 3D clusters), median over frames, on
the device at hand. Random-weight students (speed does not depend on the weights) and synthetic
frames at KITTI geometry (1242x375 image, 120k-point scan), so it runs anywhere. On CUDA each
mode is measured side by side eager (fp32), as CUDA graphs (fp32) and as graphs in bf16
autocast; on the CPU, fused mode with the students one after the other and on two threads
(`parallel_students`), interleaved frame by frame, with their ratio; the stage times (ms, medians) follow (see `Predictor`: on CUDA the model times are
queueing, `model_wait` the device finishing).

    python bench/bench_predictor.py --config config/paper/2d_burn_in.yaml --height 368 --width 1248 [--device cuda]
    python bench/bench_predictor.py --threads 2          # the demo students on the CPU (threads: torch.set_num_threads)
    python bench/bench_predictor.py --threads 1 --fine-masks   # + students with the fine-mask head, side by side
    python bench/bench_predictor.py --threads 1 --zoom-tiles 3  # + the horizon band's zoomed tiles, side by side
    python bench/bench_predictor.py --threads 1 --zoom-tiles 3 --finer  # + tiles, the mirrored frame and fine-mask
                                                                        #   students for the tiles (the finer configuration)
    python bench/bench_predictor.py --threads 1 --grid2 lidar   # + the 3D student at output stride 2 (slot grid
                                                                #   at 1/2 of the input), side by side
"""
import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from xmod_core.config import load_config
from xmod_core.kitti import CameraCalib
from xmod_core.model import DIOD
from xmod_core.predictor import FINER, Predictor, PredictorConfig
from xmod_core.sim.rig import HEIGHT, P_RECT_02, R_RECT_00, WIDTH, Rig
from xmod_core.stages import student_config
from xmod_core.train import TrainConfig, export_student


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="config/demo/2d_burn_in.yaml")
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    ap.add_argument("--fine-masks", action="store_true", help="also each mode's first variant with students that have "
                    "the fine-mask head (model.fine_masks), interleaved, and the ratio")
    ap.add_argument("--zoom-tiles", type=int, default=0, help="also each mode's first variant with this many zoomed "
                    "tiles of the horizon band (PredictorConfig.zoom_tiles), interleaved, and the ratio")
    ap.add_argument("--finer", action="store_true", help="also each mode's first variant in the finer configuration: "
                    "3 zoomed tiles seen by fine-mask students and the mirrored frame, interleaved, and the ratio")
    ap.add_argument("--grid2", nargs="+", default=[], choices=("rgb", "lidar"), help="also each mode's first variant "
                    "with these students at output stride 2 (a slot grid at 1/2 of the input), interleaved, and the ratio")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = load_config(TrainConfig, a.config)
    calib = CameraCalib(P_RECT_02, R_RECT_00, Rig().T_velo_to_cam, WIDTH, HEIGHT, 2)
    rng = np.random.default_rng(0)
    image = (rng.random((HEIGHT, WIDTH, 3)) * 255).astype(np.uint8)
    az, el = rng.uniform(-np.pi, np.pi, 120_000), rng.uniform(-0.43, 0.03, 120_000)
    r = rng.uniform(3, 60, 120_000)
    scan = np.stack([r * np.cos(el) * np.cos(az), r * np.cos(el) * np.sin(az), r * np.sin(el), rng.random(120_000)], 1).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        paths, fine, grid2 = {}, {}, {}
        fine_model = replace(cfg.model, fine_masks=True) if a.fine_masks or a.finer else None
        grid2_model = replace(cfg.model, output_stride=2, recon_stride=1)
        for m in ("rgb", "lidar"):
            paths[m], fine[m] = Path(d) / f"{m}.pt", Path(d) / f"{m}_fine.pt"
            export_student(paths[m], "bench", m, cfg.model, DIOD(student_config(cfg.model, m)).state_dict(), {"step": 0})
            if fine_model is not None:
                export_student(fine[m], "bench", m, fine_model, DIOD(student_config(fine_model, m)).state_dict(), {"step": 0})
            grid2[m] = paths[m]
            if m in a.grid2:
                grid2[m] = Path(d) / f"{m}_grid2.pt"
                export_student(grid2[m], "bench", m, grid2_model, DIOD(student_config(grid2_model, m)).state_dict(),
                               {"step": 0})
        print(f"{a.config} model at {a.height}x{a.width}, device {a.device}, {cfg.model.num_slots} slots")
        # (tag, amp, CUDA graphs, parallel students); the variants of a mode run interleaved, frame by frame
        variants = ((("eager", False, False, True), ("graph", False, True, True), ("g+bf16", True, True, True))
                    if a.device == "cuda" else (("seq", False, False, False), ("par", False, False, True)))
        # the first variant of a mode also runs with fine-mask students and with zoomed tiles (when asked)
        extras = ([("+fine", fine, {})] if a.fine_masks else []) + \
            ([(f"+zoom{a.zoom_tiles}", paths, {"zoom_tiles": a.zoom_tiles})] if a.zoom_tiles else []) + \
            ([("+finer", paths, FINER | {"zoom_ckpt_2d": str(fine["rgb"]), "zoom_ckpt_3d": str(fine["lidar"])})]
             if a.finer else []) + \
            ([("+grid2", grid2, {})] if a.grid2 else [])  # random-weight fine-mask / stride-2 students
        for mode in ("rgb", "lidar", "fused"):
            runs = [(tag, Predictor(PredictorConfig(mode=mode, ckpt_2d=str(ck["rgb"]), ckpt_3d=str(ck["lidar"]),
                                                    device=a.device, height=a.height, width=a.width, amp=amp,
                                                    cuda_graphs=graphs, parallel_students=par, **kw), calib), [], {})
                    for i, (tag, amp, graphs, par) in enumerate(variants) if mode == "fused" or tag != "par"
                    for tag, ck, kw in ([(tag, paths, {})] + ([(tag + x, c, k) for x, c, k in extras] if i == 0 else []))]
            for t in range(a.frames + 3):
                for tag, p, times, parts in runs:
                    t0 = time.perf_counter()
                    res = p(image=image if mode != "lidar" else None, points=scan, stamp=0.1 * t)
                    if a.device == "cuda":
                        torch.cuda.synchronize()
                    if t >= 3:
                        times.append(time.perf_counter() - t0)
                        for k, v in res.timings.items():
                            parts.setdefault(k, []).append(v)
            for tag, p, times, parts in runs:
                ms = 1e3 * np.median(times)
                print(f"  {mode:6s} {tag:9s} {ms:7.1f} ms/frame p50, {1e3 * np.percentile(times, 99):7.1f} p99 -> "
                      f"{1e3 / ms:6.1f} Hz | " + ", ".join(f"{k} {np.median(v):.1f}" for k, v in parts.items() if k != "total"))
            for j, (x, _, _) in enumerate(extras, 1):
                print(f"  {mode:6s} {x[1:]}: x{np.median(runs[j][2]) / np.median(runs[0][2]):.3f} the time of a frame")
            times = {tag: t for tag, _, t, _ in runs}
            if "par" in times:
                print(f"  {mode:6s} parallel students: x{np.median(times['seq']) / np.median(times['par']):.2f} "
                      f"({torch.get_num_threads()} torch threads)")


if __name__ == "__main__":
    main()
