"""Vector data (toy sets, CSV, NPY), the mode metrics and the scatter plot / CSV writers."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import VECTOR_SPECS, VectorDataset, is_vector_spec, load_vectors
from ganforge.errors import GanforgeError
from ganforge.metrics.modes import mode_metrics
from ganforge.plot import scatter_png, write_csv

# --- toy sets --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VECTOR_SPECS)
def test_toy_shapes_and_determinism(name):
    a = load_vectors(name, n=1000, seed=3)
    b = load_vectors(name, n=1000, seed=3)
    c = load_vectors(name, n=1000, seed=4)
    assert isinstance(a, VectorDataset) and a.name == name
    assert a.x.shape == (1000, 2) and a.x.dtype == torch.float32
    assert len(a) == 1000 and a.dim == 2
    assert torch.isfinite(a.x).all()
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    if a.labels is not None:
        assert a.labels.shape == (1000,) and a.labels.dtype == torch.int64
        assert int(a.labels.max()) < a.num_classes
        assert torch.equal(a.labels, b.labels)


def test_default_size_and_names():
    assert len(load_vectors("ring8")) == 50_000
    for spec in ("ring8", " Grid25 ", "spiral", "moons", "pts.csv", "a/b.NPY"):
        assert is_vector_spec(spec)
    for spec in ("mnist", "digits", "./folder", "x.png", "ring"):
        assert not is_vector_spec(spec)
    with pytest.raises(GanforgeError, match="did you mean ring8"):
        load_vectors("ring9")
    with pytest.raises(GanforgeError, match="positive integer"):
        load_vectors("ring8", n=0)


@pytest.mark.parametrize("name,m,std", [("ring8", 8, 0.01), ("grid25", 25, 0.05)])
def test_mixture_modes_and_std(name, m, std):
    d = load_vectors(name, n=20_000, seed=0)
    assert d.modes.shape == (m, 2) and d.mode_std == std and d.num_classes == m
    for k in range(m):
        pts = d.x[d.labels == k].double()
        assert len(pts) > 20_000 / m * 0.8  # equal weights
        assert torch.allclose(pts.mean(0), d.modes[k].double(), atol=4 * std / len(pts) ** 0.5)
        assert pts.std(0).sub(std).abs().max() < 0.1 * std


def test_mode_positions():
    ring = load_vectors("ring8", n=10).modes.double()
    assert torch.allclose(ring.norm(dim=1), torch.ones(8, dtype=torch.float64))
    angles = torch.atan2(ring[:, 1], ring[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(8, dtype=torch.float64) * math.pi / 4, atol=1e-6)
    grid = load_vectors("grid25", n=10).modes
    assert {tuple(p) for p in grid.tolist()} == {(x, y) for x in range(-4, 5, 2)
                                                 for y in range(-4, 5, 2)}


def test_spiral_and_moons_ranges():
    s = load_vectors("spiral", n=5000)
    assert s.modes is None and s.labels is None and s.num_classes == 0
    assert s.x.abs().max() < 1.1
    m = load_vectors("moons", n=5000)
    assert m.modes is None and m.class_names == ["upper", "lower"]
    assert set(m.labels.tolist()) == {0, 1}
    assert m.x[m.labels == 0, 1].mean() > m.x[m.labels == 1, 1].mean()


# --- files -----------------------------------------------------------------------------------


def test_csv_with_and_without_header(tmp_path):
    plain = tmp_path / "plain.csv"
    plain.write_text("1,2,3\n4.5,-5,6e-1\n\n7,8,9\n")
    d = load_vectors(str(plain))
    assert d.x.dtype == torch.float32 and d.dim == 3 and len(d) == 3
    assert torch.equal(d.x, torch.tensor([[1, 2, 3], [4.5, -5, 0.6], [7, 8, 9]]))
    assert d.labels is None and d.modes is None
    head = tmp_path / "head.csv"
    head.write_text("\ufeffa;b\n# a comment\n1;2\n3;4\n")
    assert torch.equal(load_vectors(str(head)).x, torch.tensor([[1.0, 2], [3, 4]]))
    one = tmp_path / "one.csv"
    one.write_text("value\n1\n2\n3\n")
    d = load_vectors(str(one), n=2)
    assert d.x.shape == (2, 1) and d.x[:, 0].tolist() == [1, 2]


def test_npy_1d_and_2d(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(6, dtype=np.float64).reshape(3, 2))
    d = load_vectors(str(tmp_path / "a.npy"))
    assert d.x.shape == (3, 2) and d.x.dtype == torch.float32 and d.x[2, 1] == 5
    np.save(tmp_path / "b.npy", np.array([1, 2, 3], dtype=np.int32))
    d = load_vectors(str(tmp_path / "b.npy"))
    assert d.x.shape == (3, 1) and d.x[:, 0].tolist() == [1, 2, 3]


def _bad_files(tmp_path):
    p = tmp_path
    np.save(p / "a.npy", np.zeros((100, 2)))
    (p / "empty.csv").write_text("")
    (p / "header_only.csv").write_text("x,y\n")
    (p / "text.csv").write_text("x,y\n1,2\n3,oops\n")
    (p / "ragged.csv").write_text("1,2\n3\n")
    (p / "nan.csv").write_text("1,2\nnan,4\n")
    (p / "binary.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    np.save(p / "inf.npy", np.array([[1.0, np.inf]]))
    np.save(p / "big.npy", np.array([[1e300, 1.0]]))
    np.save(p / "three_d.npy", np.zeros((2, 2, 2)))
    np.save(p / "scalar.npy", np.float64(1.0))
    np.save(p / "empty.npy", np.zeros((0, 2)))
    np.save(p / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(p / "strings.npy", np.array(["a", "b"]))
    (p / "corrupt.npy").write_bytes(b"not an npy file at all")
    np.savez(p / "archive.npz", a=np.zeros(3))
    (p / "archive.npz").rename(p / "archive.npy")
    (p / "truncated.npy").write_bytes((p / "a.npy").read_bytes()[:100])
    (p / "folder.csv").mkdir()
    return {
        "missing.csv": "not found", "empty.csv": "no data rows",
        "header_only.csv": "header but no data", "text.csv": "line 3 holds the non-numeric",
        "ragged.csv": "line 2 has 1 values", "nan.csv": "NaN or inf", "binary.csv": "UTF-8",
        "inf.npy": "NaN or inf", "big.npy": "float32 range", "three_d.npy": "3-D",
        "scalar.npy": "0-D", "empty.npy": "empty", "objects.npy": "Python objects",
        "strings.npy": "dtype", "corrupt.npy": "no NPY header",
        "archive.npy": ".npz archive", "truncated.npy": "not a readable .npy",
        "folder.csv": "not a file",
        "missing.npy": "not found",
    }


def test_bad_files_give_one_line_errors(tmp_path):
    for fname, problem in _bad_files(tmp_path).items():
        with pytest.raises(GanforgeError) as err:
            load_vectors(str(tmp_path / fname))
        msg = str(err.value)
        assert "\n" not in msg, fname
        assert fname in msg and problem in msg, (fname, msg)
        assert ";" in msg or "check the path" in msg, msg  # problem; fix


# --- mode metrics ----------------------------------------------------------------------------

RING = load_vectors("ring8", n=10).modes
STD = 0.01


def test_perfect_samples():
    m = mode_metrics(RING.repeat(5, 1), RING, STD)
    assert m == {"modes": 8.0, "modes_total": 8.0, "high_quality": 100.0, "reverse_kl": 0.0}


def test_all_on_one_mode():
    m = mode_metrics(RING[3].repeat(40, 1) + 0.005, RING, STD)
    assert m["modes"] == 1 and m["high_quality"] == 100
    assert m["reverse_kl"] == pytest.approx(math.log(8))


def test_half_far_away():
    far = torch.full((8, 2), 5.0)
    m = mode_metrics(torch.cat([RING, far]), RING, STD)
    assert m["modes"] == 8 and m["high_quality"] == 50 and m["reverse_kl"] == pytest.approx(0)


def test_uneven_histogram_kl():
    # q = (3/4, 1/4) on two of 8 modes: KL = 3/4 log(6) + 1/4 log(2)
    x = torch.cat([RING[0].repeat(3, 1), RING[1][None], torch.tensor([[0.0, 0.0]])])
    m = mode_metrics(x, RING, STD)
    assert m["modes"] == 2 and m["high_quality"] == pytest.approx(80)
    assert m["reverse_kl"] == pytest.approx(0.75 * math.log(6) + 0.25 * math.log(2))


def test_threshold_boundary():
    u = torch.tensor([0.6, 0.8])  # a unit direction
    just_out = RING[0] + u * 3.001 * STD
    just_in = RING[1] + u * 2.999 * STD
    m = mode_metrics(torch.stack([just_out, just_in]), RING, STD)
    assert m["modes"] == 1 and m["high_quality"] == 50
    assert mode_metrics(just_out[None], RING, STD, threshold=3.1)["modes"] == 1


def test_no_high_quality_sample_and_nan():
    m = mode_metrics(torch.tensor([[9.0, 9.0], [float("nan"), 0.0]]), RING, STD)
    assert m["modes"] == 0 and m["high_quality"] == 0 and m["reverse_kl"] == math.inf


def test_metric_argument_errors():
    with pytest.raises(GanforgeError):
        mode_metrics(torch.zeros(4, 3), RING, STD)
    with pytest.raises(GanforgeError):
        mode_metrics(torch.zeros(0, 2), RING, STD)
    with pytest.raises(GanforgeError):
        mode_metrics(RING, RING, 0.0)


@pytest.mark.parametrize("name", ["ring8", "grid25"])
def test_real_data_scores(name):
    d = load_vectors(name, n=2500, seed=1)
    m = mode_metrics(d.x, d.modes, d.mode_std)
    assert m["modes"] == m["modes_total"]
    # 2-D Gaussian: P(|x - mu| <= 3 std) = 1 - exp(-9/2) = 98.89%, so ~99%, not 100%
    assert m["high_quality"] >= 98.0
    assert abs(m["high_quality"] / 100 - (1 - math.exp(-4.5))) < 0.007
    assert m["reverse_kl"] < 0.02


# --- plot and CSV ----------------------------------------------------------------------------


def test_scatter_png(tmp_path):
    d = load_vectors("grid25", n=2000)
    fake = d.x[:500] * 1.5  # some points fall outside the frame
    scatter_png(fake, tmp_path / "s.png", modes=d.modes, real=d.x, size=300)
    with Image.open(tmp_path / "s.png") as im:
        im.verify()
    with Image.open(tmp_path / "s.png") as im:
        assert im.format == "PNG" and im.size == (300, 300)
        px = np.asarray(im.convert("RGB"))
    colours = {tuple(c) for c in px.reshape(-1, 3)}
    assert {(31, 119, 180), (200, 200, 200), (214, 39, 40), (255, 127, 14)} <= colours
    # D > 2 and D = 1, no real/modes, a non-finite point, a nested new folder
    x = torch.randn(100, 5)
    x[0, 0] = float("nan")
    scatter_png(x, tmp_path / "new" / "d5.png")
    scatter_png(torch.randn(50, 1), tmp_path / "d1.png", size=64)
    assert Image.open(tmp_path / "d1.png").size == (64, 64)
    assert not [p for p in tmp_path.rglob("*.tmp")]
    with pytest.raises(GanforgeError):
        scatter_png(x, tmp_path / "bad.png", size=10)


def test_write_csv_round_trip(tmp_path):
    x = torch.randn(20, 3) * 1000
    write_csv(x, tmp_path / "out" / "samples.csv")
    lines = (tmp_path / "out" / "samples.csv").read_text().splitlines()
    assert lines[0] == "x0,x1,x2" and len(lines) == 21
    back = np.loadtxt(tmp_path / "out" / "samples.csv", delimiter=",", skiprows=1)
    assert np.array_equal(back.astype(np.float32), x.numpy())
    assert torch.equal(load_vectors(str(tmp_path / "out" / "samples.csv")).x, x)


def test_rejection_sampling_keeps_what_d_prefers(tmp_path):
    """Discriminator rejection sampling: samples come from G, D filters them, the CLI writes
    them; stricter percentiles accept fewer."""
    import ganforge
    from ganforge.cli import main

    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy", "--data", "ring8", "--max-steps", "30",
                 "--out", str(run), "-q", "hidden=16", "batch_size=32", "log_every=10"]) == 0
    g = ganforge.load(run, device="cpu")
    loose = g.sample_rejection(200, seed=0, percentile=0, burn_in=500, batch_size=200)
    acc_loose = g.last_acceptance
    strict = g.sample_rejection(200, seed=0, percentile=95, burn_in=500, batch_size=200)
    assert loose.shape == strict.shape == (200, 2)
    assert g.last_acceptance < acc_loose
    assert main(["sample", str(run), "--n", "50", "--out", str(tmp_path / "s"),
                 "--rejection", "50"]) == 0
    assert len((tmp_path / "s" / "samples.csv").read_text().strip().splitlines()) == 51
    assert main(["sample", str(run), "--rejection", "100"]) == 2
