"""Metrics on hand-made cases and against scikit-learn's ARI on random labelings."""
import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from xmod_core.metrics import F1Accumulator, all_ari, ari, fg_ari, iou_matrix


def scene():
    gt = np.zeros((20, 30), int)
    gt[2:8, 2:10], gt[10:18, 5:12], gt[4:14, 18:28] = 1, 2, 3
    return gt


@pytest.mark.parametrize("seed", range(5))
def test_ari_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 6, 500), rng.integers(0, 4, 500)
    b[:250] = a[:250]                                    # partly agreeing
    assert ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert ari(a, a * 7 + 3) == pytest.approx(1.0)       # same partition, other ids


def test_perfect_swapped_merged_empty():
    gt = scene()
    acc = F1Accumulator()
    acc.update(gt, gt)
    assert acc.result()["f1"] == 1.0 and fg_ari(gt, gt) == pytest.approx(1.0) and all_ari(gt, gt) == pytest.approx(1.0)
    swapped = np.choose(gt, [0, 3, 1, 2])                # the same objects under other ids
    acc = F1Accumulator()
    acc.update(gt, swapped)
    assert acc.result()["f1"] == 1.0 and fg_ari(gt, swapped) == pytest.approx(1.0)
    merged = np.where(gt == 2, 1, gt)                    # objects 1 and 2 predicted as one
    acc = F1Accumulator()
    acc.update(gt, merged)
    r = acc.result()
    # the merged mask matches object 2 (IoU 56/104 > 0.5), object 1 (48/104) is missed; 3 is found
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 1)
    fg = gt > 0
    assert fg_ari(gt, merged) == pytest.approx(adjusted_rand_score(gt[fg], merged[fg])) and fg_ari(gt, merged) < 0.8
    acc = F1Accumulator()
    acc.update(gt, np.zeros_like(gt))
    assert acc.result()["f1"] == 0.0 and acc.result()["fn"] == 3
    assert fg_ari(gt, np.zeros_like(gt)) == pytest.approx(0.0)


def test_frames_with_fewer_than_two_objects_are_skipped():
    gt = np.zeros((5, 5), int)
    gt[1:3, 1:3] = 1
    assert fg_ari(gt, gt) is None and all_ari(gt, gt) is None


def test_iou_matrix_and_greedy_by_score():
    gt = np.array([1, 1, 1, 1, 2, 2, 0, 0])
    pred = np.array([5, 5, 5, 0, 5, 0, 6, 6])
    gids, pids, iou, areas = iou_matrix(gt, pred)
    assert gids.tolist() == [1, 2] and pids.tolist() == [5, 6] and areas.tolist() == [4, 2]
    assert iou[0, 0] == pytest.approx(3 / 5) and iou[1, 0] == pytest.approx(1 / 5) and iou[:, 1].tolist() == [0, 0]
    acc = F1Accumulator()
    acc.update(gt, pred, scores={5: 0.9, 6: 0.1})
    assert (acc.tp, acc.fp, acc.fn) == (1, 1, 1)


def test_ignore_and_moving_still_recall():
    gt = scene()
    pred = gt.copy()
    pred[gt == 3] = 0                                    # object 3 missed
    pred[0:2, 25:30] = 9                                 # a false positive
    acc = F1Accumulator()
    acc.update(gt, pred, ignore_ids=[], moving_ids=[1])
    r = acc.result()
    assert (r["tp"], r["fp"], r["fn"]) == (2, 1, 1)
    assert r["recall_moving"] == 1.0 and r["recall_still"] == 0.5
    acc = F1Accumulator()
    tiny = gt.copy()
    tiny[0:2, 25:30] = 4                                 # the "false positive" is a tiny, ignored object
    acc.update(tiny, pred, ignore_ids=[4])
    assert (acc.tp, acc.fp, acc.fn) == (2, 0, 1)


def test_box_iou_and_instance_boxes():
    from xmod_core.metrics import box_iou, instance_boxes
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]]).tolist() == [[pytest.approx(1 / 3), 0.0]]
    ids, boxes = instance_boxes(scene())
    assert ids.tolist() == [1, 2, 3] and boxes.tolist() == [[2, 2, 10, 8], [5, 10, 12, 18], [18, 4, 28, 14]]
    assert len(instance_boxes(np.zeros((4, 4), int))[0]) == 0


