"""ganforge.data.pairs: every pairs task's shapes and splits, file layouts, skips and errors."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data.pairs import (
    TASKS,
    PairedDataset,
    UnpairedDataset,
    downsample,
    edges,
    load_pairs,
)
from ganforge.errors import GanforgeError

R = 16


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))


def save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def side_by_side(a: tuple[int, int, int], b: tuple[int, int, int], h: int = 12) -> np.ndarray:
    img = np.zeros((h, 2 * h, 3), dtype=np.uint8)
    img[:, :h], img[:, h:] = a, b
    return img


def aligned_folder(root: Path, n: int) -> Path:
    for i in range(n):
        save(root / f"{i}.png", side_by_side((200, 10 * i, 0), (0, 10 * i, 200)))
    return root


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def check_paired(ds: PairedDataset, n: int, m: int, cs: int, ct: int, rs: int, rt: int) -> None:
    assert isinstance(ds, PairedDataset)
    for t in (ds.source, ds.target, ds.test_source, ds.test_target):
        assert t.dtype == torch.uint8
    assert tuple(ds.source.shape) == (n, cs, rs, rs)
    assert tuple(ds.target.shape) == (n, ct, rt, rt)
    assert tuple(ds.test_source.shape) == (m, cs, rs, rs)
    assert tuple(ds.test_target.shape) == (m, ct, rt, rt)
    assert len(ds) == n and ds.source_channels == cs and ds.target_channels == ct
    assert ds.resolution == rt


# ------------------------------------------------------------------------------ derived tasks


def test_edges2image_on_digits():
    ds = load_pairs("digits", "edges2image", resolution=R, test_fraction=0.1, log=None)
    check_paired(ds, 1617, 180, 1, 1, R, R)
    assert ds.task == "edges2image" and ds.name == "digits"
    vals = set(torch.unique(ds.source).tolist())
    assert vals == {0, 255}
    share = (ds.source > 0).float().mean().item()
    assert 0.02 < share < 0.5  # thin outlines, neither empty nor everything
    assert all((ds.source[i] > 0).any() for i in range(20))
    assert torch.equal(edges(ds.target), ds.source)  # deterministic, from the target itself
    assert not edges(torch.full((2, 3, 8, 8), 9, dtype=torch.uint8)).any()  # flat: no edges


def test_lowres2highres_and_downsample():
    ds = load_pairs("digits", "lowres2highres", resolution=32, scale=4, test_fraction=0.05,
                    log=None)
    check_paired(ds, 1707, 90, 1, 1, 8, 32)
    assert ds.source_resolution == 8
    hr = ds.target[:64].float() / 127.5 - 1
    lr = downsample(hr, 4)
    assert lr.shape == (64, 1, 8, 8) and lr.dtype == torch.float32
    assert lr.min() >= -1 and lr.max() <= 1
    stored = ds.source[:64].float() / 127.5 - 1
    assert (lr - stored).abs().max().item() <= 1 / 127.5 + 1e-6  # within 1 uint8 level
    assert downsample(hr.half(), 2).dtype == torch.float16


def test_gray2color(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(5):
        save(tmp_path / "c" / f"{i}.png", rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
    ds = load_pairs(str(tmp_path / "c"), "gray2color", resolution=R, test_fraction=0.2, log=None)
    check_paired(ds, 4, 1, 1, 3, R, R)
    t = ds.target[:1].to(torch.int64)
    y = (t[:, 0] * 19595 + t[:, 1] * 38470 + t[:, 2] * 7471 + 32768) >> 16
    assert torch.equal(ds.source[:1, 0].to(torch.int64), y)  # ITU-R 601 luma


def test_invert_domains_are_disjoint():
    ds = load_pairs("digits", "invert", resolution=8, test_fraction=0.1, log=None)
    assert isinstance(ds, UnpairedDataset)
    assert ds.a.dtype == ds.b.dtype == torch.uint8 and ds.channels == 1 and ds.resolution == 8
    assert len(ds.a) + len(ds.test_a) == 899 and len(ds.b) + len(ds.test_b) == 898
    assert len(ds.test_a) == 90 and len(ds.test_b) == 90
    a = {x.numpy().tobytes() for x in torch.cat([ds.a, ds.test_a])}
    b = {(255 - x).numpy().tobytes() for x in torch.cat([ds.b, ds.test_b])}
    assert not a & b  # B is the inverse of images that are not in A
    from ganforge.data import load_dataset

    every = {x.numpy().tobytes() for x in load_dataset("digits", 8, log=None).images}
    assert a | b == every
    again = load_pairs("digits", "invert", resolution=8, log=None)
    assert torch.equal(again.b, ds.b)  # seeded
    other = load_pairs("digits", "invert", resolution=8, seed=1, log=None)
    assert not torch.equal(other.a[:10], ds.a[:10])


# ----------------------------------------------------------------------------------- aligned


def test_aligned_split_and_skips(tmp_path):
    root = aligned_folder(tmp_path / "ab", 6)
    save(root / "narrow.png", np.zeros((12, 12, 3), dtype=np.uint8))  # not twice as wide
    (root / "broken.png").write_bytes(b"not an image")
    lines: list[str] = []
    ds = load_pairs(str(root), "aligned", resolution=R, test_fraction=0.2, log=lines.append)
    check_paired(ds, 5, 1, 3, 3, R, R)
    assert ds.skipped == 2 and ds.task == "aligned"
    assert len(lines) == 1 and "2 unreadable files" in lines[0]
    assert "narrow.png" in lines[0] and "broken.png" in lines[0]
    src, tgt = torch.cat([ds.source, ds.test_source]), torch.cat([ds.target, ds.test_target])
    assert (src[:, 0] == 200).all() and (src[:, 2] == 0).all()  # left half: A
    assert (tgt[:, 0] == 0).all() and (tgt[:, 2] == 200).all()  # right half: B
    assert torch.equal(src[:, 1], tgt[:, 1])  # halves of the same file stay together


def test_aligned_train_val_zip_and_direction(tmp_path):
    aligned_folder(tmp_path / "set" / "train", 4)
    aligned_folder(tmp_path / "set" / "val", 2)
    ds = load_pairs(str(tmp_path / "set"), "aligned", resolution=8, log=None)
    check_paired(ds, 4, 2, 3, 3, 8, 8)
    zpath = tmp_path / "set.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted((tmp_path / "set").rglob("*.png")):
            zf.write(p, f"facades/{p.relative_to(tmp_path / 'set').as_posix()}")
    rev = load_pairs(str(zpath), "aligned", resolution=8, direction="BtoA", log=None)
    check_paired(rev, 4, 2, 3, 3, 8, 8)
    assert torch.equal(rev.source, ds.target) and torch.equal(rev.test_target, ds.test_source)


def test_aligned_gray_files_give_one_channel(tmp_path):
    for i in range(3):
        save(tmp_path / "g" / f"{i}.png", np.full((10, 20), 30 * i, dtype=np.uint8))
    ds = load_pairs(str(tmp_path / "g"), "aligned", resolution=8, test_fraction=0, log=None)
    check_paired(ds, 3, 0, 1, 1, 8, 8)


# ----------------------------------------------------------------------------------- folders


def test_folders_pair_by_name(tmp_path):
    root = tmp_path / "pairs"
    for i in range(5):
        save(root / "A" / f"{i}.png", np.full((10, 10), 40 * i, dtype=np.uint8))
        save(root / "B" / f"{i}.bmp", np.full((12, 12, 3), (40 * i, 1, 2), dtype=np.uint8))
    save(root / "A" / "lonely.png", np.zeros((10, 10), dtype=np.uint8))
    lines: list[str] = []
    ds = load_pairs(str(root), "folders", resolution=8, test_fraction=0.2, log=lines.append)
    check_paired(ds, 4, 1, 1, 3, 8, 8)
    assert ds.skipped == 1 and ds.task == "folders"
    assert len(lines) == 1 and "1 file with no partner" in lines[0] and "lonely" in lines[0]
    src, tgt = torch.cat([ds.source, ds.test_source]), torch.cat([ds.target, ds.test_target])
    assert torch.equal(src[:, 0], tgt[:, 0])  # A/i with B/i
    assert sorted(src[:, 0, 0, 0].tolist()) == [0, 40, 80, 120, 160]
    rev = load_pairs(str(root), "folders", resolution=8, test_fraction=0.2, direction="BtoA",
                     log=None)
    check_paired(rev, 4, 1, 3, 1, 8, 8)
    assert torch.equal(rev.source, ds.target) and torch.equal(rev.target, ds.source)


# ---------------------------------------------------------------------------------- unpaired


def test_unpaired_cyclegan_layout(tmp_path):
    root = tmp_path / "horse2zebra"
    for sub, n in (("trainA", 3), ("trainB", 4), ("testA", 2), ("testB", 1)):
        for i in range(n):
            save(root / sub / f"{i}.png", np.full((10, 10, 3), (9 * i, 50, 99), dtype=np.uint8))
    ds = load_pairs(str(root), "unpaired", resolution=8, log=None)
    assert isinstance(ds, UnpairedDataset)
    shapes = [tuple(t.shape) for t in (ds.a, ds.b, ds.test_a, ds.test_b)]
    assert shapes == [(3, 3, 8, 8), (4, 3, 8, 8), (2, 3, 8, 8), (1, 3, 8, 8)]
    assert ds.a.dtype == torch.uint8 and ds.skipped == 0
    rev = load_pairs(str(root), "unpaired", resolution=8, direction="BtoA", log=None)
    assert torch.equal(rev.a, ds.b) and torch.equal(rev.test_b, ds.test_a)
    for sub in ("testA", "testB"):
        for p in (root / sub).iterdir():
            p.unlink()
        (root / sub).rmdir()
    split = load_pairs(str(root), "unpaired", resolution=8, test_fraction=0.3, log=None)
    assert [len(split.a), len(split.test_a), len(split.b), len(split.test_b)] == [2, 1, 3, 1]


# ------------------------------------------------------------------------------------ errors


def _error_cases(tmp: Path) -> list[tuple[dict, str]]:
    empty = tmp / "empty"
    empty.mkdir()
    only_a = tmp / "only_a"
    save(only_a / "A" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    nomatch = tmp / "nomatch"
    save(nomatch / "A" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    save(nomatch / "B" / "y.png", np.zeros((4, 4), dtype=np.uint8))
    no_b = tmp / "no_b"
    save(no_b / "trainA" / "x.png", np.zeros((4, 4), dtype=np.uint8))
    half_test = tmp / "half_test"
    for sub in ("trainA", "trainB", "testA"):
        save(half_test / sub / "x.png", np.zeros((4, 4), dtype=np.uint8))
    squares = tmp / "squares"
    save(squares / "x.png", np.zeros((8, 8, 3), dtype=np.uint8))
    gray = tmp / "gray"
    save(gray / "x.png", np.full((8, 8), 7, dtype=np.uint8))
    return [
        (dict(spec="digits", task="pix2pix"), "aligned, folders"),
        (dict(spec="digits", task="edges2image", direction="AB"), "AtoB"),
        (dict(spec="digits", task="lowres2highres", resolution=30), "divisible"),
        (dict(spec="digits", task="lowres2highres", scale=0), "scale"),
        (dict(spec="digits", task="invert", test_fraction=1.0), "test_fraction"),
        (dict(spec="digits", task="gray2color"), "colour"),
        (dict(spec=str(gray), task="gray2color", channels=3), "colour"),
        (dict(spec="digits", task="aligned"), "side-by-side"),
        (dict(spec=str(empty), task="aligned"), "no image files"),
        (dict(spec=str(squares), task="aligned"), "A|B"),
        (dict(spec=str(tmp / "missing"), task="folders"), "A/ and B/"),
        (dict(spec=str(empty), task="folders"), "no A/"),
        (dict(spec=str(only_a), task="folders"), "no B/"),
        (dict(spec=str(nomatch), task="folders"), "partner"),
        (dict(spec="digits", task="unpaired"), "trainA/"),
        (dict(spec=str(no_b), task="unpaired"), "no trainB/"),
        (dict(spec=str(half_test), task="unpaired"), "no testB/"),
        (dict(spec=str(squares), task="edges2image", test_fraction=0.5), "too few"),
    ]


def test_errors_are_one_line(tmp_path):
    cases = _error_cases(tmp_path)
    for kwargs, needle in cases:
        with pytest.raises(GanforgeError) as exc:
            load_pairs(**{"log": None, "resolution": 8, **kwargs})
        assert needle in one_line(exc), (kwargs, str(exc.value))
    with pytest.raises(GanforgeError) as exc:
        load_pairs("digits", "nope", log=None)
    assert all(t in one_line(exc) for t in TASKS)
    with pytest.raises(GanforgeError) as exc:
        downsample(torch.zeros(1, 1, 10, 10), 4)
    one_line(exc)
