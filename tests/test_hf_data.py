"""``--data hf:...``: Hugging Face datasets through the ``datasets`` library, tested on copies
made here (save_to_disk and parquet), with the Hub made unreachable: nothing waits on a
network."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import one_error_line as _one_error_line

datasets = pytest.importorskip("datasets")

from PIL import Image  # noqa: E402

from ganforge.cli import main  # noqa: E402
from ganforge.data import load_dataset  # noqa: E402
from ganforge.data.hf_sets import parse_hf_spec  # noqa: E402
from ganforge.errors import GanforgeError  # noqa: E402


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """huggingface_hub and datasets read their offline switches when imported: set the
    environment (for subprocesses) and their module constants (for this process)."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nobody listens there
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setattr(datasets.config, name, True, raising=False)


def _picture(rng, bright: bool, size=(12, 10)) -> Image.Image:
    base = 170 if bright else 20
    a = rng.integers(base, base + 60, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(a)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """40 training and 8 test images of 2 classes (dark, bright), with a second image column
    and an integer column: saved with save_to_disk, as parquet files and as one parquet file."""
    root = tmp_path_factory.mktemp("hf")
    rng = np.random.default_rng(0)
    features = datasets.Features({
        "caption": datasets.Value("string"), "photo": datasets.Image(),
        "thumb": datasets.Image(), "label": datasets.ClassLabel(names=["dark", "bright"]),
        "kind": datasets.Value("int64")})

    def split(n):
        labels = [i % 2 for i in range(n)]
        return datasets.Dataset.from_dict({
            "caption": [f"image {i}" for i in range(n)],
            "photo": [_picture(rng, bool(k)) for k in labels],
            "thumb": [_picture(rng, not k, (6, 6)) for k in labels],
            "label": labels, "kind": [10 + i % 3 for i in range(n)]}, features=features)

    dd = datasets.DatasetDict({"train": split(40), "test": split(8)})
    dd.save_to_disk(str(root / "saved"))
    (root / "pq" / "data").mkdir(parents=True)
    dd["train"].to_parquet(str(root / "pq" / "data" / "train-00000-of-00001.parquet"))
    dd["test"].to_parquet(str(root / "pq" / "data" / "test-00000-of-00001.parquet"))
    dd["train"].to_parquet(str(root / "one.parquet"))
    return root


def test_train_on_a_saved_set_finds_its_classes(sets, tmp_path, tiny, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", f"hf:{sets / 'saved'}", "--max-steps", "2", "--out",
                 str(run), *tiny, "batch_size=8"]) == 0
    err = capsys.readouterr().err
    assert "recipe: small-data-cond" in err and "40 images in 2 classes" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "small-data-cond" and cfg["model"]["num_classes"] == 2
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000002"


def test_parquet_copies_give_the_same_images_and_labels(sets):
    saved = load_dataset(f"hf:{sets / 'saved'}", resolution=8, log=None)
    assert saved.images.shape == (40, 3, 8, 8) and saved.class_names == ["dark", "bright"]
    assert saved.labels.tolist() == [i % 2 for i in range(40)]
    # the classes really are the images' own: bright ones are brighter
    means = saved.images.float().mean(dim=(1, 2, 3))
    assert means[saved.labels == 1].min() > means[saved.labels == 0].max()
    for spec in (f"hf:{sets / 'pq'}", f"hf:{sets / 'pq'}:train", f"hf:{sets / 'one.parquet'}"):
        other = load_dataset(spec, resolution=8, log=None)
        assert torch.equal(other.images, saved.images), spec
        assert torch.equal(other.labels, saved.labels) and other.class_names == ["dark", "bright"]
    test = load_dataset(f"hf:{sets / 'pq'}:test", resolution=8, log=None)
    assert len(test) == 8 and len(load_dataset(f"hf:{sets / 'saved'}:test", 8, log=None)) == 8


