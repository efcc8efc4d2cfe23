"""Benchmark of xmod_node at the demo configuration (processing 320x96, demo-sized students).

Usage: .venv/bin/python bench/bench_node.py [--part stages|e2e|all] [--modes rgb lidar fused]
                                             [--seconds 20] [--device cpu] [--drive DRIVE_DIR] [--parallel-students false true]
                                             [--zoom-tiles 3 [--finer]] [--students grid2|stride4]

stages (in one process, no DDS): per frame of the real KITTI drive (or a synthetic frame), the
  node's work split into message conversion (Image/PointCloud2 -> numpy, non-finite filter),
  synchronisation (one approximate-time pair), the model (Predictor: front view, students, fusion,
  3D clusters) and output building (mono16 labels, overlay, clusters cloud, markers); the inverse
  of their sum is the rate the node can sustain on one frame stream. Runs without ROS too (then
  conversion and outputs are skipped), e.g. on a GPU machine: --part stages --device cuda.
e2e (over DDS, each in its own process): the KITTI bag replayed in a loop at 10 Hz with stamps
  set to the current time, xmod_node per mode, and this process subscribed to ~/instances:
  end-to-end latency (input stamp to publication, from the node's ~/status, and input stamp to
  receipt here), p50/p99, sustained output rate and frames dropped.

--parallel-students false true measures fused mode with the students one after the other and on two
threads (the node's default since 2026-11-30): in stages interleaved frame by frame, with the ratio;
in e2e one node after the other. The JSON keeps the first setting's figures under "fused", the
second's under "fused parallel_students=<value>".

Untrained students of config/demo are used unless the shipped demo models exist (speed does not
depend on the weights). The machine load (os.getloadavg) is printed: figures from a shared
2-core machine move with what else runs on it.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # as xmod_node does, before PyTorch loads OpenMP
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from xmod_core.instances import FRAGMENTS  # noqa: E402  (after OMP_WAIT_POLICY)
from xmod_core.predictor import FINER  # noqa: E402

DRIVE = ROOT.parent / "shared" / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_sfnd_sync"
MODES = ("rgb", "lidar", "fused")
FINER_EXTRAS = {k: v for k, v in FINER.items() if k != "zoom_tiles"}     # the Predictor's, beside --zoom-tiles
FINER_PARAMS = {"mirror": str(FINER["mirror"]).lower(), "zoom_checkpoint_rgb": FINER["zoom_ckpt_2d"],
                "zoom_checkpoint_lidar": FINER["zoom_ckpt_3d"]}                # the same as node parameters


def pct(v, q):
    return float(np.percentile(v, q)) if len(v) else float("nan")


def frames(drive: Path | None, n: int):
    """[(rgb, points)] and a calibration: the KITTI drive's frames, or synthetic ones."""
    import warnings
    if drive is not None and drive.is_dir():
        from xmod_core.kitti import KittiRawDrive
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = KittiRawDrive(drive)
        k = min(n, len(d))
        return [(d.image(i), d.scan(i)) for i in range(k)], d.calib, f"KITTI {d.drive_dir.name}"
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_frontview import kitti_like_calib, synthetic_cloud
    rng = np.random.default_rng(0)
    calib = kitti_like_calib()
    return ([((rng.random((375, 1242, 3)) * 255).astype(np.uint8), synthetic_cloud(seed=i)) for i in range(n)], calib,
            "synthetic 1242x375 + 120k points")


def students(tmp: Path, which: str = "default"):
    """(2D checkpoint, 3D checkpoint, trained): the shipped defaults (or demo students), or the named shipped pair."""
    sys.path.insert(0, str(ROOT))
    if which != "default":
        from xmod_core.predictor import student_path
        return Path(student_path(which, "rgb")), Path(student_path(which, "lidar")), True
    from xmod_ros.demo import demo_students
    return demo_students(tmp)


