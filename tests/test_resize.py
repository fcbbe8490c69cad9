"""resize="clean" | "legacy" for every feature space: clean-fid's resize reproduced, the legacy
paths unchanged, and the two told apart in names and cache keys."""

import numpy as np
import pytest
import torch

from ganforge.errors import GanforgeError
from ganforge.metrics import features as feats
from ganforge.metrics.classifier import DomainClassifier, save_classifier


def _cleanfid(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's own resize, image by image (HWC, 3 channels as clean-fid reads them)."""
    from cleanfid.resize import make_resizer

    fn = make_resizer("PIL", False, "bicubic", (size, size))
    rgb = images.expand(-1, 3, -1, -1)
    out = [fn(im.permute(1, 2, 0).numpy()) for im in rgb]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("n,c,h,w,size", [(4, 3, 8, 8, 32), (4, 1, 8, 8, 32), (4, 3, 64, 64, 32),
                                          (3, 1, 64, 64, 32), (2, 3, 32, 32, 299),
                                          (2, 1, 20, 12, 32), (2, 3, 300, 300, 299)])
def test_clean_resize_equals_clean_fid(n, c, h, w, size):
    pytest.importorskip("cleanfid.resize")
    g = torch.Generator().manual_seed(h * w + c)
    images = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=g)
    ours = feats.clean_resize(images, size)
    assert ours.dtype == torch.float32 and ours.shape == (n, c, size, size)
    ref = _cleanfid(images, size)
    assert (ours.expand(-1, 3, -1, -1) - ref).abs().max() < 1e-3
    assert ours.min() >= 0 and ours.max() <= 255
    assert not torch.equal(ours, ours.round())  # not re-quantised


def test_resize_argument_is_checked():
    with pytest.raises(GanforgeError, match="'legacy' .* or 'clean'"):
        feats.feature_space("digits", resize="bicubic")


@pytest.fixture
def stand_in_inception(tmp_path, monkeypatch):
    """torch-fidelity's Inception with random weights (the real ones are not reachable)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as m:
        m.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: None)
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, sd, *a, **k: None)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    with torch.no_grad():  # variance-preserving convolutions: features of order 1, not 1e-7
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    path = tmp_path / "stand-in.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.setenv(feats.SKIP_HASH_ENV, "1")
    torch.set_flush_denormal(True)  # random weights make denormals: 10x slower convolutions
    yield path, net
    torch.set_flush_denormal(False)


def test_inception_float_path_equals_torch_fidelity_at_299(stand_in_inception):
    _, net = stand_in_inception
    x = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want_f, want_l = net(x)
        f, logits = feats.inception_float_forward(net, x.float())
    assert torch.allclose(f, want_f, atol=1e-5) and torch.allclose(logits, want_l, atol=1e-4)


def test_inception_clean_and_legacy(stand_in_inception):
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )

    path, net = stand_in_inception
    legacy = feats.feature_space("inception", inception_weights=path)
    clean = feats.feature_space("inception", inception_weights=path, resize="clean")
    assert legacy.key == "inception-" + feats.INCEPTION_SHA256_PREFIX  # old caches stay valid
    assert clean.key != legacy.key and clean.name != legacy.name
    assert "legacy resize (TF bilinear)" in legacy.name and "clean resize" in clean.name
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8, generator=g)
    rgb = x.expand(-1, 3, -1, -1).float()
    f_legacy, p_legacy = legacy(x)
    f_clean, p_clean = clean(x)
    with torch.no_grad():
        tf_up = interpolate_bilinear_2d_like_tensorflow1x(rgb, size=(299, 299),
                                                          align_corners=False)
        want_legacy, _ = feats.inception_float_forward(net, tf_up)
        want_clean, _ = feats.inception_float_forward(net, feats.clean_resize(rgb.byte(), 299))
    assert torch.allclose(f_legacy, want_legacy, atol=1e-5)
    assert torch.allclose(f_clean, want_clean, atol=1e-5)
    assert (f_clean - f_legacy).abs().max() > 1e-2  # the option changes the features
    assert p_clean.shape == p_legacy.shape == (1, 1008)


def test_classifier_clean_and_legacy(tmp_path):
    clf = DomainClassifier(4, 1, width=8, feature_dim=16).eval()
    with torch.no_grad():
        for m in clf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
    f = tmp_path / "clf.safetensors"
    save_classifier(clf, f)
    legacy = feats.feature_space(str(f))
    clean = feats.feature_space(str(f), resize="clean")
    assert legacy.key + "-clean" == clean.key
    assert "legacy resize (bilinear, antialiased)" in legacy.name
    assert "clean resize (PIL bicubic)" in clean.name
    assert clean.input_size == 32
    g = torch.Generator().manual_seed(2)
    small = torch.randint(0, 256, (5, 1, 12, 12), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        want = clf.features(feats.clean_resize(small, 32) / 127.5 - 1)
        assert torch.allclose(clean(small)[0], want, atol=1e-5)
        assert torch.allclose(legacy(small)[0], clf.features(small), atol=1e-5)
    assert (clean(small)[0] - legacy(small)[0]).abs().max() > 1e-3
    at32 = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8, generator=g)
    assert torch.allclose(clean(at32)[0], legacy(at32)[0], atol=1e-5)  # nothing to resize
    assert torch.allclose(clean(at32)[1], legacy(at32)[1], atol=1e-5)



def test_cli_resize_is_named_and_changes_the_fid(tmp_path, capsys):
    """`ganforge eval --resize clean|legacy`: digits at 16 px reach the 32 px classifier by
    two different resizes; the report names which; --save-stats keeps it apart."""
    import json

    from ganforge.cli import main
    from ganforge.data import load_dataset
    from ganforge.utils import save_png

    x = load_dataset("digits", resolution=16, log=None).images
    for name, rng in (("real", range(0, 120)), ("fake", range(500, 620))):
        (tmp_path / name).mkdir()
        for i in rng:
            save_png(x[i], tmp_path / name / f"{i}.png")
    fids = {}
    for mode in ("legacy", "clean"):
        assert main(["eval", "--real", str(tmp_path / "real"), "--fake", str(tmp_path / "fake"),
                     "--features", "digits", "--metrics", "fid", "--resize", mode]) == 0
        out = capsys.readouterr().out
        assert f"{mode} resize" in out
        fids[mode] = float(out.split("FID")[1].split()[1])
    assert fids["clean"] != fids["legacy"]
    stats = tmp_path / "clean.npz"
    assert main(["eval", "--real", str(tmp_path / "real"), "--save-stats", str(stats),
                 "--features", "digits", "--resize", "clean"]) == 0
    capsys.readouterr()
    # legacy features against clean statistics: refused in one line
    assert main(["eval", "--fake", str(tmp_path / "fake"), "--ref-stats", str(stats),
                 "--features", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "clean" in err[0]
    assert main(["eval", "--fake", str(tmp_path / "fake"), "--ref-stats", str(stats),
                 "--features", "digits", "--resize", "clean"]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["train", "--preset", "dcgan", "--max-steps", "1", "--out", str(run), "-q",
                 "g_channel_base=64", "d_channel_base=64", "batch_size=8"]) == 0
    assert main(["eval", str(run), "--metrics", "ppl", "--n", "10", "--resize", "clean"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resize" in err[0]
    assert main(["eval", str(run), "--metrics", "fid", "--n", "20", "--features", "digits",
                 "--resize", "clean"]) == 0
    assert json.loads((run / "eval.json").read_text())["resize"] == "clean"
