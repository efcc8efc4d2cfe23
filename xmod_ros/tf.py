"""Static transforms: quaternion <-> matrix, TransformStamped-like <-> 4x4, and a small buffer
that chains static transforms through a tree (the part of tf2 the node needs for a fixed
LiDAR-camera rig, for installs without tf2_ros). Pure numpy, no ROS import.

Convention as in tf2: a transform with ``header.frame_id = parent`` and ``child_frame_id =
child`` is the pose of the child in the parent; as a matrix it maps points from the child frame
into the parent frame. ``lookup(target, source)`` returns the 4x4 mapping points in ``source``
into ``target`` (tf2's ``lookup_transform(target, source, ...)``).
"""
from __future__ import annotations

from collections import deque

import numpy as np


def quat_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> (3, 3) rotation (normalised first)."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-12:
        raise ValueError(f"invalid quaternion {q.tolist()}")
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_to_quat(R: np.ndarray) -> tuple[float, float, float, float]:
    """(3, 3) rotation -> unit quaternion (x, y, z, w) with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, np.float64)
    t = np.trace(R)
    if t > 0:
        s = 2.0 * np.sqrt(t + 1.0)
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] > R[2, 2]:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    q = np.array([x, y, z, w])
    q /= np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)


def yaw_to_quat(yaw: float) -> tuple[float, float, float, float]:
    """Rotation about z by ``yaw`` radians as (x, y, z, w)."""
    return 0.0, 0.0, float(np.sin(yaw / 2)), float(np.cos(yaw / 2))


def transform_to_matrix(t) -> np.ndarray:
    """geometry_msgs/Transform-like (``translation.x..``, ``rotation.x..w``) -> (4, 4)."""
    M = np.eye(4)
    r, p = t.rotation, t.translation
    M[:3, :3] = quat_to_matrix(r.x, r.y, r.z, r.w)
    M[:3, 3] = [p.x, p.y, p.z]
    return M


def matrix_to_xyz_quat(M: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
    M = np.asarray(M, np.float64)
    if M.shape != (4, 4):
        raise ValueError(f"expected a (4, 4) transform, got {M.shape}")
    return tuple(float(v) for v in M[:3, 3]), matrix_to_quat(M[:3, :3])


def invert(M: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform."""
    M = np.asarray(M, np.float64)
    out = np.eye(4)
    out[:3, :3] = M[:3, :3].T
    out[:3, 3] = -M[:3, :3].T @ M[:3, 3]
    return out


class TransformLookupError(LookupError):
    pass


class StaticTransformBuffer:
    """Static transforms between named frames; lookups chain them through the tree."""

    def __init__(self):
        self._edges: dict[str, dict[str, np.ndarray]] = {}   # a -> {b: T mapping b points into a}

    def set_transform(self, parent: str, child: str, T_child_to_parent: np.ndarray) -> None:
        T = np.asarray(T_child_to_parent, np.float64)
        if T.shape != (4, 4) or not np.isfinite(T).all():
            raise ValueError(f"transform {parent} <- {child} must be a finite (4, 4) matrix")
        self._edges.setdefault(parent, {})[child] = T
        self._edges.setdefault(child, {})[parent] = invert(T)

    def add_message(self, msg) -> None:
        """A geometry_msgs/TransformStamped or tf2_msgs/TFMessage (rclpy or rosbags object)."""
        for t in getattr(msg, "transforms", [msg]):
            self.set_transform(t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"),
                               transform_to_matrix(t.transform))

    @property
    def frames(self) -> list[str]:
        return sorted(self._edges)

    def can_transform(self, target: str, source: str) -> bool:
        try:
            self.lookup(target, source)
            return True
        except LookupError:
            return False

    def lookup(self, target: str, source: str) -> np.ndarray:
        """(4, 4) mapping points in ``source`` into ``target``; LookupError when unconnected."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        if source not in self._edges or target not in self._edges:
            raise TransformLookupError(f"no transform between {source!r} and {target!r} (known frames: {self.frames})")
        prev = {target: None}
        todo = deque([target])
        while todo:                                     # breadth-first from the target
            a = todo.popleft()
            for b in self._edges[a]:
                if b not in prev:
                    prev[b] = a
                    todo.append(b)
        if source not in prev:
            raise TransformLookupError(f"frames {source!r} and {target!r} are not connected (known frames: {self.frames})")
        T, f = np.eye(4), source
        while prev[f] is not None:                      # source -> ... -> target
            T = self._edges[prev[f]][f] @ T
            f = prev[f]
        return T
