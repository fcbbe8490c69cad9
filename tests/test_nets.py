import pytest
import torch

from ganforge.config import build_config
from ganforge.nets import build_nets


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
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (3, 128), (128, 256), (256, 512), (512, 1)]
    # N(0, 0.02) init
    assert abs(convs[1].weight.std().item() - 0.02) < 0.002
