"""The demo end to end on a tiny drive (bag, node, recorder and player in their own processes,
pictures, summary with latency, rate and metrics against ground truth), and the pictures it
draws (xmod_ros.render)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ros_helpers as H  # noqa: E402
from conftest import make_tiny_drive  # noqa: E402

from xmod_ros import render  # noqa: E402


def test_palette_is_fixed_and_distinct():
    c = render.colours(np.arange(1, 41))
    assert (render.colours(0) == 0).all() and len({tuple(x) for x in c}) == 40
    assert np.array_equal(render.colours([7, 7]), np.stack([render.palette()[7]] * 2))
    assert np.array_equal(render.colours(65536 + 5), render.colours(5))


def test_overlay_colours_instances_and_writes_ids():
    rgb = np.full((60, 100, 3), 100, np.uint8)
    labels = np.zeros((60, 100), np.uint16)
    labels[10:40, 20:60] = 3
    out = render.overlay(rgb, labels, alpha=0.5)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    assert (out[:5, :5] == 100).all() and (out[50:, 80:] == 100).all()          # background untouched
    col = render.colours(3).astype(int)
    inner = out[15:20, 25:30].astype(int)                                        # blended, away from the id text
    assert np.abs(inner - (100 * 0.5 + col * 0.5)).max() <= 1
    assert (out[10, 20:60] == col).all()                                         # outline in the pure colour
    assert (out[18:32, 32:48] > 200).all(-1).any()                               # the white id near the centroid
    assert render.instance_centres(labels) == {3: (39, 24)}
    assert render.overlay(None, np.zeros((4, 4), np.uint16)).max() == 40        # no image, no instance


def test_birds_eye_places_points_and_boxes():
    pts = np.array([[10.0, 0.0, 0.0], [20.0, 5.0, 0.0], [np.nan, 0, 0], [500, 0, 0]])
    img = render.birds_eye(pts, np.array([0, 4, 0, 0]), x_range=(0, 30), y_range=(-10, 10), res=0.5)
    assert img.shape == (60, 40, 3)
    assert (img[40, 20] == 110).all()                                            # (10, 0): grey background point
    assert (img[20, 10] == render.colours(4)).all()                              # (20, 5): instance 4, left of centre
    from types import SimpleNamespace
    box = SimpleNamespace(id=4, center=np.array([15.0, -5.0, 0]), size=np.array([4.0, 2.0, 1.5]), yaw=0.0)
    img = render.birds_eye(np.zeros((0, 3)), None, [box], x_range=(0, 30), y_range=(-10, 10), res=0.5)
    assert (img[26:34, 28] == render.colours(4)).all(-1).any()                   # a box edge at y = -4 .. -6


def test_demo_end_to_end_on_a_tiny_drive(tmp_path):
    root = tmp_path / "kitti"
    drive = make_tiny_drive(root, frames=8)
    gt = drive / "instance_02" / "data"                   # the tiny drive's moving squares as ground truth
    gt.mkdir(parents=True)
    for f in (drive / "image_02" / "motion_masks").glob("*.png"):
        shutil.copy(f, gt / f.name)
    rgb, lidar = H.export_tiny_students(tmp_path / "models")
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "xmod_ros.demo", "--kitti", str(drive), "--frames", "8", "--out", str(out),
                           "--checkpoint-rgb", str(rgb), "--checkpoint-lidar", str(lidar), "--device", "cpu"],
                          capture_output=True, text=True, env=H.ros_env(), timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["frames_in"] == 8 and 1 <= s["frames_out"] <= 8
    assert s["frames_out"] + s["frames_dropped_by_node"] >= 6                  # at most a rare transport loss
    assert s["latency_ms_p50"] > 0 and s["node"]["model_ms_p50"] > 0 and s["node"]["device"] == "cpu"
    assert set(s["output_bag_topics"]) >= {"/xmod_node/instances", "/xmod_node/overlay", "/xmod_node/clusters",
                                           "/xmod_node/markers", "/xmod_node/status"}
    m2 = s["metrics"]["2d"]
    assert m2["frames"] == s["frames_out"] and 0 <= m2["f1@50"] <= 1
    pngs = sorted((out / "overlay").glob("*.png"))
    assert len(pngs) == s["frames_out"] and cv2.imread(str(pngs[0])).shape == (64, 208, 3)
    assert (out / "birds_eye.png").is_file() and (out / "summary.md").is_file()
    assert "summary.md" in proc.stdout and "F1@50" in proc.stdout
