import math

import pytest
import torch

from ganforge.ada import (
    AdaController,
    ada_augment,
    apply_color,
    apply_geometric,
    color_matrix,
    geometric_matrix,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, c: int = 3, h: int = 8, w: int = 8, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, c, h, w), generator=_gen(seed)) * 2 - 1


def test_p0_is_identity_and_vectors_pass_through():
    x = _images()
    assert ada_augment(x, 0.0, _gen()) is x
    v = torch.randn(5, 7)
    assert ada_augment(v, 1.0, _gen()) is v


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("pipeline", ["b", "g", "c", "bg", "bgc"])
def test_p1_changes_images_and_keeps_shape_dtype(channels, pipeline):
    x = _images(6, channels, 8, 10)
    y = ada_augment(x, 1.0, _gen(3), pipeline)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    changed = (y - x).flatten(1).abs().amax(1) > 1e-4
    assert changed.sum() >= 4  # some samples may draw an identity (e.g. flip 0, rot 0, shift 0)


def test_float64_is_kept():
    x = _images().double()
    y = ada_augment(x, 1.0, _gen())
    assert y.dtype == torch.float64 and not torch.allclose(y, x)


def test_reproducible_with_generator():
    x = _images(8)
    a = ada_augment(x, 0.7, _gen(5))
    b = ada_augment(x, 0.7, _gen(5))
    c = ada_augment(x, 0.7, _gen(6))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_bad_pipeline_and_p_raise():
    with pytest.raises(ValueError, match="unknown ops"):
        ada_augment(_images(), 0.5, pipeline="bgx")
    with pytest.raises(ValueError):
        ada_augment(_images(), 1.5)


def test_pure_xflip_matrix_equals_torch_flip():
    x = _images(2, 3, 6, 8)
    g = torch.diag(torch.tensor([-1.0, 1.0, 1.0])).expand(2, 3, 3)
    torch.testing.assert_close(apply_geometric(x, g), torch.flip(x, [3]), atol=1e-5, rtol=0)
    rot = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]).expand(2, 3, 3)
    sq = _images(2, 3, 8, 8)
    out = apply_geometric(sq, rot)  # samples input at (x, y) -> (-y, x): a quarter turn
    # out[i, j] = in[row = x_c + c, col = -y_c + c] with x_c = j - c, y_c = i - c, c = 3.5
    ii, jj = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    torch.testing.assert_close(out, sq[:, :, jj, 7 - ii], atol=1e-5, rtol=0)


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """grid_sample's reflection (align_corners=False): mirror about -0.5 and size - 0.5."""
    idx = idx.remainder(2 * size)
    return torch.where(idx >= size, 2 * size - 1 - idx, idx)


@pytest.mark.parametrize("hw", [(8, 8), (6, 8)])
def test_blit_is_an_exact_pixel_permutation(hw):
    h, w = hw
    n = 24
    x = _images(n, 3, h, w)
    y = ada_augment(x, 1.0, _gen(7), "b")
    g = geometric_matrix(n, h, w, 1.0, _gen(7), blit=True, geom=False)  # same draws
    # every matrix is a signed permutation (flip / quarter turn) plus an integer shift
    assert torch.equal(g[:, :2, :2].abs().sum(1), torch.ones(n, 2))
    assert torch.equal(g[:, :2, 2], g[:, :2, 2].round())
    assert g[:, :2, 2].abs().max() <= 1  # up to 1/8 of 8 pixels
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    cx, cy = (w - 1) / 2, (h - 1) / 2
    pos = torch.stack([jj - cx, ii - cy, torch.ones(h, w)], -1).view(-1, 3)  # [HW, 3]
    src = torch.einsum("nij,pj->npi", g, pos)  # [N, HW, 3]
    sx, sy = src[..., 0] + cx, src[..., 1] + cy
    assert torch.allclose(sx, sx.round()) and torch.allclose(sy, sy.round())
    sx, sy = _reflect(sx.round().long(), w), _reflect(sy.round().long(), h)
    want = torch.stack([x[k][:, sy[k], sx[k]] for k in range(n)]).view_as(x)
    torch.testing.assert_close(y, want, atol=1e-5, rtol=0)
    # the draws include flips, all four quarter turns and shifts
    assert (g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] * g[:, 1, 0] < 0).any()  # a reflection
    assert (g[:, 0, 1] != 0).any() and (g[:, 0, 0] == -1).any()
    assert (g[:, :2, 2] != 0).any()


def test_blit_at_half_p_leaves_the_expected_fraction_unchanged():
    n, s = 4000, 8
    x = _images(n, 1, s, s)
    y = ada_augment(x, 0.5, _gen(11), "b")
    unchanged = ((y - x).flatten(1).abs().amax(1) < 1e-5).float().mean().item()
    # P(op fires and changes the image): flip 0.5 * 1/2, quarter turn 0.5 * 3/4, shift
    # 0.5 * (1 - P(both axes round to 0) = 1 - 1/4) for shifts uniform in [-1, 1] pixel
    want = (1 - 0.5 * 0.5) * (1 - 0.5 * 0.75) * (1 - 0.5 * 0.75)
    assert abs(unchanged - want) < 0.02, (unchanged, want)


def test_geometric_identity_fraction_and_rotation_probability():
    n = 4000
    g = geometric_matrix(n, 8, 8, 0.5, _gen(12), blit=False, geom=True)
    identity = (g == torch.eye(3)).flatten(1).all(1).float().mean().item()
    p_rot = 1 - math.sqrt(0.5)
    want = 0.5 ** 3 * (1 - p_rot) ** 2  # scale, aniso, translation fire with 0.5; rotations p_rot
    assert abs(identity - want) < 0.02, (identity, want)


