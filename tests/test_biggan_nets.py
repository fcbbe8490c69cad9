"""BigGAN nets (ganforge.nets.biggan): tiny CPU checks, resolution 32, widths <= 32."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganforge.config import ModelConfig
from ganforge.nets import NETS, build_nets
from ganforge.nets import biggan as bg
from ganforge.nets.layers import has_spectral_norm, pack

R, C, Z, BASE, CMAX, K, N = 32, 3, 17, 512, 32, 3, 4


def model_cfg(**over) -> ModelConfig:
    kw = dict(arch="biggan", latent_dim=Z, g_channel_base=BASE, g_channel_max=CMAX,
              d_channel_base=BASE, d_channel_max=CMAX, shared_dim=8, resolution=R, channels=C)
    kw.update(over)
    return ModelConfig(**kw)


def make_g(k: int = 0, attention: int = 0, z: int = Z) -> bg.Generator:
    torch.manual_seed(0)
    return bg.Generator(z, R, C, BASE, CMAX, k, 8, attention)


def make_d(k: int = 0, cond: str = "none", attention: int = 0, **kw) -> bg.Discriminator:
    torch.manual_seed(1)
    return bg.Discriminator(R, C, BASE, CMAX, k, cond, attention=attention, **kw)


def labels() -> torch.Tensor:
    return torch.tensor([0, 1, 2, 0])


@pytest.mark.parametrize("k", [0, K])
def test_shapes(k):
    g, d = make_g(k), make_d(k, "projection" if k else "none")
    torch.manual_seed(2)
    z = torch.randn(N, Z)
    c = labels() if k else None
    img = g(z, c)
    assert img.shape == (N, C, R, R) and torch.isfinite(img).all()
    assert img.abs().max() <= 1.0 and img.std() > 1e-3  # tanh range, not constant
    out = d(img, c)
    assert out.shape == (N,) and torch.isfinite(out).all()
    assert g.latent_dim == Z and g.num_classes == k
    assert all(m.shape[1] <= CMAX for m in g.parameters() if m.dim() == 4)
    if k:
        assert g.shared.weight.shape == (K, 8)
        assert g.blocks[0].b1.gain.in_features == 8 + g.z_chunks[1]
        with pytest.raises(ValueError):
            g(z)
        with pytest.raises(ValueError):
            d(img)
        # the label matters in G and in D
        with torch.no_grad():
            g.eval()
            other = g(z, (c + 1) % K)
            assert not torch.allclose(other, g(z, c))
            assert not torch.allclose(d(img, c), d(img, (c + 1) % K))
    else:
        assert g.shared is None
        assert g.blocks[0].b1.gain.in_features == g.z_chunks[1]


def test_resolutions_and_conds():
    for bad in (16, 48, 1024):
        with pytest.raises(ValueError, match="32..512"):
            bg.check_resolution(bad)
    assert bg.check_resolution(512) == 9
    with pytest.raises(ValueError, match="none, aux or projection"):
        make_d(K, "concat")
    with pytest.raises(ValueError):
        make_d(0, "projection")  # conditional D without classes
    d = make_d(K, "aux")
    logits, cls = d(torch.randn(N, C, R, R), with_aux=True)
    assert logits.shape == (N,) and cls.shape == (N, K)
    assert len(make_g().blocks) == 3 and len(make_d().blocks) == 3  # 4->32; 32->4 (+ last)


def test_hierarchical_z():
    assert bg.z_chunks(17, 3) == [5, 4, 4, 4]  # remainder to the first chunk
    assert bg.z_chunks(16, 3) == [4, 4, 4, 4]
    assert sum(bg.z_chunks(130, 5)) == 130
    g = make_g(K).eval()
    assert g.z_chunks == [5, 4, 4, 4] and sum(g.z_chunks) == Z
    assert g.linear.in_features == 5
    with pytest.raises(ValueError, match=">= 4"):
        make_g(z=3)
    make_g(z=4)  # the smallest latent works
    with pytest.raises(ValueError):
        g(torch.randn(N, Z + 1), labels())
    torch.manual_seed(3)
    z = torch.randn(N, Z)
    z2 = z.clone()
    z2[:, -4:] = torch.randn(N, 4)  # only the last chunk
    with torch.no_grad():
        a, b = g(z, labels()), g(z2, labels())
        assert (a - b).abs().max() > 1e-4
        # the last chunk reaches the output only through the last block's cBN
        for bn in (g.blocks[-1].b1, g.blocks[-1].b2):
            bn.gain.weight[:, -4:] = 0
            bn.bias.weight[:, -4:] = 0
        assert torch.allclose(g(z, labels()), g(z2, labels()))


def test_attention():
    g, d = make_g(K, attention=16), make_d(K, "projection", attention=16)
    assert bg.attention_resolutions(R) == [8, 16]
    assert g.attn_index == 1 and d.attn_index == 0
    assert isinstance(g.attention, bg.SelfAttention) and isinstance(d.attention, bg.SelfAttention)
    assert g.attention.gamma.item() == 0.0 and d.attention.gamma.item() == 0.0
    assert g.attention.theta.out_channels == 4 and g.attention.g.out_channels == 16
    assert make_g().attention is None and make_d().attention is None
    # it runs on 16x16 feature maps in both nets
    seen = []
    hooks = [m.attention.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
             for m in (g, d)]
    with torch.no_grad():
        d(g(torch.randn(N, Z), labels()), labels())
    for h in hooks:
        h.remove()
    assert seen == [(16, 16), (16, 16)]
    for bad in (4, 12, 32, 64):
        with pytest.raises(ValueError, match="8, 16"):
            make_g(attention=bad)
        with pytest.raises(ValueError, match="8, 16"):
            make_d(attention=bad)
    # gamma != 0 makes the block act: residual x + gamma * o
    torch.manual_seed(4)
    att = bg.SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(att(x), x)
    with torch.no_grad():
        att.gamma.fill_(1.0)
    assert att(x).shape == x.shape and not torch.allclose(att(x), x)


def test_init():
    g = make_g(K)
    w = g.linear.weight  # [16*32, 5]: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(w.shape[1]), atol=1e-4)
    assert torch.count_nonzero(g.linear.bias) == 0 and torch.count_nonzero(g.out.bias) == 0
    assert g.blocks[0].b1.gain.bias is None


def test_build_nets_spectral_norm():
    assert NETS["biggan"] is bg.build
    cfg = model_cfg(num_classes=K, g_cond="cbn", d_cond="projection", spectral_norm="both",
                    attention=16)
    g, d = build_nets(cfg)
    assert isinstance(g, bg.Generator) and isinstance(d, bg.Discriminator)
    assert g.attention is not None and d.attention is not None
    assert not has_spectral_norm(g.shared)
    for m in (g.linear, g.out, g.blocks[0].c1, g.blocks[0].c_sc, g.blocks[0].b1.gain,
              g.blocks[-1].b2.bias, g.attention.theta, g.attention.o):
        assert has_spectral_norm(m)
    for m in (d.blocks[0].c1, d.last.c2, d.head.linear, d.head.embed, d.attention.phi):
        assert has_spectral_norm(m)
    img = g(torch.randn(N, Z), labels())
    assert img.shape == (N, C, R, R) and d(img, labels()).shape == (N,)
    # shared_dim comes from the config; concat is not a BigGAN G (it would build this same net)
    g2, _ = bg.build(model_cfg(num_classes=K, g_cond="cbn", shared_dim=6))
    assert g2.shared.weight.shape == (K, 6)
    with pytest.raises(ValueError, match="g_cond='concat'"):
        bg.build(model_cfg(num_classes=K, g_cond="concat"))
    g3, _ = bg.build(model_cfg(num_classes=K))  # g_cond none: unconditional
    assert g3.shared is None and g3(torch.randn(N, Z)).shape == (N, C, R, R)
    with pytest.raises(ValueError):
        bg.build(model_cfg(g_cond="cbn"))  # no classes
    with pytest.raises(ValueError):
        bg.build(model_cfg(attention=32))


def test_adam_step_hinge():
    g, d = make_g(K, attention=16), make_d(K, "projection", attention=16)
    opt_g = torch.optim.Adam(g.parameters(), 1e-3, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 1e-3, betas=(0.0, 0.999))
    torch.manual_seed(5)
    real, z, c = torch.rand(N, C, R, R) * 2 - 1, torch.randn(N, Z), labels()
    g0 = {k: v.clone() for k, v in g.state_dict().items()}
    d0 = {k: v.clone() for k, v in d.state_dict().items()}
    # D step
    loss_d = F.relu(1 - d(real, c)).mean() + F.relu(1 + d(g(z, c).detach(), c)).mean()
    opt_d.zero_grad()
    loss_d.backward()
    assert d.head.embed.weight.grad.abs().sum() > 0 and d.attention.gamma.grad is not None
    opt_d.step()
    # G step
    loss_g = -d(g(z, c), c).mean()
    opt_g.zero_grad()
    loss_g.backward()
    for p in (g.shared.weight, g.blocks[0].b1.gain.weight, g.blocks[-1].b2.bias.weight,
              g.linear.weight, g.attention.gamma):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert g.shared.weight.grad[:K].abs().sum(dim=1).gt(0).all()  # every used class
    opt_g.step()
    for name in ("linear.weight", "shared.weight", "blocks.0.b1.gain.weight",
                 "blocks.2.b2.bias.weight", "out.weight", "attention.gamma"):
        assert not torch.equal(g0[name], g.state_dict()[name]), name
    for name in ("blocks.0.c1.weight", "last.c2.weight", "head.linear.weight",
                 "head.embed.weight", "attention.gamma"):
        assert not torch.equal(d0[name], d.state_dict()[name]), name


def test_state_dict_round_trip(tmp_path):
    cfg = model_cfg(num_classes=K, g_cond="cbn", d_cond="projection", spectral_norm="both",
                    attention=8, mbstd=2)
    torch.manual_seed(6)
    g, d = build_nets(cfg)
    z, c = torch.randn(N, Z), labels()
    with torch.no_grad():
        g.attention.gamma.fill_(0.5)
        d.attention.gamma.fill_(0.5)
        d(g(z, c), c)  # train mode: BN running stats and spectral-norm vectors move
    torch.save({"g": g.state_dict(), "d": d.state_dict()}, tmp_path / "nets.pt")
    torch.manual_seed(7)
    g2, d2 = build_nets(cfg)
    state = torch.load(tmp_path / "nets.pt")
    g2.load_state_dict(state["g"])
    d2.load_state_dict(state["d"])
    for net in (g, d, g2, d2):
        net.eval()
    with torch.no_grad():
        img, img2 = g(z, c), g2(z, c)
        assert torch.equal(img, img2)
        assert torch.equal(d(img, c), d2(img2, c))
        # the fresh net really differed before loading
        g3, _ = build_nets(cfg)
        assert not torch.allclose(g3.eval()(z, c), img)


def test_pack():
    d = make_d(pack=2)
    x = torch.randn(N, C, R, R)
    out = d(pack(x, 2))
    assert d.blocks[0].c1.in_channels == 2 * C
    assert out.shape == (N // 2,) and torch.isfinite(out).all()
    with pytest.raises(RuntimeError):
        d(x)  # unpacked input has the wrong channel count
    with pytest.raises(ValueError):
        make_d(K, "projection", pack=2)
    _, d2 = bg.build(model_cfg(pack=2, mbstd=2))
    assert d2.mbstd is not None and d2(pack(x, 2)).shape == (N // 2,)
