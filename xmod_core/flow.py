"""Dense optical flow behind a small interface, so a learned estimator can be plugged in later.

A flow estimator is any object with::

    name: str
    def __call__(self, img_a, img_b) -> np.ndarray      # float32 (H,W,2): (du, dv) a -> b
    def params(self) -> dict                              # what to record next to the results

``img_a`` / ``img_b`` are uint8 (H,W) grey or (H,W,3) RGB of the same size; the flow maps pixel
(u, v) of ``img_a`` to (u + du, v + dv) in ``img_b`` (pixel centres at integer coordinates).

``make_flow("dis", preset="medium")`` builds the default, OpenCV's DIS flow (Kroeger et al.,
"Fast Optical Flow using Dense Inverse Search", ECCV 2016).  ``register_flow(name, factory)``
adds another (e.g. a RAFT wrapper) under a name usable from ``config/motion.yaml``.

Helpers: :func:`sample` (bilinear lookup at sub-pixel positions) and
:func:`forward_backward_error` (the consistency check used to mark unreliable flow).
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import cv2
import numpy as np

__all__ = ["FlowEstimator", "DISFlow", "make_flow", "register_flow", "available_flows", "sample",
           "forward_backward_error", "to_gray"]


@runtime_checkable
class FlowEstimator(Protocol):
    name: str

    def __call__(self, img_a: np.ndarray, img_b: np.ndarray) -> np.ndarray: ...

    def params(self) -> dict: ...


def to_gray(img: np.ndarray, what: str = "image") -> np.ndarray:
    """uint8 (H,W) or (H,W,3) RGB -> uint8 (H,W); ValueError naming ``what`` otherwise."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"{what}: expected uint8 pixels, got dtype {a.dtype}")
    if a.ndim == 2:
        return np.ascontiguousarray(a)
    if a.ndim == 3 and a.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    raise ValueError(f"{what}: expected shape (H,W) or (H,W,3), got {a.shape}")


class DISFlow:
    """OpenCV DIS optical flow.  ``preset``: ultrafast | fast | medium; the other arguments,
    when not None, override the preset (see cv2.DISOpticalFlow)."""

    name = "dis"
    PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, preset: str = "medium", finest_scale: int | None = None,
                 patch_size: int | None = None, patch_stride: int | None = None,
                 grad_descent_iterations: int | None = None,
                 variational_refinement_iterations: int | None = None):
        if preset not in self.PRESETS:
            raise ValueError(f"DIS preset {preset!r}: expected one of {sorted(self.PRESETS)}")
        self.preset = preset
        self._dis = cv2.DISOpticalFlow_create(self.PRESETS[preset])
        self._overrides = {}
        for key, setter, value in (
                ("finest_scale", "setFinestScale", finest_scale),
                ("patch_size", "setPatchSize", patch_size),
                ("patch_stride", "setPatchStride", patch_stride),
                ("grad_descent_iterations", "setGradientDescentIterations", grad_descent_iterations),
                ("variational_refinement_iterations", "setVariationalRefinementIterations",
                 variational_refinement_iterations)):
            if value is not None:
                if int(value) < 0:
                    raise ValueError(f"DIS {key} must be >= 0, got {value}")
                getattr(self._dis, setter)(int(value))
                self._overrides[key] = int(value)
        self._dis.setUseSpatialPropagation(True)

    def __call__(self, img_a: np.ndarray, img_b: np.ndarray) -> np.ndarray:
        a, b = to_gray(img_a, "flow input a"), to_gray(img_b, "flow input b")
        if a.shape != b.shape:
            raise ValueError(f"flow inputs differ in size: {a.shape} vs {b.shape}")
        return self._dis.calc(a, b, None)

    def params(self) -> dict:
        return {"method": self.name, "preset": self.preset, **self._overrides}


_REGISTRY: dict[str, Callable[..., FlowEstimator]] = {"dis": DISFlow}


def register_flow(name: str, factory: Callable[..., FlowEstimator]) -> None:
    """Make ``make_flow(name, **kwargs)`` call ``factory(**kwargs)``."""
    _REGISTRY[str(name)] = factory


def available_flows() -> list[str]:
    return sorted(_REGISTRY)


def make_flow(name: str = "dis", **kwargs) -> FlowEstimator:
    """Build a registered flow estimator; ValueError naming the unknown method."""
    if name not in _REGISTRY:
        raise ValueError(f"flow method {name!r} is not registered (available: {available_flows()})")
    return _REGISTRY[name](**kwargs)


def sample(field: np.ndarray, u: np.ndarray, v: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Bilinear lookup of (H,W) or (H,W,C) ``field`` at float positions (u, v) (N,) ->
    (N,) or (N,C) float32; ``fill`` outside the image."""
    f = np.asarray(field, np.float32)
    mx = np.asarray(u, np.float32).reshape(-1, 1)
    my = np.asarray(v, np.float32).reshape(-1, 1)
    if mx.size == 0:
        return np.zeros((0,) + f.shape[2:], np.float32)
    out = cv2.remap(f, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    return out.reshape((-1,) + f.shape[2:])


_GRID: dict = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _GRID:
        vv, uu = np.mgrid[0:h, 0:w].astype(np.float32)
        _GRID.clear()
        _GRID[(h, w)] = (uu, vv)
    return _GRID[(h, w)]


def forward_backward_error(fw: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """|fw(p) + bw(p + fw(p))| per pixel of image a, float32 (H,W); inf where p + fw(p) leaves
    image b (the pixel is out of view at b)."""
    h, w = fw.shape[:2]
    uu, vv = _grid(h, w)
    mx, my = uu + fw[..., 0], vv + fw[..., 1]
    bw_w = cv2.remap(np.asarray(bw, np.float32), mx, my, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=np.nan)
    bw_w += fw
    err = cv2.magnitude(bw_w[..., 0], bw_w[..., 1])
    outside = (mx < -0.5) | (mx > w - 0.5) | (my < -0.5) | (my > h - 0.5) | np.isnan(err)
    err[outside] = np.inf
    return err
