"""Image-to-image nets (ganforge.nets.img2img): shapes, ranges, determinism, gradients, and the
VGG19 content-loss features without the network."""

import pytest
import torch
import torchvision

from ganforge.errors import GanforgeError
from ganforge.nets import img2img
from ganforge.nets.img2img import (
    PatchDiscriminator,
    ResnetGenerator,
    SRGANDiscriminator,
    SRResNet,
    UNetGenerator,
    vgg_features,
)


def _in_range(y: torch.Tensor) -> bool:
    return bool(y.min() >= -1 and y.max() <= 1)


@pytest.mark.parametrize("depth, hw", [(4, (32, 48)), (4, (16, 16)), (3, (8, 24)),
                                       (5, (32, 32))])
def test_unet_shapes_and_range(depth, hw):
    g = UNetGenerator(3, 2, depth, base=8, max_channels=32)
    assert g.size_multiple == 2**depth
    y = g(torch.randn(2, 3, *hw))
    assert y.shape == (2, 2, *hw)
    assert _in_range(y)


def test_unet_widths_capped_and_dropout_placement():
    g = UNetGenerator(1, 1, 5, base=8, max_channels=16, dropout=0.5)
    convs = [m for m in g.down.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 16, 16]
    has_dropout = [any(isinstance(m, torch.nn.Dropout) for m in up.modules()) for up in g.up]
    assert has_dropout == [False, False, True, True, True]  # up[i]: innermost is up[-1]
    g0 = UNetGenerator(1, 1, 5, base=8, dropout=0.0)
    assert not any(isinstance(m, torch.nn.Dropout) for m in g0.modules())
    g3 = UNetGenerator(1, 1, 3, base=8)  # never dropout in the output block
    assert [any(isinstance(m, torch.nn.Dropout) for m in up.modules()) for up in g3.up] == \
        [False, True, True]


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_unet_eval_deterministic_train_noisy(norm):
    g = UNetGenerator(3, 3, 4, base=8, norm=norm)
    x = torch.randn(2, 3, 16, 16)
    g.eval()
    with torch.no_grad():
        assert torch.equal(g(x), g(x))
    g.train()
    with torch.no_grad():
        assert not torch.allclose(g(x), g(x))
    g_nodrop = UNetGenerator(3, 3, 4, base=8, dropout=0.0, norm=norm).train()
    with torch.no_grad():
        assert torch.allclose(g_nodrop(x), g_nodrop(x))


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_unet_skip_path_carries_the_input(depth):
    # with the innermost conv zeroed, the bottleneck holds no information: the output still
    # depends on the input through the skips alone
    g = UNetGenerator(1, 1, depth, base=4, dropout=0.0).eval()
    inner = g.down[-1][1]
    with torch.no_grad():
        inner.weight.zero_()
        inner.bias.zero_()
    x = torch.randn(1, 1, 32, 32, requires_grad=True)
    y = g(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_unet_rejects_bad_input_and_args():
    g = UNetGenerator(1, 1, 4, base=4)
    with pytest.raises(GanforgeError, match="divisible by 16"):
        g(torch.randn(1, 1, 24, 32))
    with pytest.raises(GanforgeError, match="norm="):
        UNetGenerator(1, 1, 4, norm="layer")
    with pytest.raises(GanforgeError, match="depth"):
        UNetGenerator(1, 1, 1)


def test_patch_discriminator_receptive_field_and_map():
    assert PatchDiscriminator(3, base=8).receptive_field == 70
    assert PatchDiscriminator(3, base=8, n_layers=1).receptive_field == 16
    assert PatchDiscriminator(3, base=8, n_layers=2).receptive_field == 34
    assert PatchDiscriminator(3, base=8, n_layers=4).receptive_field == 142
    d = PatchDiscriminator(6, base=8, n_layers=3)
    assert d(torch.randn(2, 6, 32, 32)).shape == (2, 1, 2, 2)
    assert d(torch.randn(2, 6, 32, 64)).shape == (2, 1, 2, 6)
    assert d(torch.randn(2, 6, 256, 256)).shape == (2, 1, 30, 30)  # pix2pix's 30x30 map
    assert d(torch.randn(1, 6, 24, 24)).shape == (1, 1, 1, 1)  # min_size
    d2 = PatchDiscriminator(3, base=8, n_layers=2, norm="instance")
    assert d2(torch.randn(2, 3, 16, 16)).shape == (2, 1, 2, 2)
    assert d2(torch.randn(2, 3, 32, 32)).shape == (2, 1, 6, 6)


def test_patch_discriminator_too_small_is_one_line_error():
    d = PatchDiscriminator(3, base=8, n_layers=3)
    assert d.min_size == 24
    with pytest.raises(GanforgeError, match="smaller than 24x24") as e:
        d(torch.randn(1, 3, 16, 16))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("hw, n_down", [((16, 16), 2), ((32, 24), 2), ((24, 40), 3)])
def test_resnet_generator_shapes_and_range(hw, n_down):
    g = ResnetGenerator(3, 1, base=8, n_blocks=2, n_down=n_down)
    assert g.size_multiple == 2**n_down
    y = g(torch.randn(2, 3, *hw))
    assert y.shape == (2, 1, *hw)
    assert _in_range(y)


def test_resnet_generator_batch_norm_and_bad_size():
    g = ResnetGenerator(1, 3, base=8, n_blocks=1, norm="batch")
    assert g(torch.randn(2, 1, 16, 16)).shape == (2, 3, 16, 16)
    with pytest.raises(GanforgeError, match="divisible by 4"):
        g(torch.randn(2, 1, 18, 16))


@pytest.mark.parametrize("scale", [2, 4, 8])
@pytest.mark.parametrize("hw", [(7, 9), (4, 4)])
def test_srresnet_shapes_and_range(scale, hw):
    g = SRResNet(3, scale=scale, n_blocks=2, n_feats=8)
    y = g(torch.randn(2, 3, *hw))
    assert y.shape == (2, 3, hw[0] * scale, hw[1] * scale)
    assert _in_range(y)


@pytest.mark.parametrize("scale", [1, 3, 16])
def test_srresnet_bad_scale(scale):
    with pytest.raises(GanforgeError, match="scale") as e:
        SRResNet(3, scale=scale)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("hw", [(24, 24), (40, 40), (16, 32)])
def test_srgan_discriminator_logits(hw):
    d = SRGANDiscriminator(3, base=8)
    assert d(torch.randn(3, 3, *hw)).shape == (3,)
    assert SRGANDiscriminator(1, base=4)(torch.randn(2, 1, *hw)).shape == (2,)


NETS = {
    "unet": (lambda: UNetGenerator(2, 3, 4, base=4, max_channels=16), (2, 2, 16, 16)),
    "unet-instance": (lambda: UNetGenerator(2, 3, 3, base=4, norm="instance"), (2, 2, 16, 16)),
    "patch": (lambda: PatchDiscriminator(3, base=4), (2, 3, 32, 32)),
    "patch-instance": (lambda: PatchDiscriminator(3, base=4, n_layers=2, norm="instance"),
                       (2, 3, 16, 16)),
    "resnet": (lambda: ResnetGenerator(3, 3, base=4, n_blocks=2), (2, 3, 16, 16)),
    "resnet-batch": (lambda: ResnetGenerator(3, 3, base=4, n_blocks=1, norm="batch"),
                     (2, 3, 16, 16)),
    "srresnet": (lambda: SRResNet(3, scale=2, n_blocks=2, n_feats=8), (2, 3, 8, 8)),
    "srgan-d": (lambda: SRGANDiscriminator(3, base=4), (2, 3, 24, 24)),
}


@pytest.mark.parametrize("name", list(NETS))
def test_backward_reaches_every_parameter(name):
    build, shape = NETS[name]
    net = build().train()
    out = net(torch.randn(*shape))
    (out * torch.randn_like(out)).sum().backward()  # not out.sum(): BN would cancel that
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


# --- vgg_features ------------------------------------------------------------------------------


def test_vgg_features_missing_weights_is_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        print(f'Downloading: "{args[0]}"')  # as torch.hub does, on stdout
        raise OSError("no network\nsecond line")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    url = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    path = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    with pytest.raises(GanforgeError) as e:
        vgg_features("relu2_2")
    msg = str(e.value)
    assert "\n" not in msg
    assert "VGG19 weights are missing" in msg
    assert url in msg and str(path) in msg
    assert len(calls) == 1  # one download attempt
    assert "Downloading" not in capsys.readouterr().out  # the error line says it all


def test_vgg_features_corrupt_cached_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
    path = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(GanforgeError) as e:
        vgg_features("relu2_2")
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and url in msg


def _random_vgg19_state() -> dict[str, torch.Tensor]:
    # torchvision's own VGG19 built on the meta device (free): its keys and shapes, random values
    with torch.device("meta"):
        ref = torchvision.models.vgg19(weights=None)
    return {k: torch.randn(v.shape) * 0.05 for k, v in ref.state_dict().items()
            if k.startswith("features.")}


@pytest.fixture
def random_vgg(monkeypatch):
    state = _random_vgg19_state()
    monkeypatch.setattr(img2img, "_vgg19_state_dict", lambda: state)
    return state


def test_vgg_features_random_weights(random_vgg):
    f = vgg_features("relu2_2")
    assert not f.training
    assert all(not p.requires_grad for p in f.parameters())
    assert torch.equal(f.features[7].weight, random_vgg["features.7.weight"])  # conv2_2
    x = (torch.rand(2, 1, 32, 32) * 2 - 1).requires_grad_()
    y = f(x)
    assert y.shape == (2, 128, 16, 16)
    assert y.min() >= 0  # after a ReLU
    y.mean().backward()
    assert x.grad is not None
    # gray is repeated to RGB
    x3 = x.detach().expand(-1, 3, -1, -1)
    assert torch.allclose(f(x3), y.detach())


def test_vgg_features_relu5_4_matches_torchvision_layout(random_vgg):
    f = vgg_features("relu5_4")
    assert len(f.features) == 36  # torchvision's features[:36]
    assert f(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 2, 2)
    assert vgg_features("conv1_1").features[0].out_channels == 64
    with pytest.raises(GanforgeError, match="unknown layer"):
        vgg_features("relu6_1")
    with pytest.raises(GanforgeError, match="1 or 3 channels"):
        f(torch.zeros(1, 2, 32, 32))
