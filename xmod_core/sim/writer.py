"""Simulate one drive and write it in the KITTI raw layout, with ground truth beside it.

    OUT/DATE/calib_cam_to_cam.txt, calib_velo_to_cam.txt, calib_imu_to_velo.txt
    OUT/DATE/DATE_drive_NNNN_sync/
        image_02/data/NNNNNNNNNN.png          camera image_02 (RGB)
        image_02/timestamps.txt               (also velodyne_points/ and oxts/)
        velodyne_points/data/NNNNNNNNNN.bin   float32 x, y, z, reflectance
        oxts/data/NNNNNNNNNN.txt              ego (IMU) pose, KITTI oxts format
        instance_02/data/NNNNNNNNNN.png       uint16 instance id per pixel, 0 = background
        velodyne_labels/data/NNNNNNNNNN.label uint32 per point: class (SemanticKITTI id) | instance << 16
        objects/data/NNNNNNNNNN.json          objects: id, class, 3D box, moving flag, velocity
        sim.json                              seed, frames, size and the class table

Instance ids are stable over the sequence. Everything is deterministic for a seed.
"""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import cv2
import numpy as np

from .. import kitti
from .rig import R_RECT_00, Rig
from .scene import CLASS_IDS, DT, MOVING_SPEED, OBJECT_CLASSES, Scene, generate

GT_INSTANCE_DIR = "instance_02"
GT_LABEL_DIR = "velodyne_labels"
GT_OBJECT_DIR = "objects"
STILL_SPEED = 0.3        # m/s, ego below this: a "still" frame
TURN_RATE = 0.05         # rad/s, ego yaw rate above this: a "turn" frame


def date_name(seed: int) -> str:
    """One KITTI-style date folder per seed, so drives of different seeds never collide."""
    return (dt.date(2030, 1, 1) + dt.timedelta(days=int(seed))).strftime("%Y_%m_%d")


def sequence_rngs(seed: int, sequence: int) -> tuple:
    """Independent generators (scene, textures, camera noise, LiDAR noise) of one drive."""
    return tuple(np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(sequence)]).spawn(4))


# A LiDAR worker process: its own collision-only World of the same drive, regenerated from the seed
_LIDAR_WORLD = None


def _lidar_init(seed: int, sequence: int, frames: int, rig: Rig, clutter: str = "basic", density: float = 1.0,
                parking: str = "sparse") -> None:
    global _LIDAR_WORLD
    from .engine import World
    rngs = sequence_rngs(seed, sequence)
    _LIDAR_WORLD = World(generate(rngs[0], frames, clutter, density, parking), rig, rngs[1:], visual=False, ray_threads=0)


def _lidar_frame(t: int):
    _LIDAR_WORLD.set_frame(t)
    return _LIDAR_WORLD.lidar(t)


class _LidarSource:
    """LiDAR sweeps of a drive, computed in the calling process or, with `process=True`, in a
    worker process one frame ahead, so that rendering and ray casting use both cores."""

    def __init__(self, world, seed, sequence, frames, rig, process: bool, clutter: str = "basic", density: float = 1.0,
                 parking: str = "sparse"):
        self.world, self.frames, self.pending = world, frames, {}
        self.pool = None
        if process:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor
            self.pool = ProcessPoolExecutor(1, multiprocessing.get_context("spawn"), initializer=_lidar_init,
                                            initargs=(seed, sequence, frames, rig, clutter, density, parking))
            for t in range(min(2, frames)):
                self.pending[t] = self.pool.submit(_lidar_frame, t)

    def __call__(self, t: int):
        if self.pool is None:
            return self.world.lidar(t)
        if t + 2 < self.frames:
            self.pending[t + 2] = self.pool.submit(_lidar_frame, t + 2)
        return self.pending.pop(t).result()

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def drive_dir(out: Path, seed: int, sequence: int) -> Path:
    date = date_name(seed)
    return Path(out) / date / f"{date}_drive_{sequence:04d}_sync"


