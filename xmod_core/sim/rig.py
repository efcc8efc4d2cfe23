"""Sensor rig of the simulated car at KITTI geometry (2011_09_26 calibration): camera image_02
(rectified, 1242x375, P_rect_02 intrinsics), a Velodyne HDL-64E-like LiDAR, and the IMU (the ego
pose in oxts). Numbers are the published KITTI calibration; transforms are 4x4 homogeneous."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 1242, 375
P_RECT_00 = np.array([[721.5377, 0, 609.5593, 0], [0, 721.5377, 172.854, 0], [0, 0, 1, 0]])
P_RECT_02 = np.array([[721.5377, 0, 609.5593, 44.85728], [0, 721.5377, 172.854, 0.2163791],
                      [0, 0, 1, 0.002745884]])
R_RECT_00 = np.array([[0.9999239, 0.00983776, -0.007445048], [-0.009869795, 0.9999421, -0.004278459],
                      [0.007402527, 0.004351614, 0.9999631]])
R_VELO_TO_CAM = np.array([[0.007533745, -0.9999714, -0.000616602], [0.01480249, 0.0007280733, -0.9998902],
                          [0.9998621, 0.00752379, 0.01480755]])
T_VELO_TO_CAM = np.array([-0.004069766, -0.07631618, -0.2717806])
T_IMU_TO_VELO = np.array([-0.8086759, 0.3195559, -0.7997231])  # rotation taken as identity
IMU_HEIGHT = 0.93            # m above the ground, so the LiDAR sits at about 1.73 m as in KITTI

# HDL-64E-like LiDAR
BEAM_ELEVATIONS = np.linspace(2.0, -24.9, 64)   # degrees
AZIMUTH_STEP = 0.09                             # degrees (about 230k points a scan; KITTI's real scans hold
                                                # 110-120k, as 0.18 gives: `--azimuth-step`, docs/data.md)
MAX_RANGE = 120.0                               # m
RANGE_NOISE = 0.02                              # m, one sigma
DROPOUT = 0.06                                  # share of returns randomly lost
FOLIAGE_DEPTH = 0.0                             # m, mean depth a return penetrates foliage (0: hard surfaces;
                                                # `--foliage-depth`, docs/data.md)


def homogeneous(R=None, t=None) -> np.ndarray:
    T = np.eye(4)
    if R is not None:
        T[:3, :3] = R
    if t is not None:
        T[:3, 3] = t
    return T


@dataclass(frozen=True)
class Rig:
    width: int = WIDTH
    height: int = HEIGHT
    azimuth_step: float = AZIMUTH_STEP              # degrees between the LiDAR's firings of one beam
    foliage_depth: float = FOLIAGE_DEPTH            # m, mean of the exponential depth a return enters foliage

    def __post_init__(self):
        if not 0.01 <= self.azimuth_step <= 2.0:
            raise ValueError(f"LiDAR azimuth step must be within [0.01, 2] degrees, got {self.azimuth_step}")
        if not 0.0 <= self.foliage_depth <= 2.0:
            raise ValueError(f"LiDAR foliage depth must be within [0, 2] m, got {self.foliage_depth}")

    @staticmethod
    def scaled(scale: float, azimuth_step: float = AZIMUTH_STEP, foliage_depth: float = FOLIAGE_DEPTH) -> "Rig":
        return Rig(int(round(WIDTH * scale)), int(round(HEIGHT * scale)), azimuth_step, foliage_depth)

    def _scale_rows(self, P: np.ndarray) -> np.ndarray:
        P = P.copy()
        P[0] *= self.width / WIDTH
        P[1] *= self.height / HEIGHT
        return P

    @property
    def P_rect_00(self) -> np.ndarray:
        return self._scale_rows(P_RECT_00)

    @property
    def P_rect_02(self) -> np.ndarray:
        return self._scale_rows(P_RECT_02)

    @property
    def T_velo_to_cam(self) -> np.ndarray:
        return homogeneous(R_VELO_TO_CAM, T_VELO_TO_CAM)

    @property
    def T_imu_to_velo(self) -> np.ndarray:
        return homogeneous(np.eye(3), T_IMU_TO_VELO)

    @property
    def T_velo_to_cam2(self) -> np.ndarray:
        """Velodyne -> camera 2 in its own rectified frame (x right, y down, z forward): the frame
        in which P_rect_02 = K [I | t] acts as K, with t = K^-1 P_rect_02[:, 3]."""
        P = P_RECT_02
        t = np.linalg.solve(P[:, :3], P[:, 3])
        return homogeneous(None, t) @ homogeneous(R_RECT_00) @ self.T_velo_to_cam

    @property
    def K(self) -> np.ndarray:
        return self.P_rect_02[:, :3]

    def gl_projection(self, near=0.1, far=400.0) -> np.ndarray:
        """OpenGL projection (4x4, row-major) reproducing K at width x height. OpenGL puts pixel
        centres at half-integers, KITTI at integers: hence the +0.5 on the principal point."""
        K, W, H = self.K, self.width, self.height
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2] + 0.5, K[1, 2] + 0.5
        return np.array([[2 * fx / W, 0, 1 - 2 * cx / W, 0], [0, 2 * fy / H, 2 * cy / H - 1, 0],
                         [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)], [0, 0, -1, 0]])

    def ray_directions(self) -> np.ndarray:
        """(64, A, 3) unit ray directions in the LiDAR frame (x forward, y left, z up)."""
        el = np.deg2rad(BEAM_ELEVATIONS)[:, None]
        az = np.deg2rad(np.arange(0.0, 360.0, self.azimuth_step))[None, :]
        return np.stack(np.broadcast_arrays(np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)), -1)
