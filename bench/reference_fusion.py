"""Reference late fusion written the straightforward way (a double loop over 2D x 3D slot pairs,
as in the official code): the ground truth that xmod_core.fusion is checked against."""
import numpy as np

from xmod_core.fusion import ID_OFFSET_3D


def reference_late_fusion(ids_2d, scores_2d, ids_3d, scores_3d, iou_threshold=0.1, keep_single=False, single_score=0.9):
    n2, n3 = len(scores_2d), len(scores_3d)
    iou = np.zeros((n2, n3))
    for i in range(n2):
        a = ids_2d == i + 1
        for j in range(n3):
            b = ids_3d == j + 1
            union = np.logical_or(a, b).sum()
            iou[i, j] = np.logical_and(a, b).sum() / union if union else 0.0
    fused = np.zeros_like(ids_2d)
    scores = {}
    partners = {i: [] for i in range(n2)}
    for j in range(n3):
        if n2 == 0:
            break
        i = int(np.argmax(iou[:, j]))
        if iou[i, j] > iou_threshold:
            partners[i].append(j)
    kept = []
    for i in range(n2):
        present = (ids_2d == i + 1).any()
        if present and (partners[i] or (keep_single and scores_2d[i] >= single_score)):
            kept.append(i)
            fused[ids_2d == i + 1] = i + 1
            s3 = max((scores_3d[j] for j in partners[i]), default=None)
            scores[i + 1] = float((scores_2d[i] + s3) / 2) if s3 is not None else float(scores_2d[i])
    for i in kept:
        for j in partners[i]:
            fused[(fused == 0) & (ids_3d == j + 1)] = i + 1
    if keep_single:
        for j in range(n3):
            in_kept = any(j in partners[i] for i in kept)
            if not in_kept and (ids_3d == j + 1).any() and scores_3d[j] >= single_score:
                fused[(fused == 0) & (ids_3d == j + 1)] = ID_OFFSET_3D + j + 1
                scores[ID_OFFSET_3D + j + 1] = float(scores_3d[j])
    return fused, scores
