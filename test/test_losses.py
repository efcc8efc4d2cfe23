"""Batched DIOD losses: matching, values against the loop reference (bench/reference_losses.py),
unknown frames, and that a split batch averages to the whole batch's loss (data parallel)."""
import sys
from pathlib import Path

import pytest
import torch

from xmod_core.losses import LossConfig, motion_losses, recon_loss

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from bench_losses import inputs  # noqa: E402
from reference_losses import reference_motion_losses  # noqa: E402


def test_matches_loop_reference():
    masks, targets, valid = inputs(6, 7, 3, 12, 20, "cpu", seed=4)
    fast = motion_losses(masks, targets, valid)
    ref = reference_motion_losses(masks, targets, valid)
    for k in ("bce", "fg_nll", "reg", "total"):
        assert abs(float(fast[k]) - ref[k]) < 1e-5, k


def test_hungarian_finds_the_permutation():
    """Slots that are exactly the targets, in shuffled order: the matched BCE is near zero and
    far below that of any wrong assignment, whatever the slot order."""
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    t[0, :4, :4], t[0, 4:, 4:] = 1, 2
    m = torch.full((1, 4, 8, 8), 1e-4)
    m[0, 2][t[0] == 1] = 1                  # slot 2 is object 1
    m[0, 0][t[0] == 2] = 1                  # slot 0 is object 2
    m[0, 3][t[0] == 0] = 1                  # background slot
    m = m / m.sum(1, keepdim=True)
    good = motion_losses(m, t)
    assert float(good["bce"]) < 0.01 and float(good["fg_nll"]) < 0.01
    swapped = m[:, [2, 1, 0, 3]]            # the same slots in another order: same loss
    assert abs(float(motion_losses(swapped, t)["bce"]) - float(good["bce"])) < 1e-6
    bad = m[:, [1, 3, 2, 0]]                # object masks moved into the background slot
    assert float(motion_losses(bad, t)["total"]) > 1.0


def test_unknown_frames_are_left_out_and_ids_need_not_be_consecutive():
    masks, targets, _ = inputs(4, 6, 2, 12, 20, "cpu", seed=5)
    valid = torch.tensor([True, True, False, False])
    a = motion_losses(masks, targets, valid)
    targets2 = targets.clone()
    targets2[2:] = 0                        # whatever an unknown frame says, it does not count
    b = motion_losses(masks, targets2, valid)
    assert float(a["bce"]) == float(b["bce"]) and float(a["fg_nll"]) == float(b["fg_nll"])
    c = motion_losses(masks, targets * 7, valid)          # ids 7, 14 instead of 1, 2
    assert abs(float(c["total"]) - float(a["total"])) < 1e-6


def test_split_batch_averages_to_the_whole_batch():
    masks, targets, valid = inputs(8, 6, 3, 12, 20, "cpu", seed=6)
    whole = motion_losses(masks, targets, valid)["total"]
    halves = [motion_losses(masks[i:i + 4], targets[i:i + 4], valid[i:i + 4])["total"] for i in (0, 4)]
    torch.testing.assert_close(whole, sum(halves) / 2)


def test_object_weights_and_burn_in_weighting():
    masks, targets, valid = inputs(2, 5, 2, 12, 20, "cpu", seed=7)
    plain = motion_losses(masks, targets, valid, cfg=LossConfig(burn_in_weighting=False))
    burn = motion_losses(masks, targets, valid)
    assert float(burn["bce"]) > float(plain["bce"])        # weights 2 - share > 1
    ones = motion_losses(masks, targets, valid, object_weights=torch.ones(2, 2))
    assert abs(float(ones["bce"]) - float(plain["bce"])) < 1e-6


def test_gradients_flow_and_recon_mask():
    logits = torch.randn(2, 5, 12, 20, requires_grad=True)
    _, targets, valid = inputs(2, 5, 2, 12, 20, "cpu", seed=8)
    motion_losses(torch.softmax(logits, 1), targets, valid)["total"].backward()
    assert logits.grad.abs().sum() > 0
    recon, target = torch.zeros(2, 4, 6, 6), torch.ones(2, 4, 6, 6)
    valid_px = torch.zeros(2, 6, 6, dtype=torch.bool)
    valid_px[:, :3] = True
    target[:, :, 3:] = 0                    # errors only where there is no return: not counted
    assert float(recon_loss(recon, target, ~valid_px)) == 0.0
    assert float(recon_loss(recon, target, valid_px)) == 1.0


