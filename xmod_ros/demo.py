"""The demo: a drive in, a bag, the node, the replay, the recorded outputs, pictures and figures out.

    python -m xmod_ros.demo [--kitti DRIVE_DIR] [--frames 20] [--out out/demo] [--mode fused] [--rate 1.0]

1. a drive: simulated (``python -m xmod_core.sim``, 1242x375 scaled by 0.5, ground truth beside it)
   or ``--kitti DRIVE_DIR`` (e.g. ../shared/kitti_raw/2011_09_26/2011_09_26_drive_sfnd_sync);
2. ``python -m xmod_ros.bag from-kitti`` -> OUT/input_bag;
3. ``xmod_node`` (config/xmod.yaml, calibration from the drive), ``xmod_bag record`` of its outputs
   (-> OUT/output_bag) and ``xmod_bag play --restamp`` of the input bag, each in its own process;
4. from the recorded bag: OUT/overlay/*.png and OUT/overlay.mp4, OUT/birds_eye.png (3D clusters and
   boxes of the frame with most objects), OUT/summary.json and summary.md: end-to-end latency
   (input stamp to the recorder's receipt, p50/p99), output rate, frames dropped, the node's model
   / conversion / publication times, and on simulated drives F1@50 and FG-ARI (2D and 3D) against
   the ground truth.

The shipped demo models (xmod_core/assets/student_*.pt) are used when present; without them the
demo runs untrained students of the demo architecture (config/demo) and says so: the pipeline and
its timing are then real, the metrics are those of random weights.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("sim", "bag", "node", "play", "report")


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def demo_students(out_dir: Path) -> tuple[Path, Path, bool]:
    """(rgb, lidar, trained): the shipped models, else untrained students of the demo config."""
    from xmod_core.predictor import DEFAULT_2D, DEFAULT_3D
    if Path(DEFAULT_2D).is_file() and Path(DEFAULT_3D).is_file():
        return Path(DEFAULT_2D), Path(DEFAULT_3D), True
    import torch
    import yaml

    from xmod_core.config import from_dict
    from xmod_core.model import DIOD, ModelConfig
    from xmod_core.stages import student_config
    from xmod_core.train import export_student
    cfg = from_dict(ModelConfig, yaml.safe_load((ROOT / "config" / "demo" / "2d_burn_in.yaml").read_text())["model"])
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for m in ("rgb", "lidar"):
        p = out_dir / f"student_{m}.pt"
        if not p.is_file():
            torch.manual_seed(0)
            export_student(p, "untrained", m, cfg, DIOD(student_config(cfg, m)).state_dict(), {"note": "untrained demo student"})
        paths.append(p)
    return paths[0], paths[1], False


def simulate(out: Path, frames: int, seed: int) -> Path:
    drive = out / "2030_01_01" / "2030_01_01_drive_0000_sync"
    done = out / "sim.done"
    if done.is_file() and done.read_text() == f"{frames} {seed}" and drive.is_dir():
        _log(f"reusing the simulated drive {drive}")
        return drive
    if out.exists():
        shutil.rmtree(out)
    _log(f"simulating {frames} frames (python -m xmod_core.sim, scale 0.5) ...")
    subprocess.run([sys.executable, "-m", "xmod_core.sim", "--out", str(out), "--frames", str(frames), "--scale", "0.5",
                    "--seed", str(seed), "--sequences", "1", "--no-preview"], check=True)
    drives = sorted(out.glob("*/*_sync"))
    if not drives:
        raise RuntimeError(f"the simulator wrote no drive under {out}")
    done.write_text(f"{frames} {seed}")
    return drives[0]


def _stop(proc: subprocess.Popen, name: str, timeout: float = 20.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _log(f"{name} did not stop in {timeout:g} s: killed")
            proc.kill()
            proc.wait(5)
    return proc.returncode


def run_pipeline(drive: Path, out: Path, ckpts: tuple[Path, Path], mode: str, device: str, rate: float,
                 env: dict) -> dict:
    """Node + recorder + player in three processes; returns paths and the player's restamp log entry."""
    from . import launch as pip_launch
    from .bag import NODE_OUTPUTS
    in_bag, out_bag = out / "input_bag", out / "output_bag"
    if out_bag.exists():
        shutil.rmtree(out_bag)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    args = {"bag": "", "mode": mode, "device": device, "rate": str(rate)}
    calib_dir = drive if (drive / "calib_cam_to_cam.txt").is_file() else drive.parent
    node_cmd = pip_launch.commands(args, [f"calibration:={calib_dir}", f"checkpoint_rgb:={ckpts[0]}",
                                          f"checkpoint_lidar:={ckpts[1]}", "clusters_background:=true",
                                          "status_period:=0.5"])["node"]
    restamp_log = out / "logs" / "restamp.jsonl"
    restamp_log.unlink(missing_ok=True)
    procs = {}
    files = {k: open(logs / f"{k}.log", "w") for k in ("node", "recorder", "player")}
    try:
        _log("starting xmod_node: " + " ".join(node_cmd[:1] + node_cmd[-8:]))
        procs["node"] = subprocess.Popen(node_cmd, stdout=files["node"], stderr=subprocess.STDOUT, env=env)
        procs["recorder"] = subprocess.Popen(
            [sys.executable, "-m", "xmod_ros.bag", "record", str(out_bag), "--topics", *NODE_OUTPUTS],
            stdout=files["recorder"], stderr=subprocess.STDOUT, env=env)
        from . import detections
        want = [t for t in NODE_OUTPUTS if (mode != "rgb" or not t.endswith(("clusters", "markers", "detections_3d")))
                and (detections.available() or "detections" not in t)]
        end = time.monotonic() + 120
        while time.monotonic() < end:              # the recorder must hear the first output
            text = (logs / "recorder.log").read_text()
            if all(f"recording {t} " in text for t in want):
                break
            for name in ("node", "recorder"):
                if procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited ({procs[name].returncode}):\n"
                                       f"{(logs / f'{name}.log').read_text()[-3000:]}")
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the recorder did not subscribe to {want} within 120 s")
        _log(f"replaying {in_bag} at rate {rate:g} (restamped to the current time) once the node subscribes ...")
        t0 = time.monotonic()
        procs["player"] = subprocess.Popen(
            [sys.executable, "-m", "xmod_ros.bag", "play", str(in_bag), "--rate", str(rate), "--restamp",
             "--restamp-log", str(restamp_log), "--wait-subscribers", "120"],
            stdout=files["player"], stderr=subprocess.STDOUT, env=env)
        while procs["player"].poll() is None:
            if procs["node"].poll() is not None:
                raise RuntimeError(f"xmod_node exited ({procs['node'].returncode}):\n{(logs / 'node.log').read_text()[-3000:]}")
            time.sleep(0.2)
        _log(f"replay done in {time.monotonic() - t0:.1f} s; letting the node finish ...")
        time.sleep(2.0)
    finally:
        for name in ("player", "recorder", "node"):
            if name in procs:
                _stop(procs[name], name)
        for f in files.values():
            f.close()
    if procs["node"].returncode not in (0, None):
        raise RuntimeError(f"xmod_node failed ({procs['node'].returncode}):\n{(logs / 'node.log').read_text()[-3000:]}")
    if not restamp_log.is_file():
        raise RuntimeError(f"the player published nothing:\n{(logs / 'player.log').read_text()[-3000:]}")
    restamp = json.loads(restamp_log.read_text().splitlines()[0])
    return {"output_bag": out_bag, "restamp": restamp, "logs": logs}


