"""DIOD student: shapes, masks summing to one over slots, streaming equals clip inference, the
learned initial slots train, resolution independence, clear errors."""
import pytest
import torch

from xmod_core.model import DIOD, ModelConfig

TINY = dict(widths=(8, 8, 16, 16, 16), blocks=(1, 1, 1, 1), num_slots=5, slot_dim=16, mlp_hidden=32,
            gru_hidden=16, decoder_channels=8)


@pytest.mark.parametrize("cin,norm", [(3, "batch"), (4, "group")])
def test_shapes_and_masks_sum_to_one(cin, norm):
    torch.manual_seed(0)
    m = DIOD(ModelConfig(in_channels=cin, out_channels=cin, norm=norm, **TINY))
    out = m(torch.randn(2, 3, cin, 32, 64))
    assert out["masks"].shape == (2, 3, 5, 8, 16)                     # 1/4 grid, K slots
    assert out["recon"].shape == (2, 3, cin, 32, 64)
    torch.testing.assert_close(out["masks"].sum(2), torch.ones(2, 3, 8, 16))
    fg = DIOD.foreground(out["masks"])
    torch.testing.assert_close(fg, 1 - out["masks"][:, :, -1])        # the last slot is the background


def test_finer_slot_grid():
    """output_stride 2: masks on a grid twice as fine in each direction, reconstruction still at
    the input resolution (or recon_stride), streaming unchanged."""
    torch.manual_seed(0)
    m = DIOD(ModelConfig(output_stride=2, **TINY)).eval()
    x = torch.randn(1, 2, 3, 32, 64)
    out = m(x)
    assert out["masks"].shape == (1, 2, 5, 16, 32) and out["recon"].shape == (1, 2, 3, 32, 64)
    assert DIOD(ModelConfig(output_stride=2, recon_stride=2, **TINY))(x)["recon"].shape == (1, 2, 3, 16, 32)
    first, state = m.step(x[:, 0])
    torch.testing.assert_close(first["masks"], out["masks"][:, 0])
    with pytest.raises(ValueError, match="recon_stride"):
        ModelConfig(output_stride=2, recon_stride=4)
    with pytest.raises(ValueError, match="output_stride"):
        ModelConfig(output_stride=8)