def test_explicit_columns(sets, tmp_path, tiny):
    ds = load_dataset(f"hf:{sets / 'saved'}", resolution=8, log=None, image_column="thumb",
                      label_column="kind")
    assert ds.native_side == 6  # the thumbnails, not the photos
    assert ds.class_names == ["10", "11", "12"] and ds.labels.tolist()[:4] == [0, 1, 2, 0]
    means = ds.images.float().mean(dim=(1, 2, 3))
    assert means[0::2].min() > means[1::2].max()  # thumbs are bright where photos are dark
    none = load_dataset(f"hf:{sets / 'saved'}", resolution=8, log=None, label_column="none")
    assert none.labels is None and none.class_names == []
    run = tmp_path / "run"
    assert main(["train", "--data", f"hf:{sets / 'saved'}", "--preset", "dcgan",
                 "image_column=thumb", "label_column=kind", "g_cond=concat", "d_cond=concat",
                 "--max-steps", "1", "--out", str(run), "-q", *tiny]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 3 and cfg["data"]["image_column"] == "thumb"


def test_disk_cache_key_comes_from_the_dataset(sets, tmp_path):
    home, lines = tmp_path / "home", []
    spec = f"hf:{sets / 'saved'}"
    a = load_dataset(spec, 8, home=home, log=lines.append, memory_limit_bytes=1)
    assert any("disk cache" in m for m in lines)
    b = load_dataset(spec, 8, home=home, log=lines.append, memory_limit_bytes=1)
    assert any(m.startswith("using decoded cache") for m in lines)
    assert torch.equal(a.images, b.images)
    # another column is another decoded array, not the cached one
    c = load_dataset(spec, 8, home=home, log=lines.append, memory_limit_bytes=1,
                     image_column="thumb")
    assert not torch.equal(c.images, a.images)


def test_spec_parsing(sets):
    p = parse_hf_spec("hf:ylecun/mnist")
    assert (p.name, p.path, p.config, p.split) == ("ylecun/mnist", None, None, None)
    assert parse_hf_spec("hf:user/set:test").split == "test"
    assert parse_hf_spec("hf:user/set:cfg").config == "cfg"
    p = parse_hf_spec("hf:user/set:cfg:train[:10%]")
    assert (p.config, p.split) == ("cfg", "train[:10%]")
    p = parse_hf_spec(f"hf:{sets / 'saved'}:test")
    assert p.path == sets / "saved" and p.split == "test"


def test_missing_hub_set_offline_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--data", "hf:nobody/no-such-set", "--max-steps", "1",
                 "--out", str(out)]) == 2
    _one_error_line(capsys, "hf:nobody/no-such-set", "cannot be reached", "connection")
    assert not out.exists()


def test_without_the_datasets_package_is_one_line(sets, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "datasets", None)
    assert main(["train", "--data", f"hf:{sets / 'saved'}", "--max-steps", "1",
                 "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, "'datasets'", 'pip install "ganforge[hf-data]"')


@pytest.mark.parametrize("extra, words", [
    (["image_column=nope"], ["no column 'nope'", "photo (Image)", "check image_column"]),
    (["image_column=caption"], ["'caption' holds string, not images"]),
    (["label_column=photo"], ["'photo' holds Image, not class labels"]),
    (["label_column=nope"], ["no column 'nope'", "label (ClassLabel)"]),
])
def test_bad_columns_are_one_line(sets, tmp_path, capsys, extra, words):
    assert main(["train", "--data", f"hf:{sets / 'saved'}", *extra, "--max-steps", "1",
                 "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, *words)


@pytest.mark.parametrize("args, words", [
    (["--data", "digits", "image_column=img"], ["image_column=img", "digits is not one",
                                                "drop image_column"]),
    (["--data", "digits", "--preset", "dcgan", "label_column=y"], ["drop label_column"]),
    (["--data", "ring8", "label_column=y"], ["ring8 is not one"]),
    (["--data", "SAVED:nope"], ["no split 'nope'", "train, test"]),
    (["--data", "SAVED", "--preset", "pix2pix", "task=edges2image", "image_column=thumb"],
     ["task=edges2image", "drop image_column"]),
])
def test_misplaced_keys_and_splits_are_one_line(sets, tmp_path, capsys, args, words):
    args = [a.replace("SAVED", f"hf:{sets / 'saved'}") for a in args]
    assert main(["train", *args, "--max-steps", "1", "--out", str(tmp_path / "run")]) == 2
    _one_error_line(capsys, *words)


@pytest.mark.parametrize("spec, message, words", [
    ("hf:u/s:x", "BuilderConfig 'x' not found. Available: ['a', 'b']",
     ["no config 'x'", "['a', 'b']", "hf:u/s:CONFIG"]),
    ("hf:u/s", "Config name is missing.\nPlease pick one among the available configs: ['a', "
     "'b']\nExample of usage:\n\t`load_dataset('u/s', 'a')`",
     ["a config must be named", "['a', 'b']"]),
    ("hf:u/s:cfg:x", 'Unknown split "x". Should be one of [\'train\', \'test\'].',
     ["no split 'x'", "['train', 'test']"]),
])
def test_hub_config_and_split_errors_are_one_line(monkeypatch, spec, message, words):
    def fake(*args, **kwargs):
        raise ValueError(message)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    with pytest.raises(GanforgeError) as e:
        load_dataset(spec, log=None)
    assert "\n" not in str(e.value)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
