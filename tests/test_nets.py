import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from ganforge.nets import NETS, build_nets
from ganforge.nets.layers import (
    CondBatchNorm,
    DHead,
    MinibatchStd,
    apply_spectral_norm,
    has_spectral_norm,
    pack,
)
from ganforge.options import build_config

K = 3  # classes of the conditional tests

# (arch, resolution): every family, tiny widths
ARCHS = [("dcgan", 32), ("resnet", 32), ("resnet", 64), ("mlp", 0)]
CONDS = [("concat", "none"), ("cbn", "none"), ("none", "concat"), ("none", "aux"),
         ("none", "projection")]


def model_cfg(arch: str = "dcgan", resolution: int = 32, num_classes: int = 0, **over):
    """A tiny ModelConfig: build_config(...).model with resolution/channels/num_classes set."""
    tiny = {"arch": arch, "g_channel_base": 256, "d_channel_base": 256}
    if arch == "mlp":
        tiny = {"arch": arch, "latent_dim": 8, "hidden": 32, "layers": 2}
    cfg = build_config("dcgan", {**tiny, **over}).model
    cfg.resolution = resolution
    cfg.channels = 2 if arch == "mlp" else 3
    cfg.num_classes = num_classes
    return cfg


def sample_shape(cfg, n: int) -> tuple[int, ...]:
    return (n, cfg.channels) if cfg.arch == "mlp" else (n, cfg.channels, cfg.resolution,
                                                         cfg.resolution)


def labels(n: int) -> torch.Tensor:
    return torch.arange(n) % K


def perturb_label_tables(*nets: nn.Module) -> None:
    """CBN starts at gamma=1, beta=0 for every class: move the tables so labels matter."""
    with torch.no_grad():
        for net in nets:
            for m in net.modules():
                if isinstance(m, nn.Embedding):
                    m.weight.normal_()


# ------------------------------------------------------------------------------------------
# DCGAN, the seed net


@pytest.mark.parametrize("resolution", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_dcgan_shapes(resolution, channels):
    cfg = build_config("dcgan", ["g_channel_base=1024", "d_channel_base=1024"]).model
    cfg.resolution, cfg.channels = resolution, channels
    G, D = build_nets(cfg)
    z = torch.randn(3, cfg.latent_dim)
    x = G(z)
    assert x.shape == (3, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert D(x).shape == (3,)


def test_dcgan_32_is_the_seed_net():
    cfg = build_config().model
    cfg.resolution, cfg.channels = 32, 3
    G, D = build_nets(cfg)
    convs = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (100, 512), (512, 256), (256, 128), (128, 3)]
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(3, 128), (128, 256), (256, 512)]
    assert D.features(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)
    # the seed's final Conv2d(512, 1, 4, 1, 0, bias=False) is now a linear over 512x4x4
    linears = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias) for m in linears] == [(512 * 16, 1, None)]
    # the seed's parameter counts
    assert sum(p.numel() for p in G.parameters()) == 3_448_576
    assert sum(p.numel() for p in D.parameters()) == 2_637_312
    # N(0, 0.02) init
    assert abs(convs[1].weight.std().item() - 0.02) < 0.002
    assert abs(linears[0].weight.std().item() - 0.02) < 0.002


def test_dcgan_head_is_the_seed_4x4_conv():
    cfg = build_config().model
    cfg.resolution, cfg.channels = 32, 3
    _, D = build_nets(cfg)
    D.eval()
    conv = nn.Conv2d(512, 1, 4, 1, 0, bias=False)
    conv.weight.data.copy_(D.head.linear.weight.view(1, 512, 4, 4))
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(D(x), conv(D.features(x)).view(-1), atol=1e-5)


def test_dcgan_norm_d():
    _, D = build_nets(model_cfg("dcgan"))
    assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    _, D = build_nets(model_cfg("dcgan", norm_d=False))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in D.modules())
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].bias is None and all(m.bias is not None for m in convs[1:])
    assert D(torch.randn(3, 3, 32, 32)).shape == (3,)


# ------------------------------------------------------------------------------------------
# every family


def test_registry():
    assert {"dcgan", "resnet", "mlp"} <= set(NETS)