def write_calibration(date_dir: Path, rig: Rig) -> None:
    kitti.write_calib_files(date_dir, {0: rig.P_rect_00, 2: rig.P_rect_02}, R_RECT_00, rig.T_velo_to_cam,
                            rig.T_imu_to_velo, width=rig.width, height=rig.height, fmt="%.10e")


def ego_motion_labels(scene: Scene) -> tuple[np.ndarray, list]:
    yaw_rate = np.gradient(np.unwrap(scene.ego_yaw), DT) if scene.frames > 1 else np.zeros(1)
    kind = np.where(scene.ego_speed < STILL_SPEED, "still", np.where(np.abs(yaw_rate) > TURN_RATE, "turn", "straight"))
    return yaw_rate, kind.tolist()


def _objects_json(scene: Scene, t: int, T_world_velo: np.ndarray, inst_img: np.ndarray, labels: np.ndarray,
                  velocities: dict, ego: dict) -> dict:
    T_velo_world = np.linalg.inv(T_world_velo)
    pix = np.bincount(inst_img.ravel(), minlength=1)
    pts = np.bincount((labels >> 16).astype(np.int64), minlength=1)
    yaw_velo0 = np.arctan2(T_world_velo[1, 0], T_world_velo[0, 0])
    objs = []
    for b in scene.objects:
        centre = np.array([b.x[t], b.y[t], b.size[2] / 2, 1.0])
        c_velo = T_velo_world @ centre
        if np.hypot(c_velo[0], c_velo[1]) > 120:
            continue
        v = velocities[b.instance][t]
        objs.append({
            "id": b.instance, "class": b.cls, "class_id": CLASS_IDS[b.cls],
            "box_world": {"center": centre[:3].round(4).tolist(), "size": np.round(b.size, 4).tolist(),
                          "yaw": round(float(b.yaw[t]), 5)},
            "box_velo": {"center": c_velo[:3].round(4).tolist(), "size": np.round(b.size, 4).tolist(),
                         "yaw": round(float(np.arctan2(np.sin(b.yaw[t] - yaw_velo0), np.cos(b.yaw[t] - yaw_velo0))), 5)},
            "velocity_world": [round(float(v[0]), 4), round(float(v[1]), 4)],
            "speed": round(float(np.hypot(*v)), 4), "moving": bool(np.hypot(*v) > MOVING_SPEED),
            "pixels": int(pix[b.instance]) if b.instance < len(pix) else 0,
            "lidar_points": int(pts[b.instance]) if b.instance < len(pts) else 0,
        })
    return {"frame": t, "ego": ego, "objects": objs}