def test_object_weight_scales_only_the_object_pixels():
    """DIOD's weighting: a larger object weight raises the loss of missing object pixels, not of
    claiming background pixels (object_weight: all scales both, the old departure)."""
    t = torch.zeros(1, 8, 8, dtype=torch.long)
    t[0, :4, :4] = 1
    m = torch.full((1, 2, 8, 8), 0.1)      # one object slot and the background
    m[0, 0] = 0.9                           # the object slot claims the whole frame: background pixels wrong
    w1 = motion_losses(m, t, object_weights=torch.ones(1, 1))["bce"]
    w3 = motion_losses(m, t, object_weights=torch.full((1, 1), 3.0))["bce"]
    w3_all = motion_losses(m, t, object_weights=torch.full((1, 1), 3.0), cfg=LossConfig(object_weight="all"))["bce"]
    y = (t[0] == 1).float()
    pos, neg = -(y * torch.log(torch.tensor(0.9))).mean(), -((1 - y) * torch.log(torch.tensor(0.1))).mean()
    torch.testing.assert_close(w1, pos + neg)
    torch.testing.assert_close(w3, 3 * pos + neg)
    torch.testing.assert_close(w3_all, 3 * (pos + neg))


def test_mined_weight_scales_the_object_term_of_mined_pairs_only():
    """loss.mined_weight: a pair whose target id is at or after the frame's `mined_from` has its object
    weight multiplied; motion pairs and the background term are unchanged."""
    t = torch.zeros(2, 8, 8, dtype=torch.long)
    t[:, :4, :4], t[:, 4:, 4:] = 1, 2                   # frame 0: 2 is mined; frame 1: nothing mined
    m = torch.full((2, 3, 8, 8), 0.05)
    m[:, 0, :4, :4], m[:, 1, 4:, 4:] = 0.7, 0.7          # each object slot half-sure of its object
    m[:, 2] = 1 - m[:, :2].sum(1)                        # background slot
    cfg = LossConfig(burn_in_weighting=False, mined_weight=3.0)
    mined_from = torch.tensor([2, 3])
    base = motion_losses(m, t, cfg=LossConfig(burn_in_weighting=False))["bce"]
    same = motion_losses(m, t, cfg=LossConfig(burn_in_weighting=False), mined_from=mined_from)["bce"]
    heavy = motion_losses(m, t, cfg=cfg, mined_from=mined_from)["bce"]
    torch.testing.assert_close(same, base)               # weight 1: mined_from changes nothing
    pos = -(16 / 64) * torch.log(torch.tensor(0.7))      # one pair's object term (16 of 64 pixels)
    # frame 0's mean over its two pairs gains (3 - 1) x pos / 2; frame 1 (nothing mined) nothing; summed over T = 1
    torch.testing.assert_close(heavy - base, (3 - 1) * pos / 2 / 2)
    assert torch.equal(motion_losses(m, t, cfg=cfg, mined_from=torch.tensor([3, 3]))["bce"], base)
    for bad in (0.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mined_weight must be a finite number > 0"):
            LossConfig(mined_weight=bad)
    from xmod_core.data import DataConfig
    from xmod_core.train import TrainConfig
    TrainConfig(stage="3d_burn_in", loss=LossConfig(mined_weight=2.0), data=DataConfig(mined_dir="image_02/mined_masks"))
    for stage, mined_dir in (("3d_ts", "image_02/mined_masks"), ("3d_burn_in", "")):   # where it would not apply
        with pytest.raises(ValueError, match="mined_weight .* burn-in stages and needs data.mined_dir"):
            TrainConfig(stage=stage, loss=LossConfig(mined_weight=2.0), data=DataConfig(mined_dir=mined_dir))


def test_clip_reduction_and_foreground_average():
    """Paper: motion terms summed over a clip's frames (T times the frame mean) and the
    foreground NLL over all pixels; the alternatives are the earlier averages."""
    masks, targets, valid = inputs(6, 7, 3, 12, 20, "cpu", seed=9)
    clip = lambda x: x.view(2, 3, *x.shape[1:])                           # 2 clips of 3 frames
    flat = motion_losses(masks, targets, valid)
    summed = motion_losses(clip(masks), clip(targets), clip(valid))
    mean = motion_losses(clip(masks), clip(targets), clip(valid), cfg=LossConfig(clip_reduction="mean"))
    for k in ("bce", "fg_nll", "reg"):
        torch.testing.assert_close(summed[k], 3 * flat[k])
        torch.testing.assert_close(mean[k], flat[k])
    objects = motion_losses(masks, targets, valid, cfg=LossConfig(fg_average="objects"))
    share = (targets > 0).float().mean((1, 2))[valid]
    assert float(objects["fg_nll"]) > float(flat["fg_nll"]) / float(share.max()) * 0.99
    with pytest.raises(ValueError, match="clip_reduction"):
        LossConfig(clip_reduction="median")


def test_coarse_reconstruction_compares_with_cell_averages():
    """recon_stride: a reconstruction s times coarser is scored against the target's s x s cell
    means, and for scene completion the means over the pixels with a return only."""
    target = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4)
    cells = torch.nn.functional.avg_pool2d(target, 2)
    assert float(recon_loss(cells, target)) == 0.0
    valid = torch.zeros(2, 4, 4, dtype=torch.bool)
    valid[:, 0, 0] = True                   # one return in the top-left cell only
    recon = torch.zeros(2, 1, 2, 2)
    recon[:, 0, 0, 0] = target[:, 0, 0, 0]  # exact there; the other cells have no return
    assert float(recon_loss(recon, target, valid)) == 0.0
    recon[:, 0, 0, 0] += 1
    assert float(recon_loss(recon, target, valid)) == 1.0


