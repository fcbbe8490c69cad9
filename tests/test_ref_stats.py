"""FID reference statistics (.npz): ganforge against pytorch-fid's (and clean-fid's) own
functions and file conventions; `ganforge eval --save-stats / --ref-stats`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.metrics.classifier import digits_classifier
from ganforge.metrics.features import ClassifierFeatures
from ganforge.metrics.frechet import frechet_distance, gaussian_stats
from ganforge.metrics.stats import check_stats, load_stats, save_stats


def _feats(seed, n=400, d=16, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g) / d ** 0.5
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ a.double() + shift


def _digits_features():
    from ganforge.data import load_dataset

    space = ClassifierFeatures(digits_classifier(), "built-in digits classifier")
    images = load_dataset("digits", resolution=16, log=None).images
    return space(images[:300])[0], space(images[300:600])[0]


@pytest.mark.parametrize("source", ["random", "digits"])
def test_stats_and_fid_equal_pytorch_fid(source):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    if source == "random":
        real, fake = _feats(0), _feats(1, shift=0.3)
    else:
        real, fake = _digits_features()
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(fake)
    # pytorch-fid's calculate_activation_statistics: np.mean(axis=0), np.cov(rowvar=False)
    r, f = real.double().numpy(), fake.double().numpy()
    np.testing.assert_allclose(mu1.numpy(), np.mean(r, axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s1.numpy(), np.cov(r, rowvar=False), rtol=1e-10, atol=1e-12)
    ref = fid_score.calculate_frechet_distance(np.mean(r, axis=0), np.cov(r, rowvar=False),
                                               np.mean(f, axis=0), np.cov(f, rowvar=False))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ref > 1e-3
    assert ours == pytest.approx(float(ref), rel=1e-6, abs=1e-8)


def test_fid_equals_clean_fid():
    cfid = pytest.importorskip("cleanfid.fid", reason="clean-fid is not installed (pip install "
                                                      "clean-fid to compare with it)")
    real, fake = _feats(2), _feats(3, shift=0.2)
    mu1, s1 = gaussian_stats(real)
    mu2, s2 = gaussian_stats(fake)
    ref = cfid.frechet_distance(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(float(ref), rel=1e-6)


def test_npz_round_trip_with_pytorch_fid_conventions(tmp_path):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    mu, sigma = gaussian_stats(_feats(4))
    # ours -> pytorch-fid's loader (extra metadata key and all)
    p = save_stats(tmp_path / "ours", mu, sigma, {"features": "x", "features_key": "k",
                                                  "resolution": 16, "n": 400})
    assert p.name == "ours.npz"
    with np.load(p) as z:
        assert z["mu"].dtype == np.float64 and z["sigma"].dtype == np.float64
        np.testing.assert_array_equal(z["mu"], mu.numpy())
        np.testing.assert_array_equal(z["sigma"], sigma.numpy())
    m, s = fid_score.compute_statistics_of_path(str(p), None, 1, 16, "cpu")
    np.testing.assert_array_equal(m, mu.numpy())
    np.testing.assert_array_equal(s, sigma.numpy())
    mu2, sigma2, meta = load_stats(p)
    assert torch.equal(mu2, mu) and torch.equal(sigma2, sigma)
    assert meta["features_key"] == "k" and meta["resolution"] == 16 and meta["n"] == 400
    # pytorch-fid's writer (save_fid_stats: np.savez_compressed(mu=, sigma=)) -> ours, as float32
    q = tmp_path / "theirs.npz"
    np.savez_compressed(q, mu=mu.numpy().astype(np.float32),
                        sigma=sigma.numpy().astype(np.float32))
    mu3, sigma3, meta3 = load_stats(q)
    assert meta3 is None and mu3.dtype == torch.float64
    np.testing.assert_allclose(mu3.numpy(), mu.numpy(), rtol=1e-6, atol=1e-7)
    note = check_stats(q, meta3, "k", "the features", 16)
    assert "cannot be checked" in note and "the features" in note


def test_check_stats_rejects_other_features_and_resolution(tmp_path):
    meta = {"features": "digits", "features_key": "clf-1", "resolution": 16}
    assert check_stats("f.npz", meta, "clf-1", "digits", 16) is None
    with pytest.raises(GanforgeError, match="features in use"):
        check_stats("f.npz", meta, "inception-6726825d", "Inception", 16)
    with pytest.raises(GanforgeError, match="16px"):
        check_stats("f.npz", meta, "clf-1", "digits", 32)


@pytest.mark.parametrize("kind", ["garbage", "no_sigma", "shape", "nan", "pickle"])
def test_bad_npz_is_one_error(tmp_path, kind):
    p = tmp_path / "bad.npz"
    if kind == "garbage":
        p.write_bytes(b"not a zip at all")
    elif kind == "no_sigma":
        np.savez(p, mu=np.zeros(4))
    elif kind == "shape":
        np.savez(p, mu=np.zeros(4), sigma=np.eye(3))
    elif kind == "nan":
        np.savez(p, mu=np.full(3, np.nan), sigma=np.eye(3))
    else:
        np.savez(p, mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(GanforgeError, match="--ref-stats"):
        load_stats(p)


def _folder(root, n, shift):
    rng = np.random.default_rng(shift)
    root.mkdir(parents=True)
    for i in range(n):
        arr = np.clip(rng.normal(110 + shift, 40, (16, 16)), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(root / f"{i}.png")
    return root


def _one_error(capsys):
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_cli_save_stats_then_ref_stats_equals_real_folder(tmp_path, capsys):
    real = _folder(tmp_path / "real", 60, 0)
    fake = _folder(tmp_path / "fake", 40, 30)
    stats = tmp_path / "real_stats.npz"
    assert main(["eval", "--real", str(real), "--save-stats", str(stats),
                 "--features", "digits"]) == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(stats) as z:
        meta = json.loads(str(z["ganforge"][()]))
        assert z["mu"].shape == (z["sigma"].shape[0],) and z["sigma"].ndim == 2
    assert meta["resolution"] == 16 and meta["n"] == 60 and "digits" in meta["features"]
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(stats),
                 "--features", "digits"]) == 0
    out = capsys.readouterr().out
    assert str(stats) in out and "FID" in out and "note:" not in out
    # the same FID as against the real folder itself
    from ganforge.evaluate import evaluate_folders

    a = evaluate_folders(None, fake, features="digits", ref_stats=stats)
    b = evaluate_folders(real, fake, "fid", features="digits")
    assert a["metrics"]["fid"] == pytest.approx(b["metrics"]["fid"], rel=1e-6)
    assert a["ref_stats"] == str(stats) and a["n_real"] == 60
    # a file without ganforge metadata: accepted, with the note
    with np.load(stats) as z:
        np.savez_compressed(tmp_path / "plain.npz", mu=z["mu"], sigma=z["sigma"])
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(tmp_path / "plain.npz"),
                 "--features", "digits"]) == 0
    assert "cannot be checked" in capsys.readouterr().out
    # another resolution, other metrics, a corrupt file, a wrong-dimension file: one line each
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(stats), "--features", "digits",
                 "--resolution", "20"]) == 2
    assert "16px" in _one_error(capsys)
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(stats), "--features", "digits",
                 "--metrics", "fid,kid"]) == 2
    assert "fid" in _one_error(capsys)
    (tmp_path / "bad.npz").write_bytes(b"xx")
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(tmp_path / "bad.npz"),
                 "--features", "digits"]) == 2
    _one_error(capsys)
    np.savez(tmp_path / "d3.npz", mu=np.zeros(3), sigma=np.eye(3))
    assert main(["eval", "--fake", str(fake), "--ref-stats", str(tmp_path / "d3.npz"),
                 "--features", "digits"]) == 2
    assert "3-d" in _one_error(capsys)
    assert main(["eval", "--real", str(real), "--fake", str(fake),
                 "--save-stats", str(stats)]) == 2
    _one_error(capsys)


def test_ref_stats_on_a_run(tmp_path, tiny, capsys):
    from ganforge.data import load_dataset

    run = tmp_path / "run"
    assert main(["train", "--max-steps", "2", "--out", str(run), "-q", *tiny]) == 0
    cfg = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    res = cfg.get("model", {}).get("resolution", 32)
    space = ClassifierFeatures(digits_classifier(), "built-in digits classifier")
    images = load_dataset("digits", resolution=res, log=None).images[:200]
    mu, sigma = gaussian_stats(space(images)[0])
    stats = save_stats(tmp_path / "s.npz", mu, sigma, {"features": space.name,
                                                       "features_key": space.key,
                                                       "resolution": res, "n": 200})
    capsys.readouterr()
    assert main(["eval", str(run), "--ref-stats", str(stats), "--features", "digits",
                 "--n", "100"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert set(report["metrics"]) == {"fid"} and report["ref_stats"] == str(stats)
    assert report["metrics"]["fid"] > 0
    assert main(["eval", str(run), "--ref-stats", str(stats), "--features", "digits",
                 "--metrics", "pr"]) == 2
    assert "fid" in _one_error(capsys)