def simulate_drive(out: Path, seed: int, sequence: int, frames: int, rig: Rig, shadows: bool = False,
                   progress=None, preview: bool = True, lidar_process: bool = False, clutter: str = "basic",
                   object_density: float = 1.0, parking: str = "sparse") -> Path:
    """Simulate sequence `sequence` of `seed` and write it under `out`; returns the drive dir.
    `lidar_process`: cast the LiDAR in a second process while this one renders (2 cores, 1 drive);
    `clutter`: `basic` or `street`, `object_density`: share of the objects kept, `parking`: `sparse` or
    `tight` (`scene.generate`)."""
    from .engine import World                      # PyBullet is imported only here
    rngs = sequence_rngs(seed, sequence)
    scene = generate(rngs[0], frames, clutter, object_density, parking)
    drive = drive_dir(out, seed, sequence)
    write_calibration(drive.parent, rig)
    dirs = {k: drive / k / "data" for k in ("image_02", "velodyne_points", "oxts", GT_INSTANCE_DIR, GT_LABEL_DIR, GT_OBJECT_DIR)}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    stamps = np.arange(frames) * DT
    for k in ("image_02", "velodyne_points", "oxts"):
        kitti.write_timestamps(drive / k / "timestamps.txt", stamps)
    yaw_rate, kind = ego_motion_labels(scene)
    velocities = {b.instance: np.stack([np.gradient(b.x, DT), np.gradient(b.y, DT)], -1) if frames > 1
                  else np.zeros((1, 2)) for b in scene.objects}
    world = World(scene, rig, rngs[1:], shadows=shadows, visual=True, ray_threads=1 if lidar_process else 0)
    lidar = _LidarSource(world, seed, sequence, frames, rig, lidar_process, clutter, object_density, parking)
    try:
        imu_poses = np.stack([world.imu_pose(t) for t in range(frames)])
        kitti.write_oxts(drive / "oxts", imu_poses, speeds=scene.ego_speed)
        shots = []
        for t in range(frames):
            world.set_frame(t)
            rgb, inst = world.render(t)
            points, labels = lidar(t)
            name = f"{t:010d}"
            cv2.imwrite(str(dirs["image_02"] / f"{name}.png"), rgb[..., ::-1])
            cv2.imwrite(str(dirs[GT_INSTANCE_DIR] / f"{name}.png"), inst)
            points.tofile(dirs["velodyne_points"] / f"{name}.bin")
            labels.tofile(dirs[GT_LABEL_DIR] / f"{name}.label")
            ego = {"speed": round(float(scene.ego_speed[t]), 4), "yaw_rate": round(float(yaw_rate[t]), 5),
                   "motion": kind[t], "pose_world": np.round(world.velo_pose(t), 6).tolist()}
            frame_json = _objects_json(scene, t, world.velo_pose(t), inst, labels, velocities, ego)
            (dirs[GT_OBJECT_DIR] / f"{name}.json").write_text(json.dumps(frame_json))
            if preview and t == frames // 2:
                shots = (rgb, inst, points)
            if progress is not None:
                progress.update(1)
    finally:
        lidar.close()
        world.close()
    meta = {"seed": seed, "sequence": sequence, "frames": frames, "width": rig.width, "height": rig.height,
            "shadows": shadows, "azimuth_step": rig.azimuth_step, "foliage_depth": rig.foliage_depth, "clutter": clutter, "object_density": object_density, "parking": parking, "classes": CLASS_IDS, "object_classes": list(OBJECT_CLASSES),
            "label_format": "uint32 per point: class id in the lower 16 bits, instance id in the upper 16",
            "moving_speed_threshold": MOVING_SPEED, "ego_motion": {"still_below_mps": STILL_SPEED, "turn_above_radps": TURN_RATE}}
    (drive / "sim.json").write_text(json.dumps(meta, indent=1))
    if preview and shots:
        write_preview(drive, *shots)
    return drive


def instance_colours(inst: np.ndarray) -> np.ndarray:
    """(H, W) ids -> (H, W, 3) uint8 RGB, a fixed colour per id, black for 0."""
    ids = np.arange(int(inst.max()) + 1)
    hue = (ids * 47) % 180
    hsv = np.stack([hue, np.full_like(ids, 220), np.full_like(ids, 255)], -1).astype(np.uint8)[None]
    lut = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]
    lut[0] = 0
    return lut[inst]


def write_preview(drive: Path, rgb: np.ndarray, inst: np.ndarray, points: np.ndarray) -> Path:
    """Camera, LiDAR projected into the camera coloured by depth, ground-truth instances, stacked."""
    from ..frontview import depth_colormap, project_scan
    calib = kitti.load_calib(drive, camera=2)
    fv = project_scan(points, calib, rgb.shape[0], rgb.shape[1])
    lidar = depth_colormap(fv)
    lidar = cv2.dilate(lidar, np.ones((3, 3), np.uint8))
    gt = instance_colours(inst)
    gt = np.where(inst[..., None] > 0, (0.35 * rgb + 0.65 * gt).astype(np.uint8), (0.5 * rgb).astype(np.uint8))
    img = np.concatenate([rgb, lidar, gt], 0)
    path = drive / "preview.png"
    cv2.imwrite(str(path), img[..., ::-1])
    return path
