"""KITTI raw reader (and writer helpers for synthetic drives). Pure numpy/cv2, no ROS.

Layout handled (Geiger et al., "Vision meets Robotics: The KITTI Dataset", IJRR 2013)::

    DATE/                              e.g. 2011_09_26
      calib_cam_to_cam.txt  calib_velo_to_cam.txt  calib_imu_to_velo.txt
      DATE_drive_XXXX_sync/
        image_0X/data/NNNNNNNNNN.png          (+ image_0X/timestamps.txt)
        velodyne_points/data/NNNNNNNNNN.bin   (+ velodyne_points/timestamps.txt)
        oxts/data/NNNNNNNNNN.txt              (optional)

Frames and conventions
----------------------
* velo: x forward, y left, z up (metres).  cam: x right, y down, z forward.
* ``T_velo_to_cam`` (4,4) maps velo points into the *unrectified* cam0 frame; ``R_rect_00``
  rotates cam0 into the rectified cam0 frame ("rect").  ``P_rect_0X`` (3,4) projects rect
  points into rectified camera X; for X != 0 its 4th column holds the baseline offset, so
  ``P_rect_0X @ pad(R_rect_00) @ T_velo_to_cam`` is the KITTI projection of velo points.
* Depth: everything here reports ``z_rect``, the z coordinate in rectified cam0 coordinates
  (the paper's front-view convention).  The homogeneous 3rd row of ``P @ X`` equals
  ``z_rect + P[2, 3]`` (2.7 mm for camera 2) and is only used to divide u and v.

Every problem with the input files raises :class:`KittiFormatError` naming the file.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

EARTH_RADIUS = 6378137.0  # m, as in the KITTI devkit (convertOxtsToPose)
OXTS_FIELDS = 30          # values per oxts line: lat lon alt roll pitch yaw vn ve vf vl vu ...
ASSUMED_RATE_HZ = 10.0    # frame rate assumed when a drive has no timestamps.txt
_TS_FORMAT = "%Y-%m-%d %H:%M:%S"


class KittiFormatError(ValueError):
    """Bad or missing KITTI input; the message names the offending file and the problem."""


class KittiTimestampWarning(UserWarning):
    """A drive has no timestamps.txt, so 10 Hz is assumed."""


# --------------------------------------------------------------------------- calibration
def read_calib_file(path) -> dict[str, np.ndarray]:
    """Parse a KITTI ``key: v1 v2 ...`` file into ``{key: float64 (n,)}``.

    Keys whose values are not all numbers (e.g. ``calib_time``) are skipped, as are blank
    lines.  An unreadable file or a line without ``:`` raises KittiFormatError.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f"{path}: cannot read calibration file ({exc})") from exc
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, values = line.partition(":")
        if not sep:
            raise KittiFormatError(f"{path}:{lineno}: expected 'key: values', got {line[:60]!r}")
        try:
            out[key.strip()] = np.array([float(v) for v in values.split()], dtype=np.float64)
        except ValueError:
            continue  # non-numeric entry such as calib_time
    return out


def _calib_value(calib: dict, key: str, n: int, path: Path) -> np.ndarray:
    """``calib[key]`` checked to hold exactly n values, (n,) float64."""
    if key not in calib:
        raise KittiFormatError(f"{path}: missing key {key!r}")
    if calib[key].size != n:
        raise KittiFormatError(f"{path}: key {key!r} has {calib[key].size} values, expected {n}")
    return calib[key]


def _find_calib(path, name: str, required: bool = True) -> Path | None:
    """Locate ``name`` in ``path`` (drive or date dir), then in its parent."""
    path = Path(path)
    candidates = [path / name, path.parent / name]
    for c in candidates:
        if c.is_file():
            return c
    if required:
        raise KittiFormatError(f"{candidates[0]}: calibration file not found (nor in {path.parent})")
    return None


def _rt_to_T(R: np.ndarray, T: np.ndarray) -> np.ndarray:
    """(9,) row-major R and (3,) T -> (4,4) homogeneous transform."""
    M = np.eye(4)
    M[:3, :3] = R.reshape(3, 3)
    M[:3, 3] = T
    return M


