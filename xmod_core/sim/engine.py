"""PyBullet side of the simulator (the only code in xmod_core that imports pybullet): builds a
scene's bodies, renders the camera with the CPU TinyRenderer and casts the LiDAR with
`rayTestBatch`, returning images, point clouds and their ground truth as arrays."""
from __future__ import annotations

import tempfile
from operator import itemgetter
from pathlib import Path

import cv2
import numpy as np
import pybullet as pb

from . import textures as tx
from .meshes import Mesh, parts_mesh, strip_mesh
from .rig import DROPOUT, IMU_HEIGHT, MAX_RANGE, RANGE_NOISE, Rig, homogeneous
from .scene import CLASS_IDS, LANE_EDGE, ROAD_HALF, SIDEWALK, Scene

RAY_BATCH = 16000          # PyBullet answers at most 16383 rays per call
_GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def _texture_image(name: str, rng: np.random.Generator) -> np.ndarray:
    kind = name.rstrip("0123456789")
    if kind in ("car", "truck"):
        return tx.atlas(rng, tx.random_colour(rng, sat=(0.0, 0.9), val=(0.2, 0.95)))
    if kind == "pedestrian":
        return tx.atlas(rng, tx.random_colour(rng), glass=tx.random_colour(rng, val=(0.15, 0.6)),
                        tyre=(40, 30, 25), detail=(int(rng.integers(120, 230)), int(rng.integers(90, 180)), 110))
    if kind == "cyclist":
        return tx.atlas(rng, tx.random_colour(rng), glass=tx.random_colour(rng), detail=(200, 160, 130))
    if kind == "tree":
        return tx.atlas(rng, (int(rng.integers(40, 90)), int(rng.integers(100, 150)), 40), tyre=(100, 75, 50))
    return {"facade": tx.facade, "wall": tx.wall, "fence": tx.fence, "foliage": tx.foliage,
            "metal": tx.metal, "asphalt": tx.asphalt, "paving": tx.paving, "grass": tx.grass}[kind](rng)


def _quat(yaw: float) -> list:
    return [0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))]