def bench_stages(args, tmp: Path) -> dict:
    import torch

    from xmod_core.predictor import Predictor, PredictorConfig
    try:
        from std_msgs.msg import Header

        from xmod_ros import convert, render
        from xmod_ros.node import markers_msg
        from xmod_ros.sync import ApproximateTimeSynchronizer
        ros = True
    except ImportError:
        ros = False
    data, calib, what = frames(Path(args.drive) if args.drive else DRIVE, args.frames)
    rgb_ck, lidar_ck, trained = students(tmp, args.students)
    print(f"stages: {len(data)} frames of {what}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}; {'trained' if trained else 'untrained'} {args.students} students at {args.height}x{args.width}; "
          f"load {os.getloadavg()[0]:.1f}")
    out = {}
    msgs = None
    if ros:
        msgs = [(convert.numpy_to_image(im[..., ::-1], "bgr8", Header(frame_id="cam")),
                 convert.xyzi_to_cloud(pts, Header(frame_id="velo"))) for im, pts in data]
        t_conv = []
        for _ in range(args.repeat):
            for im, cl in msgs:
                t = time.perf_counter()
                convert.image_to_rgb(im)
                p, _ = convert.cloud_to_xyzi(cl)
                convert.finite_points(p)
                t_conv.append((time.perf_counter() - t) * 1e3)
        sync = ApproximateTimeSynchronizer(2, 5, 0.05)
        sync.registerCallback(lambda a, b: None)
        t_sync = []
        for k, (im, cl) in enumerate(msgs * args.repeat):
            im.header.stamp.sec, cl.header.stamp.sec = k, k
            t = time.perf_counter()
            sync.add(im, 0)
            sync.add(cl, 1)
            t_sync.append((time.perf_counter() - t) * 1e3)
        out["convert_ms"], out["sync_ms"] = statistics.median(t_conv), statistics.median(t_sync)
    for mode in args.modes:
        # one Predictor per parallel_students setting (they differ only in fused mode), interleaved frame by frame
        variants = args.parallel_students if mode == "fused" else args.parallel_students[:1]
        preds = {v: Predictor(PredictorConfig(mode=mode, ckpt_2d=str(rgb_ck), ckpt_3d=str(lidar_ck), device=args.device,
                                              fragments=args.fragments, parallel_students=v == "true",
                                              height=args.height, width=args.width, zoom_tiles=args.zoom_tiles,
                                              **(FINER_EXTRAS if args.finer else {})), calib)
                 for v in variants}
        use_img, use_pts = mode in ("rgb", "fused"), mode in ("lidar", "fused")
        default_threads = torch.get_num_threads()
        threads = {v: pred.cpu_threads() for v, pred in preds.items()}      # the node's policy at threads: 0
        for v, pred in preds.items():
            torch.set_num_threads(threads[v])
            for im, pts in data[:3]:                               # warm-up
                pred(image=im if use_img else None, points=pts if use_pts else None, stamp=0.0)
            pred.reset()
        t_model, t_out = ({v: [] for v in preds} for _ in range(2))
        parts = {v: {} for v in preds}
        stamp = 0.0
        for _ in range(args.repeat):
            for im, pts in data:
                stamp += 0.1
                for v, pred in preds.items():
                    torch.set_num_threads(threads[v])
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    res = pred(image=im if use_img else None, points=pts if use_pts else None, stamp=stamp)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    t_model[v].append((time.perf_counter() - t) * 1e3)
                    for k, x in res.timings.items():
                        parts[v].setdefault(k, []).append(x)
                    if ros:
                        t = time.perf_counter()
                        h = Header(frame_id="x")
                        convert.numpy_to_image(res.labels, "mono16", h)
                        convert.numpy_to_image(render.overlay(im if use_img else None, res.labels), "rgb8", h)
                        if use_pts:
                            fg = res.point_labels > 0
                            convert.xyzi_to_cloud(pts[fg], h, {"instance": res.point_labels[fg]})
                            markers_msg(res.objects, h, 0.5)
                        t_out[v].append((time.perf_counter() - t) * 1e3)
        torch.set_num_threads(default_threads)
        for v in preds:
            row = {"model_ms_p50": pct(t_model[v], 50), "model_ms_p99": pct(t_model[v], 99),
                   "model_parts_ms": {k: round(statistics.median(x), 2) for k, x in parts[v].items()}}
            if ros:
                total = out["convert_ms"] + out["sync_ms"] + row["model_ms_p50"] + statistics.median(t_out[v])
                row.update(outputs_ms=statistics.median(t_out[v]), node_ms=total, max_rate_hz=1e3 / total)
            else:
                row.update(max_rate_hz=1e3 / row["model_ms_p50"])
            out[mode if v == variants[0] else f"{mode} parallel_students={v}"] = row
            extra = (f", conversion {out['convert_ms']:.1f} ms, sync {out['sync_ms'] * 1e3:.0f} us, outputs "
                     f"{row['outputs_ms']:.1f} ms -> {row['node_ms']:.1f} ms per frame" if ros else "")
            tag = f" (parallel_students {v}, {threads[v]} torch threads)" if len(preds) > 1 else ""
            print(f"  {mode:6s}{tag} model p50 {row['model_ms_p50']:6.1f} ms (p99 {row['model_ms_p99']:6.1f}; "
                  f"{', '.join(f'{k} {x}' for k, x in row['model_parts_ms'].items())}){extra}: "
                  f"sustainable {row['max_rate_hz']:.1f} Hz")
        if len(preds) == 2:
            a_, b_ = (pct(t_model[v], 50) for v in variants)
            print(f"  {mode:6s} model time, parallel_students {variants[0]} / {variants[1]}: x{a_ / b_:.2f}")
    return out