@dataclass(frozen=True, eq=False)
class CameraCalib:
    """Calibration needed to project velodyne points into one rectified camera.

    P_rect (3,4): rectified projection of camera ``camera`` (pixels, at width x height).
    R_rect (3,3): R_rect_00, unrectified cam0 -> rectified cam0.
    T_velo_to_cam (4,4): velo -> unrectified cam0.
    Arrays are stored as read-only float64 copies.
    """

    P_rect: np.ndarray
    R_rect: np.ndarray
    T_velo_to_cam: np.ndarray
    width: int
    height: int
    camera: int = 2

    def __post_init__(self):
        for name, shape in (("P_rect", (3, 4)), ("R_rect", (3, 3)), ("T_velo_to_cam", (4, 4))):
            a = np.array(getattr(self, name), dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"CameraCalib.{name}: shape {a.shape}, expected {shape}")
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        for name in ("width", "height", "camera"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"CameraCalib: image size {self.width}x{self.height} must be positive")

    @property
    def K(self) -> np.ndarray:
        """(3,3) intrinsics, the left 3x3 block of P_rect."""
        return self.P_rect[:, :3].copy()

    @property
    def T_velo_to_rect(self) -> np.ndarray:
        """(4,4) velo -> rectified cam0: pad(R_rect_00) @ T_velo_to_cam."""
        R4 = np.eye(4)
        R4[:3, :3] = self.R_rect
        return R4 @ self.T_velo_to_cam

    def velo_to_rect(self, points) -> np.ndarray:
        """(N,3|4) velo points -> (N,3) float64 rectified cam0 coordinates."""
        pts = _as_points(points)
        T = self.T_velo_to_rect
        return pts @ T[:3, :3].T + T[:3, 3]

    def project(self, points_velo) -> tuple[np.ndarray, np.ndarray]:
        """Project (N,3|4) velo points with P_rect @ T_velo_to_rect.

        Returns ``uv`` (N,2) float64 pixel coordinates (continuous; pixel (col,row) covers
        [col,col+1) x [row,row+1)) and ``depth`` (N,) = z_rect in rectified cam0 coordinates.
        uv is only meaningful where z_rect + P_rect[2,3] > 0 (in front of the camera).
        """
        X = self.velo_to_rect(points_velo)                      # (N,3)
        uvw = X @ self.P_rect[:, :3].T + self.P_rect[:, 3]      # (N,3)
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = uvw[:, :2] / uvw[:, 2:3]
        return uv, X[:, 2].copy()

    def scaled(self, height: int, width: int) -> "CameraCalib":
        """Same camera at another resolution: rows 0/1 of P_rect scaled by width/self.width
        and height/self.height (focal lengths, principal point and P[0,3], P[1,3])."""
        height, width = int(height), int(width)
        if height <= 0 or width <= 0:
            raise ValueError(f"CameraCalib.scaled: size {height}x{width} must be positive")
        P = self.P_rect.copy()
        P[0] *= width / self.width
        P[1] *= height / self.height
        return dataclasses.replace(self, P_rect=P, width=width, height=height)


def _as_points(points) -> np.ndarray:
    """(N,3|4) array-like -> (N,3) float64; ValueError naming the shape otherwise."""
    a = np.asarray(points)
    if a.ndim != 2 or a.shape[1] not in (3, 4):
        raise ValueError(f"points must have shape (N,3) or (N,4), got {a.shape}")
    return a[:, :3].astype(np.float64, copy=False)


def load_calib(path, camera: int = 2) -> CameraCalib:
    """Load :class:`CameraCalib` for ``image_0{camera}`` from a drive dir or a date dir.

    calib_cam_to_cam.txt supplies P_rect_0X, R_rect_00, S_rect_0X; calib_velo_to_cam.txt
    supplies R, T.  Each file is looked for in ``path`` first, then in its parent.
    """
    cam_file = _find_calib(path, "calib_cam_to_cam.txt")
    velo_file = _find_calib(path, "calib_velo_to_cam.txt")
    cc, vc = read_calib_file(cam_file), read_calib_file(velo_file)
    P = _calib_value(cc, f"P_rect_{camera:02d}", 12, cam_file).reshape(3, 4)
    R_rect = _calib_value(cc, "R_rect_00", 9, cam_file).reshape(3, 3)
    w, h = _calib_value(cc, f"S_rect_{camera:02d}", 2, cam_file)
    T = _rt_to_T(_calib_value(vc, "R", 9, velo_file), _calib_value(vc, "T", 3, velo_file))
    try:
        return CameraCalib(P, R_rect, T, int(round(w)), int(round(h)), camera)
    except ValueError as exc:
        raise KittiFormatError(f"{cam_file}: {exc}") from exc


