"""Procedural textures for the simulated world (numpy + OpenCV only, deterministic per RNG).

Every surface gets texture so that optical flow can lock on. Objects use a 2x2 *atlas* (paint,
glass, tyre, detail); clutter uses tiling textures (UVs above 1 wrap in PyBullet's TinyRenderer).
All functions return uint8 RGB arrays.
"""
from __future__ import annotations

import cv2
import numpy as np

ATLAS_QUADRANTS = {"paint": (0, 0), "glass": (1, 0), "tyre": (0, 1), "detail": (1, 1)}


def _noise(rng: np.random.Generator, size: int, octaves: int = 4) -> np.ndarray:
    """Multi-octave value noise in [0, 1], (size, size)."""
    out = np.zeros((size, size), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = max(2, 4 * 2**o)
        small = rng.random((cells, cells), dtype=np.float32)
        out += amp * cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
    out /= total
    return np.clip((out - out.min()) / max(1e-6, np.ptp(out)), 0, 1)


def _tint(gray: np.ndarray, colour, contrast: float) -> np.ndarray:
    """Colourise a [0,1] pattern around an RGB colour (0..255) with a given contrast."""
    c = np.asarray(colour, np.float32)[None, None, :]
    img = c * (1.0 - contrast / 2 + contrast * gray[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


def random_colour(rng: np.random.Generator, sat=(0.2, 0.9), val=(0.25, 0.95)) -> tuple:
    hsv = np.array([[[rng.integers(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.uint8)
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def asphalt(rng, size=256):
    n = _noise(rng, size, 5)
    speck = (rng.random((size, size)) < 0.04).astype(np.float32) * 0.35
    g = int(rng.integers(70, 110))
    return _tint(np.clip(n + speck, 0, 1), (g, g, g + 4), 0.6)


def road_surface(rng, lanes_at, edges_at, half_width, width_px=512, length_px=128):
    """Road strip texture: u across the road (d from -half_width to +half_width), v along one
    dash period. Dashed lane lines at `lanes_at`, solid lines at `edges_at` and the centre."""
    n = _noise(rng, max(width_px, length_px), 5)[:length_px, :width_px]
    g = int(rng.integers(65, 100))
    img = _tint(n, (g, g, g + 3), 0.55).astype(np.float32)
    px = lambda d: int(round((d + half_width) / (2 * half_width) * (width_px - 1)))
    lw = max(2, int(round(0.15 / (2 * half_width) * width_px)))
    white = np.array([235, 235, 225], np.float32)
    for d in edges_at + [0.0]:
        c = px(d)
        img[:, max(0, c - lw // 2): c + lw // 2 + 1] = white * (0.85 + 0.15 * n[:, :1, None])
    for d in lanes_at:
        c = px(d)
        img[: length_px // 2, max(0, c - lw // 2): c + lw // 2 + 1] = white
    return img.astype(np.uint8)


def paving(rng, size=128):
    n = _noise(rng, size, 4)
    g = rng.integers(120, 175)
    img = _tint(n, (g, g - 5, g - 12), 0.45)
    step = size // 4
    img[::step, :] = img[::step, :] // 2
    img[:, ::step] = img[:, ::step] // 2
    return img


def grass(rng, size=128):
    n = _noise(rng, size, 5)
    return _tint(n, (int(rng.integers(60, 100)), int(rng.integers(110, 150)), 50), 0.8)


def facade(rng, size=128):
    """One window bay of a building facade (tiled per bay and per floor)."""
    base = random_colour(rng, sat=(0.05, 0.4), val=(0.45, 0.9))
    img = _tint(_noise(rng, size, 4), base, 0.35)
    win = random_colour(rng, sat=(0.1, 0.5), val=(0.1, 0.35))
    m = size // 4
    glass = _tint(_noise(rng, size, 2)[: size - 2 * m, : size - 2 * m], win, 0.6)
    img[m + 4: size - m + 4, m: size - m] = glass
    img[m + 2: m + 5, m - 3: size - m + 3] = 230  # window sill
    return img


def wall(rng, size=128):
    n = _noise(rng, size, 5)
    img = _tint(n, random_colour(rng, sat=(0.05, 0.3), val=(0.4, 0.8)), 0.5)
    img[:: size // 8, :] = (img[:: size // 8, :] * 0.6).astype(np.uint8)  # brick courses
    return img


def fence(rng, size=64):
    n = _noise(rng, size, 3)
    img = _tint(n, random_colour(rng, sat=(0.1, 0.6), val=(0.3, 0.8)), 0.4)
    img[:, :: size // 8] = 30  # slats
    return img


def foliage(rng, size=128):
    n = _noise(rng, size, 6)
    fine = rng.random((size, size)).astype(np.float32)
    return _tint(0.6 * n + 0.4 * fine, (int(rng.integers(30, 80)), int(rng.integers(90, 140)), 35), 1.0)


def bark(rng, size=64):
    n = _noise(rng, size, 4)
    stripes = 0.5 + 0.5 * np.sin(np.linspace(0, 12 * np.pi, size))[None, :]
    return _tint(0.6 * n + 0.4 * stripes, (95, 70, 45), 0.7)


def metal(rng, size=64):
    g = int(rng.integers(90, 170))
    return _tint(_noise(rng, size, 3), (g, g, g + 5), 0.4)


def atlas(rng, paint, glass=(30, 40, 60), tyre=(25, 25, 25), detail=(200, 200, 190), size=128):
    """2x2 atlas for an object: quadrants paint, glass, tyre, detail (see ATLAS_QUADRANTS)."""
    h = size // 2
    out = np.zeros((size, size, 3), np.uint8)
    blocks = {
        "paint": _tint(_noise(rng, h, 5), paint, 0.45),
        "glass": _tint(_noise(rng, h, 3), glass, 0.7),
        "tyre": _tint(_noise(rng, h, 4), tyre, 0.9),
        "detail": _tint(_noise(rng, h, 3), detail, 0.5),
    }
    for name, (qx, qy) in ATLAS_QUADRANTS.items():
        out[qy * h:(qy + 1) * h, qx * h:(qx + 1) * h] = blocks[name]
    return out
