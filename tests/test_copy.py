"""The copy (memorisation) metric: the pure numerics, and `ganforge eval RUN --metrics copy`."""

import json

import pytest
import torch

import ganforge.evaluate as ev
from ganforge.cli import main
from ganforge.metrics.copy import (
    COPY_THRESHOLD,
    copy_metrics,
    copy_ratios,
    nearest,
    pixels,
    summarize,
)


def _mixture(n: int, seed: int, dim: int = 16) -> torch.Tensor:
    centres = torch.randn(10, dim, generator=torch.Generator().manual_seed(123)) * 5
    g = torch.Generator().manual_seed(seed)
    return centres[torch.randint(0, 10, (n,), generator=g)] + torch.randn(n, dim, generator=g)


# --- pure ---------------------------------------------------------------------------------


def test_nearest_matches_brute_force_in_small_chunks():
    q, r = torch.randn(37, 5), torch.randn(53, 5)
    d, i = nearest(q, r, k=3, q_chunk=8, r_chunk=10)
    full = torch.cdist(q.double(), r.double())
    ref = full.topk(3, dim=1, largest=False)
    assert torch.equal(i, ref.indices)
    assert torch.allclose(d.double(), ref.values, atol=1e-5)
    # exclude: a query never matches the index it names (itself, for real-to-real)
    d, i = nearest(r, r, k=1, exclude=torch.arange(53), q_chunk=8, r_chunk=10)
    assert (i[:, 0] != torch.arange(53)).all() and (d > 0).all()


def test_exact_copies_give_ratio_zero_and_share_one():
    train = _mixture(400, 0)
    r = copy_ratios(train[torch.randperm(400)[:100]], train)
    assert (r["ratio"] == 0).all()
    share, median, worst = summarize(r["ratio"])
    assert share == 1.0 and median == 0.0 and len(worst) == 8


def test_fresh_draws_are_not_copies():
    r = copy_ratios(_mixture(300, 1), _mixture(1500, 2))
    share, median, _ = summarize(r["ratio"])
    assert share < 0.02 and 0.7 < median < 1.5


def test_held_out_digits_are_not_copies_but_noisy_training_digits_are():
    from ganforge.data import load_dataset

    x = load_dataset("digits", resolution=16, log=None).images
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    train, held = x[perm[:1200]], x[perm[1200:1500]]
    share, _, _ = summarize(copy_ratios(held, train, pixels)["ratio"])
    assert share < 0.05
    noisy = (train[:300].int() + torch.randint(-3, 4, train[:300].shape)).clamp(0, 255)
    r = copy_ratios(noisy.to(torch.uint8), train, pixels)
    share, median, _ = summarize(r["ratio"])
    assert share > 0.95 and median < COPY_THRESHOLD
    m, det = copy_metrics(noisy.float().flatten(1), train.float().flatten(1),
                          noisy.to(torch.uint8), train)
    assert set(m) == {"copy_share_feat", "copy_median_feat", "copy_share_pixel",
                      "copy_median_pixel"}
    assert det["neighbours_pixel"].shape == (300, 3)
    assert (det["neighbours_pixel"][:, 0] == torch.arange(300)).all()


# --- eval RUN --metrics copy ---------------------------------------------------------------


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, tiny):
    """A tiny run trained (2 steps) on a folder of 200 digits, and 200 digits it never saw."""
    from ganforge.data import load_dataset
    from ganforge.utils import save_png

    base = tmp_path_factory.mktemp("copy")
    x = load_dataset("digits", resolution=32, log=None).images
    folder = base / "train"
    folder.mkdir()
    for i in range(200):
        save_png(x[i], folder / f"{i:04d}.png")
    run = base / "run"
    assert main(["train", "--preset", "dcgan", "--data", str(folder), "--max-steps", "2",
                 "--out", str(run), "-q", *tiny]) == 0
    return run, folder, x[1000:1200]


def _fake_generator(monkeypatch, images):
    def sample(g, n, seed, batch_size=500):
        return images[torch.arange(n) % len(images)], None

    monkeypatch.setattr(ev, "_sample_uint8", sample)


def test_eval_copy_flags_a_memorising_generator_not_a_healthy_one(folder_run, monkeypatch):
    from ganforge.data import load_dataset

    run, folder, held = folder_run
    train = load_dataset(str(folder), resolution=32, channels=1, log=None).images
    # memorising: its training images back, plus a little noise
    memo = (train.int() + torch.randint(-2, 3, train.shape)).clamp(0, 255).to(torch.uint8)
    _fake_generator(monkeypatch, memo)
    # --data elsewhere: copy still compares with the run's own training set
    assert main(["eval", str(run), "--metrics", "copy", "--n", "64", "--features", "digits",
                 "--data", "digits"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    assert rep["copy_reference"] == str(folder) and rep["copy_train_images"] == 200
    assert rep["metrics"]["copy_share_pixel"] > 0.9 and rep["metrics"]["copy_share_feat"] > 0.9
    assert rep["metrics"]["copy_median_pixel"] < COPY_THRESHOLD
    # healthy: fresh digits from the same distribution
    _fake_generator(monkeypatch, held)
    assert main(["eval", str(run), "--metrics", "copy", "--n", "64",
                 "--features", "digits"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    assert rep["metrics"]["copy_share_pixel"] < 0.1 and rep["metrics"]["copy_share_feat"] < 0.1
    assert rep["metrics"]["copy_median_pixel"] > COPY_THRESHOLD


def test_eval_copy_end_to_end(tmp_path, tiny, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "dcgan", "--max-steps", "2", "--out", str(run), "-q",
                 *tiny]) == 0
    assert main(["eval", str(run), "--metrics", "fid,copy", "--n", "64",
                 "--features", "digits"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    for k in ("fid", "copy_share_feat", "copy_median_feat", "copy_share_pixel",
              "copy_median_pixel"):
        assert isinstance(rep["metrics"][k], float), k
    assert rep["copy_reference"] == "digits" and len(rep["copy_worst_pixel"]) == 8
    from PIL import Image

    im = Image.open(run / "copies.png")
    assert im.size == (4 * 34 + 2, 8 * 34 + 2)  # 8 rows: a sample and its 3 neighbours
    assert "copies: median ratio (pixels)" in capsys.readouterr().out


def test_eval_copy_on_a_vector_run_is_one_error_line(tmp_path, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy", "--max-steps", "2", "--out", str(run),
                 "-q"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "copy", "--n", "64"]) == 2
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "copy" in lines[0]


@pytest.mark.slow
def test_a_run_that_memorises_its_training_images_is_flagged(tmp_path, capsys):
    """A real training run that copies: 8 digits as 8 classes of one image each (the generator
    learns one picture per label), tiny nets, 2,000 steps (~30 s): nearly every sample is
    within half the real-to-real gap of a training image (measured: 100% in pixels, 86% in the
    digits classifier's features; 0% and 10% at 1,000 steps)."""
    from ganforge.data import load_dataset
    from ganforge.utils import save_png

    x = load_dataset("digits", resolution=32, log=None).images
    for i in range(8):
        save_png(x[i], tmp_path / "id" / f"img{i}" / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "id"), "--max-steps", "2000", "--out",
                 str(run), "-q", "g_channel_base=256", "d_channel_base=256",
                 "sample_every=0", "checkpoint_every=1000"]) == 0
    assert main(["eval", str(run), "--metrics", "copy", "--n", "200",
                 "--features", "digits"]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]
    assert m["copy_share_pixel"] > 0.9 and m["copy_median_pixel"] < COPY_THRESHOLD
    assert m["copy_share_feat"] > 0.5