def _big_and_small(small_found: bool, slot_on_small: int = 1):
    """One frame of 32x64 cells: a big object (half the grid) and a 2-cell one; slot 0 is the big
    object, slot `slot_on_small` the small one when `small_found` (else it covers nothing), last =
    background."""
    t = torch.zeros(1, 32, 64, dtype=torch.long)
    t[0, :16] = 1
    t[0, 24, 3:5] = 2
    m = torch.full((1, 4, 32, 64), 1e-4)
    m[0, 0][t[0] == 1] = 1
    if small_found:
        m[0, slot_on_small][t[0] == 2] = 1
    m[0, 3][m[0, :3].amax(0) < 0.5] = 1
    return m / m.sum(1, keepdim=True), t


def test_dice_makes_a_missed_small_object_cost_as_much_as_a_big_one():
    """Without the dice term a slot that ignores a 2-cell object of 2,048 costs almost nothing;
    with it, a third of the dice weight (one of the two matched pairs fails; dice smoothed by 1)."""
    found, t = _big_and_small(True)
    missed, _ = _big_and_small(False)
    for w, lo, hi in ((0.0, 0.0, 0.05), (1.0, 0.25, 0.6)):
        cfg = LossConfig(w_dice=w, fg_average="pixels")
        gap = float(motion_losses(missed, t, cfg=cfg)["total"]) - float(motion_losses(found, t, cfg=cfg)["total"])
        assert lo <= gap <= hi, (w, gap)
    assert "dice" not in motion_losses(found, t)                          # off by default: the paper's loss
    assert float(motion_losses(found, t, cfg=LossConfig(w_dice=1.0))["dice"]) < 0.03


def test_dice_in_the_matching_cost_picks_the_slot_that_overlaps_the_small_object():
    """The small object (2 cells): slot 1 holds 0.05 of it and nothing else, slot 2 holds 0.9 of it
    and 0.1 of 60 background cells. The BCE cost prefers slot 1 (missing costs less than the
    spill), the dice cost slot 2; with w_dice the matching follows the summed cost."""
    t = torch.zeros(1, 16, 16, dtype=torch.long)
    t[0, :8] = 1
    t[0, 12, 3:5] = 2
    m = torch.zeros(1, 4, 16, 16)
    m[0, 0][t[0] == 1] = 1.0
    small, spill = t[0] == 2, torch.zeros(16, 16, dtype=torch.bool)
    spill[9:11, :] = True
    spill[11, :12] = True                                                 # 44 cells
    spill[13, :16] = True                                                 # + 16 = 60 cells
    m[0, 1][small], m[0, 2][small], m[0, 3][small] = 0.05, 0.9, 0.05
    m[0, 2][spill], m[0, 3][spill] = 0.1, 0.9
    m[0, 3][(t[0] == 0) & ~spill] = 1.0
    assert torch.allclose(m.sum(1), torch.ones(1, 16, 16))
    dice = lambda p, y: 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
    y = small.float()
    d1, d2 = float(dice(m[0, 1], y)), float(dice(m[0, 2], y))
    assert d2 < d1 - 0.02
    plain = LossConfig(burn_in_weighting=False)
    bce_only = motion_losses(m, t, cfg=plain)
    with_dice = motion_losses(m, t, cfg=LossConfig(burn_in_weighting=False, w_dice=1.0))
    assert abs(float(with_dice["dice"]) - d2 / 2) < 1e-3                 # slot 2 matched (the big pair's dice ~0)
    assert float(bce_only["bce"]) < float(with_dice["bce"]) - 1e-4        # BCE matching took slot 1
    with pytest.raises(ValueError, match="w_dice"):
        LossConfig(w_dice=-1.0)
