"""DINOv2 and CLIP feature spaces: offline lookup, one-line errors, and the loading paths run end
to end on stand-in networks (the real weights are not reachable offline)."""

import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.metrics import features as feats


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache and home: nothing real is found."""
    d = tmp_path / "torch" / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", str(d))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XFORMERS_DISABLED", "1")  # restored afterwards (torch-fidelity sets it)
    for var in (feats.DINOV2_DIR_ENV, feats.DINOV2_WEIGHTS_ENV, feats.CLIP_WEIGHTS_ENV,
                feats.SKIP_HASH_ENV):
        monkeypatch.delenv(var, raising=False)
    return d


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- DINOv2 -----------------------------------------------------------------------------------


def test_missing_dinov2_is_one_line_with_paths(hub):
    with pytest.raises(GanforgeError) as e:
        feats.feature_space("dinov2")
    msg = _one_line(e)
    ckpt = hub / "checkpoints" / "dinov2_vitl14_pretrain.pth"
    repo = hub / "facebookresearch_dinov2_main"
    assert msg.startswith("DINOv2 ViT-L/14 weights and repo code (hubconf.py) not found")
    assert str(ckpt) in msg and str(repo) in msg and feats.DINOV2_REPO_URL in msg
    assert "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_pretrain.pth" in msg
    with pytest.raises(GanforgeError, match="dinov2_vits14_pretrain.pth"):
        feats.feature_space("dinov2-vit-s-14")
    with pytest.raises(GanforgeError, match="DINOv2 models are 'dinov2'"):
        feats.feature_space("dinov2-vit-x-14")


def test_missing_clip_is_one_line_with_path(hub, tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_clip import MODEL_URLS

    with pytest.raises(GanforgeError) as e:
        feats.feature_space("clip")
    msg = _one_line(e)
    assert msg.startswith("CLIP ViT-L/14 weights not found")
    assert MODEL_URLS["clip-vit-l-14"] in msg
    assert str(hub / "checkpoints" / f"clip-vit-l-14-{MODEL_URLS['clip-vit-l-14'].split('/')[-2]}"
                                     f".pt") in msg
    with pytest.raises(GanforgeError, match="CLIP ViT-B/32 weights not found"):
        feats.feature_space("clip-vit-b-32")
    monkeypatch.setenv(feats.CLIP_WEIGHTS_ENV, str(tmp_path / "nope.pt"))
    with pytest.raises(GanforgeError, match="nope.pt .*GANFORGE_CLIP_WEIGHTS. not found"):
        feats.feature_space("clip")


def test_wrong_clip_file_is_refused(hub, tmp_path, monkeypatch):
    bad = tmp_path / "ViT-L-14.pt"
    bad.write_bytes(b"not the CLIP weights")
    monkeypatch.setenv(feats.CLIP_WEIGHTS_ENV, str(bad))
    with pytest.raises(GanforgeError, match="is not the CLIP ViT-L/14 weights") as e:
        feats.feature_space("clip")
    assert feats.SKIP_HASH_ENV in _one_line(e)
    monkeypatch.setenv(feats.SKIP_HASH_ENV, "1")  # past the hash, the file still cannot load
    with pytest.raises(GanforgeError, match="cannot load the CLIP ViT-L/14 weights"):
        feats.feature_space("clip")


def _folder(root, n, size, channels):
    root.mkdir(parents=True)
    rng = np.random.default_rng(n)
    shape = (size, size) if channels == 1 else (size, size, 3)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("spec", ["dinov2", "clip"])
def test_cli_missing_weights_is_one_error_line(hub, tmp_path, capsys, spec):
    real = _folder(tmp_path / "real", 6, 16, 3)
    fake = _folder(tmp_path / "fake", 6, 16, 3)
    code = main(["eval", "--real", str(real), "--fake", str(fake), "--features", spec])
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "not found" in lines[0]
    assert str(hub) in lines[0]


HUBCONF = '''
    import torch
    from torch import nn

    dependencies = ["torch"]


    class TinyDino(nn.Module):
        """Stand-in for DINOv2's ViT: 224 px in, one [N, 8] token out."""

        embed_dim = 8

        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Conv2d(3, 8, 14, stride=14)
            self.norm = nn.LayerNorm(8)

        def forward(self, x):
            assert x.shape[-2:] == (224, 224) and x.dtype == torch.float32
            return self.norm(self.patch_embed(x).flatten(2).mean(2))


    def dinov2_vitl14(pretrained=True, **kwargs):
        if pretrained:
            raise RuntimeError("would download")
        return TinyDino()
