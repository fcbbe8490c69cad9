"""Mirroring (``xflip=true``, stylegan2-ada's --mirror): the set doubled with left-right flips
made as batches are drawn, deterministic in (seed, epoch), so resume stays exact."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.data import ImageDataset
from ganforge.data.pairs import PairedDataset
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.train.batches import Batches, PairBatches, describe_data, make_batches


def _images(n=16, c=1, side=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, side, side), generator=g, dtype=torch.uint8)


def _to_uint8(x):
    return x.add(1).mul(127.5).round().to(torch.uint8)


def _which(row, originals):
    """(index, flipped) of ``row`` among ``originals`` and their mirror images."""
    for i, img in enumerate(originals):
        if torch.equal(row, img):
            return i, False
        if torch.equal(row, torch.flip(img, [-1])):
            return i, True
    raise AssertionError("a batch row is neither an image nor its mirror image")


def test_epoch_doubles_and_holds_every_image_and_its_exact_mirror():
    imgs, labels = _images(), torch.arange(16) % 5
    data = ImageDataset(imgs, labels, [str(k) for k in range(5)], "t")
    plain = Batches(data, 4, seed=3, device=torch.device("cpu"))
    mirrored = Batches(data, 4, seed=3, device=torch.device("cpu"), xflip=True)
    assert (plain.steps_per_epoch, mirrored.steps_per_epoch) == (4, 8)
    assert mirrored.n == 32 and mirrored.count == 16
    seen = []
    for step in range(8):  # one epoch: every image once as is and once mirrored
        b = mirrored.get(step)
        for row, label in zip(_to_uint8(b["image"]), b["label"]):
            i, flipped = _which(row, imgs)
            assert label == labels[i]  # labels follow their images
            seen.append((i, flipped))
    assert sorted(seen) == [(i, f) for i in range(16) for f in (False, True)]
    # the same batch for the same (seed, index): what exact resume rests on
    again = Batches(data, 4, seed=3, device=torch.device("cpu"), xflip=True)
    for step in (0, 5, 11):
        assert torch.equal(again.get(step)["image"], mirrored.get(step)["image"])
    assert "16 images 1x6x6 (x2 mirrored)" in describe_data(data, mirrored)


def test_pairs_flip_both_sides_together():
    src = _images(12, 1, 6, seed=1)
    pairs = PairedDataset(src, 255 - src, src[:0], src[:0], "p", "invert")
    b = make_batches(pairs, 4, seed=0, device=torch.device("cpu"), xflip=True)
    assert isinstance(b, PairBatches) and b.steps_per_epoch == 6
    flips = 0
    for step in range(6):
        batch = b.get(step)
        # still the same pair: both sides flipped, or neither
        assert torch.equal(_to_uint8(batch["target"]), 255 - _to_uint8(batch["source"]))
        for row in _to_uint8(batch["source"]):
            flips += _which(row, src)[1]
    assert flips == 12
    assert "12 invert examples (x2 mirrored)" in describe_data(pairs, b)


def test_vector_data_refuses_xflip():
    from ganforge.data import load_vectors

    with pytest.raises(GanforgeError, match="vector data: drop xflip"):
        Batches(load_vectors("ring8", n=64), 8, 0, torch.device("cpu"), xflip=True)


@pytest.mark.parametrize("args, needle", [
    # the preset's config: load_data refuses
    (["--data", "ring8", "--preset", "toy"], "ring8 is vector data: drop xflip"),
    # the default recipe loads the data itself: refused before
    (["--data", "ring8"], "ring8 is vector data: drop xflip"),
    # photos cut into random crops, which are flipped and turned already
    (["--data", "FOLDER", "--preset", "srgan-small"], "already flipped and turned at random"),
])
def test_xflip_on_a_vector_or_patch_run_is_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    args = [str(tmp_path) if a == "FOLDER" else a for a in args]
    assert main(["train", *args, "xflip=true", "--max-steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and needle in err and "drop xflip" in err, err
    assert not out.exists()


def _folder(root, n=16):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(root / f"{i:02d}.png")
    return root


def _weights(run):
    from safetensors.torch import load_file

    path = ck.latest_checkpoint(run)
    return {n: load_file(str(path / f"{n}.safetensors")) for n in ("G", "D")}


def _losses(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["D_loss"], r["G_loss"]) for r in rows if "D_loss" in r}


def test_resume_with_xflip_is_exact_and_epochs_count_the_doubled_set(tmp_path, tiny, capsys):
    data = _folder(tmp_path / "imgs", n=8)
    keys = [*tiny, f"source={data}", "batch_size=4", "sample_every=0", "xflip=true"]
    a, b = tmp_path / "a", tmp_path / "b"
    ra = Trainer(build_config("dcgan", keys + ["epochs=1"]), a, quiet=True,
                 tensorboard=False).train()
    assert ra.step == 4 and ra.stopped_by == "epochs"  # 16 mirrored samples / 4 a batch
    tb = Trainer(build_config("dcgan", keys + ["epochs=0.5"]), b, quiet=True, tensorboard=False)
    assert tb.batches.steps_per_epoch == 4 and tb.batches.xflip
    assert tb.train().step == 2
    rb = Trainer(build_config("dcgan", keys + ["epochs=1"]), b, resume=True, quiet=True,
                 tensorboard=False).train()
    assert rb.step == 4
    wa, wb = _weights(a), _weights(b)
    for net in ("G", "D"):
        for k in wa[net]:
            assert torch.equal(wa[net][k], wb[net][k]), f"{net}.{k} differs after resume"
    assert _losses(a) == _losses(b) and len(_losses(a)) == 2
    # xflip cannot change when resuming (the epoch would change under the run)
    assert main(["train", "--resume", str(b), "xflip=false"]) == 2
    capsys.readouterr()
    assert main(["info", str(a)]) == 0
    assert "(x2 mirrored: xflip)" in capsys.readouterr().out