@pytest.mark.parametrize("stride", [2, 4])
def test_coarse_reconstruction_head(stride):
    """recon_stride s: the decoder stops s times short of the input resolution, with fewer
    parameters (one transposed conv fewer per halving)."""
    full = DIOD(ModelConfig(**TINY))
    m = DIOD(ModelConfig(recon_stride=stride, **TINY))
    out = m(torch.randn(1, 2, 3, 32, 64))
    assert out["recon"].shape == (1, 2, 3, 32 // stride, 64 // stride)
    assert sum(p.numel() for p in m.decoder.parameters()) < sum(p.numel() for p in full.decoder.parameters())
    with pytest.raises(ValueError, match="recon_stride"):
        ModelConfig(recon_stride=3)


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_streaming_equals_clip(norm):
    torch.manual_seed(1)
    m = DIOD(ModelConfig(norm=norm, **TINY)).eval()
    clip = torch.randn(2, 4, 3, 32, 48)
    with torch.no_grad():
        full = m(clip)
        state, masks, recon = None, [], []
        for t in range(4):
            out, state = m.step(clip[:, t], state)
            masks.append(out["masks"])
            recon.append(out["recon"])
        fast, fast_state = None, None                          # inference: no decoder, the same masks
        for t in range(4):
            fast, fast_state = m.step(clip[:, t], fast_state, decode=False)
    torch.testing.assert_close(torch.stack(masks, 1), full["masks"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.stack(recon, 1), full["recon"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(state.slots, full["state"].slots, rtol=1e-5, atol=1e-6)
    assert "recon" not in fast
    torch.testing.assert_close(fast["masks"], masks[-1], rtol=0, atol=0)


def test_first_frame_gets_an_extra_iteration_and_slots_carry_over():
    torch.manual_seed(2)
    m = DIOD(ModelConfig(**TINY)).eval()
    x = torch.randn(1, 3, 32, 48)
    calls = []
    m.slot_attn.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        _, s1 = m.step(x)
        assert len(calls) == 2                                         # first frame: two iterations
        out_a, _ = m.step(x, s1)
        assert len(calls) == 3                                         # later frames: one
        out_b, _ = m.step(x)                                           # a new sequence starts over
    assert not torch.allclose(out_a["masks"], out_b["masks"])          # the carried slots matter


def test_initial_slots_are_learned():
    m = DIOD(ModelConfig(**TINY))
    assert m.slots_init.requires_grad
    out = m(torch.randn(1, 2, 3, 32, 48))
    out["masks"][..., 0, :, :].mean().backward()
    assert m.slots_init.grad is not None and m.slots_init.grad.abs().sum() > 0


def test_any_resolution_and_parameter_count():
    m = DIOD(ModelConfig(**TINY)).eval()
    with torch.no_grad():
        for hw in ((32, 48), (64, 128)):                               # per-token LayerNorm: no size baked in
            assert m(torch.randn(1, 1, 3, *hw))["masks"].shape[-2:] == (hw[0] // 4, hw[1] // 4)
    paper = DIOD(ModelConfig())                                        # ResNet-18 at stride 4, 45 slots
    n = sum(p.numel() for p in paper.parameters())
    assert 11e6 < n < 14e6, n
    assert paper.encoder.out_channels == 512


def test_errors():
    m = DIOD(ModelConfig(**TINY))
    with pytest.raises(ValueError, match="input channels"):
        m(torch.randn(1, 1, 4, 32, 48))
    with pytest.raises(ValueError, match="multiples of 4"):
        m(torch.randn(1, 1, 3, 30, 48))
    with pytest.raises(ValueError, match="num_slots"):
        ModelConfig(num_slots=1)
    with pytest.raises(ValueError, match="norm"):
        ModelConfig(norm="layer")


def test_slots_to_instances():
    from xmod_core.instances import slots_to_instances
    m = torch.zeros(1, 4, 4, 6)
    m[0, 3] = 1.0                               # background everywhere ...
    m[0, 0, :2, :2] = 2.0                       # ... slot 0 wins a 2x2 block (4 px)
    m[0, 1, 3, 5] = 2.0                         # slot 1 wins one pixel
    m = m / m.sum(1, keepdim=True)
    ids, conf = slots_to_instances(m)
    assert ids[0, :2, :2].eq(1).all() and ids[0, 3, 5] == 2 and (ids == 0).sum() == 24 - 5
    assert conf[0, 0] == pytest.approx(2 / 3) and conf[0, 2] == 0
    ids, conf = slots_to_instances(m, min_pixels=2)  # the 1-pixel fragment is dropped
    assert ids[0, 3, 5] == 0 and ids[0, 0, 0] == 1 and conf[0, 1] == 0
    up, _ = slots_to_instances(m, size=(8, 12))
    assert up.shape == (1, 8, 12) and up[0, 0, 0] == 1


def test_slots_to_instances_keeps_a_slots_largest_component():
    from xmod_core.instances import connected_components, largest_components, slots_to_instances
    m = torch.full((1, 3, 6, 10), 0.1)
    m[0, 2] = 1.0                               # background everywhere ...
    m[0, 0, 1:4, 1:4] = 3.0                     # ... slot 0 wins a 3x3 block and, apart, a 2x1 fragment
    m[0, 0, 4, 8:] = 3.0
    m[0, 1, 0, 6:8] = 3.0                       # slot 1 wins two pixels: one component
    m = m / m.sum(1, keepdim=True)
    keep, _ = slots_to_instances(m)
    assert (keep == 1).sum() == 11 and (keep == 2).sum() == 2
    ids, conf = slots_to_instances(m, fragments="largest")
    assert (ids == 1).sum() == 9 and ids[0, 1:4, 1:4].eq(1).all() and ids[0, 4, 8:].eq(0).all()
    assert (ids == 2).sum() == 2 and conf[0, 0] > 0
    up, _ = slots_to_instances(m, size=(12, 20), fragments="largest")   # decided on the slot grid, kept at any size
    assert up[0, 3:7, 3:7].eq(1).all() and up[0, 9:, 16:].eq(0).all()
    ring = torch.zeros(1, 7, 7, dtype=torch.bool)                       # a ring is one component: labels spread
    ring[0, 1, 1:6] = ring[0, 5, 1:6] = True                            # around it, not only across
    ring[0, 1:6, 1] = ring[0, 1:6, 5] = True
    ring[0, 3, 3] = True                                                # an isolated pixel inside
    for method in ("label", "pool"):                                    # scipy on the host, max-pooling on a GPU
        got = largest_components(ring, method)
        assert got.sum() == 16 and not got[0, 3, 3]
    rnd = torch.rand(20, 12, 30, generator=torch.Generator().manual_seed(0)) < 0.3
    assert torch.equal(connected_components(rnd, "label"), connected_components(rnd, "pool"))   # the same labels
    assert torch.equal(largest_components(rnd, "label"), largest_components(rnd, "pool"))
    tie = torch.zeros(1, 5, 8, dtype=torch.bool)                        # two 5-cell components: both methods keep
    tie[0, :, 0] = True                                                 # the one whose last pixel comes first (row 1)
    tie[0, 1, 3:] = True
    for method in ("label", "pool"):
        got = largest_components(tie, method)
        assert got[0, 1, 3:].all() and not got[0, :, 0].any(), method
    assert largest_components(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4, 4)
    with pytest.raises(ValueError, match="method must be"):
        largest_components(tie, "flood")
    with pytest.raises(ValueError, match="fragments must be one of"):
        slots_to_instances(m, fragments="all")


def test_slots_to_instances_drops_unsure_instances():
    from xmod_core.instances import slots_to_instances
    m = torch.zeros(1, 4, 4, 6)
    m[0, 3] = 1.0                               # background everywhere ...
    m[0, 0, :2, :2] = 4.0                       # ... slot 0 wins a 2x2 block with 4/5 of the attention
    m[0, 1, 2:, 3:] = 1.2                       # slot 1 wins a 2x3 block with 1.2/2.2 of it
    m = m / m.sum(1, keepdim=True)
    ids, conf = slots_to_instances(m, min_score=0.6)
    assert ids[0, 0, 0] == 1 and (ids[0, 2:, 3:] == 0).all() and conf[0, 1] == 0 and conf[0, 0] == pytest.approx(0.8)
    ids, _ = slots_to_instances(m, min_score=0.5)
    assert (ids[0, 2:, 3:] == 2).all()


def test_fine_masks_start_as_the_upsampled_attention_and_stream():
    """fine_masks: masks at 1/2 of the input that sum to one; the head's slot projection starts
    at zero, so an untrained head gives exactly the 1/4 attention upsampled; streaming unchanged;
    a trained head moves the masks; output_stride 2 cannot take it."""
    torch.manual_seed(0)
    import torch.nn.functional as F
    coarse = DIOD(ModelConfig(**TINY)).eval()
    fine = DIOD(ModelConfig(fine_masks=True, **TINY)).eval()
    assert ModelConfig(fine_masks=True, **TINY).mask_stride == 2 and ModelConfig(**TINY).mask_stride == 4
    missing, unexpected = fine.load_state_dict(coarse.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("fine.") for k in missing)
    x = torch.randn(1, 3, 3, 32, 64)
    with torch.no_grad():
        a, b = coarse(x)["masks"], fine(x)["masks"]
    assert b.shape == (1, 3, 5, 16, 32)
    torch.testing.assert_close(b.sum(2), torch.ones(1, 3, 16, 32))
    up = F.interpolate(a.flatten(0, 1), size=(16, 32), mode="bilinear", align_corners=False).clamp(min=1e-6)
    torch.testing.assert_close(b.flatten(0, 1), up / up.sum(1, keepdim=True), rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        fine.fine.to_q.weight.normal_()
        moved = fine(x)["masks"]
        state, steps = None, []
        for t in range(3):
            out, state = fine.step(x[:, t], state, decode=False)
            steps.append(out["masks"])
    assert (moved - b).abs().max() > 0.05
    torch.testing.assert_close(torch.stack(steps, 1), moved, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="fine_masks"):
        ModelConfig(fine_masks=True, output_stride=2)