def load_imu_to_velo(path) -> np.ndarray | None:
    """(4,4) IMU -> velo transform from calib_imu_to_velo.txt (drive dir, then parent), or
    None when the file does not exist."""
    f = _find_calib(path, "calib_imu_to_velo.txt", required=False)
    if f is None:
        return None
    c = read_calib_file(f)
    return _rt_to_T(_calib_value(c, "R", 9, f), _calib_value(c, "T", 3, f))


# --------------------------------------------------------------------------- timestamps
def read_timestamps_ns(path) -> np.ndarray:
    """KITTI timestamps.txt (``2011-09-26 13:02:25.964389445`` per line, read as UTC) ->
    (N,) int64 nanoseconds since the Unix epoch (exact)."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise KittiFormatError(f"{path}: cannot read timestamps ({exc})") from exc
    out = np.empty(len(lines), dtype=np.int64)
    for i, ln in enumerate(lines):
        main, _, frac = ln.partition(".")
        try:
            t = _dt.datetime.strptime(main, _TS_FORMAT).replace(tzinfo=_dt.timezone.utc)
            if frac and not frac.isdigit():
                raise ValueError(frac)
            out[i] = int(t.timestamp()) * 10**9 + int((frac + "000000000")[:9])
        except ValueError as exc:
            raise KittiFormatError(f"{path}:{i + 1}: bad timestamp {ln!r}") from exc
    return out


def _ns_to_seconds(ns: np.ndarray) -> np.ndarray:
    """int64 ns -> float64 s with one rounding (about 0.2 us resolution at 2011 epochs)."""
    return (ns // 10**9).astype(np.float64) + (ns % 10**9).astype(np.float64) * 1e-9


def write_timestamps(path, seconds, start: str = "2011-09-26 13:00:00") -> None:
    """Write KITTI timestamps.txt lines ``start + seconds[i]`` (nanosecond precision)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = _dt.datetime.strptime(start, _TS_FORMAT).replace(tzinfo=_dt.timezone.utc)
    base_ns = int(t0.timestamp()) * 10**9
    lines = []
    for s in np.asarray(seconds, dtype=np.float64).ravel():
        ns = base_ns + int(round(float(s) * 1e9))
        sec, rem = divmod(ns, 10**9)
        stamp = _dt.datetime.fromtimestamp(sec, _dt.timezone.utc).strftime(_TS_FORMAT)
        lines.append(f"{stamp}.{rem:09d}\n")
    path.write_text("".join(lines))


# --------------------------------------------------------------------------- oxts / poses
def _rpy_to_R(roll, pitch, yaw) -> np.ndarray:
    """(N,) angles -> (N,3,3) Rz(yaw) @ Ry(pitch) @ Rx(roll)."""
    cr, sr, cp, sp, cy, sy = (np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch),
                              np.cos(yaw), np.sin(yaw))
    R = np.empty((len(roll), 3, 3))
    R[:, 0] = np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1)
    R[:, 1] = np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1)
    R[:, 2] = np.stack([-sp, cp * sr, cp * cr], -1)
    return R


