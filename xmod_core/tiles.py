"""Zoomed tiles of the horizon band (`PredictorConfig.zoom_tiles`, beyond the paper).

Far objects lie on a narrow band of rows about the horizon and cover a few cells of a student's
slot grid (a 4-cell car at 24x80), too few for slot attention to hold them. Each tile is a
half-height, half-width window of the processing grid on that band, seen by the same student at
twice the resolution (the camera crop resized; the scan projected with the tile's camera, or with
`zoom_lidar: upsample` the frame's front view magnified, `zoom_view`), where the same car covers
four times the cells. The students run on the full frame and the tiles as one batch (each tile
carries its own temporal state), and `merge_tiles` adds the tiles' instances to the full frame's:
an instance joins if it scores and covers enough, the full frame (or an earlier tile) has not
already claimed most of its pixels, and it does not touch a tile side inside the image (a cut
object; with overlapping tiles the neighbour sees it whole). The frame's own instances never
change. `merge_mirror` does the same for the frame seen mirrored left-right (`PredictorConfig.mirror`).

Geometry on the processing grid (H, W): tile t covers rows [row, row + H/2) and columns
[col, col + W/2); its pixel (i, j) centre lies at grid (row + i/2 - 1/4, col + j/2 - 1/4). The
band is centred on the camera's principal-point row (the horizon of a level camera).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from .kitti import CameraCalib

ZOOM_LIDAR = ("project", "upsample")


@dataclass(frozen=True)
class Tile:
    row: int          # top-left corner on the processing grid
    col: int


def band_tiles(calib_small: CameraCalib, count: int) -> list[Tile]:
    """`count` tiles of (H/2, W/2) evenly spread across the grid's width (the first at column 0,
    the last against the right side; one tile: centred), on the band centred on the principal
    point's row. calib_small: the camera at the processing size (H, W)."""
    if count < 0:
        raise ValueError(f"zoom tiles must be >= 0, got {count}")
    H, W = calib_small.height, calib_small.width
    if H % 4 or W % 4:
        raise ValueError(f"zoom tiles need a processing size in multiples of 4, got {H}x{W}")
    h, w = H // 2, W // 2
    row = int(np.clip(round(calib_small.P_rect[1, 2] - h / 2), 0, H - h))
    cols = [W // 4] if count == 1 else np.linspace(0, W - w, count).round().astype(int).tolist()
    return [Tile(row, int(c)) for c in cols[:count]]


def tile_calib(calib_small: CameraCalib, tile: Tile) -> CameraCalib:
    """The camera of one tile at the processing size: u_tile = 2 (u - col) + 1/2, the same for rows."""
    A = np.array([[2.0, 0.0, 0.5 - 2 * tile.col], [0.0, 2.0, 0.5 - 2 * tile.row], [0.0, 0.0, 1.0]])
    return replace(calib_small, P_rect=A @ calib_small.P_rect)


def tile_points(point_pixel: np.ndarray, tile: Tile, height: int, width: int) -> np.ndarray:
    """(N,) bool: the points whose pixel on the (height, width) grid (`FrontView.point_pixel`, -1 for
    none) lies under `tile` or one pixel around it, a superset of those the tile's camera keeps:
    projecting only these gives the tile's front view at a fraction of the scan."""
    r, c = point_pixel // width, point_pixel % width
    return (point_pixel >= 0) & (r >= tile.row - 1) & (r <= tile.row + height // 2) & \
        (c >= tile.col - 1) & (c <= tile.col + width // 2)


def tile_image(image: np.ndarray, tile: Tile, height: int, width: int) -> np.ndarray:
    """The camera image's window under `tile` (grid of height x width), resized to height x width."""
    H0, W0 = image.shape[:2]
    sy, sx = H0 / height, W0 / width
    r0, r1 = round(tile.row * sy), round((tile.row + height // 2) * sy)
    c0, c1 = round(tile.col * sx), round((tile.col + width // 2) * sx)
    crop = image[r0:max(r1, r0 + 1), c0:max(c1, c0 + 1)]
    interp = cv2.INTER_AREA if crop.shape[0] > height else cv2.INTER_LINEAR
    return cv2.resize(crop, (width, height), interpolation=interp)


def zoom_view(features: np.ndarray, tile: Tile) -> np.ndarray:
    """(C, H, W) front view -> (C, H, W): the window under `tile` magnified x2 (each pixel repeated):
    the tile sees the points the frame sees, at the pixel density the student trained on."""
    H, W = features.shape[-2:]
    win = features[..., tile.row:tile.row + H // 2, tile.col:tile.col + W // 2]
    return np.repeat(np.repeat(win, 2, axis=-2), 2, axis=-1)


def _join(region: torch.Tensor, view: torch.Tensor, scores: torch.Tensor, offset: int, max_claimed: float,
          min_score: float, min_pixels: int, cut: torch.Tensor | None = None) -> None:
    """Paint into `region` (a view of the merged ids, in place) the instances of `view` (same shape;
    slot k + 1 scoring scores[k]) that score at least `min_score`, cover at least `min_pixels`, have
    at most `max_claimed` of their pixels already claimed and are not `cut`: id offset + k + 1, only
    where nothing claims a pixel yet."""
    K = scores.shape[0]
    area = torch.bincount(view.flatten(), minlength=K + 1).float()
    claimed = torch.bincount(view.flatten(), (region > 0).flatten().float(), minlength=K + 1)
    keep = (area >= max(min_pixels, 1)) & (claimed <= max_claimed * area)
    if cut is not None:
        keep &= ~cut
    keep[1:] &= scores >= min_score
    keep[0] = False
    new = torch.where(keep[view], view + offset, 0).to(region.dtype)
    region.copy_(torch.where((region == 0) & (new > 0), new, region))


def merge_tiles(ids: torch.Tensor, scores: torch.Tensor, tiles: list[Tile], max_claimed: float = 0.75,
                min_score: float = 0.0, min_pixels: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (1 + T, H, W) instances of the full frame, then of each tile (0 = none, k = slot k - 1),
    scores (1 + T, K). Returns the (H, W) merged ids and ((1 + T) K,) scores: tile t's slot k gets id
    t K + k + 1. A tile's instance (subsampled to the grid) joins where nothing claims a pixel yet,
    if it scores at least `min_score`, covers at least `min_pixels` of the grid, at most
    `max_claimed` of those pixels are claimed, and it touches no tile side inside the grid."""
    B, H, W = ids.shape
    K = scores.shape[1]
    if B != len(tiles) + 1:
        raise ValueError(f"merge_tiles: {B} instance maps for {len(tiles)} tiles (expected 1 + tiles)")
    out = ids[0].clone()
    h, w = H // 2, W // 2
    for t, tile in enumerate(tiles, 1):
        small = ids[t, ::2, ::2].long()                                      # (h, w) on the grid
        cut = torch.zeros(K + 1, dtype=torch.bool, device=ids.device)
        for inner, side in ((tile.row > 0, small[0]), (tile.row + h < H, small[-1]),
                            (tile.col > 0, small[:, 0]), (tile.col + w < W, small[:, -1])):
            if inner:
                cut[side] = True
        _join(out[tile.row:tile.row + h, tile.col:tile.col + w], small, scores[t], t * K, max_claimed, min_score,
              min_pixels, cut)
    return out, scores.reshape(-1)


def merge_mirror(ids: torch.Tensor, scores: torch.Tensor, mirror_ids: torch.Tensor, mirror_scores: torch.Tensor,
                 max_claimed: float = 0.75, min_score: float = 0.0, min_pixels: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """ids (H, W) merged instances with scores (N,) (id i + 1 scores[i]); mirror_ids (H, W) the
    instances of the frame seen mirrored left-right (already flipped back), slot k scoring
    mirror_scores[k]. Returns the (H, W) ids and (N + K,) scores: the mirror's slot k gets id N + k + 1
    and joins, where nothing claims a pixel yet, if it scores at least `min_score`, covers at least
    `min_pixels` and at most `max_claimed` of its pixels are claimed (the tiles' rule, no cut sides)."""
    out = ids.clone()
    _join(out, mirror_ids.long(), mirror_scores, scores.shape[0], max_claimed, min_score, min_pixels)
    return out, torch.cat([scores, mirror_scores])
