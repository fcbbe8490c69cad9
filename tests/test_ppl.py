"""Perceptual path length: the numerics on generators with known lengths, the percentile
filter, the distance choice, and `ganforge eval --metrics ppl` end to end (tiny nets)."""

import json
import math

import numpy as np
import pytest
import torch
from test_zoo import _small

import ganforge.data
import ganforge.metrics.features
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.metrics import perceptual
from ganforge.metrics.ppl import (
    lerp,
    path_lengths,
    pixel_mse,
    ppl,
    ppl_distance,
    slerp_norm,
    slerp_unit,
)


@pytest.fixture(autouse=True)
def _no_lpips(monkeypatch):
    # never download VGG16: the pixel fallback is what runs unless a test fakes LPIPS
    monkeypatch.setattr(perceptual, "lpips_net", lambda *a, **k: None)


def _pair_drawer(dim, record, classes=0):
    def draw(m, gen):
        a, b = torch.randn(2, m, dim, generator=gen)
        c = torch.randint(0, classes, (m,), generator=gen) if classes else None
        record.append((a, b))
        return a, b, c
    return draw


# --- numerics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["end", "full"])
def test_linear_generator_in_w_has_the_closed_form_length(sampling):
    # G(w) = reshape(A w), lerp in w, pixel MSE: length / eps^2 = mean_p (A (b - a))_p^2,
    # whose expectation over a, b ~ N(0, I) is 2 trace(A^T A) / P (the same for any t)
    dim, shape = 32, (3, 4, 4)
    P = math.prod(shape)
    A = torch.randn(P, dim, generator=torch.Generator().manual_seed(1))
    seen_labels = []

    def render(w, c):
        assert torch.equal(c[:c.shape[0] // 2], c[c.shape[0] // 2:])  # one label per pair
        seen_labels.append(c)
        return (w @ A.T).view(-1, *shape)

    record = []
    n = 3000
    lengths = path_lengths(_pair_drawer(dim, record, classes=5), render, pixel_mse, n,
                           lerp, sampling=sampling, batch_size=500, seed=3)
    assert lengths.shape == (n,) and lengths.dtype == torch.float64 and seen_labels
    a, b = (torch.cat(x) for x in zip(*record))
    exact = ((b - a) @ A.T).square().mean(1).double()  # per pair
    torch.testing.assert_close(lengths, exact, rtol=2e-2, atol=0)
    expected = 2 * float(A.square().sum()) / P
    assert lengths.mean().item() == pytest.approx(expected, rel=0.04)
    assert ppl(lengths)["ppl"] == pytest.approx(expected, rel=0.04)


def test_z_walks_step_along_the_sphere():
    # identity "generator" on [m, 1, 1, D]: length = |dx/dt|^2 / D at t = 0
    dim, n = 24, 200
    record = []
    render = lambda z, c: z.view(-1, 1, 1, dim)  # noqa: E731
    unit = path_lengths(_pair_drawer(dim, record), render, pixel_mse, n, slerp_unit,
                        batch_size=n)
    kept = path_lengths(_pair_drawer(dim, record), render, pixel_mse, n, slerp_norm,
                        batch_size=n)  # the same seed: the same pairs
    a, b = record[0]
    omega = torch.acos(torch.nn.functional.cosine_similarity(a, b, dim=1).double())
    torch.testing.assert_close(unit, omega ** 2 / dim, rtol=2e-2, atol=0)
    ra, rb = a.norm(dim=1).double(), b.norm(dim=1).double()
    torch.testing.assert_close(kept, ((rb - ra) ** 2 + ra ** 2 * omega ** 2) / dim,
                               rtol=2e-2, atol=0)
    # the end-points: slerp_norm keeps the norms, slerp_unit lies on the unit sphere
    t0, t1 = torch.zeros(n, 1), torch.ones(n, 1)
    torch.testing.assert_close(slerp_norm(a, b, t0), a)
    torch.testing.assert_close(slerp_norm(a, b, t1), b, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(slerp_unit(a, b, t1), b / b.norm(dim=1, keepdim=True),
                               rtol=1e-4, atol=1e-4)


def test_percentile_filter_drops_the_extremes():
    rng = np.random.default_rng(0)
    x = np.concatenate([[1e-9], np.linspace(1, 2, 99), [1e9]])
    r = ppl(torch.from_numpy(rng.permutation(x)))
    assert r["ppl"] == pytest.approx(1.5) and r["kept"] == 99 and r["n"] == 101
    assert np.mean(x) > 1e6  # unfiltered, one outlier would dominate
    # the reference's bounds: 1st percentile rounded down, 99th up, to actual lengths
    r = ppl(rng.permutation(np.arange(1000.0)))
    assert r["kept"] == 982 and r["ppl"] == pytest.approx(499.5)
    assert math.isnan(ppl(np.array([1.0, float("nan"), 2.0]))["ppl"])
    with pytest.raises(GanforgeError):
        path_lengths(_pair_drawer(4, []), lambda z, c: z, pixel_mse, 4, sampling="middle")


def test_distance_falls_back_to_stated_pixel_mse_or_resizes_for_lpips(monkeypatch):
    d, name = ppl_distance("cpu", 32)
    url, path = perceptual.backbone_path("vgg")
    assert d is pixel_mse and name.startswith("pixel MSE") and url in name and str(path) in name
    sizes = []

    def fake_lpips(a, b):
        sizes.append(tuple(a.shape[-2:]))
        return (a - b).abs().flatten(1).mean(1)

    monkeypatch.setattr(perceptual, "perceptual_distance", lambda device: (fake_lpips, "LPIPS"))
    for res, want in ((16, 64), (128, 128), (512, 256)):
        d, name = ppl_distance("cpu", res)
        out = d(torch.zeros(2, 3, res, res), torch.ones(2, 3, res, res))
        assert sizes[-1] == (want, want) and out.shape == (2,)
        assert name.startswith("LPIPS") and (str(want) in name) == (res != want)


# --- ganforge eval --metrics ppl ---------------------------------------------------------------


class _FakeSpace:
    key, name, class_names = "fake", "fake features", None

    def __call__(self, images):
        return images.float().flatten(1)[:, :6], None


def _train(tmp_path, preset, extra):
    run = tmp_path / preset
    assert main(["train", "--preset", preset, "--max-steps", "2", "--out", str(run), "-q",
                 *extra]) == 0
    return run


def test_eval_ppl_dcgan_without_data_or_features(tmp_path, tiny, monkeypatch, capsys):
    run = _train(tmp_path, "cgan", tiny)  # conditional: labels drawn per pair

    def refuse(*a, **k):
        raise AssertionError("ppl alone must not load data or a feature network")

    monkeypatch.setattr(ganforge.data, "load_dataset", refuse)
    monkeypatch.setattr(ganforge.metrics.features, "feature_space", refuse)
    assert main(["eval", str(run), "--metrics", "ppl", "--n", "64"]) == 0
    report = json.loads((run / "eval.json").read_text())
    m = report["metrics"]
    assert set(m) == {"ppl_z", "ppl_z_std"} and m["ppl_z"] > 0
    assert report["ppl_distance"].startswith("pixel MSE") and report["ppl_pairs"] == 64
    out = capsys.readouterr().out
    assert "PPL in z" in out and "pixel MSE" in out
    monkeypatch.undo()
    monkeypatch.setattr(perceptual, "lpips_net", lambda *a, **k: None)
    monkeypatch.setattr(ganforge.metrics.features, "feature_space", lambda *a, **k: _FakeSpace())
    assert main(["eval", str(run), "--metrics", "fid,ppl", "--n", "32"]) == 0
    report = json.loads((run / "eval.json").read_text())
    assert {"fid", "ppl_z"} <= set(report["metrics"]) and report["features"] == "fake features"
    assert main(["eval", str(run), "--metrics", "fid,pll", "--n", "32"]) == 2
    assert "ppl" in capsys.readouterr().err


def test_eval_ppl_stylegan2_reports_z_and_w(tmp_path):
    run = _train(tmp_path, "stylegan2-small", _small("stylegan2-small"))
    assert main(["eval", str(run), "--metrics", "ppl", "--n", "16"]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]
    assert m["ppl_z"] > 0 and m["ppl_w"] > 0


def test_eval_ppl_refused_for_vectors_and_folders(tmp_path, capsys):
    run = _train(tmp_path, "toy", ["hidden=16", "batch_size=32", "log_every=1"])
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "ppl", "--n", "50"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "ppl" in lines[0]
    assert main(["eval", "--real", str(tmp_path), "--fake", str(tmp_path),
                 "--metrics", "fid,ppl"]) == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ganforge eval RUN --metrics ppl" in lines[0]


def test_missing_vgg16_weights_fall_back_quietly(tmp_path, monkeypatch, capsys):
    """Offline: one download attempt, torch.hub's "Downloading ..." line (on stdout) kept off
    the output, then the stated pixel fallback."""
    import sys

    import torch

    from ganforge.metrics import perceptual
    from ganforge.metrics.ppl import pixel_mse, ppl_distance

    def offline(url, **kw):
        sys.stdout.write(f'Downloading: "{url}"\n')  # as torch.hub does
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    perceptual._NETS.clear()
    d, name = ppl_distance("cpu", 32)
    assert d is pixel_mse and "LPIPS-VGG16 weights missing" in name and str(tmp_path) in name
    out = capsys.readouterr()
    assert "Downloading" not in out.out + out.err
