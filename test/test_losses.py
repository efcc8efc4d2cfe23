"""Batched DIOD losses: matching, values against the loop reference (bench/reference_losses.py),
unknown frames, and that a split batch averages to the whole batch's loss (data parallel)."""
import sys
from pathlib import Path

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