def test_unmatched_predictions_in_ignored_regions_are_no_false_positives():
    gt = scene()
    pred = gt.copy()
    pred[0:2, 25:30] = 9                                  # a prediction where nothing is labelled
    acc = F1Accumulator()
    hits = acc.update(gt, pred, ignore_pred_ids=[9])
    assert (acc.tp, acc.fp, acc.fn) == (3, 0, 0) and hits == {1: 1, 2: 2, 3: 3}
    acc = F1Accumulator()
    acc.update(gt, pred)
    assert acc.fp == 1
    acc = F1Accumulator()                                 # an ignored id that matches an object still counts
    assert acc.update(gt, pred, ignore_pred_ids=[1]) == {1: 1, 2: 2, 3: 3} and acc.tp == 3


def test_id_stability_counts_switches_and_the_same_id_share():
    from xmod_core.metrics import IdStability
    s = IdStability()
    for hits in ({1: 5, 2: 7}, {1: 5}, {1: 6, 2: 7}, {1: 5, 2: 7}):  # track 1: 5 5 6 5; track 2: 7 - 7 7
        s.update([1, 2], hits)
    r = s.result()
    assert r["tracks"] == 2 and r["id_switches_per_track"] == pytest.approx((2 + 0) / 2)
    assert r["same_id_share"] == pytest.approx((3 + 3) / 8)
    assert IdStability().result()["same_id_share"] is None


def test_recall_by_object_size():
    gt = scene()                                          # areas: 48, 56, 100 pixels
    pred = np.where(gt == 3, 0, gt)                       # object 3 missed
    acc = F1Accumulator(size_edges=(0, 50, 80))
    acc.update(gt, pred, sizes={1: 48, 2: 56, 3: 100})
    acc.update(gt, pred, sizes={1: 48})                   # objects without a size are not binned
    r = acc.result()["recall_by_size"]
    assert r == {"<50": (1.0, 2), "50-80": (1.0, 1), ">=80": (0.0, 1)}
    assert acc.result()["recall_still_by_size"] == {"<50": (None, 0), "50-80": (None, 0), ">=80": (None, 0)}
    still = F1Accumulator(size_edges=(0, 50, 80))                # with motion known: the still objects by size
    still.update(gt, pred, moving_ids=[2], sizes={1: 48, 2: 56, 3: 100})
    still.update(gt, np.where(gt == 1, 0, gt), moving_ids=[3], sizes={1: 48, 2: 56, 3: 100})
    assert still.result()["recall_still_by_size"] == {"<50": (0.5, 2), "50-80": (1.0, 1), ">=80": (0.0, 1)}
    assert still.result()["recall_by_size"] == {"<50": (0.5, 2), "50-80": (1.0, 2), ">=80": (0.5, 2)}
    from xmod_core.metrics import size_bin_names
    assert size_bin_names() == ["<1k", "1k-3k", "3k-10k", ">=10k"]


def test_instance_boxes_match_a_per_instance_reference_for_any_id_image():
    from xmod_core.metrics import instance_boxes
    rng = np.random.default_rng(0)
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535), (np.int32, 2 ** 31 - 1), (np.int64, 2 ** 40), (bool, 1)):
        for _ in range(5):
            lab = np.zeros((23, 37), np.int64)
            for i in {int(x) for x in rng.integers(1, top, size=4, endpoint=True)}:
                r, c = rng.integers(0, 20), rng.integers(0, 33)
                lab[r:r + rng.integers(1, 4), c:c + rng.integers(1, 5)] = i
            lab = lab.astype(dtype)
            ids, boxes = instance_boxes(lab)
            want = sorted(int(i) for i in np.unique(lab) if i)
            assert ids.dtype == np.int64 and ids.tolist() == want
            for i, b in zip(want, boxes):
                rows, cols = np.nonzero(lab == i)
                assert b.tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    with pytest.raises(ValueError, match="must be >= 0"):
        instance_boxes(-np.ones((3, 3), np.int32))