@pytest.mark.parametrize("arch,resolution", ARCHS)
def test_shapes(arch, resolution):
    cfg = model_cfg(arch, resolution)
    G, D = build_nets(cfg)
    x = G(torch.randn(4, cfg.latent_dim))
    assert x.shape == sample_shape(cfg, 4)
    if arch != "mlp":
        assert x.min() >= -1 and x.max() <= 1
    logits = D(x)
    assert logits.shape == (4,) and logits.dtype == torch.float32


def test_resnet_structure():
    cfg = model_cfg("resnet", 64)
    G, D = build_nets(cfg)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) for m in D.modules())
    assert len(G.blocks) == 4  # 4 -> 8 -> 16 -> 32 -> 64
    h = D.blocks(torch.zeros(1, 3, 64, 64))
    assert h.shape == (1, 64, 4, 4)  # width at 4x4 = 256 // 4


@pytest.mark.parametrize("g_cond,d_cond", CONDS)
@pytest.mark.parametrize("arch,resolution", ARCHS)
def test_conditioning(arch, resolution, g_cond, d_cond):
    cfg = model_cfg(arch, resolution, K, g_cond=g_cond, d_cond=d_cond)
    G, D = build_nets(cfg)
    perturb_label_tables(G, D)
    G.eval(), D.eval()
    n = 6
    z = torch.randn(n, cfg.latent_dim)
    c1, c2 = labels(n), (labels(n) + 1) % K
    x1, x2 = G(z, c1), G(z, c2)
    assert x1.shape == sample_shape(cfg, n)
    assert (g_cond == "none") == torch.equal(x1, x2)
    if d_cond == "aux":
        logits, cls = D(x1, c1, with_aux=True)
        assert logits.shape == (n,) and cls.shape == (n, K)
        assert torch.equal(D(x1, c1), logits)
    else:
        l1, l2 = D(x1, c1), D(x1, c2)
        assert l1.shape == (n,)
        assert (d_cond == "none") == torch.equal(l1, l2)
        with pytest.raises(ValueError, match="aux"):
            D(x1, c1, with_aux=True)
    if g_cond != "none":
        with pytest.raises(ValueError, match="labels"):
            G(z)
    if d_cond in ("concat", "projection"):
        with pytest.raises(ValueError, match="labels"):
            D(x1)


@pytest.mark.parametrize("over", [{"g_cond": "cbn"}, {"d_cond": "projection"}])
def test_conditioning_needs_classes(over):
    with pytest.raises(ValueError, match="num_classes"):
        build_nets(model_cfg("resnet", 32, 0, **over))


def test_build_nets_needs_resolution_except_for_vectors():
    with pytest.raises(ValueError, match="resolution"):
        build_nets(model_cfg("dcgan", 0))
    with pytest.raises(ValueError, match="resolution"):
        build_nets(model_cfg("resnet", 0))
    build_nets(model_cfg("mlp", 0))


@pytest.mark.parametrize("arch,resolution", ARCHS)
def test_spectral_norm(arch, resolution):
    cfg = model_cfg(arch, resolution, K, g_cond="cbn", d_cond="projection", spectral_norm="both")
    G, D = build_nets(cfg)
    assert has_spectral_norm(G) and has_spectral_norm(D)
    weighted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for net in (G, D):
        for m in net.modules():
            if isinstance(m, weighted):
                assert parametrize.is_parametrized(m, "weight"), m
    assert parametrize.is_parametrized(D.head.embed, "weight")  # projection embedding: SN
    for m in G.modules():  # CBN gamma/beta: no SN
        if isinstance(m, CondBatchNorm):
            assert not parametrize.is_parametrized(m.gamma, "weight")
    x = G(torch.randn(4, cfg.latent_dim), labels(4))
    assert D(x, labels(4)).shape == (4,)
    # spectral_norm=d leaves G alone; applying twice is a no-op
    cfg.spectral_norm = "d"
    G, D = build_nets(cfg)
    assert not has_spectral_norm(G) and has_spectral_norm(D)
    n = sum(1 for _ in D.parameters())
    apply_spectral_norm(D)
    assert sum(1 for _ in D.parameters()) == n


