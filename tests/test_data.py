"""ganforge.data: digits, folders, zips, torchvision (offline), decoding rules, disk cache."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import ImageDataset, ganforge_home, load_dataset
from ganforge.errors import GanforgeError

R = 16


def save(path: Path, img: Image.Image, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)
    return path


def solid(mode: str, size: tuple[int, int], value) -> Image.Image:
    return Image.new(mode, size, value)


def noise_png() -> bytes:
    arr = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def sixteen_bit(value: int, size: tuple[int, int] = (12, 10)) -> Image.Image:
    return Image.fromarray(np.full(size[::-1], value, dtype=np.uint16))


def mixed_folder(root: Path) -> Path:
    """Six images in six modes/formats, none square."""
    save(root / "rgb.png", solid("RGB", (40, 20), (200, 10, 10)))
    save(root / "gray.PNG", solid("L", (20, 30), 77))
    save(root / "rgba.png", solid("RGBA", (25, 20), (255, 0, 0, 0)))  # fully transparent
    pal = solid("RGB", (30, 17), (0, 0, 250)).convert("P", palette=Image.Palette.ADAPTIVE)
    save(root / "pal.gif", pal)
    save(root / "deep.png", sixteen_bit(65535))
    save(root / "photo.jpg", solid("RGB", (33, 50), (10, 200, 10)))
    return root


def single_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


# ---------------------------------------------------------------- digits


def test_digits_default():
    ds = load_dataset("digits", log=None)
    assert isinstance(ds, ImageDataset)
    assert ds.images.shape == (1797, 1, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels is not None and ds.labels.dtype == torch.int64 and ds.labels.shape == (1797,)
    assert set(ds.labels.tolist()) == set(range(10))
    assert ds.class_names == [str(i) for i in range(10)] and ds.num_classes == 10
    assert (ds.name, ds.skipped, len(ds), ds.channels, ds.resolution) == ("digits", 0, 1797, 1, 32)
    assert ds.images.max() > 200 and ds.images.min() == 0


def test_digits_64_rgb():
    ds = load_dataset("digits", resolution=64, channels=3, log=None)
    assert ds.images.shape == (1797, 3, 64, 64)
    assert torch.equal(ds.images[:, 0], ds.images[:, 2])


# ---------------------------------------------------------------- folders


def test_flat_folder_mixed_modes(tmp_path):
    ds = load_dataset(str(mixed_folder(tmp_path / "mixed")), resolution=R, log=None)
    assert ds.images.shape == (6, 3, R, R) and ds.images.dtype == torch.uint8
    assert ds.labels is None and ds.class_names == [] and ds.num_classes == 0
    by_name = dict(zip(["deep", "gray", "pal", "photo", "rgb", "rgba"], ds.images))
    assert by_name["rgb"][:, 8, 8].tolist() == [200, 10, 10]
    assert by_name["gray"][:, 8, 8].tolist() == [77, 77, 77]
    assert by_name["rgba"].max() == 0  # composited on black
    assert by_name["deep"][:, 8, 8].tolist() == [255, 255, 255]
    assert by_name["pal"][2, 8, 8] > 240 and by_name["pal"][0, 8, 8] < 10
    assert by_name["photo"][1, 8, 8] > 180


def test_all_gray_folder_gives_one_channel(tmp_path):
    save(tmp_path / "a.png", solid("L", (20, 10), 10))
    save(tmp_path / "b.png", sixteen_bit(32768))
    save(tmp_path / "c.png", solid("LA", (9, 9), (200, 255)))
    save(tmp_path / "d.bmp", solid("1", (9, 9), 1))
    ds = load_dataset(str(tmp_path), resolution=8, log=None)
    assert ds.images.shape == (4, 1, 8, 8)
    assert ds.images[:, 0, 4, 4].tolist() == [10, 128, 200, 255]
    rgb = load_dataset(str(tmp_path), resolution=8, channels=3, log=None)
    assert rgb.images.shape == (4, 3, 8, 8)
    assert torch.equal(rgb.images[:, 0], ds.images[:, 0])
    assert torch.equal(rgb.images[:, 1], rgb.images[:, 2])


def test_channels_1_converts_colour_like_pillow(tmp_path):
    save(tmp_path / "c.png", solid("RGB", (10, 10), (200, 100, 30)))
    ds = load_dataset(str(tmp_path), resolution=4, channels=1, log=None)
    expected = solid("RGB", (1, 1), (200, 100, 30)).convert("L").getpixel((0, 0))
    assert ds.images.shape == (1, 1, 4, 4) and int(ds.images[0, 0, 2, 2]) == expected


def test_centre_crop_of_wide_image(tmp_path):
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, :10] = (255, 0, 0)
    arr[:, 10:20] = (0, 255, 0)
    arr[:, 20:] = (0, 0, 255)
    save(tmp_path / "wide.png", Image.fromarray(arr))
    ds = load_dataset(str(tmp_path), resolution=10, log=None)
    assert ds.images[0, 1].min() == 255
    assert ds.images[0, 0].max() == 0 and ds.images[0, 2].max() == 0


def test_exif_orientation_and_palette_transparency(tmp_path):
    arr = np.zeros((10, 20, 3), dtype=np.uint8)
    arr[:, :10] = (255, 0, 0)  # left red, right blue
    arr[:, 10:] = (0, 0, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    img.save(tmp_path / "a_rotated.png", exif=exif)
    pal = Image.new("P", (8, 8), 1)
    pal.putpalette([0, 0, 0, 255, 255, 0])
    pal.save(tmp_path / "b_pal.png", transparency=1)
    ds = load_dataset(str(tmp_path), resolution=10, log=None)
    rot = ds.images[0]
    assert rot[0, 2, 5] == 255 and rot[2, 8, 5] == 255  # now top red, bottom blue
    assert ds.images[1].max() == 0  # transparent palette pixels composited on black


def test_sixteen_bit_scaled_not_clipped(tmp_path):
    for v in (0, 257, 32768, 65535):
        save(tmp_path / f"v{v:05d}.png", sixteen_bit(v))
    save(tmp_path / "w_pgm.pgm", sixteen_bit(32768), "PPM")  # Pillow opens it as mode "I"
    ds = load_dataset(str(tmp_path), resolution=8, log=None)
    assert ds.images.shape == (5, 1, 8, 8)
    assert ds.images[:, 0, 4, 4].tolist() == [0, 1, 128, 255, 128]


def test_class_subfolders(tmp_path):
    save(tmp_path / "dogs" / "d1.png", solid("RGB", (12, 12), (0, 0, 255)))
    save(tmp_path / "cats" / "c1.png", solid("RGB", (12, 12), (255, 0, 0)))
    save(tmp_path / "cats" / "deeper" / "c2.jpg", solid("RGB", (12, 12), (250, 0, 0)))
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not an image")
    save(tmp_path / ".hidden" / "h.png", solid("RGB", (12, 12), 0))
    save(tmp_path / "stray.png", solid("RGB", (12, 12), 0))
    logs: list[str] = []
    ds = load_dataset(str(tmp_path), resolution=8, log=logs.append)
    assert ds.class_names == ["cats", "dogs"] and ds.num_classes == 2
    assert ds.labels.tolist() == [0, 0, 1]
    assert ds.images.shape == (3, 3, 8, 8)
    assert ds.images[2, 2, 4, 4] == 255 and ds.images[0, 0, 4, 4] == 255
    assert any("ignored 1 image directly in" in m for m in logs)


def test_mostly_top_level_images_with_a_subfolder_is_an_error(tmp_path):
    for i in range(3):
        save(tmp_path / f"{i}.png", solid("L", (8, 8), i))
    save(tmp_path / "samples" / "s.png", solid("L", (8, 8), 0))
    with pytest.raises(GanforgeError) as exc:
        load_dataset(str(tmp_path), resolution=8, log=None)
    assert "3 top-level images" in single_line(exc)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_zip_flat(tmp_path):
    z = _zip(tmp_path / "flat.zip", {
        "a.png": _png(solid("L", (20, 10), 50)),
        "b.JPG": _png(solid("L", (10, 20), 150), "JPEG"),
        "__MACOSX/._a.png": b"junk",
        ".DS_Store": b"junk",
    })
    ds = load_dataset(str(z), resolution=8, log=None)
    assert ds.images.shape == (2, 1, 8, 8) and ds.labels is None and ds.skipped == 0
    assert ds.images[0, 0, 4, 4] == 50 and abs(int(ds.images[1, 0, 4, 4]) - 150) <= 2


def test_zip_with_wrapper_folder_and_classes(tmp_path):
    z = _zip(tmp_path / "pets.zip", {
        "pets/dog/1.png": _png(solid("RGB", (9, 9), (0, 0, 255))),
        "pets/cat/1.png": _png(solid("RGB", (9, 9), (255, 0, 0))),
        "pets/cat/2.png": _png(solid("RGB", (9, 9), (254, 0, 0))),
        "pets/cat/bad.png": b"not a png",
        "__MACOSX/pets/cat/._1.png": b"junk",
    })
    logs: list[str] = []
    ds = load_dataset(str(z), resolution=8, log=logs.append)
    assert ds.class_names == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.images.shape == (3, 3, 8, 8) and ds.skipped == 1
    assert logs == ["skipped 1 unreadable file (first: cat/bad.png: not a recognised image)"]


# ---------------------------------------------------------------- unreadable files and errors


def test_corrupt_files_skipped_and_logged(tmp_path):
    save(tmp_path / "good1.png", solid("RGB", (10, 10), (1, 2, 3)))
    save(tmp_path / "good2.png", solid("RGB", (10, 10), (4, 5, 6)))
    (tmp_path / "a_truncated.png").write_bytes(noise_png()[:300])
    (tmp_path / "b_text.png").write_text("hello, I am not a picture")
    (tmp_path / "c_empty.png").write_bytes(b"")
    logs: list[str] = []
    ds = load_dataset(str(tmp_path), resolution=8, log=logs.append)
    assert len(ds) == 2 and ds.skipped == 3
    assert ds.images[:, :, 4, 4].tolist() == [[1, 2, 3], [4, 5, 6]]
    assert len(logs) == 1 and "\n" not in logs[0]
    assert logs[0].startswith("skipped 3 unreadable files (first: a_truncated.png: ")
    assert logs[0].endswith(", b_text.png, c_empty.png)")


def test_corrupt_files_also_skipped_with_explicit_channels(tmp_path):
    save(tmp_path / "good.png", solid("L", (10, 10), 9))
    (tmp_path / "bad.png").write_bytes(noise_png()[:300])
    ds = load_dataset(str(tmp_path), resolution=8, channels=3, log=None)
    assert ds.images.shape == (1, 3, 8, 8) and ds.skipped == 1


@pytest.mark.parametrize(
    "case, needle",
    [
        ("empty", "no image files in"),
        ("corrupt", "no usable image in"),
        ("missing", "dataset path not found"),
        ("unknown", "unknown dataset 'imagenet5'"),
        ("textfile", "not a .zip of images"),
        ("badzip", "no image files in"),
    ],
)
def test_bad_specs_give_one_line_errors(tmp_path, case, needle):
    spec = str(tmp_path / case)
    if case == "empty":
        (tmp_path / case).mkdir()
    elif case == "corrupt":
        (tmp_path / case).mkdir()
        (tmp_path / case / "x.png").write_text("text")
        (tmp_path / case / "y.jpg").write_bytes(b"")
    elif case == "unknown":
        spec = "imagenet5"
    elif case == "textfile":
        (tmp_path / case).write_text("hello")
    elif case == "badzip":
        spec = str(_zip(tmp_path / "docs.zip", {"readme.txt": b"no images"}))
    with pytest.raises(GanforgeError) as exc:
        load_dataset(spec, resolution=8, log=None)
    msg = single_line(exc)
    assert needle in msg
    if case == "corrupt":
        assert "2 files were unreadable" in msg and ".png" in msg
    if case in ("missing", "empty"):
        assert str(tmp_path / case) in msg


@pytest.mark.parametrize("kwargs", [{"channels": 2}, {"channels": 4}, {"resolution": 0},
                                    {"resolution": 3.5}])
def test_bad_arguments(kwargs):
    with pytest.raises(GanforgeError) as exc:
        load_dataset("digits", log=None, **kwargs)
    single_line(exc)


# ---------------------------------------------------------------- torchvision (no network)


@pytest.mark.parametrize(
    "name, cls, expect",
    [
        ("mnist", "MNIST", ["MNIST/raw", "train-images-idx3-ubyte.gz",
                            "https://ossci-datasets.s3.amazonaws.com/mnist/"]),
        ("fashion-mnist", "FashionMNIST", ["FashionMNIST/raw", "train-labels-idx1-ubyte.gz"]),
        ("cifar10", "CIFAR10", ["cifar-10-python.tar.gz", "www.cs.toronto.edu"]),
        ("svhn", "SVHN", ["train_32x32.mat", "ufldl.stanford.edu"]),
        ("celeba", "CelebA", ["img_align_celeba.zip", "celeba"]),
    ],
)
def test_torchvision_download_failure_is_one_line(tmp_path, monkeypatch, name, cls, expect):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise RuntimeError(
            "Error downloading file:\nTried mirror, got:\n<urlopen error [Errno -3]>")

    monkeypatch.setattr(tvd, cls, offline)
    with pytest.raises(GanforgeError) as exc:
        load_dataset(name, home=tmp_path, log=None)
    msg = single_line(exc)
    assert msg.startswith(f"could not download {name} (no network?): put ")
    assert str(tmp_path / "datasets" / name) in msg
    for part in expect:
        assert part in msg


def test_torchvision_urlerror_uses_ganforge_home(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tvd, "MNIST", offline)
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "gh"))
    assert ganforge_home() == tmp_path / "gh"
    with pytest.raises(GanforgeError) as exc:
        load_dataset("mnist", log=None)
    assert f"into {tmp_path / 'gh' / 'datasets' / 'mnist' / 'MNIST' / 'raw'}/ and run again" in (
        single_line(exc))


class _FakeMNIST:
    classes = ("0 - zero", "1 - one", "2 - two")

    def __init__(self, root, train=True, download=False):
        assert download and train and Path(root).is_dir()
        self.data = torch.arange(4 * 28 * 28, dtype=torch.int64).reshape(4, 28, 28).remainder(256)
        self.data = self.data.to(torch.uint8)
        self.targets = torch.tensor([0, 1, 2, 1])

    def __len__(self):
        return 4


class _FakeCIFAR10:
    classes = ("plane", "car")

    def __init__(self, root, train=True, download=False):
        self.data = np.zeros((3, 32, 32, 3), dtype=np.uint8)
        self.data[..., 0] = 200
        self.targets = [1, 0, 1]

    def __len__(self):
        return 3


def test_torchvision_arrays_are_resized_and_labelled(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "MNIST", _FakeMNIST)
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCIFAR10)
    m = load_dataset("mnist", home=tmp_path, log=None)
    assert m.images.shape == (4, 1, 32, 32) and m.labels.tolist() == [0, 1, 2, 1]
    assert m.class_names == list(_FakeMNIST.classes) and m.name == "mnist"
    m28 = load_dataset("mnist", resolution=28, home=tmp_path, log=None)
    assert torch.equal(m28.images[:, 0], _FakeMNIST(tmp_path, download=True).data)
    c = load_dataset("cifar10", resolution=16, home=tmp_path, log=None)
    assert c.images.shape == (3, 3, 16, 16) and c.class_names == ["plane", "car"]
    assert c.images[:, 0].min() == 200 and c.images[:, 1:].max() == 0
    g = load_dataset("cifar10", resolution=16, channels=1, home=tmp_path, log=None)
    expected = Image.new("RGB", (1, 1), (200, 0, 0)).convert("L").getpixel((0, 0))
    assert g.images.shape == (3, 1, 16, 16) and int(g.images.max()) == expected


# ---------------------------------------------------------------- disk cache


def _cache_folder(root: Path) -> Path:
    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for i in range(3):
            arr = rng.integers(0, 256, (14, 11, 3), dtype=np.uint8)
            save(root / cls / f"{i}.png", Image.fromarray(arr))
    (root / "a" / "broken.png").write_bytes(noise_png()[:200])
    return root


def test_disk_cache_matches_memory_and_is_reused(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("GANFORGE_HOME", str(home))
    folder = str(_cache_folder(tmp_path / "set"))
    ref = load_dataset(folder, resolution=8, log=None)
    assert not (home / "cache").exists()

    logs: list[str] = []
    disk = load_dataset(folder, resolution=8, log=logs.append, memory_limit_bytes=1)
    npys = sorted((home / "cache").glob("*.npy"))
    assert [p.name.endswith(".labels.npy") for p in npys].count(False) == 1
    assert any("disk cache" in m for m in logs) and any("skipped 1" in m for m in logs)
    assert not list((home / "cache").glob("*.tmp"))
    assert torch.equal(disk.images, ref.images) and torch.equal(disk.labels, ref.labels)
    assert (disk.class_names, disk.skipped, disk.name) == (ref.class_names, 1, ref.name)
    cache_file = next(p for p in npys if ".labels" not in p.name)
    if Path("/proc/self/maps").exists():  # the tensor is memory-mapped from the cache file
        assert str(cache_file) in Path("/proc/self/maps").read_text()

    logs.clear()
    monkeypatch.setenv("GANFORGE_MEMORY_LIMIT_MB", "0.000001")
    again = load_dataset(folder, resolution=8, log=logs.append)
    assert logs == [f"using decoded cache {cache_file}"]
    assert torch.equal(again.images, ref.images) and torch.equal(again.labels, ref.labels)
    assert again.skipped == 1 and again.class_names == ["a", "b"]

    os.utime(Path(folder) / "b" / "0.png", ns=(1, 1))  # a changed file gives a new cache
    logs.clear()
    load_dataset(folder, resolution=8, log=logs.append)
    assert not any("using decoded cache" in m for m in logs)
    assert len([p for p in (home / "cache").glob("*.npy") if ".labels" not in p.name]) == 2


def test_disk_cache_for_digits(tmp_path):
    ref = load_dataset("digits", resolution=8, log=None)
    disk = load_dataset("digits", resolution=8, home=tmp_path, log=None, memory_limit_bytes=0)
    assert torch.equal(ref.images, disk.images) and torch.equal(ref.labels, disk.labels)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1


def test_bad_memory_limit_env(monkeypatch):
    monkeypatch.setenv("GANFORGE_MEMORY_LIMIT_MB", "lots")
    with pytest.raises(GanforgeError) as exc:
        load_dataset("digits", log=None)
    assert "GANFORGE_MEMORY_LIMIT_MB" in single_line(exc)