def test_color_half_p_fires_each_op_about_half_the_time():
    c = color_matrix(4000, 1, 0.5, _gen(13))
    contrast = (c[:, 0, 0] != 1).float().mean().item()
    brightness = (c[:, 0, 3] != 0).float().mean().item()
    assert abs(contrast - 0.5) < 0.04 and abs(brightness - 0.5) < 0.04


def test_brightness_contrast_matrix_matches_hand_computation():
    n = 5
    c = color_matrix(n, 1, 1.0, _gen(21))
    # replay the draws: brightness value, its gate, contrast value, its gate (p=1: all fire)
    g = _gen(21)
    b = torch.randn(n, generator=g) * 0.2
    torch.rand(n, generator=g)
    s = torch.exp2(torch.randn(n, generator=g) * 0.5)
    want = torch.eye(4).repeat(n, 1, 1)
    for k in range(n):  # x -> s * (x + b)
        want[k, :3, :3] *= s[k]
        want[k, :3, 3] = s[k] * b[k]
    torch.testing.assert_close(c, want)
    x = _images(n, 1)
    torch.testing.assert_close(apply_color(x, c), s.view(n, 1, 1, 1) * (x + b.view(n, 1, 1, 1)))


def test_rgb_color_matrix_keeps_the_luma_axis():
    n = 64
    c = color_matrix(n, 3, 1.0, _gen(22))
    m = c[:, :3, :3]
    gray = torch.ones(3) / math.sqrt(3)
    out = m @ gray  # hue rotation and saturation keep gray; luma flip negates it; contrast scales
    scale = out @ gray
    torch.testing.assert_close(out, scale.unsqueeze(1) * gray, atol=1e-5, rtol=0)
    assert (scale < 0).any() and (scale > 0).any()  # luma flip fired for some samples
    # chroma is changed (hue/saturation): the matrices are not scalar multiples of I
    assert ((m - scale.view(n, 1, 1) * torch.eye(3)).abs().amax((1, 2)) > 1e-3).all()


def test_gradients_flow_to_the_images():
    for ch in (1, 3):
        x = _images(4, ch).requires_grad_()
        ada_augment(x, 1.0, _gen(31)).pow(2).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- AdaController -------------------------------------------------------------------------


def test_controller_raises_p_by_the_exact_step():
    ctl = AdaController(target=0.6, interval=4, speed_kimg=0.5)
    step = 16 * 4 / (0.5 * 1000)
    prev = ctl.p
    for i in range(1, 13):
        ctl.accumulate(torch.full((16, 1), 3.0))
        ctl.step(16)
        if i % 4 == 0:
            assert ctl.p - prev == pytest.approx(step, abs=1e-12)
            assert ctl.rt == 1.0
            prev = ctl.p
        else:
            assert ctl.p == prev
    assert ctl.p == pytest.approx(3 * step)


def test_controller_clamps_at_0_and_1():
    ctl = AdaController(interval=1, speed_kimg=0.01)
    for _ in range(5):
        ctl.accumulate(-torch.ones(8))
        ctl.step(8)
    assert ctl.p == 0.0 and ctl.rt == -1.0
    for _ in range(5):
        ctl.accumulate(torch.ones(8))
        ctl.step(8)
    assert ctl.p == 1.0


def test_controller_mixed_signs_and_no_logits():
    ctl = AdaController(target=0.6, interval=2, speed_kimg=1.0, p=0.5)
    ctl.accumulate(torch.tensor([1.0, 1.0, -1.0, 1.0]))
    ctl.step(4)
    ctl.accumulate(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    ctl.step(4)  # r_t = (2 + 0) / 8 = 0.25 < 0.6: p drops by 4 * 2 / 1000
    assert ctl.rt == 0.25 and ctl.p == pytest.approx(0.5 - 0.008)
    p = ctl.p
    ctl.step(4)
    ctl.step(4)  # nothing accumulated: no adjustment
    assert ctl.p == p


def test_controller_state_dict_round_trip():
    a = AdaController(target=0.6, interval=3, speed_kimg=0.2)
    logits = torch.linspace(-0.1, 2, 10)  # r_t = 0.8
    for i in range(7):  # p = 0.3 after 6 steps, then one pending step of negative logits
        a.accumulate(logits if i < 6 else -logits)
        a.step(10)
    sd = a.state_dict()
    assert all(type(v) in (int, float) for v in sd.values())
    b = AdaController(target=0.6, interval=3, speed_kimg=0.2)
    b.load_state_dict(sd)
    assert b.p == a.p and b.rt == a.rt and b.state_dict() == sd
    ps = []
    for _ in range(8):
        for ctl in (a, b):
            ctl.accumulate(logits)
            ctl.step(10)
        assert a.p == b.p and a.rt == b.rt
        ps.append(a.p)
    # the pending negative step counts: r_t = (-8 + 8 + 8) / 30 < 0.6, so p goes 0.3 -> 0.15,
    # then up by 0.15 per interval (r_t = 0.8)
    assert ps[1] == pytest.approx(0.15) and ps[-1] == pytest.approx(0.45)


@pytest.mark.parametrize("kwargs", [{"target": 0.0}, {"target": 1.0}, {"interval": 0},
                                    {"speed_kimg": 0.0}, {"p": -0.1}])
def test_controller_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        AdaController(**kwargs)


def test_controller_reduce_sums_the_statistics_of_every_process():
    ctl = AdaController(target=0.6, interval=1, speed_kimg=1.0, p=0.5)
    ctl.accumulate(torch.ones(4))  # this rank: D sure every real is real
    # the other rank saw 4 reals D called fake: r_t over both is 0, below the target
    ctl.step(8, reduce=lambda s: s + torch.tensor([-4.0, 4.0]))
    assert ctl.rt == 0.0 and ctl.p == pytest.approx(0.5 - 8 / 1000)