'''


@pytest.fixture
def fake_dinov2(hub):
    repo = hub / "facebookresearch_dinov2_main"
    repo.mkdir(parents=True)
    (repo / "hubconf.py").write_text(textwrap.dedent(HUBCONF))
    net = torch.hub.load(str(repo), "dinov2_vitl14", source="local", pretrained=False)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    ckpt = hub / "checkpoints" / "dinov2_vitl14_pretrain.pth"
    ckpt.parent.mkdir(parents=True)
    torch.save(net.state_dict(), ckpt)
    return repo, ckpt, net


def test_dinov2_loads_offline_and_matches_torch_fidelity(fake_dinov2, monkeypatch):
    repo, ckpt, net = fake_dinov2

    def no_network(*a, **k):
        raise AssertionError("network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    space = feats.feature_space("dinov2")
    assert isinstance(space, feats.DINOv2Features) and space.class_names is None
    assert space.name.startswith("DINOv2 ViT-L/14 CLS token (8-d")
    assert "legacy resize" in space.name and space.key.startswith("dinov2-vit-l-14-")
    clean = feats.feature_space("dinov2-vit-l-14", resize="clean")
    assert "clean resize" in clean.name and clean.key == space.key + "-clean"

    # torch-fidelity's own extractor around the same network: the features must agree
    from torch_fidelity.feature_extractor_dinov2 import FeatureExtractorDinoV2

    monkeypatch.setattr(torch.hub, "load", lambda *a, **k: net)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FeatureExtractorDinoV2("dinov2-vit-l-14", ["dinov2"])
    g = torch.Generator().manual_seed(0)
    gray = torch.randint(0, 256, (3, 1, 37, 37), dtype=torch.uint8, generator=g)
    colour = torch.randint(0, 256, (2, 3, 50, 30), dtype=torch.uint8, generator=g)
    for images in (gray, colour):
        f, p = space(images)
        assert f.shape == (len(images), 8) and p is None
        (want,) = ref(images.expand(-1, 3, -1, -1).contiguous())
        assert torch.allclose(f, want, atol=1e-5)
        fc, _ = clean(images)
        assert fc.shape == f.shape and not torch.allclose(fc, f, atol=1e-3)

    # a checkpoint that does not fit the network is named
    torch.save({"other": torch.zeros(1)}, ckpt)
    with pytest.raises(GanforgeError, match="is not the DINOv2 ViT-L/14 weights"):
        feats.DINOv2Features()


def test_dinov2_env_paths(fake_dinov2, tmp_path, monkeypatch):
    repo, ckpt, _ = fake_dinov2
    moved_repo, moved_ckpt = tmp_path / "code", tmp_path / "w.pth"
    repo.rename(moved_repo)
    ckpt.rename(moved_ckpt)
    with pytest.raises(GanforgeError, match=f"download .* to {ckpt}"):
        feats.DINOv2Features()
    monkeypatch.setenv(feats.DINOV2_DIR_ENV, str(moved_repo))
    monkeypatch.setenv(feats.DINOV2_WEIGHTS_ENV, str(moved_ckpt))
    assert feats.dinov2_paths() == (moved_repo, moved_ckpt)
    f, _ = feats.DINOv2Features()(torch.zeros(2, 3, 20, 20, dtype=torch.uint8))
    assert f.shape == (2, 8)


# --- CLIP end to end on a tiny stand-in JIT file ---------------------------------------------


class _TinyCLIP(nn.Module):
    """The parts of a CLIP JIT file torch-fidelity reads: a small ViT (patch 32 at 224 px)."""

    def __init__(self):
        super().__init__()
        from torch_fidelity.feature_extractor_clip import VisionTransformer

        self.visual = VisionTransformer(224, 32, 64, 1, 1, 16)
        self.text_projection = nn.Parameter(torch.randn(8, 16))

    def forward(self, x):
        return x


def test_clip_loads_and_matches_torch_fidelity(hub, tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_clip import FeatureExtractorCLIP

    path = tmp_path / "tiny-clip.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_TinyCLIP()).save(str(path))
    monkeypatch.setenv(feats.CLIP_WEIGHTS_ENV, str(path))
    with pytest.raises(GanforgeError, match="is not the CLIP ViT-L/14 weights"):
        feats.feature_space("clip")
    monkeypatch.setenv(feats.SKIP_HASH_ENV, "1")
    space = feats.feature_space("clip")
    clean = feats.feature_space("clip", resize="clean")
    assert isinstance(space, feats.CLIPFeatures) and space.input_size == 224
    assert space.name.startswith("CLIP ViT-L/14 image embedding (16-d")
    assert "legacy resize" in space.name and "clean resize" in clean.name
    assert space.key != clean.key and space.key.startswith("clip-vit-l-14-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = FeatureExtractorCLIP("clip-vit-l-14", ["clip"],
                                   feature_extractor_weights_path=str(path))
    g = torch.Generator().manual_seed(1)
    gray = torch.randint(0, 256, (3, 1, 37, 37), dtype=torch.uint8, generator=g)
    f, p = space(gray)
    (want,) = ref(gray.expand(-1, 3, -1, -1).contiguous())
    assert p is None and f.shape == (3, 16) and torch.allclose(f, want, atol=1e-5)
    assert not torch.allclose(clean(gray)[0], f, atol=1e-3)
    # at the input size the clean float path is torch-fidelity's forward
    at224 = torch.randint(0, 256, (2, 3, 224, 224), dtype=torch.uint8, generator=g)
    assert torch.allclose(clean(at224)[0], ref(at224)[0], atol=1e-5)