def bench_e2e(args, tmp: Path) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from xmod_ros import launch as pip_launch
    from xmod_ros.bag import from_kitti
    from xmod_ros.dds import use_large_message_profile
    drive = Path(args.drive) if args.drive else DRIVE
    if not drive.is_dir():
        print(f"e2e: no drive at {drive} (give --drive): skipped")
        return {}
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 200)),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    use_large_message_profile(env)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE")
                       if k in env})
    bag = tmp / "kitti_bag"
    if not bag.exists():
        from_kitti(drive, bag, progress=False)
    rgb_ck, lidar_ck, _ = students(tmp, args.students)
    calib_dir = drive if (drive / "calib_cam_to_cam.txt").is_file() else drive.parent
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("xmod_bench", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got, status = [], []
    node.create_subscription(Image, "/xmod_node/instances",
                             lambda m: got.append((time.time(), m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)), 10)
    node.create_subscription(DiagnosticArray, "/xmod_node/status",
                             lambda m: status.append({kv.key: kv.value for kv in m.status[0].values}), 10)
    results = {}
    print(f"e2e: {args.seconds:g} s of {drive.name} at 10 Hz per mode, device {args.device}, {args.height}x{args.width}, "
          f"zoom tiles {args.zoom_tiles}{' (finer)' if args.finer else ''}; students {args.students}; "
          f"load {os.getloadavg()[0]:.1f}")
    try:
        for mode, par in ((m, v) for m in args.modes for v in (args.parallel_students if m == "fused"
                                                                else args.parallel_students[:1])):
            got.clear(), status.clear()
            cmd = pip_launch.commands({"bag": "", "mode": mode, "device": args.device, "rate": "1"},
                                      [f"calibration:={calib_dir}", f"checkpoint_rgb:={rgb_ck}",
                                       f"checkpoint_lidar:={lidar_ck}", "status_period:=1.0",
                                       f"fragments:={args.fragments}", f"parallel_students:={par}",
                                       f"height:={args.height}", f"width:={args.width}",
                                       f"zoom_tiles:={args.zoom_tiles}"] +
                                      [f"{k}:={v}" for k, v in FINER_PARAMS.items() if args.finer])["node"]
            log = open(tmp / f"node_{mode}_{par}.log", "w")
            nproc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            player = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "play", str(bag), "--loop", "--restamp",
                                       "--duration", str(args.seconds), "--wait-subscribers", "120"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
            while player.poll() is None:
                ex.spin_once(timeout_sec=0.05)
            end = time.monotonic() + 2.0
            while time.monotonic() < end:
                ex.spin_once(timeout_sec=0.05)
            nproc.send_signal(2)
            nproc.wait(30)
            log.close()
            if len(got) < 3:
                print(f"  {mode}: too few outputs ({len(got)}); see {tmp / f'node_{mode}_{par}.log'}")
                continue
            steady = got[len(got) // 5:]                        # skip the first fifth (warm-up)
            lat = [(r - s) * 1e3 for r, s in steady]
            span = steady[-1][0] - steady[0][0]
            last = status[-1] if status else {}
            f = {k: float(last.get(k, "nan")) for k in ("e2e_ms_p50", "e2e_ms_p99", "model_ms_p50", "convert_ms_p50",
                                                         "publish_ms_p50", "frames_received", "frames_processed",
                                                         "frames_dropped")}
            row = {"rate_hz": (len(steady) - 1) / span if span > 0 else float("nan"),
                   "latency_receipt_ms_p50": pct(lat, 50), "latency_receipt_ms_p99": pct(lat, 99),
                   "latency_publication_ms_p50": f["e2e_ms_p50"], "latency_publication_ms_p99": f["e2e_ms_p99"],
                   "model_ms_p50": f["model_ms_p50"], "convert_ms_p50": f["convert_ms_p50"],
                   "publish_ms_p50": f["publish_ms_p50"], "frames_received": f["frames_received"],
                   "frames_dropped": f["frames_dropped"], "device": last.get("device")}
            results[mode if par == args.parallel_students[0] else f"{mode} parallel_students={par}"] = row
            tag = f" (parallel_students {par})" if mode == "fused" and len(args.parallel_students) > 1 else ""
            print(f"  {mode:6s}{tag} {row['rate_hz']:5.1f} Hz sustained; latency stamp->publication p50 "
                  f"{row['latency_publication_ms_p50']:.0f} / p99 {row['latency_publication_ms_p99']:.0f} ms, "
                  f"stamp->receipt p50 {row['latency_receipt_ms_p50']:.0f} / p99 {row['latency_receipt_ms_p99']:.0f} ms; "
                  f"in the node: model {row['model_ms_p50']:.1f}, conversion {row['convert_ms_p50']:.1f}, "
                  f"publication {row['publish_ms_p50']:.1f} ms; dropped {row['frames_dropped']:.0f} of "
                  f"{row['frames_received']:.0f} ({row['device']})")
    finally:
        node.destroy_node()
        ctx.try_shutdown()
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("stages", "e2e", "all"), default="all")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    p.add_argument("--seconds", type=float, default=20.0, help="e2e: replay time per mode")
    p.add_argument("--frames", type=int, default=30, help="stages: frames (KITTI has 30)")
    p.add_argument("--repeat", type=int, default=1, help="stages: passes over the frames")
    p.add_argument("--device", default="cpu")
    p.add_argument("--zoom-tiles", type=int, default=0,
                   help="tiles of the horizon band also seen at twice the resolution (node parameter zoom_tiles)")
    p.add_argument("--students", choices=("default", "grid2", "stride4"), default="default",
                   help="the shipped default students, the grid2 pair (both with a slot grid at 1/2 of the input), or "
                        "stride4 (the default 2D student with the stride-4 3D one, the default until 2026-12-03)")
    p.add_argument("--finer", action="store_true",
                   help="with --zoom-tiles: the finer configuration (mirror, the fine-mask students on the tiles)")
    p.add_argument("--fragments", choices=FRAGMENTS, default="largest",
                   help="the students' instances (node parameter fragments; keep: the faster setting)")
    p.add_argument("--parallel-students", nargs="+", choices=("true", "false"), default=["true"],
                   help="fused: the node's parallel_students setting(s); two values: both, side by side (stages) or "
                        "one after the other (e2e)")
    p.add_argument("--drive", default=None)
    p.add_argument("--height", type=int, default=96, help="processing height (node parameter height)")
    p.add_argument("--width", type=int, default=320, help="processing width (node parameter width)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = p.parse_args(argv)
    if a.finer and not a.zoom_tiles:
        p.error("--finer needs --zoom-tiles (the finer configuration's extras act on the tiles)")
    a.parallel_students = list(dict.fromkeys(a.parallel_students))
    res = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="xmod_bench_") as tmp:
        tmp = Path(tmp)
        if a.part in ("stages", "all"):
            res["stages"] = bench_stages(a, tmp)
        if a.part in ("e2e", "all"):
            res["e2e"] = bench_e2e(a, tmp)
    res["load_after"] = os.getloadavg()[0]
    print(f"load average {res['load_before']:.1f} before, {res['load_after']:.1f} after ({res['cpus']} CPUs)")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
