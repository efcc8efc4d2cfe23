"""Soak run of xmod_node (not in CI): 10 Hz input for 10 minutes, resident memory flat within 5%,
no growth in any queue.

Usage: .venv/bin/python bench/soak_node.py [--minutes 10] [--mode fused] [--device cpu] [--drive DIR]
                                            [--json out/soak.json]

The KITTI bag is replayed in a loop at 10 Hz with current stamps (``xmod_bag play --loop
--restamp``) into a node at the demo configuration. Every 5 s: the node's resident memory
(/proc/PID/status VmRSS) and its ~/status (frames received/processed/dropped, the pending-frame
slot, the synchronizer's queued messages, latency). Pass when
  * RSS over the last minute is within 5% of RSS over the second minute (the first is warm-up:
    allocator pools, caches),
  * the pending slot never holds more than one frame and the synchronizer never more than its
    two queues' size (2 x sync_queue_size),
  * the node processed frames throughout (no stall) and its latency p99 in the last minute is
    not above the second minute's by more than 50%.
Exit status 0 on pass, 1 on fail; the samples go to --json.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DRIVE = ROOT.parent / "shared" / "kitti_raw" / "2011_09_26" / "2011_09_26_drive_sfnd_sync"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--mode", choices=("rgb", "lidar", "fused"), default="fused")
    p.add_argument("--device", default="cpu")
    p.add_argument("--drive", type=Path, default=DRIVE)
    p.add_argument("--every", type=float, default=5.0, help="sampling period, s")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if a.minutes < 2.5:
        p.error("--minutes must be at least 2.5 (warm-up, reference and final minutes)")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    from xmod_ros import launch as pip_launch
    from xmod_ros.bag import from_kitti
    from xmod_ros.demo import demo_students
    from xmod_ros.dds import use_large_message_profile
    from xmod_ros.node import PARAMETERS
    env = dict(os.environ, ROS_DOMAIN_ID=os.environ.get("ROS_DOMAIN_ID", str(1 + os.getpid() % 200)),
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    use_large_message_profile(env)
    for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "FASTDDS_DEFAULT_PROFILES_FILE"):
        if k in env:
            os.environ[k] = env[k]
    seconds = a.minutes * 60
    samples = []
    with tempfile.TemporaryDirectory(prefix="xmod_soak_") as tmp:
        tmp = Path(tmp)
        bag = from_kitti(a.drive, tmp / "bag", progress=False)
        rgb, lidar, _ = demo_students(tmp / "models")
        calib = a.drive if (a.drive / "calib_cam_to_cam.txt").is_file() else a.drive.parent
        cmd = pip_launch.commands({"bag": "", "mode": a.mode, "device": a.device, "rate": "1"},
                                  [f"calibration:={calib}", f"checkpoint_rgb:={rgb}", f"checkpoint_lidar:={lidar}"])["node"]
        log = open(tmp / "node.log", "w")
        node_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        player = subprocess.Popen([sys.executable, "-m", "xmod_ros.bag", "play", str(bag), "--loop", "--restamp",
                                   "--duration", str(seconds), "--wait-subscribers", "120"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env)
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        node = rclpy.create_node("xmod_soak", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        last = {}
        node.create_subscription(DiagnosticArray, "/xmod_node/status",
                                 lambda m: last.update({kv.key: kv.value for kv in m.status[0].values}), 10)
        print(f"soak: {a.minutes:g} min of {a.drive.name} at 10 Hz, mode {a.mode}, device {a.device}; sampling every "
              f"{a.every:g} s", flush=True)
        try:
            while not last.get("frames_processed", "0").isdigit() or int(last.get("frames_processed", "0")) == 0:
                ex.spin_once(timeout_sec=0.1)
                if node_proc.poll() is not None or player.poll() is not None:
                    raise SystemExit(f"node or player exited early:\n{(tmp / 'node.log').read_text()[-2000:]}")
            t0 = time.monotonic()
            next_t = t0
            while player.poll() is None and node_proc.poll() is None:
                ex.spin_once(timeout_sec=0.1)
                if time.monotonic() >= next_t:
                    next_t += a.every
                    s = {"t": time.monotonic() - t0, "rss_mb": rss_mb(node_proc.pid),
                         **{k: float(last[k]) for k in ("frames_received", "frames_processed", "frames_dropped", "pending",
                                                        "sync_queued", "e2e_ms_p50", "e2e_ms_p99", "model_ms_p50")
                            if k in last}}
                    samples.append(s)
                    print(f"  t={s['t']:6.0f} s rss {s['rss_mb']:7.1f} MB processed {s.get('frames_processed', 0):6.0f} "
                          f"dropped {s.get('frames_dropped', 0):5.0f} pending {s.get('pending', 0):.0f} sync queued "
                          f"{s.get('sync_queued', 0):.0f} latency p99 {s.get('e2e_ms_p99', float('nan')):.0f} ms", flush=True)
        finally:
            node.destroy_node()
            ctx.try_shutdown()
            for proc in (player, node_proc):
                if proc.poll() is None:
                    proc.send_signal(2)
                    proc.wait(30)
            log.close()
    t = np.array([s["t"] for s in samples])
    ref, fin = [s for s in samples if 60 <= s["t"] < 120], [s for s in samples if s["t"] >= t.max() - 60]
    checks = {}
    if ref and fin:
        r_ref, r_fin = np.median([s["rss_mb"] for s in ref]), np.median([s["rss_mb"] for s in fin])
        checks["rss_flat_within_5pct"] = (abs(r_fin / r_ref - 1) <= 0.05, f"{r_ref:.1f} MB -> {r_fin:.1f} MB "
                                                                          f"({100 * (r_fin / r_ref - 1):+.1f}%)")
        l_ref, l_fin = np.median([s.get("e2e_ms_p99", np.nan) for s in ref]), np.median([s.get("e2e_ms_p99", np.nan) for s in fin])
        checks["latency_no_growth"] = (bool(l_fin <= 1.5 * l_ref), f"p99 {l_ref:.0f} ms -> {l_fin:.0f} ms")
    q = int(PARAMETERS["sync_queue_size"][0])
    checks["pending_at_most_one"] = (max(s.get("pending", 0) for s in samples) <= 1, "max pending "
                                     f"{max(s.get('pending', 0) for s in samples):.0f}")
    checks["sync_queues_bounded"] = (max(s.get("sync_queued", 0) for s in samples) <= 2 * q,
                                     f"max queued {max(s.get('sync_queued', 0) for s in samples):.0f} (bound {2 * q})")
    proc = [s.get("frames_processed", 0) for s in samples]
    stalls = sum(1 for x, y in zip(proc, proc[1:]) if y <= x)
    checks["no_stall"] = (stalls == 0, f"{stalls} sampling periods without a processed frame")
    rate = (proc[-1] - proc[0]) / (t[-1] - t[0]) if len(t) > 1 else 0.0
    ok = all(v for v, _ in checks.values())
    print(f"processed {rate:.1f} frames/s on average; dropped {samples[-1].get('frames_dropped', 0):.0f} of "
          f"{samples[-1].get('frames_received', 0):.0f}")
    for k, (v, text) in checks.items():
        print(f"  {'PASS' if v else 'FAIL'} {k}: {text}")
    print("soak", "PASSED" if ok else "FAILED")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"checks": {k: [bool(v), t_] for k, (v, t_) in checks.items()},
                                      "rate": rate, "samples": samples}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