class World:
    """One simulated sequence in its own PyBullet DIRECT client.

    Three independent random streams keep the camera and the LiDAR reproducible even when they
    run in different processes: `rngs` = (textures, camera noise, LiDAR noise). With
    `visual=False` the world holds collision shapes only (a LiDAR-only worker)."""

    def __init__(self, scene: Scene, rig: Rig, rngs: tuple, shadows: bool = False, visual: bool = True,
                 ray_threads: int = 0):
        self.scene, self.rig, self.shadows, self.visual, self.ray_threads = scene, rig, shadows, visual, ray_threads
        self.rng_tex, self.rng_cam, self.rng_lidar = rngs
        self.cid = pb.connect(pb.DIRECT)
        self._tmp = tempfile.TemporaryDirectory(prefix="xmod_sim_tex_")
        self._textures: dict[str, int] = {}
        if visual:
            self._build_ground()
        self._build_bodies()
        self._build_ground_raster()
        self.rays = rig.ray_directions()                                   # (64, A, 3)

    # ---------------------------------------------------------------- construction
    def _texture(self, name: str) -> int:
        if name not in self._textures:
            path = Path(self._tmp.name) / f"{name}.png"
            cv2.imwrite(str(path), _texture_image(name, self.rng_tex)[..., ::-1])
            self._textures[name] = pb.loadTexture(str(path), physicsClientId=self.cid)
        return self._textures[name]

    def _visual(self, mesh: Mesh, texture: str, position=(0, 0, 0), yaw=0.0, collision=-1) -> int:
        vs = pb.createVisualShape(pb.GEOM_MESH, vertices=mesh.vertices.tolist(), indices=mesh.indices.tolist(),
                                  uvs=mesh.uvs.tolist(), normals=mesh.normals.tolist(), physicsClientId=self.cid)
        body = pb.createMultiBody(0, collision, vs, basePosition=list(position), baseOrientation=_quat(yaw),
                                  physicsClientId=self.cid)
        pb.changeVisualShape(body, -1, textureUniqueId=self._texture(texture), physicsClientId=self.cid)
        return body

    def _build_ground(self):
        """Road (with lane markings in its texture), sidewalks and grass: visual only. The LiDAR
        sees the ground analytically as the plane z = 0 (see `lidar`)."""
        r = self.scene.route
        keep = slice(None, None, 4)                                     # a cross-section every 2 m
        xy, hd, s = r.xy[keep], r.heading[keep], r.s[keep]
        lanes = [-3.5, 3.5]
        self._textures["road"] = self._load_array("road", tx.road_surface(
            self.rng_tex, lanes, [-LANE_EDGE, LANE_EDGE], ROAD_HALF))
        u_road = lambda d: (d + ROAD_HALF) / (2 * ROAD_HALF)
        self._visual(strip_mesh(xy, hd, s, -ROAD_HALF, ROAD_HALF, 0.0, u_road, 6.0), "road")
        for lo, hi in ((SIDEWALK[0], SIDEWALK[1]), (-SIDEWALK[1], -SIDEWALK[0])):
            self._visual(strip_mesh(xy, hd, s, lo, hi, 0.01, lambda d: d / 2.0, 2.0), "paving0")
        for lo, hi in ((SIDEWALK[1], 80.0), (-80.0, -SIDEWALK[1])):          # grass beyond, no overdraw
            self._visual(strip_mesh(xy, hd, s, lo, hi, -0.02, lambda d: d / 4.0, 4.0), "grass0")

    def _load_array(self, name: str, img: np.ndarray) -> int:
        path = Path(self._tmp.name) / f"{name}.png"
        cv2.imwrite(str(path), img[..., ::-1])
        return pb.loadTexture(str(path), physicsClientId=self.cid)

    def _build_bodies(self):
        sc = self.scene
        self.uids, self.moving_uids = [], []
        n_lut = 0
        info = []
        for b in sc.bodies:
            cs = pb.createCollisionShapeArray([pb.GEOM_BOX] * len(b.parts), halfExtents=[list(p.half) for p in b.parts],
                                              collisionFramePositions=[list(p.centre) for p in b.parts],
                                              collisionFrameOrientations=[_quat(p.yaw) for p in b.parts],
                                              physicsClientId=self.cid)
            if self.visual:
                uid = self._visual(parts_mesh(b.parts), b.texture, (b.x[0], b.y[0], 0.0), b.yaw[0], cs)
            else:
                uid = pb.createMultiBody(0, cs, -1, basePosition=[b.x[0], b.y[0], 0.0], baseOrientation=_quat(b.yaw[0]),
                                         physicsClientId=self.cid)
            self.uids.append(uid)
            if not b.static:
                self.moving_uids.append((uid, b))
            n_lut = max(n_lut, uid + 1)
            info.append((uid, b))
        # per-uid lookup tables (uid -> instance, class, reflectance); ground bodies stay 0
        self.lut_instance = np.zeros(n_lut + 1, np.uint32)
        self.lut_class = np.zeros(n_lut + 1, np.uint32)
        self.lut_refl = np.zeros(n_lut + 1, np.float32)
        for uid, b in info:
            self.lut_instance[uid], self.lut_class[uid], self.lut_refl[uid] = b.instance, CLASS_IDS[b.cls], b.reflectance
        # bounding cylinders in body frames, for LiDAR ray culling: (B, 4) = cx, cy, radius, top
        self.bounds = np.array([self._bound(b) for b in sc.bodies])
        self.bodies = sc.bodies

    @staticmethod
    def _bound(b) -> tuple:
        c = np.array([p.centre for p in b.parts])
        h = np.array([p.half for p in b.parts])
        r_xy = np.hypot(h[:, 0], h[:, 1])
        lo, hi = (c[:, :2] - r_xy[:, None]).min(0), (c[:, :2] + r_xy[:, None]).max(0)
        mid = (lo + hi) / 2
        radius = (np.hypot(*(c[:, :2] - mid).T) + r_xy).max()
        return mid[0], mid[1], radius, (c[:, 2] + h[:, 2]).max()

    def _build_ground_raster(self, cell: float = 0.5):
        """Ground class per 0.5 m cell (road, sidewalk, terrain), for labelling LiDAR ground hits
        with one array lookup per point."""
        r = self.scene.route
        self._g_lo = r.xy.min(0) - 150
        n = np.ceil((r.xy.max(0) + 150 - self._g_lo) / cell).astype(int) + 1
        gx, gy = np.meshgrid(np.arange(n[0]), np.arange(n[1]), indexing="ij")
        centres = self._g_lo + (np.stack([gx, gy], -1).reshape(-1, 2) + 0.5) * cell
        lat = r.lateral(centres).reshape(n)
        self._g_cell = cell
        self._g_class = np.where(lat <= ROAD_HALF, 0, np.where(lat <= SIDEWALK[1], 1, 2)).astype(np.uint8)

    def _ground_class(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ij = np.clip(((xy - self._g_lo) / self._g_cell).astype(int), 0, np.array(self._g_class.shape) - 1)
        k = self._g_class[ij[:, 0], ij[:, 1]]
        return (np.array([CLASS_IDS["road"], CLASS_IDS["sidewalk"], CLASS_IDS["terrain"]], np.uint32)[k],
                np.array([0.22, 0.3, 0.4], np.float32)[k])

    # ---------------------------------------------------------------- per frame
    def set_frame(self, t: int):
        for uid, b in self.moving_uids:
            pb.resetBasePositionAndOrientation(uid, [b.x[t], b.y[t], 0.0], _quat(b.yaw[t]), physicsClientId=self.cid)

    def imu_pose(self, t: int) -> np.ndarray:
        sc = self.scene
        c, s = np.cos(sc.ego_yaw[t]), np.sin(sc.ego_yaw[t])
        return homogeneous(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]), [*sc.ego_xy[t], IMU_HEIGHT])

    def velo_pose(self, t: int) -> np.ndarray:
        return self.imu_pose(t) @ np.linalg.inv(self.rig.T_imu_to_velo)

    def render(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera image_02 at frame t: RGB (H, W, 3) uint8 and instance ids (H, W) uint16."""
        rig, sc = self.rig, self.scene
        view = _GL_FROM_CV @ rig.T_velo_to_cam2 @ np.linalg.inv(self.velo_pose(t))
        _, _, rgba, _, seg = pb.getCameraImage(
            rig.width, rig.height, viewMatrix=view.T.ravel().tolist(), projectionMatrix=rig.gl_projection().T.ravel().tolist(),
            renderer=pb.ER_TINY_RENDERER, shadow=int(self.shadows), lightDirection=list(sc.sun),
            lightAmbientCoeff=sc.ambient, lightDiffuseCoeff=0.55, lightSpecularCoeff=0.05, physicsClientId=self.cid)
        rgb = np.asarray(rgba, np.uint8).reshape(rig.height, rig.width, 4)[..., :3].copy()
        seg = np.asarray(seg, np.int64).reshape(rig.height, rig.width)
        sky = seg < 0
        rows = np.linspace(0, 1, rig.height, dtype=np.float32)[:, None, None]
        grad = (1 - rows) * np.array(sc.sky[1], np.float32) + rows * np.array(sc.sky[0], np.float32)
        rgb = np.where(sky[..., None], np.broadcast_to(grad, rgb.shape), rgb).astype(np.float32)
        rgb += 1.5 * self.rng_cam.standard_normal(rgb.shape, dtype=np.float32)   # sensor noise
        inst = np.where(sky, 0, self.lut_instance[np.clip(seg, 0, len(self.lut_instance) - 1)]).astype(np.uint16)
        return np.clip(rgb, 0, 255).astype(np.uint8), inst

    def _candidates(self, origin: np.ndarray, R: np.ndarray, horiz: np.ndarray, t: int) -> np.ndarray:
        """(64, A) bool: rays whose path can meet a body's bounding cylinder before the ground."""
        n_el, n_az = horiz.shape
        ang = np.array([b.yaw[t] for b in self.bodies])
        pos = np.array([[b.x[t], b.y[t]] for b in self.bodies])
        c, s = np.cos(ang), np.sin(ang)
        centre = pos + np.stack([c * self.bounds[:, 0] - s * self.bounds[:, 1], s * self.bounds[:, 0] + c * self.bounds[:, 1]], -1)
        rel = (centre - origin[:2]) @ R[:2, :2]                     # (B, 2) in the sensor frame
        dist, radius, top = np.hypot(*rel.T), self.bounds[:, 2], self.bounds[:, 3]
        near, far = np.maximum(dist - radius, 0), dist + radius
        tan_el = np.tan(np.deg2rad(np.linspace(2.0, -24.9, n_el)))[None, :]
        h_near, h_far = origin[2] + near[:, None] * tan_el, origin[2] + far[:, None] * tan_el
        rows_ok = (horiz.max(1)[None, :] >= near[:, None]) & (np.minimum(h_near, h_far) <= top[:, None])  # (B, 64)
        half = np.where(dist > radius, np.arcsin(np.clip(radius / np.maximum(dist, 1e-6), 0, 1)), np.pi)
        az = np.arctan2(rel[:, 1], rel[:, 0])
        step = 2 * np.pi / n_az
        i0 = np.floor((az - half) / step).astype(int)
        i1 = np.ceil((az + half) / step).astype(int) + 1
        full = (half >= np.pi) | (i1 - i0 >= n_az)
        i0, i1 = np.where(full, 0, i0), np.where(full, n_az, i1)
        # difference array over (row, azimuth) with the wrap-around split in two intervals
        b_idx, rows = np.nonzero(rows_ok)
        a0, a1 = i0[b_idx] % n_az, None
        a1 = a0 + (i1 - i0)[b_idx]
        diff = np.zeros((n_el, 2 * n_az + 1), np.int32)
        np.add.at(diff, (rows, a0), 1)
        np.add.at(diff, (rows, np.minimum(a1, 2 * n_az)), -1)
        cover = np.cumsum(diff, 1)[:, :2 * n_az]
        cover = cover[:, :n_az] + cover[:, n_az:]
        return cover > 0

    def lidar(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """LiDAR sweep at frame t: points (N, 4) float32 (x, y, z, reflectance) in the LiDAR frame
        and SemanticKITTI labels (N,) uint32 (class | instance << 16)."""
        T = self.velo_pose(t)
        R, o = T[:3, :3], T[:3, 3]
        dirs = self.rays                                                  # (64, A, 3)
        dz = dirs @ R[2]                                                  # world z of each direction
        t_ground = np.where(dz < -1e-6, o[2] / np.maximum(-dz, 1e-9), np.inf)
        reach = np.minimum(t_ground, MAX_RANGE)                           # (64, A)
        horiz = reach * np.hypot(dirs[..., 0], dirs[..., 1])
        alive = self.rng_lidar.random(reach.shape) >= DROPOUT
        trace = self._candidates(o, R, horiz, t) & alive
        rng_out = np.where(alive & (t_ground <= MAX_RANGE), t_ground, np.nan)   # ground by default
        uid = np.full(reach.shape, -1, np.int64)
        idx = np.flatnonzero(trace)
        if len(idx):
            d_w = dirs.reshape(-1, 3)[idx] @ R.T
            start = np.broadcast_to(o, d_w.shape)
            end = o + d_w * reach.ravel()[idx, None]
            hits = []
            for i in range(0, len(idx), RAY_BATCH):
                hits += pb.rayTestBatch(np.ascontiguousarray(start[i:i + RAY_BATCH]), np.ascontiguousarray(end[i:i + RAY_BATCH]),
                                        numThreads=self.ray_threads, physicsClientId=self.cid)
            hit_uid = np.fromiter(map(itemgetter(0), hits), np.int64, len(hits))
            frac = np.fromiter(map(itemgetter(2), hits), np.float64, len(hits))
            got = hit_uid >= 0
            uid.ravel()[idx[got]] = hit_uid[got]
            rng_out.ravel()[idx[got]] = frac[got] * reach.ravel()[idx[got]]
        keep = np.isfinite(rng_out)
        r = rng_out[keep] + self.rng_lidar.normal(0, RANGE_NOISE, keep.sum())
        u = uid[keep]
        is_obj = u >= 0
        if self.rig.foliage_depth > 0:                                    # leaves, not a hard face: a return comes
            veg = np.flatnonzero(is_obj)                                  # from some depth inside the crown or bush
            veg = veg[self.lut_class[u[veg]] == CLASS_IDS["vegetation"]]
            depth = self.rng_lidar.exponential(self.rig.foliage_depth, len(veg))
            r[veg] += np.minimum(depth, 3 * self.rig.foliage_depth)
        pts = dirs[keep] * r[:, None]                                     # (N, 3) LiDAR frame
        world_xy = (pts[~is_obj] @ R.T + o)[:, :2]
        ground_cls, ground_refl = self._ground_class(world_xy)
        cls = np.empty(len(u), np.uint32)
        inst = np.zeros(len(u), np.uint32)
        refl = np.empty(len(u), np.float32)
        cls[is_obj], inst[is_obj], refl[is_obj] = self.lut_class[u[is_obj]], self.lut_instance[u[is_obj]], self.lut_refl[u[is_obj]]
        cls[~is_obj], refl[~is_obj] = ground_cls, ground_refl
        refl = np.clip(refl + self.rng_lidar.normal(0, 0.03, len(refl)), 0, 1)
        points = np.concatenate([pts, refl[:, None]], 1).astype(np.float32)
        return points, (cls | (inst << 16)).astype(np.uint32)

    def close(self):
        if self.cid is not None and pb.isConnected(self.cid):
            pb.disconnect(self.cid)
        self._tmp.cleanup()
        self.cid = None
