"""Shared fixtures: a tiny KITTI-layout drive made with numpy alone (no simulator), with motion
masks, for fast data, loss and trainer tests."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from xmod_core import kitti

ROOT = Path(__file__).resolve().parents[1]
KITTI_RAW = ROOT.parent / "shared" / "kitti_raw"

TINY_W, TINY_H, TINY_FRAMES = 208, 64, 8


def make_tiny_drive(root: Path, frames: int = TINY_FRAMES, seed: int = 0, unknown=()) -> Path:
    """Textured background, two squares moving across it, a LiDAR cloud of a wall and a ground
    plane, 10 Hz timestamps, calibration of a 208x64 camera, and motion masks of the squares."""
    rng = np.random.default_rng(seed)
    date = root / "2030_06_01"
    drive = date / "2030_06_01_drive_0000_sync"
    s = TINY_W / 1242
    P = np.array([[721.5 * s, 0, 609.6 * s, 0], [0, 721.5 * TINY_H / 375, 172.9 * TINY_H / 375, 0], [0, 0, 1, 0]])
    T_v2c = np.eye(4)
    T_v2c[:3, :3] = [[0, -1, 0], [0, 0, -1], [1, 0, 0]]
    kitti.write_calib_files(date, P, np.eye(3), T_v2c, width=TINY_W, height=TINY_H)
    background = (rng.random((TINY_H, TINY_W + 64, 3)) * 255).astype(np.uint8)
    for d in ("image_02/data", "velodyne_points/data", "image_02/motion_masks"):
        (drive / d).mkdir(parents=True, exist_ok=True)
    ys, zs = np.meshgrid(np.linspace(-12, 12, 240), np.linspace(-1.7, 2.0, 40))
    wall = np.stack([np.full(ys.size, 25.0), ys.ravel(), zs.ravel()], 1)
    gx, gy = np.meshgrid(np.linspace(3, 25, 120), np.linspace(-10, 10, 80))
    ground = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, -1.73)], 1)
    cloud = np.concatenate([wall, ground]).astype(np.float32)
    for t in range(frames):
        img = background[:, 2 * t: 2 * t + TINY_W].copy()              # the camera pans slowly
        mask = np.zeros((TINY_H, TINY_W), np.uint16)
        for k, (x, y, v) in enumerate(((20, 12, 6), (120, 30, -5)), start=1):
            x0 = x + v * t
            img[y:y + 16, x0:x0 + 20] = (60 * k, 200 - 50 * k, 90)
            mask[y:y + 16, x0:x0 + 20] = k
        name = f"{t:010d}"
        cv2.imwrite(str(drive / "image_02/data" / f"{name}.png"), img[..., ::-1])
        pts = np.c_[cloud + rng.normal(0, 0.01, cloud.shape).astype(np.float32), np.full(len(cloud), 0.3, np.float32)]
        pts.astype(np.float32).tofile(drive / "velodyne_points/data" / f"{name}.bin")
        if name not in unknown:
            cv2.imwrite(str(drive / "image_02/motion_masks" / f"{name}.png"), mask)
    kitti.write_timestamps(drive / "image_02/timestamps.txt", np.arange(frames) * 0.1)
    kitti.write_timestamps(drive / "velodyne_points/timestamps.txt", np.arange(frames) * 0.1)
    import json
    (drive / "image_02/motion_masks/motion.json").write_text(json.dumps({"unknown": list(unknown)}))
    return drive


@pytest.fixture(scope="session")
def tiny_drive(tmp_path_factory) -> Path:
    return make_tiny_drive(tmp_path_factory.mktemp("tiny"))


def free_port() -> int:
    """A free TCP port on localhost (a process group's rendezvous)."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(fn, make_args, nprocs: int = 2, timeout_s: float = 240.0) -> int:
    """Run `fn(rank, *make_args(attempt))` in `nprocs` processes (torch.multiprocessing) and wait for
    them, at most `timeout_s` (a failed test then, not a hung suite). A gloo rank has died of a
    signal inside torch's C++ runtime at exit in CI ("terminate called without an active
    exception", SIGABRT; not reproduced locally), so a death by signal runs the ranks once more with
    fresh arguments (attempt 2: new port, new folders); a second death, an exception or a timeout
    fails. Returns the attempt that finished."""
    import time

    import torch.multiprocessing as mp
    for attempt in (1, 2):
        ctx = mp.spawn(fn, args=make_args(attempt), nprocs=nprocs, join=False)
        deadline = time.monotonic() + timeout_s
        try:
            while not ctx.join(timeout=5):
                if time.monotonic() > deadline:
                    for p in ctx.processes:
                        p.terminate()
                    pytest.fail(f"{nprocs} ranks did not finish in {timeout_s:g} s")
            return attempt
        except mp.ProcessExitedException as e:
            if attempt == 2 or e.signal_name is None:
                raise
            print(f"a rank died of {e.signal_name}; running the {nprocs} ranks once more")
