"""Motion cues: per-frame motion instance masks from raw video (+ LiDAR, + oxts when present).

These masks are the only supervision of xMOD, so a false mask on static structure is worse than
a missed object: every step below prefers "unknown" or "no evidence" to a guess.

Method (all per-frame work is vectorised numpy / OpenCV, at ``scale`` x the input resolution;
pixel parameters are given at input resolution and scaled)
--------------------------------------------------------------------------------------------
1. **Flow.**  Dense flow t -> t+1 and t+1 -> t (default OpenCV DIS "medium",
   :mod:`xmod_core.flow`; any registered estimator can be configured).
2. **Trust.**  A pixel's flow is *valid* when the forward-backward error
   ``|F(p) + B(p + F(p))|`` is below ``fb_abs_px + fb_rel |F|`` and it is not within
   ``border_px`` of the image edge (occlusions, disocclusions, pixels leaving the view fail).
   It is *reliable* when it is also textured (minimum eigenvalue of the structure tensor above
   ``texture_min_eig``).  Invalid pixels are neither evidence of motion nor of its absence;
   only reliable pixels may seed a mask.
3. **Ego-motion** (rect(t) -> rect(t+1), the motion of the static world seen by the camera):
   * with oxts poses (``ego.source`` auto/oxts): ``inv(W_t1) @ W_t`` with
     ``W = pose_imu @ inv(T_imu_to_velo) @ inv(T_velo_to_rect)``;
   * with LiDAR and no poses: PnP.  The scan at t is projected (nearest point per pixel) and a
     ground plane is fitted to it with RANSAC.  The 3D-2D correspondences (LiDAR point at t,
     its pixel moved by the flow) are restricted to the *static world*: reliable-flow ground
     points beyond ``ground_min_depth_m`` and away from any above-ground point, and points
     farther than ``far_depth_m`` away from depth edges -- never near above-ground points, so
     a lorry alongside cannot drag the estimate.  They are bucketed over a 12x4 image grid so no
     region dominates; RANSAC over linearised 3-point motions (small rotation, any
     translation), then a robust Cauchy-IRLS refinement on a denser bucketed sample.  Too few
     candidates or inliers, a low inlier ratio or an implausible pose -> ``failed``: the frame
     is written as *unknown*, never as an empty mask;
   * without LiDAR and poses: essential matrix (RANSAC, then least-median on its inliers) on
     bucketed reliable flow, unit translation; model selection against a pure rotation
     (homography ``K R K^-1``) for a still ego.
4. **Residual.**  For pixel p the static world predicts ``p'(rho) = pi(K R K^-1 p + rho K t)``
   for its inverse depth rho.  rho is not one number but the interval of the LiDAR inverse
   depths around p (``depth_window``; the near end over the larger ``near_window``, because DIS
   drags an occluder's flow onto what is behind it; the far end open next to LiDAR holes --
   sky, above the scan -- because it drags the background onto a silhouette), widened by
   ``depth_rel``.  Depth edges and LiDAR / camera misalignment so widen the tolerance instead
   of creating false motion.  Where no LiDAR point is near (or without LiDAR, or without
   metric scale) the interval is [0, 1/min_depth_m]: the test becomes the distance to the
   epipolar segment of all admissible depths (the geometric counterpart of the Sampson
   distance, one-sided: a point cannot move "beyond infinity"); the near end is clamped so the
   point stays in front of the camera.  The *score* is the distance of ``p + F(p)`` to that
   segment divided by ``sigma_px + rel * |rigid flow|``: large rigid flow (the near road while
   driving) needs a proportionally larger deviation.
5. **Masks.**  Per frame, the evidence of the next pair (t -> t+1) and of the previous pair
   (t -> t-1, inverse ego-motion) are combined: where both are valid the smaller score counts
   (temporal agreement), where only one is valid its score is halved, and a frame with a single
   pair (drive ends, ``segment_pair``) is scaled by ``single_pair_factor``.  Candidates
   ``score > threshold``; pixels whose LiDAR neighbourhood holds only ground points are removed
   (road, lane marks, shadows: a shadow on the road has only ground points); opening / closing;
   connected components that are large enough, contain reliable seeds
   (``score > seed_threshold``) and, with LiDAR, enough points above the ground plane.  With
   LiDAR each component is then refined object by object: its above-ground points are
   clustered in bird's-eye view (two vehicles in a queue become two objects); a cluster whose
   points, or whose whole object (all its points, also outside the component), do not look
   moving is dropped (a strip on the edge of a static lorry); each cluster keeps the component
   pixels near its points and grows over pixels near its points that look moving-ish or have no
   valid flow (plain paint); holes are filled; a region whose flow is clearly two motions
   (2-means + affine fits) is split.
6. **Movers seen by their points.**  A vehicle driving on ahead of us, or coming towards us,
   moves along the viewing ray: its flow stays on the epipolar line of a static point and only
   looks like a *nearer* or *farther* static surface -- which the depth window of step 4 often
   allows.  Each LiDAR point is therefore also scored at its *own* depth (+- ``point_depth_rel``),
   in both flow directions combined as in step 5, but only *inside* a surface (every LiDAR depth
   in its window within ``point_interior_rel`` of its own: on a silhouette DIS drags the flow of
   what lies behind).  A scene object (above-ground points clustered in bird's-eye view over the
   frame) of a movable size whose interior points' median score exceeds
   ``point_object_score`` and that no instance covers yet becomes an instance, grown from its
   points as in step 5.  Masks are upsampled (nearest) to the input resolution.

Output (``process_drive`` / CLI): ``DRIVE/image_02/motion_masks/NNNNNNNNNN.png`` uint16, 0 =
background, 1..n instances, and ``motion.json`` (parameters, per-frame status and ego-motion;
frames whose ego-motion failed are listed under "unknown" and have no PNG).

CLI: ``python -m xmod_core.motion DRIVE [--config config/motion.yaml] [--force]
[--overlays DIR] [--out DIR] [key=value ...]``.  See docs/motion.md for figures.
"""
from .config import (EgoConfig, FlowConfig, MaskConfig, MotionConfig, ReliabilityConfig, ResidualConfig,
                     load_motion_config)
from .drive import MASK_DIR, PARAMS_FILE, DriveSummary, overlay, process_drive, read_motion_json
from .ego import EgoMotion, MotionInputError, fit_ground, processing_calib, relative_motion_from_poses
from .segment import Evidence, MotionSegmenter, PairResult

__all__ = ["MotionConfig", "FlowConfig", "EgoConfig", "ReliabilityConfig", "ResidualConfig", "MaskConfig",
           "load_motion_config", "MotionSegmenter", "PairResult", "Evidence", "EgoMotion", "MotionInputError",
           "process_drive", "DriveSummary", "overlay", "read_motion_json", "relative_motion_from_poses",
           "processing_calib", "fit_ground", "MASK_DIR", "PARAMS_FILE", "main"]


def main(argv=None) -> int:
    from .cli import main as _main
    return _main(argv)