def test_spectral_norm_bounds_the_weight():
    lin = apply_spectral_norm(nn.Linear(16, 8))
    for _ in range(20):
        lin(torch.randn(2, 16))  # power iterations in train mode
    assert torch.linalg.matrix_norm(lin.weight, ord=2).item() == pytest.approx(1.0, abs=1e-2)


def test_minibatch_std_layer():
    layer = MinibatchStd(4)
    assert [layer.group(n) for n in (1, 2, 4, 5, 6, 8, 12)] == [1, 2, 4, 5, 2, 4, 4]
    x = torch.randn(8, 3, 5, 5)
    y = layer(x)
    assert y.shape == (8, 4, 5, 5) and torch.equal(y[:, :3], x)
    # group m holds samples m, m + 2, m + 4, m + 6 (StyleGAN's layout)
    want = x[0::2].std(dim=0, unbiased=False).mean()
    assert torch.allclose(y[0, 3], want.expand(5, 5), atol=1e-5)
    assert torch.allclose(y[2, 3], want.expand(5, 5), atol=1e-5)
    v = torch.randn(5, 7)
    assert layer(v).shape == (5, 8)  # 5 not divisible by 4: the whole batch is the group
    assert torch.allclose(layer(v)[:, 7], v.std(dim=0, unbiased=False).mean().expand(5),
                          atol=1e-5)
    assert layer(torch.randn(1, 3))[0, 3].item() == pytest.approx(0.0, abs=1e-3)  # sqrt(eps)


@pytest.mark.parametrize("arch,resolution", ARCHS)
def test_mbstd(arch, resolution):
    cfg = model_cfg(arch, resolution)
    _, D0 = build_nets(cfg)
    cfg.mbstd = 4
    _, D = build_nets(cfg)
    D0.eval(), D.eval()  # eval: no BatchNorm batch statistics, samples are independent but mbstd
    x = torch.randn(*sample_shape(cfg, 8))
    x2 = x.clone()
    x2[2] = torch.randn_like(x2[2]) * 3  # sample 2 shares sample 0's group (0, 2, 4, 6)
    assert torch.equal(D0(x)[0], D0(x2)[0])
    assert not torch.allclose(D(x)[0], D(x2)[0])
    for n in (1, 5, 6, 8):  # batch sizes the group size does not divide
        assert D(torch.randn(*sample_shape(cfg, n))).shape == (n,)


def test_pack_layout():
    x = torch.randn(6, 3, 4, 4)
    p = pack(x, 2)
    assert p.shape == (3, 6, 4, 4)
    assert torch.equal(p[1, :3], x[2]) and torch.equal(p[1, 3:], x[3])
    v = torch.randn(6, 2)
    assert torch.equal(pack(v, 3)[1], torch.cat([v[3], v[4], v[5]]))
    assert pack(x, 1) is x
    with pytest.raises(ValueError):
        pack(torch.randn(5, 2), 2)


@pytest.mark.parametrize("arch,resolution", ARCHS)
def test_pack(arch, resolution):
    cfg = model_cfg(arch, resolution, pack=2)
    G, D = build_nets(cfg)
    x = G(torch.randn(6, cfg.latent_dim))
    assert D(pack(x, 2)).shape == (3,)
    with pytest.raises(RuntimeError):
        D(x)  # unpacked input has the wrong number of channels / features


ROUNDTRIP = [("dcgan", 32, {"g_cond": "concat", "d_cond": "projection", "spectral_norm": "d"}),
             ("resnet", 32, {"g_cond": "cbn", "d_cond": "aux", "spectral_norm": "both"}),
             ("resnet", 64, {"mbstd": 2}),
             ("mlp", 0, {"g_cond": "cbn", "d_cond": "concat", "mbstd": 2})]


@pytest.mark.parametrize("arch,resolution,over", ROUNDTRIP)
def test_save_load_roundtrip(arch, resolution, over, tmp_path):
    k = K if over.get("g_cond", "none") != "none" or over.get("d_cond", "none") != "none" else 0
    cfg = model_cfg(arch, resolution, k, **over)
    G, D = build_nets(cfg)
    perturb_label_tables(G, D)
    z, c = torch.randn(4, cfg.latent_dim), labels(4) if k else None
    D(G(z, c), c)  # train-mode pass: BatchNorm running stats and SN vectors move
    for name, net in (("G", G), ("D", D)):
        save_file(net.state_dict(), str(tmp_path / f"{name}.safetensors"))
    torch.manual_seed(123)
    G2, D2 = build_nets(cfg)
    G2.load_state_dict(load_file(str(tmp_path / "G.safetensors")))
    D2.load_state_dict(load_file(str(tmp_path / "D.safetensors")))
    for net in (G, D, G2, D2):
        net.eval()
    x, x2 = G(z, c), G2(z, c)
    assert torch.equal(x, x2)
    assert torch.equal(D(x, c), D2(x, c))