def _R_to_rpy(R: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,3,3) -> roll, pitch, yaw (N,) inverting :func:`_rpy_to_R` (|pitch| < pi/2)."""
    roll = np.arctan2(R[:, 2, 1], R[:, 2, 2])
    pitch = np.arctan2(-R[:, 2, 0], np.hypot(R[:, 2, 1], R[:, 2, 2]))
    yaw = np.arctan2(R[:, 1, 0], R[:, 0, 0])
    return roll, pitch, yaw


def _mercator(lat, lon, scale):
    """Degrees -> (mx, my) metres, KITTI devkit latlonToMercator."""
    mx = scale * np.asarray(lon) * math.pi * EARTH_RADIUS / 180.0
    my = scale * EARTH_RADIUS * np.log(np.tan((90.0 + np.asarray(lat)) * math.pi / 360.0))
    return mx, my


def _inv_mercator(mx, my, scale):
    """(mx, my) metres -> (lat, lon) degrees, inverse of :func:`_mercator`."""
    lon = np.asarray(mx) * 180.0 / (math.pi * EARTH_RADIUS * scale)
    lat = 360.0 / math.pi * np.arctan(np.exp(np.asarray(my) / (scale * EARTH_RADIUS))) - 90.0
    return lat, lon


def oxts_to_poses(oxts: np.ndarray) -> np.ndarray:
    """(N,>=6) oxts rows (lat, lon, alt, roll, pitch, yaw, ...) -> (N,4,4) IMU poses.

    Mercator with scale = cos(lat0), rotation Rz(yaw) Ry(pitch) Rx(roll); poses are expressed
    in the first frame's IMU frame, so poses[0] is the identity (KITTI devkit convention).
    """
    oxts = np.asarray(oxts, dtype=np.float64)
    n = len(oxts)
    if n == 0:
        return np.zeros((0, 4, 4))
    scale = math.cos(oxts[0, 0] * math.pi / 180.0)
    mx, my = _mercator(oxts[:, 0], oxts[:, 1], scale)
    t = np.stack([mx, my, oxts[:, 2]], -1)                      # (N,3) absolute
    R = _rpy_to_R(oxts[:, 3], oxts[:, 4], oxts[:, 5])           # (N,3,3) absolute
    R0t = R[0].T
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = R0t @ R                                  # inv(T0) @ Ti, rotation
    poses[:, :3, 3] = (t - t[0]) @ R0t.T                        # R0^T (ti - t0)
    return poses


def write_oxts(oxts_dir, poses, lat0: float = 49.0, lon0: float = 8.4, speeds=None,
               alt0: float = 0.0) -> None:
    """Write ``oxts_dir/data/NNNNNNNNNN.txt`` (30 values per line) for (N,4,4) IMU poses.

    The first frame is placed at (lat0, lon0, alt0) with roll = pitch = yaw = 0 and the
    others relative to it, so :func:`oxts_to_poses` / ``KittiRawDrive.poses`` returns
    ``inv(poses[0]) @ poses`` -- the input itself when poses[0] is the identity.
    ``speeds``: optional (N,) forward speed or (N,3) body velocity (vf, vl, vu) in m/s;
    vn/ve/vu are derived from it; accelerations and angular rates are written as 0.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must have shape (N,4,4), got {poses.shape}")
    n = len(poses)
    rel = np.linalg.inv(poses[0]) @ poses if n else poses       # (N,4,4), rel[0] = I
    scale = math.cos(lat0 * math.pi / 180.0)
    mx0, my0 = _mercator(lat0, lon0, scale)
    lat, lon = _inv_mercator(mx0 + rel[:, 0, 3], my0 + rel[:, 1, 3], scale)
    lat[:1], lon[:1] = lat0, lon0
    roll, pitch, yaw = _R_to_rpy(rel[:, :3, :3])
    v_body = np.zeros((n, 3))
    if speeds is not None:
        s = np.asarray(speeds, dtype=np.float64)
        if s.shape == (n,):
            v_body[:, 0] = s
        elif s.shape == (n, 3):
            v_body[:] = s
        else:
            raise ValueError(f"speeds must have shape ({n},) or ({n},3), got {s.shape}")
    v_world = np.einsum("nij,nj->ni", rel[:, :3, :3], v_body)    # (N,3) east, north, up
    data = Path(oxts_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        vals = [lat[i], lon[i], alt0 + rel[i, 2, 3], roll[i], pitch[i], yaw[i],   # pose
                v_world[i, 1], v_world[i, 0], v_body[i, 0], v_body[i, 1], v_world[i, 2],  # vn ve vf vl vu
                ] + [0.0] * 12                                                   # ax..au, wx..wu
        text = " ".join(f"{v:.17g}" for v in vals) + " 0.05 0.02 4 10 4 4 6\n"
        (data / f"{i:010d}.txt").write_text(text)


def write_calib_files(date_dir, P_rect, R_rect_00, T_velo_to_cam, T_imu_to_velo=None,
                      width: int = 1242, height: int = 375, fmt: str = "%e") -> None:
    """Write KITTI calibration files into ``date_dir`` (created if needed).

    P_rect: (3,4) for camera 2, or ``{camera: (3,4)}``.  P_rect_00 defaults to camera 2's
    matrix with a zero 4th column.  Writes calib_cam_to_cam.txt (S_rect_0X, R_rect_00,
    P_rect_0X), calib_velo_to_cam.txt (R, T) and, when given, calib_imu_to_velo.txt (R, T),
    numbers formatted with ``fmt`` (KITTI uses %e, i.e. 7 significant digits).
    """
    d = Path(date_dir)
    d.mkdir(parents=True, exist_ok=True)
    Ps = {int(k): np.asarray(v, float) for k, v in P_rect.items()} if isinstance(P_rect, dict) \
        else {2: np.asarray(P_rect, float)}
    if 0 not in Ps:
        ref = Ps.get(2, next(iter(Ps.values())))
        Ps[0] = np.hstack([ref[:, :3], np.zeros((3, 1))])

    def line(key, arr):
        return f"{key}: " + " ".join(fmt % v for v in np.asarray(arr, float).ravel()) + "\n"

    stamp = "calib_time: 01-Jan-2011 00:00:00\n"
    cam = stamp + line("R_rect_00", R_rect_00)
    for c in sorted(Ps):
        cam += line(f"S_rect_{c:02d}", [width, height]) + line(f"P_rect_{c:02d}", Ps[c])
    (d / "calib_cam_to_cam.txt").write_text(cam)
    for name, T in (("calib_velo_to_cam.txt", T_velo_to_cam), ("calib_imu_to_velo.txt", T_imu_to_velo)):
        if T is not None:
            T = np.asarray(T, float)
            (d / name).write_text(stamp + line("R", T[:3, :3]) + line("T", T[:3, 3]))


# --------------------------------------------------------------------------- drive
class KittiRawDrive:
    """One KITTI raw ``*_sync`` drive: camera ``image_0{camera}`` and/or velodyne frames.

    ``frame_ids`` are the file stems common to both sensors (they must match exactly when
    both folders exist).  ``calib`` is loaded at construction (drive dir, then its parent).
    """

    def __init__(self, drive_dir, camera: int = 2):
        self.drive_dir = Path(drive_dir)
        self.camera = int(camera)
        if not self.drive_dir.is_dir():
            raise KittiFormatError(f"{self.drive_dir}: drive directory not found")
        self.image_dir = self.drive_dir / f"image_{self.camera:02d}" / "data"
        self.velo_dir = self.drive_dir / "velodyne_points" / "data"
        self.has_camera, self.has_lidar = self.image_dir.is_dir(), self.velo_dir.is_dir()
        if not (self.has_camera or self.has_lidar):
            raise KittiFormatError(f"{self.drive_dir}: neither {self.image_dir.parent.name}/data "
                                   "nor velodyne_points/data exists")
        img = sorted(p.stem for p in self.image_dir.glob("*.png")) if self.has_camera else None
        velo = sorted(p.stem for p in self.velo_dir.glob("*.bin")) if self.has_lidar else None
        if img is not None and velo is not None and img != velo:
            no_velo, no_img = sorted(set(img) - set(velo)), sorted(set(velo) - set(img))
            raise KittiFormatError(
                f"{self.drive_dir}: frame lists differ: {len(no_velo)} frame(s) missing in "
                f"{self.velo_dir} {no_velo[:5]}, {len(no_img)} missing in {self.image_dir} {no_img[:5]}")
        self.frame_ids: list[str] = img if img is not None else velo
        self.calib: CameraCalib = load_calib(self.drive_dir, self.camera)
        self._timestamps: np.ndarray | None = None
        self._poses: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frame_ids)

    def __repr__(self) -> str:
        return f"KittiRawDrive({str(self.drive_dir)!r}, camera={self.camera}, frames={len(self)})"

    def image_path(self, i: int) -> Path:
        if not self.has_camera:
            raise KittiFormatError(f"{self.image_dir}: drive has no camera {self.camera} images")
        return self.image_dir / f"{self.frame_ids[i]}.png"

    def scan_path(self, i: int) -> Path:
        if not self.has_lidar:
            raise KittiFormatError(f"{self.velo_dir}: drive has no velodyne scans")
        return self.velo_dir / f"{self.frame_ids[i]}.bin"

    def image(self, i: int) -> np.ndarray:
        """Frame i as uint8 (H,W,3) RGB."""
        path = self.image_path(i)
        try:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as exc:
            raise KittiFormatError(f"{path}: cannot decode image ({exc})") from exc
        if bgr is None:
            raise KittiFormatError(f"{path}: missing or not a readable image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def scan(self, i: int) -> np.ndarray:
        """Frame i as float32 (N,4): x, y, z (velo frame, metres), reflectance."""
        path = self.scan_path(i)
        try:
            size = path.stat().st_size
            if size % 16:
                raise KittiFormatError(f"{path}: size {size} bytes is not a multiple of 16 "
                                       "(4 float32 per point)")
            return np.fromfile(path, dtype="<f4").reshape(-1, 4)
        except OSError as exc:
            raise KittiFormatError(f"{path}: cannot read scan ({exc})") from exc

    @property
    def timestamps(self) -> np.ndarray:
        """(N,) float64 seconds since the Unix epoch (file times read as UTC), from
        image_0X/timestamps.txt, else velodyne_points/timestamps.txt; without either,
        ``arange(N) / 10`` (10 Hz) and one KittiTimestampWarning per drive."""
        if self._timestamps is None:
            for f in (self.image_dir.parent / "timestamps.txt",
                      self.velo_dir.parent / "timestamps.txt"):
                if f.is_file():
                    ns = read_timestamps_ns(f)
                    if len(ns) != len(self):
                        raise KittiFormatError(f"{f}: {len(ns)} timestamps for {len(self)} frames")
                    self._timestamps = _ns_to_seconds(ns)
                    break
            else:
                warnings.warn(f"{self.drive_dir}: no timestamps.txt, assuming "
                              f"{ASSUMED_RATE_HZ:g} Hz", KittiTimestampWarning, stacklevel=2)
                self._timestamps = np.arange(len(self), dtype=np.float64) / ASSUMED_RATE_HZ
        return self._timestamps.copy()

    @property
    def poses(self) -> np.ndarray | None:
        """(N,4,4) float64 IMU poses from oxts/data/*.txt in the first IMU frame
        (poses[0] = identity, see :func:`oxts_to_poses`), or None without oxts."""
        if self._poses is None:
            oxts_dir = self.drive_dir / "oxts" / "data"
            if not oxts_dir.is_dir():
                return None
            files = sorted(oxts_dir.glob("*.txt"))
            if [f.stem for f in files] != self.frame_ids:
                raise KittiFormatError(f"{oxts_dir}: oxts frames do not match the drive frames "
                                       f"({len(files)} files for {len(self)} frames)")
            rows = np.empty((len(files), OXTS_FIELDS))
            for k, f in enumerate(files):
                try:
                    vals = [float(v) for v in f.read_text().split()]
                except (OSError, ValueError, UnicodeDecodeError) as exc:
                    raise KittiFormatError(f"{f}: cannot parse oxts line ({exc})") from exc
                if len(vals) != OXTS_FIELDS:
                    raise KittiFormatError(f"{f}: {len(vals)} values, expected {OXTS_FIELDS}")
                rows[k] = vals
            self._poses = oxts_to_poses(rows)
        return self._poses.copy()

    @property
    def velo_poses(self) -> np.ndarray | None:
        """(N,4,4) LiDAR poses in the same world frame: imu_pose @ inv(T_imu_to_velo).
        velo_poses[0] is generally NOT the identity (world = first IMU frame).
        None without oxts; KittiFormatError if oxts exist but calib_imu_to_velo.txt does not."""
        poses = self.poses
        if poses is None:
            return None
        T = load_imu_to_velo(self.drive_dir)
        if T is None:
            raise KittiFormatError(f"{self.drive_dir / 'calib_imu_to_velo.txt'}: not found "
                                   "(nor in the parent), needed for velo_poses")
        return poses @ np.linalg.inv(T)
