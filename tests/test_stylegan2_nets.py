"""StyleGAN2 nets (ganforge.nets.stylegan2): tiny CPU checks, resolution 32, widths <= 32."""

from __future__ import annotations

import pytest
import torch

from ganforge.nets import stylegan2 as sg
from ganforge.options import build_config

R, C, Z, BASE, CMAX = 32, 3, 16, 512, 32


def make_g(num_classes: int = 0, mapping_layers: int = 2) -> sg.Generator:
    torch.manual_seed(0)
    return sg.Generator(Z, Z, R, C, BASE, CMAX, num_classes, mapping_layers)


def make_d(num_classes: int = 0, cond: str = "none", group: int = 4) -> sg.Discriminator:
    torch.manual_seed(1)
    return sg.Discriminator(R, C, BASE, CMAX, num_classes, cond, group)


@pytest.mark.parametrize("k", [0, 3])
def test_shapes(k):
    g, d = make_g(k), make_d(k, "projection" if k else "none")
    z = torch.randn(4, Z)
    c = torch.tensor([0, 1, 2, 0]) if k else None
    img, ws = g(z, c, return_ws=True)
    assert img.shape == (4, C, R, R) and torch.isfinite(img).all()
    assert g.num_ws == 8 and ws.shape == (4, g.num_ws, Z)
    assert g.synthesis(ws).shape == (4, C, R, R)
    out = d(img, c)
    assert out.shape == (4,) and torch.isfinite(out).all()
    if k:
        with pytest.raises(ValueError):
            g(z)
        with pytest.raises(ValueError):
            d(img)


def test_truncation():
    g = make_g().eval()
    z = torch.randn(3, Z)
    with torch.no_grad():
        same = g(z, truncation_psi=0.0, noise_mode="const")
        diff = g(z, truncation_psi=1.0, noise_mode="const")
    assert torch.allclose(same[0], same[1]) and torch.allclose(same[0], same[2])
    assert not torch.allclose(diff[0], diff[1])


def test_w_avg_tracking():
    g = make_g()
    z = torch.randn(4, Z)
    before = g.mapping_net.w_avg.clone()
    g.train()
    g.mapping(z)
    moved = g.mapping_net.w_avg.clone()
    assert not torch.equal(before, moved)
    g.eval()
    g.mapping(z)
    assert torch.equal(moved, g.mapping_net.w_avg)
    assert "mapping_net.w_avg" in dict(g.named_buffers())


def test_style_mixing():
    g = make_g().eval()
    z1, z2 = torch.randn(2, Z), torch.randn(2, Z)
    mid = g.num_ws // 2
    with torch.no_grad():
        mixed = g.style_mix(z1, z2, mid, noise_mode="const")
        ws = torch.cat([g.mapping(z1)[:, :mid], g.mapping(z2)[:, mid:]], dim=1)
        ref = g.synthesis(ws, noise_mode="const")
        pure = g.synthesis(g.mapping(z1), noise_mode="const")
    assert torch.allclose(mixed, ref, atol=1e-6)
    assert not torch.allclose(mixed, pure)
    with pytest.raises(ValueError):
        g.style_mix(z1, z2, g.num_ws + 1)


def test_demodulation_unit_scale():
    torch.manual_seed(0)
    conv = sg.ModulatedConv2d(32, 32, 3, Z)
    x, w = torch.randn(4, 32, 16, 16), torch.randn(4, Z) * 3
    with torch.no_grad():
        std = conv(x, w).std().item()
        up = sg.ModulatedConv2d(32, 16, 3, Z, up=True)(x, w)
    assert 0.5 < std < 2.0
    assert up.shape == (4, 16, 32, 32)


def test_equalized_lr():
    torch.manual_seed(0)
    lin = sg.EqualLinear(256, 256)
    assert 0.9 < lin.weight.std().item() < 1.1  # stored N(0, 1)
    assert lin.weight_gain == pytest.approx(1 / 16)
    with torch.no_grad():
        assert 0.8 < lin(torch.randn(512, 256)).std().item() < 1.2  # runtime scale
    slow = sg.EqualLinear(256, 8, lr_mul=0.01, bias_init=1.0)
    assert 80 < slow.weight.std().item() < 120 and slow.weight_gain == pytest.approx(0.01 / 16)
    with torch.no_grad():
        assert torch.allclose(slow(torch.zeros(1, 256)), torch.ones(1, 8))
    conv = sg.EqualConv2d(32, 16, 3)
    assert conv.weight_gain == pytest.approx(1 / (32 * 9) ** 0.5)
    with pytest.raises(ValueError):
        sg.EqualLinear(4, 4, activation="relu")


def test_backward_all_params():
    g, d = make_g(3), make_d(3, "projection")
    z, c = torch.randn(4, Z), torch.tensor([0, 1, 2, 1])
    loss = d(g(z, c, noise_mode="random"), c).sum()
    loss.backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name
    assert any("noise_strength" in n for n, _ in g.named_parameters())


@pytest.mark.parametrize("n", [1, 2, 3])
def test_mbstd_small_batch(n):
    d = make_d(group=4)
    out = d(torch.randn(n, C, R, R))
    assert out.shape == (n,) and torch.isfinite(out).all()


@pytest.mark.parametrize("res", [16, 48, 2048])
def test_bad_resolution(res):
    with pytest.raises(ValueError, match="power of two"):
        sg.Generator(Z, Z, res, C, BASE, CMAX)
    with pytest.raises(ValueError, match="power of two"):
        sg.Discriminator(res, C, BASE, CMAX)


def test_bad_noise_mode():
    g = make_g()
    with pytest.raises(ValueError):
        g(torch.randn(1, Z), noise_mode="bogus")


@pytest.mark.parametrize("conds", [("none", "none"), ("concat", "projection")])
def test_build_from_config(conds):
    over = {"latent_dim": Z, "g_channel_base": BASE, "g_channel_max": CMAX,
            "d_channel_base": BASE, "d_channel_max": CMAX,
            "g_cond": conds[0], "d_cond": conds[1]}
    cfg = build_config("stylegan2-small", over).model
    cfg.resolution, cfg.channels = R, C
    cfg.num_classes = 3 if conds[0] != "none" else 0
    torch.manual_seed(0)
    g, d = sg.build(cfg)
    assert isinstance(g, sg.Generator) and isinstance(d, sg.Discriminator)
    assert d.mbstd.group_size == 4  # the preset's group
    cfg.mbstd = 0
    d0 = sg.build(cfg)[1]
    assert d0.mbstd is None and d0.conv.weight.shape[1] == d.conv.weight.shape[1] - 1
    c = torch.tensor([0, 2]) if cfg.num_classes else None
    img = g(torch.randn(2, Z), c)
    assert img.shape == (2, C, R, R) and d(img, c).shape == (2,)
    cfg.d_cond = "aux"
    with pytest.raises(ValueError):
        sg.build(cfg)


@pytest.mark.parametrize("up, demod", [(False, True), (True, True), (False, False)])
def test_unfused_modulated_conv_equals_the_grouped_conv(up, demod):
    torch.manual_seed(0)
    m = sg.ModulatedConv2d(8, 6, 3, 16, demodulate=demod, up=up)
    x, w = torch.randn(4, 8, 8, 8), torch.randn(4, 16)
    unfused = m(x, w)
    m.fused = True
    assert torch.allclose(unfused, m(x, w), atol=1e-5)