STEP = [("resnet", 32, {}),
        ("resnet", 32, {"g_cond": "cbn", "d_cond": "projection", "spectral_norm": "d", "mbstd": 2}),
        ("mlp", 0, {}),
        ("mlp", 0, {"g_cond": "concat", "d_cond": "aux", "mbstd": 2}),
        ("mlp", 0, {"g_cond": "cbn", "d_cond": "concat", "spectral_norm": "both"})]


@pytest.mark.parametrize("arch,resolution,over", STEP)
def test_one_adam_step_changes_every_parameter(arch, resolution, over):
    k = K if over.get("g_cond", "none") != "none" or over.get("d_cond", "none") != "none" else 0
    cfg = model_cfg(arch, resolution, k, **over)
    G, D = build_nets(cfg)
    opt_g = torch.optim.Adam(G.parameters(), lr=1e-3)
    opt_d = torch.optim.Adam(D.parameters(), lr=1e-3)
    n = 6
    real, c = torch.randn(*sample_shape(cfg, n)).clamp(-1, 1), labels(n) if k else None
    aux = cfg.d_cond == "aux"

    def d_out(x):
        return D(x, c, with_aux=True) if aux else (D(x, c), None)

    before_g = {k: p.detach().clone() for k, p in G.named_parameters()}
    before_d = {k: p.detach().clone() for k, p in D.named_parameters()}
    # D step
    fake = G(torch.randn(n, cfg.latent_dim), c)
    (lr_, cr), (lf, cf) = d_out(real), d_out(fake.detach())
    loss_d = F.softplus(-lr_).mean() + F.softplus(lf).mean()
    if aux:
        loss_d = loss_d + F.cross_entropy(cr, c) + F.cross_entropy(cf, c)
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()
    # G step
    lf, cf = d_out(G(torch.randn(n, cfg.latent_dim), c))
    loss_g = F.softplus(-lf).mean() + (F.cross_entropy(cf, c) if aux else 0)
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    for net, before in ((G, before_g), (D, before_d)):
        unchanged = [k for k, p in net.named_parameters() if torch.equal(p, before[k])]
        assert not unchanged, unchanged


def test_dhead_modes():
    h, c = torch.randn(4, 10), labels(4)
    assert DHead(10).forward(h).shape == (4,)
    logits, cls = DHead(10, K, "aux")(h, c, with_aux=True)
    assert logits.shape == (4,) and cls.shape == (4, K)
    head = DHead(10, K, "projection", bias=False)
    want = head.linear(h).view(-1) + (head.embed.weight[c] * h).sum(1)
    assert torch.allclose(head(h, c), want)
    with pytest.raises(ValueError):
        DHead(10, 0, "projection")


def test_mixture_latent_turns_a_normal_z_into_equal_narrow_blobs():
    from ganforge.nets.mlp import Generator, MixtureLatent

    prior = MixtureLatent(dim=8, k=5, std=0.1)
    z = torch.randn(50_000, 8, generator=torch.Generator().manual_seed(0))
    y = prior(z)
    near = torch.cdist(y, prior.centers).argmin(1)
    share = torch.bincount(near, minlength=5).double() / len(z)
    assert torch.allclose(share, torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)
    noise = (y - prior.centers[near]) / 0.1  # each blob's own noise is N(0, I)
    assert torch.allclose(noise.std(0), torch.ones(8), atol=0.02)
    assert noise.mean(0).abs().max() < 0.02
    g = Generator(latent_dim=8, channels=2, hidden=16, layers=2, latent_mixture=5)
    assert "prior.centers" in g.state_dict()  # saved with G, so a checkpoint samples alike
    assert g(z[:4]).shape == (4, 2)
