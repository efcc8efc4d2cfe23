"""Triangle meshes (vertices, UVs, normals, indices) built from boxes and strips, for PyBullet.

A *part* is an oriented box in a body's local frame with a material: either an atlas quadrant
(object textures, UVs inside that quadrant) or a tile size in metres (clutter, UVs wrap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .textures import ATLAS_QUADRANTS

# (normal, u axis, v axis) of the six faces of a unit box
_FACES = np.array([
    [(1, 0, 0), (0, 1, 0), (0, 0, 1)], [(-1, 0, 0), (0, -1, 0), (0, 0, 1)],
    [(0, 1, 0), (-1, 0, 0), (0, 0, 1)], [(0, -1, 0), (1, 0, 0), (0, 0, 1)],
    [(0, 0, 1), (1, 0, 0), (0, 1, 0)], [(0, 0, -1), (1, 0, 0), (0, -1, 0)],
], np.float64)  # (6, 3, 3)
_CORNERS = np.array([(-1, -1), (1, -1), (1, 1), (-1, 1)], np.float64)  # (4, 2)


@dataclass
class Part:
    centre: tuple          # (3,) in the body frame, metres
    half: tuple            # (3,) half extents
    material: str | float  # atlas quadrant name, or tile size in metres for wrapping textures
    yaw: float = 0.0


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3)
    uvs: np.ndarray       # (V, 2)
    normals: np.ndarray   # (V, 3)
    indices: np.ndarray   # (I,) int

    @staticmethod
    def merge(meshes: list["Mesh"]) -> "Mesh":
        offs = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        return Mesh(np.concatenate([m.vertices for m in meshes]), np.concatenate([m.uvs for m in meshes]),
                    np.concatenate([m.normals for m in meshes]),
                    np.concatenate([m.indices + o for m, o in zip(meshes, offs)]))


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def box_mesh(part: Part) -> Mesh:
    h = np.asarray(part.half, np.float64)
    n, u, v = _FACES[:, 0], _FACES[:, 1], _FACES[:, 2]          # (6, 3) each
    su, sv = np.abs(u) @ h, np.abs(v) @ h                        # (6,) half sizes of each face
    pts = (n * h)[:, None] + _CORNERS[None, :, :1] * (u * su[:, None])[:, None] \
        + _CORNERS[None, :, 1:] * (v * sv[:, None])[:, None]     # (6, 4, 3)
    if isinstance(part.material, str):                           # atlas quadrant, no wrap
        qx, qy = ATLAS_QUADRANTS[part.material]
        # texture v runs bottom-up: the quadrant in image row qy spans v in [0.5 (1 - qy), ...]
        uv = 0.5 * (np.stack([qx + 0.05 + 0.9 * (_CORNERS[:, 0] + 1) / 2,
                              (1 - qy) + 0.05 + 0.9 * (_CORNERS[:, 1] + 1) / 2], -1))
        uv = np.broadcast_to(uv, (6, 4, 2))
    else:                                                        # world-scale tiling
        tile = float(part.material)
        uv = np.stack([_CORNERS[None, :, 0] * su[:, None], -_CORNERS[None, :, 1] * sv[:, None]], -1) / tile
    R = _rot_z(part.yaw)
    verts = pts.reshape(-1, 3) @ R.T + np.asarray(part.centre)
    normals = np.repeat(n, 4, axis=0) @ R.T
    quad = np.array([0, 1, 2, 0, 2, 3])
    idx = (quad[None, :] + 4 * np.arange(6)[:, None]).ravel()
    return Mesh(verts, np.asarray(uv).reshape(-1, 2), normals, idx)


def parts_mesh(parts: list[Part]) -> Mesh:
    return Mesh.merge([box_mesh(p) for p in parts])


def strip_mesh(xy: np.ndarray, heading: np.ndarray, s: np.ndarray, d0: float, d1: float, z: float,
               u_from_d, v_tile: float) -> Mesh:
    """A flat strip between lateral offsets d0 < d1 along a centreline sampled at (x, y, heading, s).
    UV: u = u_from_d(d) across, v = s / v_tile along (wraps)."""
    left = np.stack([-np.sin(heading), np.cos(heading)], -1)     # (S, 2) unit lateral (+d) vectors
    p0, p1 = xy + d0 * left, xy + d1 * left                       # (S, 2)
    S = len(xy)
    verts = np.zeros((2 * S, 3))
    verts[0::2, :2], verts[1::2, :2], verts[:, 2] = p0, p1, z
    uvs = np.zeros((2 * S, 2))
    uvs[0::2, 0], uvs[1::2, 0] = u_from_d(d0), u_from_d(d1)
    uvs[:, 1] = np.repeat(s / v_tile, 2)
    normals = np.tile([0.0, 0.0, 1.0], (2 * S, 1))
    a = 2 * np.arange(S - 1)
    idx = np.stack([a, a + 3, a + 1, a, a + 2, a + 3], -1).ravel()   # counter-clockwise seen from above
    return Mesh(verts, uvs, normals, idx)
