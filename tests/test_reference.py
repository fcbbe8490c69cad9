"""`ganforge eval RUN --reference train|test|FILE` and `--metrics cas` (classification accuracy
score of a conditional run)."""

import json

import pytest
import torch

import ganforge.evaluate as ev
from ganforge.cli import main
from ganforge.errors import GanforgeError


def _one_error(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_test_split_of(tmp_path):
    assert ev.test_split_of("mnist") == "mnist:test"
    assert ev.test_split_of("CIFAR-10") == "cifar10:test"
    with pytest.raises(GanforgeError, match="no test split"):
        ev.test_split_of("digits")
    (tmp_path / "train").mkdir()
    with pytest.raises(GanforgeError, match="sibling test/"):
        ev.test_split_of(str(tmp_path / "train"))
    (tmp_path / "val").mkdir()
    assert ev.test_split_of(str(tmp_path / "train")) == str((tmp_path / "val").resolve())
    (tmp_path / "test").mkdir()  # test/ wins over val/
    assert ev.test_split_of(str(tmp_path / "train")) == str((tmp_path / "test").resolve())
    with pytest.raises(GanforgeError, match="sibling"):
        ev.test_split_of(str(tmp_path / "test"))  # not a train/ folder


def test_test_split_names_in_the_data_layer():
    from ganforge.data import load_dataset

    with pytest.raises(GanforgeError, match="digits have no train/test split"):
        load_dataset("digits:test", log=None)
    with pytest.raises(GanforgeError, match="unknown split 'dev'"):
        load_dataset("mnist:dev", log=None)


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, tiny):
    """A tiny run trained (2 steps) on base/train (60 digits, in class folders) with 60 other
    digits in base/test."""
    from ganforge.data import load_dataset
    from ganforge.utils import save_png

    base = tmp_path_factory.mktemp("ref")
    d = load_dataset("digits", resolution=32, log=None)
    for part, rng in (("train", range(0, 60)), ("test", range(1000, 1060))):
        for i in rng:
            folder = base / part / str(int(d.labels[i]))
            folder.mkdir(parents=True, exist_ok=True)
            save_png(d.images[i], folder / f"{i:04d}.png")
    run = base / "run"
    assert main(["train", "--preset", "dcgan", "--data", str(base / "train"), "--max-steps",
                 "2", "--out", str(run), "-q", *tiny]) == 0
    return run, base


