"""The domain classifier: training on digits, caching, save/load, inputs of any form."""

from __future__ import annotations

import json
import time

import pytest
import torch

from ganforge.data.dataset import ImageDataset
from ganforge.data.load import load_dataset
from ganforge.errors import GanforgeError
from ganforge.metrics import classifier as C
from ganforge.metrics.classifier import (
    DomainClassifier,
    digits_classifier,
    extract_features,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", resolution=32, channels=1, log=None)


@pytest.fixture(scope="module")
def trained(digits):
    """One short real training run shared by the tests (a few seconds)."""
    with torch.random.fork_rng(devices=[]):
        return train_classifier(digits, epochs=4, batch_size=32, log=None)


def _tiny(channels: int = 1, classes: int = 3) -> DomainClassifier:
    return DomainClassifier(classes, channels, width=4, feature_dim=8).eval()


def test_train_on_digits_reaches_90_percent(trained):
    model, stats = trained
    assert set(stats) == {"val_accuracy", "train_accuracy", "epochs", "seconds", "n_train",
                          "n_val"}
    assert stats["val_accuracy"] >= 0.90, stats
    assert stats["n_train"] + stats["n_val"] == 1797 and stats["n_val"] == 270
    cfg = model.config
    assert cfg["num_classes"] == 10 and cfg["channels"] == 1 and cfg["trained_on"] == "digits"
    assert cfg["class_names"] == [str(i) for i in range(10)]
    assert cfg["resolution"] == 32 and cfg["accuracy"] == stats["val_accuracy"]
    assert not model.training


def test_predict_and_features(trained, digits):
    model, _ = trained
    x = digits.images[:37]
    probs = predict(model, x, batch_size=16)
    assert probs.shape == (37, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(37))
    assert (probs.argmax(1) == digits.labels[:37]).float().mean() >= 0.8
    feats = extract_features(model, x, batch_size=16)
    assert feats.shape == (37, 128) and feats.dtype == torch.float32
    assert predict(model, x[:0]).shape == (0, 10)
    assert extract_features(model, x[:0]).shape == (0, 128)


def test_uint8_float_resolutions_and_channels(trained, digits):
    model, _ = trained
    u8 = digits.images[:64]
    f = u8.float() / 127.5 - 1
    p = predict(model, u8)
    torch.testing.assert_close(p, predict(model, f))
    # other resolutions are resized to the working size: labels mostly agree
    big = torch.nn.functional.interpolate(f, size=64, mode="bilinear", align_corners=False)
    p64 = predict(model, big)
    assert p64.shape == (64, 10)
    assert (p64.argmax(1) == p.argmax(1)).float().mean() >= 0.85
    assert predict(model, f[:, :, :16, :16].contiguous()).shape == (64, 10)
    # colour input to a gray classifier: a gray image repeated into RGB gives the same answer
    torch.testing.assert_close(predict(model, f.repeat(1, 3, 1, 1)), p, atol=1e-5, rtol=1e-4)
    # gray input to a colour classifier
    rgb = _tiny(channels=3)
    assert predict(rgb, u8).shape == (64, 3)
    assert extract_features(rgb, torch.rand(5, 3, 40, 40) * 2 - 1).shape == (5, 8)
    with pytest.raises(GanforgeError, match="at least 8x8"):
        predict(model, f[:, :, :4, :4])
    with pytest.raises(GanforgeError, match="1 or 3 channels"):
        predict(model, torch.zeros(2, 2, 32, 32))


def test_save_load_round_trip(tmp_path, trained, digits):
    model, _ = trained
    path = tmp_path / "feats.safetensors"
    save_classifier(model, path)
    assert path.is_file() and (tmp_path / "feats.json").is_file()
    assert json.loads((tmp_path / "feats.json").read_text()) == model.config
    assert not list(tmp_path.glob("*.tmp"))
    loaded = load_classifier(path)
    assert loaded.config == model.config and not loaded.training
    x = digits.images[:50]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.equal(extract_features(loaded, x), extract_features(model, x))


def _one_line_error(path, match):
    with pytest.raises(GanforgeError, match=match) as info:
        load_classifier(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path.parent) in msg
    return msg


def test_missing_and_corrupt_files(tmp_path):
    path = tmp_path / "c.safetensors"
    _one_line_error(path, "not found")
    save_classifier(_tiny(), path)
    load_classifier(path)  # fine as saved
    weights = path.read_bytes()
    path.write_bytes(b"garbage" * 10)
    _one_line_error(path, "weights .* unreadable")
    path.write_bytes(weights[: len(weights) // 2])  # truncated
    _one_line_error(path, "weights .* unreadable")
    path.write_bytes(weights)
    side = tmp_path / "c.json"
    good = side.read_text()
    side.write_text("{not json")
    _one_line_error(path, "config .* unreadable")
    side.write_text(json.dumps({**json.loads(good), "num_classes": 5, "class_names": None}))
    _one_line_error(path, "do not match")  # config and weights disagree
    side.unlink()
    _one_line_error(path, "not found")


def test_old_sidecars_without_kind_and_head_less_nets(tmp_path):
    path = tmp_path / "old.safetensors"
    model = _tiny()
    save_classifier(model, path)
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["kind"] == "classifier" and side["n_images"] is None
    for key in ("kind", "n_images"):  # as written before these fields existed
        del side[key]
    path.with_suffix(".json").write_text(json.dumps(side))
    old = load_classifier(path)
    assert old.kind == "classifier" and old.num_classes == 3 and old.head is not None
    x = torch.zeros(2, 1, 32, 32, dtype=torch.uint8)
    assert predict(old, x).shape == (2, 3)
    # num_classes=0: no head, no class names, features only
    bare = DomainClassifier(0, 1, width=4, feature_dim=8).eval()
    assert bare.head is None and bare.class_names == [] and bare.kind == "classifier"
    assert not any(k.startswith("head") for k in bare.state_dict())
    assert extract_features(bare, x).shape == (2, 8)
    with pytest.raises(GanforgeError, match="no classification head"):
        bare(x)
    save_classifier(bare, tmp_path / "bare.safetensors")
    assert load_classifier(tmp_path / "bare.safetensors").config == bare.config
    with pytest.raises(GanforgeError, match="non-negative"):
        DomainClassifier(-1, 1)

def test_unlabelled_or_single_class_dataset_is_an_error():
    imgs = torch.zeros(20, 1, 32, 32, dtype=torch.uint8)
    with pytest.raises(GanforgeError, match="needs class labels: a folder with class sub-"):
        train_classifier(ImageDataset(imgs, None, [], "faces"), log=None)
    one = ImageDataset(imgs, torch.zeros(20, dtype=torch.int64), ["a"], "one")
    with pytest.raises(GanforgeError, match="at least 2 classes"):
        train_classifier(one, log=None)


def test_training_is_deterministic_and_other_channels(monkeypatch):
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (24, 3, 16, 16), generator=g, dtype=torch.uint8)
    imgs[12:, 0] = 255  # class 1: red channel on
    labels = torch.tensor([0] * 12 + [1] * 12)
    data = ImageDataset(imgs, labels, ["blue", "red"], "toy")
    state = torch.random.get_rng_state()
    a, sa = train_classifier(data, epochs=2, batch_size=8, log=None)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    b, _ = train_classifier(data, epochs=2, batch_size=8, log=None)
    assert a.config["channels"] == 3 and sa["n_val"] == 4 and sa["n_train"] == 20
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    _, s0 = train_classifier(data, epochs=1, batch_size=8, val_fraction=0.0, log=None)
    assert s0["val_accuracy"] is None and s0["n_val"] == 0


def test_digits_classifier_is_cached(tmp_path, monkeypatch):
    real = C.train_classifier
    calls = []

    def quick(data, **kw):  # the real trainer, shortened for the test
        calls.append(kw)
        few = ImageDataset(data.images[:200], data.labels[:200], data.class_names, data.name)
        return real(few, **{**kw, "epochs": 1})

    monkeypatch.setattr(C, "train_classifier", quick)
    first = digits_classifier(cache_dir=tmp_path)
    assert len(calls) == 1 and (tmp_path / "digits-32.safetensors").is_file()
    assert (tmp_path / "digits-32.json").is_file()

    def fail(*a, **k):
        raise AssertionError("retrained instead of loading the cache")

    monkeypatch.setattr(C, "train_classifier", fail)
    again = digits_classifier(cache_dir=tmp_path)
    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(first(x), again(x))
    # default folder: under $GANFORGE_HOME/classifiers; a corrupt cache is retrained
    monkeypatch.setattr(C, "train_classifier", quick)
    digits_classifier()
    cached = C.ganforge_home() / "classifiers" / "digits-32.safetensors"
    assert cached.is_file() and len(calls) == 2
    cached.write_bytes(b"oops")
    digits_classifier()
    assert len(calls) == 3 and load_classifier(cached).config["trained_on"] == "digits"


@pytest.mark.slow
def test_digits_classifier_accuracy(tmp_path):
    t = time.perf_counter()
    model = digits_classifier(cache_dir=tmp_path)
    assert model.config["accuracy"] >= 0.97
    assert time.perf_counter() - t < 60
