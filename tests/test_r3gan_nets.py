"""R3GAN nets (ganforge.nets.r3gan): tiny CPU checks, widths <= 32, group_channels 8."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import ModelConfig
from ganforge.nets import NETS, build_nets
from ganforge.nets import r3gan as r3
from ganforge.nets.layers import has_spectral_norm

C, Z, BASE, CMAX, GC, K, N = 3, 16, 256, 32, 8, 3, 4


def model_cfg(resolution: int = 32, **over) -> ModelConfig:
    kw = dict(arch="r3gan", latent_dim=Z, g_channel_base=BASE, g_channel_max=CMAX,
              d_channel_base=BASE, d_channel_max=CMAX, blocks=2, group_channels=GC,
              expansion=2, resolution=resolution, channels=C)
    kw.update(over)
    return ModelConfig(**kw)


def labels(n: int = N) -> torch.Tensor:
    return torch.arange(n) % K


def blocks_of(net: torch.nn.Module) -> list[r3.ResidualBlock]:
    return [m for m in net.modules() if isinstance(m, r3.ResidualBlock)]


def test_registered():
    assert NETS["r3gan"] is r3.build


@pytest.mark.parametrize("resolution", [8, 32, 64])
def test_shapes(resolution):
    G, D = build_nets(model_cfg(resolution))
    assert not has_spectral_norm(G) and not has_spectral_norm(D)  # R3GAN needs none
    img = G(torch.randn(N, Z))
    assert img.shape == (N, C, resolution, resolution) and torch.isfinite(img).all()
    assert img.std() > 1e-3  # not constant (linear output: no tanh, range is learned)
    out = D(img)
    assert out.shape == (N,) and torch.isfinite(out).all()
    stages = int(math.log2(resolution)) - 1  # 4, 8, .., R
    assert len(G.stages) == len(D.stages) == stages
    assert len(blocks_of(G)) == len(blocks_of(D)) == 2 * stages
    with pytest.raises(ValueError):
        D(img, with_aux=True)


def test_conditional_shapes_and_labels_matter():
    G, D = build_nets(model_cfg(32, num_classes=K, g_cond="concat", d_cond="projection"))
    z, c = torch.randn(N, Z), labels()
    img = G(z, c)
    assert img.shape == (N, C, 32, 32)
    assert G.stages[0][0].linear.in_features == 2 * Z  # [z, embed(c)], embed dim = latent
    out = D(img, c)
    assert out.shape == (N,) and torch.isfinite(out).all()
    with torch.no_grad():
        assert not torch.allclose(G(z, c), G(z, (c + 1) % K))
        assert not torch.allclose(D(img, c), D(img, (c + 1) % K))
    with pytest.raises(ValueError):
        G(z)
    with pytest.raises(ValueError):
        D(img)


@pytest.mark.parametrize("over", [dict(g_cond="cbn"), dict(d_cond="concat"), dict(d_cond="aux"),
                                  dict(resolution=48), dict(resolution=4),
                                  dict(group_channels=7), dict(blocks=0),
                                  dict(d_cond="projection", pack=2),
                                  dict(spectral_norm="d"), dict(spectral_norm="both")])
def test_unsupported_raises_value_error(over):
    over = {"num_classes": K, **over}
    with pytest.raises(ValueError):
        build_nets(model_cfg(**over))


def test_residual_branches_start_at_zero_and_blocks_are_identity():
    G, D = build_nets(model_cfg(32))
    for block in blocks_of(G) + blocks_of(D):
        assert torch.count_nonzero(block.conv3.weight) == 0
        assert block.conv1.weight.std() > 0 and block.conv2.weight.std() > 0
        w = block.conv1.in_channels
        x = torch.randn(2, w, 4, 4)
        with torch.no_grad():
            assert torch.equal(block(x), x)
    # MSR init of the branch's first conv: std = gain * L^(-1/4) / sqrt(fan_in)
    block, L = blocks_of(G)[0], len(blocks_of(G))
    want = r3.LRELU_GAIN * L ** -0.25 / math.sqrt(block.conv1.in_channels)
    assert block.conv1.weight.std().item() == pytest.approx(want, rel=0.15)


def test_grouped_convs_have_the_configured_groups():
    G, D = build_nets(model_cfg(32))
    for block in blocks_of(G) + blocks_of(D):
        hidden = block.conv1.out_channels
        assert block.conv2.groups == block.groups == hidden // GC
        assert block.conv2.in_channels // block.conv2.groups == GC
        assert block.conv2.kernel_size == (3, 3) and block.conv1.kernel_size == (1, 1)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm,
                                  torch.nn.InstanceNorm2d, torch.nn.LayerNorm))
                   for net in (G, D) for m in net.modules())


def test_resampling_is_bilinear_inside():
    x = torch.randn(2, 3, 8, 8)
    up = r3.Resample(up=True)(x)
    want = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert up.shape == (2, 3, 16, 16)
    assert torch.allclose(up[..., 1:-1, 1:-1], want[..., 1:-1, 1:-1], atol=1e-6)
    down = r3.Resample(up=False)(x)
    assert down.shape == (2, 3, 4, 4)
    k = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8
    assert torch.allclose(down[0, 0, 1, 1], (x[0, 0, 1:5, 1:5] * torch.outer(k, k)).sum())
    assert "kernel" not in r3.Resample(up=True).state_dict()


@pytest.mark.parametrize("cond", [False, True])
def test_one_step_changes_d_then_g(cond):
    k = K if cond else 0
    cfg = model_cfg(16, num_classes=k, g_cond="concat" if cond else "none",
                    d_cond="projection" if cond else "none")
    G, D = build_nets(cfg)
    c = labels(6) if cond else None
    real = torch.randn(6, C, 16, 16).clamp(-1, 1)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.0, 0.9))
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.0, 0.9))
    before_g = {n: p.detach().clone() for n, p in G.named_parameters()}
    before_d = {n: p.detach().clone() for n, p in D.named_parameters()}
    # D step: relativistic pairing loss (the paper's), G untouched
    fake = G(torch.randn(6, Z), c).detach()
    loss_d = F.softplus(-(D(real, c) - D(fake, c))).mean()
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    assert all(torch.equal(p, before_g[n]) for n, p in G.named_parameters())
    changed_d = [n for n, p in D.named_parameters() if not torch.equal(p, before_d[n])]
    # zero-init last convs get a gradient at once, so the branches start to learn
    assert all(f"{n}.conv3.weight" in changed_d for n, m in D.named_modules()
               if isinstance(m, r3.ResidualBlock))
    assert "from_rgb.weight" in changed_d
    # G step
    loss_g = F.softplus(-(D(G(torch.randn(6, Z), c), c) - D(real, c))).mean()
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    changed_g = [n for n, p in G.named_parameters() if not torch.equal(p, before_g[n])]
    assert "out.weight" in changed_g and "stages.0.0.basis" in changed_g
    assert all(f"{n}.conv3.weight" in changed_g for n, m in G.named_modules()
               if isinstance(m, r3.ResidualBlock))
    if cond:
        assert "label.embed.weight" in changed_g and "embed.weight" in changed_d