def test_reference_test_train_and_npz(split_run, capsys):
    run, base = split_run
    args = ["eval", str(run), "--metrics", "fid", "--features", "digits", "--n", "100"]
    assert main([*args, "--reference", "test"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    assert rep["reference"] == "test" and rep["data"] == str((base / "test").resolve())
    fid_test = rep["metrics"]["fid"]
    assert main([*args, "--reference", "train"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    assert rep["data"] == str(base / "train") and rep["metrics"]["fid"] != fid_test
    # --reference FILE.npz: the statistics of the test folder give the same FID as the folder
    stats = base / "test_stats.npz"
    assert main(["eval", "--real", str(base / "test"), "--save-stats", str(stats),
                 "--features", "digits", "--resolution", "32"]) == 0
    assert main(["eval", str(run), "--features", "digits", "--n", "100",
                 "--reference", str(stats)]) == 0  # the default metrics become fid alone
    rep = json.loads((run / "eval.json").read_text())
    assert set(rep["metrics"]) == {"fid"} and rep["ref_stats"] == str(stats)
    assert rep["metrics"]["fid"] == pytest.approx(fid_test, rel=1e-4)
    # --features auto takes the features the file names (offline: no Inception to fall to)
    assert main(["eval", "--fake", str(base / "train"), "--ref-stats", str(stats)]) == 0
    assert "features: digits (named by" in capsys.readouterr().err
    capsys.readouterr()
    # refused combinations, one line each
    assert main([*args, "--reference", "test", "--data", "digits"]) == 2
    assert "--reference" in _one_error(capsys)
    assert main(["eval", "--real", str(base / "test"), "--fake", str(base / "train"),
                 "--reference", "test"]) == 2
    assert "--reference" in _one_error(capsys)
    assert main([*args, "--reference", str(base / "nothere")]) == 2
    assert "no such file or folder" in _one_error(capsys)


def test_reference_test_of_digits_is_one_error_line(tmp_path, tiny, capsys):
    run = tmp_path / "run"
    assert main(["train", "--preset", "dcgan", "--max-steps", "2", "--out", str(run), "-q",
                 *tiny]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--reference", "test", "--features", "digits"]) == 2
    assert "no test split" in _one_error(capsys)
    assert main(["eval", str(run), "--metrics", "cas", "--n", "20"]) == 2
    assert "unconditional" in _one_error(capsys)


# --- cas ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cond_run(tmp_path_factory, tiny):
    run = tmp_path_factory.mktemp("cas") / "run"
    assert main(["train", "--preset", "small-data-cond", "--max-steps", "2", "--out",
                 str(run), "-q", *tiny]) == 0
    return run


def _fake_generator(monkeypatch, images, labels):
    def sample(g, n, seed, batch_size=500):
        i = torch.arange(n) % len(images)
        return images[i], labels[i]

    monkeypatch.setattr(ev, "_sample_uint8", sample)


def test_cas_scores_samples_by_what_a_classifier_learns_from_them(cond_run, monkeypatch):
    from ganforge.data import load_dataset

    monkeypatch.setattr(ev, "CAS_STEPS", 150)
    d = load_dataset("digits", resolution=32, log=None)
    # a generator that gives digits of the class asked for: CAS near the real classifier's
    _fake_generator(monkeypatch, d.images[:600], d.labels[:600])
    assert main(["eval", str(cond_run), "--metrics", "cas", "--n", "600"]) == 0
    rep = json.loads((cond_run / "eval.json").read_text())
    good, real = rep["metrics"]["cas"], rep["metrics"]["cas_real"]
    assert good > 0.7 and real > 0.7, (good, real)
    assert rep["cas_samples"] == 600 and rep["cas_steps"] == 150
    assert rep["cas_test_images"] + rep["cas_real_images"] == 1797
    assert "held out" in rep["cas_test"]
    # one that ignores the class asked for: CAS at chance
    shuffled = d.labels[:600][torch.randperm(600, generator=torch.Generator().manual_seed(0))]
    _fake_generator(monkeypatch, d.images[:600], shuffled)
    assert main(["eval", str(cond_run), "--metrics", "cas", "--n", "600"]) == 0
    bad = json.loads((cond_run / "eval.json").read_text())["metrics"]["cas"]
    assert bad < 0.3, bad


def test_cas_end_to_end_with_fid(cond_run, monkeypatch, capsys):
    monkeypatch.setattr(ev, "CAS_STEPS", 30)
    assert main(["eval", str(cond_run), "--metrics", "fid,cas", "--n", "100",
                 "--features", "digits"]) == 0
    rep = json.loads((cond_run / "eval.json").read_text())
    assert 0 <= rep["metrics"]["cas"] <= 1 and 0 <= rep["metrics"]["cas_real"] <= 1
    assert rep["metrics"]["fid"] > 0
    out = capsys.readouterr().out
    assert "CAS: trained on samples" in out and "cas: tested on digits" in out
    assert main(["eval", str(cond_run), "--metrics", "cas", "--ref-stats", "x.npz"]) == 2
    assert "cas" in _one_error(capsys)


def test_reference_on_an_image_to_image_run_is_one_error_line(tmp_path, capsys):
    run = tmp_path / "p2p"
    assert main(["train", "--preset", "pix2pix", "--max-steps", "1", "--out", str(run), "-q",
                 "batch_size=4"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--reference", "test"]) == 2
    assert "held-out pairs" in _one_error(capsys)