def _stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def report(drive: Path, out: Path, run: dict, trained: bool, mode: str, rate: float, frames: int | None = None) -> dict:
    import cv2

    from xmod_core.kitti import KittiRawDrive
    from xmod_core.metrics import F1Accumulator, fg_ari

    from . import convert, render
    from .bag import bag_info, drive_stamps_ns, original_stamp_ns, read_messages
    kd = KittiRawDrive(drive)
    cam_ns, velo_ns, _ = drive_stamps_ns(kd)
    cam_index = {int(t): i for i, t in enumerate(cam_ns)}
    velo_index = {int(t): i for i, t in enumerate(velo_ns)}
    orig = lambda msg: original_stamp_ns(_stamp_ns(msg), run["restamp"])      # the drive's stamp of an output
    inst, overlays, clusters, markers, status, latency = {}, {}, {}, {}, [], []
    for topic, t_ns, msg in read_messages(run["output_bag"]):
        key = topic.rsplit("/", 1)[-1]
        if key == "status":
            status.append({kv.key: kv.value for kv in msg.status[0].values})
            continue
        if key == "markers":
            if msg.markers:
                markers[velo_index.get(orig(msg.markers[0]))] = msg
            continue
        s = orig(msg)
        if key == "instances":
            latency.append((t_ns - _stamp_ns(msg)) * 1e-6)
            inst[cam_index.get(s, velo_index.get(s))] = convert.image_to_numpy(msg)
        elif key == "overlay":
            overlays[cam_index.get(s, velo_index.get(s))] = convert.image_to_numpy(msg)
        elif key == "clusters":
            cols = convert.read_cloud_fields(msg, ("x", "y", "z", "instance"))
            clusters[velo_index.get(s)] = cols
    inst.pop(None, None), overlays.pop(None, None), clusters.pop(None, None), markers.pop(None, None)
    n_in = len(kd) if frames is None else min(frames, len(kd))
    # pictures
    ov_dir = out / "overlay"
    if ov_dir.exists():
        shutil.rmtree(ov_dir)
    ov_dir.mkdir()
    for i, img in sorted(overlays.items()):
        cv2.imwrite(str(ov_dir / f"{i:06d}.png"), img[..., ::-1])
    video = out / "overlay.mp4"
    video.unlink(missing_ok=True)
    if overlays:
        first = next(iter(overlays.values()))
        vw = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (first.shape[1], first.shape[0]))
        if vw.isOpened():
            for i in range(min(overlays), max(overlays) + 1):
                if i in overlays:
                    vw.write(overlays[i][..., ::-1])
            vw.release()
        if not video.is_file() or video.stat().st_size == 0:
            video.unlink(missing_ok=True)
            video = None
    else:
        video = None
    bev = None
    if clusters:
        best = max(clusters, key=lambda i: (len(markers[i].markers) if i in markers else 0, i))
        c = clusters[best]
        objs = []
        for m in (markers[best].markers if best in markers else []):
            if m.type == m.CUBE:
                yaw = 2 * np.arctan2(m.pose.orientation.z, m.pose.orientation.w)
                objs.append(SimpleNamespace(id=m.id, center=np.array([m.pose.position.x, m.pose.position.y, m.pose.position.z]),
                                            size=np.array([m.scale.x, m.scale.y, m.scale.z]), yaw=yaw))
        pts = np.stack([c["x"], c["y"], c["z"]], 1)
        bev = out / "birds_eye.png"
        cv2.imwrite(str(bev), render.birds_eye(pts, c["instance"], objs)[..., ::-1])
    # figures
    last = status[-1] if status else {}

    def f(key):
        try:
            return float(last[key])
        except (KeyError, ValueError):
            return None

    duration_in = (cam_ns[n_in - 1] - cam_ns[0]) * 1e-9 / rate if n_in > 1 else 0.0
    summary = {
        "drive": str(drive), "frames_in": n_in, "mode": mode, "replay_rate": rate, "trained_models": trained,
        "frames_out": len(inst), "frames_dropped_by_node": int(f("frames_dropped") or 0),
        "output_rate_hz": (len(inst) / duration_in) if duration_in else None,
        "latency_ms_p50": float(np.percentile(latency, 50)) if latency else None,
        "latency_ms_p99": float(np.percentile(latency, 99)) if latency else None,
        "node": {k: f(k) for k in ("model_ms_p50", "model_ms_p99", "convert_ms_p50", "publish_ms_p50", "pipeline_ms_p50",
                                   "pipeline_ms_p99", "e2e_ms_p50", "e2e_ms_p99")} | {"device": last.get("device")},
        "outputs": {"output_bag": str(run["output_bag"]), "overlay_png": str(ov_dir), "overlay_video": str(video) if video else None,
                    "birds_eye": str(bev) if bev else None, "input_bag": str(out / "input_bag"), "logs": str(run["logs"])},
        "output_bag_topics": bag_info(run["output_bag"])["topics"],
    }
    gt_dir = drive / "instance_02" / "data"
    if gt_dir.is_dir():
        f2d, f3d, ari2d, ari3d = F1Accumulator(), F1Accumulator(), [], []
        for i, labels in sorted(inst.items()):
            gt = cv2.imread(str(gt_dir / f"{kd.frame_ids[i]}.png"), cv2.IMREAD_UNCHANGED)
            if gt is None or gt.shape != labels.shape:
                continue
            f2d.update(gt, labels)
            a = fg_ari(gt, labels)
            if a is not None:
                ari2d.append(a)
        lab_dir = drive / "velodyne_labels" / "data"
        for i, c in sorted(clusters.items()):
            lf = lab_dir / f"{kd.frame_ids[i]}.label"
            if not lf.is_file():
                continue
            gt = (np.fromfile(lf, np.uint32) >> 16).astype(np.int64)
            scan = kd.scan(i)
            keep = np.isfinite(scan[:, :3]).all(1)
            gt = gt[keep]
            if len(gt) != len(c["instance"]):
                continue
            f3d.update(gt, c["instance"])
            a = fg_ari(gt, c["instance"])
            if a is not None:
                ari3d.append(a)
        summary["metrics"] = {
            "2d": {"f1@50": f2d.result()["f1"], "precision": f2d.result()["precision"], "recall": f2d.result()["recall"],
                   "fg_ari": float(np.mean(ari2d)) if ari2d else None, "frames": len(inst)},
            "3d": {"f1@50": f3d.result()["f1"], "precision": f3d.result()["precision"], "recall": f3d.result()["recall"],
                   "fg_ari": float(np.mean(ari3d)) if ari3d else None, "frames": len(clusters)},
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary


def _fmt(v, unit="", nd=1):
    return "n/a" if v is None else f"{v:.{nd}f}{unit}"


def summary_markdown(s: dict) -> str:
    n = s["node"]
    lines = [f"# xmod demo: {Path(s['drive']).name}", "",
             f"- mode **{s['mode']}** on **{n.get('device')}**, replay at {s['replay_rate']:g}x"
             + ("" if s["trained_models"] else " -- **untrained models** (shipped demo models not found): "
                "the timing is real, the metrics are those of random weights"),
             f"- frames: {s['frames_in']} in, {s['frames_out']} out, {s['frames_dropped_by_node']} dropped by the node"
             + (" (model slower than the input; `--rate 0.5` replays slower so that every frame is processed)"
                if s["frames_dropped_by_node"] else ""),
             f"- output rate: {_fmt(s['output_rate_hz'], ' Hz')}",
             f"- end-to-end latency (input stamp -> recorder): p50 {_fmt(s['latency_ms_p50'], ' ms', 0)}, "
             f"p99 {_fmt(s['latency_ms_p99'], ' ms', 0)}",
             f"- in the node: model {_fmt(n['model_ms_p50'], ' ms')} (p99 {_fmt(n['model_ms_p99'], ' ms')}), conversion "
             f"{_fmt(n['convert_ms_p50'], ' ms')}, publication {_fmt(n['publish_ms_p50'], ' ms')}, receipt to "
             f"publication {_fmt(n['pipeline_ms_p50'], ' ms')} (p99 {_fmt(n['pipeline_ms_p99'], ' ms')})"]
    if "metrics" in s:
        for k, m in s["metrics"].items():
            lines.append(f"- {k.upper()} vs ground truth ({m['frames']} frames): F1@50 {_fmt(m['f1@50'], '', 3)} "
                         f"(P {_fmt(m['precision'], '', 3)}, R {_fmt(m['recall'], '', 3)}), FG-ARI {_fmt(m['fg_ari'], '', 3)}")
    lines += ["", "outputs:"] + [f"- {k}: {v}" for k, v in s["outputs"].items() if v]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m xmod_ros.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--kitti", type=Path, default=None, help="a KITTI raw drive folder instead of a simulated drive")
    p.add_argument("--frames", type=int, default=20, help="frames to simulate / use (default 20)")
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--mode", choices=("rgb", "lidar", "fused"), default="fused")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default 1: the sensors' 10 Hz)")
    p.add_argument("--seed", type=int, default=0, help="simulation seed")
    p.add_argument("--checkpoint-rgb", type=Path, default=None)
    p.add_argument("--checkpoint-lidar", type=Path, default=None)
    a = p.parse_args(argv)
    if a.frames < 2:
        p.error("--frames must be at least 2")
    t_start = time.monotonic()
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 200))      # isolated unless the user chose one
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env["PYTHONUNBUFFERED"] = "1"
    from .dds import use_large_message_profile
    use_large_message_profile(env)
    rgb, lidar, trained = demo_students(out / "models")
    if a.checkpoint_rgb or a.checkpoint_lidar:
        rgb, lidar, trained = a.checkpoint_rgb or rgb, a.checkpoint_lidar or lidar, True
    if not trained:
        _log("shipped demo models not found (xmod_core/assets/student_*.pt): using untrained students of config/demo")
    if a.kitti is not None:
        drive = a.kitti.resolve()
    else:
        drive = simulate(out / "sim", a.frames, a.seed)
    from .bag import from_kitti
    in_bag = out / "input_bag"
    if in_bag.exists():
        shutil.rmtree(in_bag)
    _log(f"converting {drive} to {in_bag} ...")
    from_kitti(drive, in_bag, frames=a.frames, progress=False)
    _log(f"ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']} (attach rviz2 with the same domain to watch /xmod_node/overlay and /xmod_node/markers)")
    run = run_pipeline(drive, out, (rgb, lidar), a.mode, a.device, a.rate, env)
    summary = report(drive, out, run, trained, a.mode, a.rate, a.frames)
    print()
    print((out / "summary.md").read_text())
    print(f"demo finished in {time.monotonic() - t_start:.0f} s; outputs in {out}/ (summary.md, summary.json, overlay/, "
          "overlay.mp4, birds_eye.png, output_bag/)")
    return 0 if summary["frames_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
