"""Self-supervised (contrastive) feature nets: training without labels, save/load, the CLI
(`features train` on a flat folder, then `eval --features FILE`), and that their FIDs rank a
collapsed set below held-out real images."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from ganforge.cli import main
from ganforge.data.dataset import ImageDataset
from ganforge.data.load import load_dataset
from ganforge.errors import GanforgeError
from ganforge.metrics import features as feats
from ganforge.metrics.classifier import (
    DomainClassifier,
    _recalibrate_batchnorm,
    extract_features,
    load_classifier,
    predict,
    save_classifier,
)
from ganforge.metrics.selfsup import augment, nt_xent, train_contrastive


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))


def _shapes(root, n, seed=0, size=24, mode="RGB"):
    """A flat folder of ``n`` PNGs: one shape (ellipse, box or triangle) of a random colour,
    place and size on a random plain background."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        bg, fg = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
        im = Image.new("RGB", (size, size), bg)
        d = ImageDraw.Draw(im)
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        w, h = (int(v) for v in rng.integers(size // 4, size // 2 + 1, 2))
        box = [x0, y0, x0 + w, y0 + h]
        if i % 3 == 0:
            d.ellipse(box, fill=fg)
        elif i % 3 == 1:
            d.rectangle(box, fill=fg)
        else:
            d.polygon([(x0, y0 + h), (x0 + w, y0 + h), (x0 + w // 2, y0)], fill=fg)
        im.convert(mode).save(root / f"{i:04d}.png")
    return root


def _run_cli(*args):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)],
                          capture_output=True, text=True, env={**os.environ})
    return proc.returncode, proc.stdout, proc.stderr


def _knn_accuracy(f: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Leave-one-out k-NN accuracy (Euclidean, the geometry FID sees)."""
    d = torch.cdist(f, f)
    d.fill_diagonal_(float("inf"))
    votes = labels[d.topk(k, largest=False).indices]  # [N, k]
    return float((votes.mode(dim=1).values == labels).float().mean())


# --- the net and the training -----------------------------------------------------------------


def test_train_changes_weights_round_trips_and_keeps_the_rng(tmp_path):
    data = load_dataset(str(_shapes(tmp_path / "flat", 64)), resolution=24, log=None)
    assert data.labels is None and data.channels == 3
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        init = DomainClassifier(0, 3, kind="contrastive").state_dict()
    state = torch.get_rng_state()
    lines: list[str] = []
    model, stats = train_contrastive(data, steps=12, batch_size=32, log=lines.append)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert set(stats) >= {"seconds", "n_images", "steps", "loss"}
    assert stats["n_images"] == 64 and stats["steps"] == 12 and np.isfinite(stats["loss"])
    assert stats["epochs"] == 6 and sum("contrastive epoch" in ln for ln in lines) == 6
    trained = model.state_dict()
    assert init.keys() == trained.keys() and not any("head" in k for k in trained)
    changed = [k for k in init if k.endswith("weight") and not torch.equal(init[k], trained[k])]
    assert len(changed) == sum(k.endswith("weight") for k in init)  # every layer learnt
    assert not model.training and model.head is None and model.class_names == []

    path = tmp_path / "ss.safetensors"
    save_classifier(model, path)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["kind"] == "contrastive" and side["num_classes"] == 0
    assert side["n_images"] == 64 and side["trained_on"] == str(tmp_path / "flat")
    back = load_classifier(path)
    assert back.kind == "contrastive" and back.head is None
    assert torch.equal(extract_features(back, data.images), extract_features(model, data.images))
    # the same seed gives the same net
    again, _ = train_contrastive(data, steps=12, batch_size=32, log=None)
    assert torch.equal(extract_features(again, data.images[:8]),
                       extract_features(model, data.images[:8]))
    # head-less: features only
    with pytest.raises(GanforgeError, match="no classification head"):
        model(data.images[:2])
    with pytest.raises(GanforgeError, match="no classification head"):
        predict(model, data.images[:2])
    space = feats.ClassifierFeatures(back, f"file {path}")
    f, probs = space(data.images[:5])
    assert f.shape == (5, 128) and probs is None and space.class_names is None
    assert "self-supervised" in space.name and "64 images" in space.name
    assert "not Inception" in space.name and "same data" in space.name
    assert space.key.startswith("clf-")


def test_tiny_gray_sets_and_bad_input():
    digits = load_dataset("digits", resolution=16, log=None)
    tiny = ImageDataset(digits.images[:16], None, [], "tiny")
    model, stats = train_contrastive(tiny, steps=3, log=None)  # batch capped at 16
    assert stats["batch_size"] == 16 and stats["steps"] == 3 and model.channels == 1
    assert extract_features(model, tiny.images).shape == (16, 128)
    for n in (0, 1):
        with pytest.raises(GanforgeError, match="at least 2") as e:
            train_contrastive(ImageDataset(digits.images[:n], None, [], "one"), log=None)
        assert "\n" not in str(e.value)
    with pytest.raises(GanforgeError, match="epochs"):
        train_contrastive(tiny, epochs=0, log=None)
    with pytest.raises(GanforgeError, match="num_classes must be 0"):
        DomainClassifier(3, 1, kind="contrastive")
    with pytest.raises(GanforgeError, match="kind"):
        DomainClassifier(0, 1, kind="simclr")


def test_augment_and_loss():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    state = torch.get_rng_state()
    a, b = augment(x, gen), augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, augment(x, gen))  # a new draw: another view
    z = torch.randn(8, 16)
    # the loss is low when the two views agree and high when they are unrelated
    assert float(nt_xent(z, z)) < float(nt_xent(z, torch.randn(8, 16))) - 1.0


def test_learned_features_beat_random_init_on_digits_knn():
    """k-NN accuracy (labels used only to score) of the learned features vs the same net
    untrained (BatchNorm statistics recomputed on the data too)."""
    digits = load_dataset("digits", resolution=32, log=None)
    labels = digits.labels.long()
    unlabelled = ImageDataset(digits.images, None, [], "digits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        rand = DomainClassifier(0, 1, kind="contrastive")
    _recalibrate_batchnorm(rand, digits.images, torch.arange(len(digits)), 512,
                           torch.device("cpu"))
    model, _ = train_contrastive(unlabelled, steps=120, batch_size=64, log=None)
    fr, fl = extract_features(rand, digits.images), extract_features(model, digits.images)
    for k in (1, 3, 5):
        before, after = _knn_accuracy(fr, labels, k), _knn_accuracy(fl, labels, k)
        assert after > before + 0.01, (k, before, after)


# --- the CLI and the metrics --------------------------------------------------------------------


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Flat folders: real (160 shapes), better (160 other shapes of the same kind), collapsed
    (2 of the real images, 80 copies each), and a contrastive feature file trained on real."""
    root = tmp_path_factory.mktemp("selfsup")
    real = _shapes(root / "real", 160, seed=1)
    better = _shapes(root / "better", 160, seed=2)
    collapsed = root / "collapsed"
    collapsed.mkdir()
    for i in range(160):
        (collapsed / f"{i:04d}.png").write_bytes((real / f"{i % 2:04d}.png").read_bytes())
    f = root / "feats.safetensors"
    old = os.environ.get("GANFORGE_HOME")
    os.environ["GANFORGE_HOME"] = str(root / "home")
    try:
        code = main(["features", "train", "--data", str(real), "--out", str(root / "feats"),
                     "--epochs", "20", "--device", "cpu"])
    finally:
        if old is None:
            del os.environ["GANFORGE_HOME"]
        else:
            os.environ["GANFORGE_HOME"] = old
    assert code == 0
    return {"real": real, "better": better, "collapsed": collapsed, "features": f,
            "root": root}


def test_cli_features_train_on_a_flat_folder(sets, capsys):
    f = sets["features"]
    assert f.is_file() and f.with_suffix(".json").is_file()
    side = json.loads(f.with_suffix(".json").read_text())
    assert side["kind"] == "contrastive" and side["num_classes"] == 0 and side["n_images"] == 160
    # --epochs 0 is refused, in one line
    assert main(["features", "train", "--data", str(sets["real"]), "--out",
                 str(sets["root"] / "x"), "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert "--epochs 0" in err and len(err.strip().splitlines()) == 1
    assert not (sets["root"] / "x.safetensors").exists()


def test_cli_auto_method_says_contrastive(tmp_path, capsys):
    flat = _shapes(tmp_path / "flat", 24, size=16, mode="L")
    f = tmp_path / "g.safetensors"
    assert main(["features", "train", "--data", str(flat), "--out", str(f), "--epochs", "2",
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "method: contrastive (no class labels" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith(f"wrote {f} (+ g.json): 24 images, self-supervised (contrastive), ")
    assert load_classifier(f).channels == 1
    # one class sub-folder: labels, but nothing to classify
    _shapes(tmp_path / "one" / "cats", 12, size=16)
    assert main(["features", "train", "--data", str(tmp_path / "one"), "--out",
                 str(tmp_path / "h"), "--epochs", "1", "--device", "cpu"]) == 0
    assert "method: contrastive (only 1 class of labels)" in capsys.readouterr().out


def test_cli_method_classifier_on_a_flat_folder_is_one_error_line(sets, tmp_path):
    code, out, err = _run_cli("features", "train", "--data", sets["better"], "--out",
                              tmp_path / "c", "--method", "classifier")
    assert code == 2 and "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "class labels" in lines[0]
    assert "--method contrastive" in lines[0]
    assert not (tmp_path / "c.safetensors").exists()


def _eval(sets, fake, capsys, metrics="fid,kid,pr"):
    assert main(["eval", "--real", str(sets["real"]), "--fake", str(sets[fake]),
                 "--features", str(sets["features"]), "--metrics", metrics,
                 "--device", "cpu"]) == 0
    return capsys.readouterr().out


def test_cli_eval_with_self_supervised_features(sets, capsys):
    out = _eval(sets, "better", capsys)
    assert "FID" in out and "KID" in out and "precision" in out
    assert "self-supervised features (128-d, contrastive" in out and "same data only" in out
    # IS and class metrics need a classifier head: silently skipped, never a crash
    out = _eval(sets, "better", capsys, metrics="fid,is,classes,dc")
    assert "FID" in out and "coverage" in out
    assert not re.search(r"\bIS\b|classes covered|class KL|classifier confidence", out), out
    from ganforge.evaluate import evaluate_folders

    m = evaluate_folders(sets["real"], sets["better"], None, str(sets["features"]),
                         device="cpu")["metrics"]  # the default metrics: is, classes too
    assert {"fid", "kid", "precision", "recall", "density", "coverage"} <= set(m)
    assert not {"is", "is_std", "classes_covered", "class_kl", "cond_acc"} & set(m), m


def test_fid_on_self_supervised_features_ranks_held_out_above_collapsed(sets, capsys):
    from ganforge.evaluate import evaluate_folders

    better = evaluate_folders(sets["real"], sets["better"], "fid,kid", str(sets["features"]),
                              device="cpu")["metrics"]
    collapsed = evaluate_folders(sets["real"], sets["collapsed"], "fid,kid",
                                 str(sets["features"]), device="cpu")["metrics"]
    assert better["fid"] * 3 < collapsed["fid"], (better, collapsed)
    assert better["kid"] < collapsed["kid"], (better, collapsed)
    # and through the CLI, the numbers printed are the same ones
    out = _eval(sets, "collapsed", capsys, metrics="fid")
    assert f"{collapsed['fid']:.3f}" in out


def test_missing_inception_error_names_features_train(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(feats.INCEPTION_ENV, raising=False)
    with pytest.raises(GanforgeError) as e:
        feats.feature_space("auto", data=str(tmp_path / "some" / "dir"))
    msg = str(e.value)
    assert "ganforge features train --data DIR --out FILE" in msg and "--features FILE" in msg
    assert "flat folder" in msg and "class sub-folders" in msg and "\n" not in msg


def test_eval_run_on_self_supervised_features_ranks_better_above_collapsed(sets, monkeypatch,
                                                                             capsys, tiny):
    """`ganforge eval RUN --features FILE` on a run trained on the flat folder: a generator
    that draws new images of the kind scores a lower FID than one stuck on two of them."""
    import ganforge.evaluate as ev
    from ganforge.data import load_dataset

    run = sets["root"] / "run"
    if not run.is_dir():
        assert main(["train", "--preset", "dcgan", "--data", str(sets["real"]), "--max-steps",
                     "2", "--out", str(run), "-q", *tiny]) == 0
    fid = {}
    for kind in ("better", "collapsed"):
        images = load_dataset(str(sets[kind]), resolution=32, channels=3, log=None).images

        def sample(g, n, seed, batch_size=500, images=images):
            return images[torch.arange(n) % len(images)], None

        monkeypatch.setattr(ev, "_sample_uint8", sample)
        assert main(["eval", str(run), "--features", str(sets["features"]), "--metrics",
                     "fid,kid", "--n", "160"]) == 0
        rep = json.loads((run / "eval.json").read_text())
        assert "self-supervised" in rep["features"]
        fid[kind] = rep["metrics"]["fid"]
    assert fid["better"] * 3 < fid["collapsed"], fid
