"""gray2color and edges2image on folders of photos at native size (patch training)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_sr_native import _photo

from ganforge.cli import main
from ganforge.config import Config
from ganforge.data.pairs import edges, luma
from ganforge.data.patches import load_patches
from ganforge.errors import GanforgeError
from ganforge.nets.img2img import UNetGenerator, padded_call, tiled_translate, unet_depth
from ganforge.options import build_config
from ganforge.recipes.img2img import Pix2PixRecipe
from ganforge.train.batches import PatchBatches

SIZES = {"a.png": (70, 50), "b.png": (64, 90), "c.jpg": (100, 60), "d.png": (48, 48)}
TINY = ["g_base=4", "d_base=4", "batch_size=4", "sample_every=0", "checkpoint_every=0",
        "log_every=1"]


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i, (name, (w, h)) in enumerate(SIZES.items()):
        _photo(w, h, i).save(root / name)
    return root


def test_luma_is_pillows_gray_at_any_size():
    x = torch.randint(0, 256, (2, 3, 17, 29), dtype=torch.uint8)
    want = np.stack([np.asarray(Image.fromarray(a.permute(1, 2, 0).numpy()).convert("L"))
                     for a in x])
    assert np.array_equal(luma(x)[:, 0].numpy(), want)


@pytest.mark.parametrize("task", ["gray2color", "edges2image"])
def test_sources_are_made_from_whole_images_and_cropped_with_them(photos, task):
    d = load_patches(str(photos), crop=32, task=task, test_fraction=0.25, seed=0, log=None)
    assert d.scale == 1 and d.channels == 3 and d.source_channels == 1
    make = luma if task == "gray2color" else edges
    for img, src in zip(d.images + d.test_images, d.sources + d.test_sources):
        assert src.shape[-2:] == img.shape[-2:]
        assert torch.equal(src, make(img[None])[0])  # the whole image's (edge threshold too)
    b = PatchBatches(d, 4, seed=1, device=torch.device("cpu"))
    batch = b.get(3)
    assert batch["source"].shape == (4, 1, 32, 32) and batch["target"].shape == (4, 3, 32, 32)
    if task == "gray2color":  # same place, same flip: the source is the crop's own luma
        tgt = batch["target"].add(1).mul(127.5).round().to(torch.uint8)
        assert torch.equal(luma(tgt), batch["source"].add(1).mul(127.5).round().to(torch.uint8))
    assert torch.equal(b.get(3)["source"], batch["source"])
    fixed = b.fixed(2)
    assert fixed["source"].shape == (2, 1, 32, 32) and fixed["target"].shape == (2, 3, 32, 32)


def test_translation_crops_default_and_checks(photos, tmp_path):
    d = load_patches(str(photos), crop=0, task="gray2color", log=None)
    assert d.crop == 48  # no image has 128 px a side: the largest multiple of 16 that fits all
    with pytest.raises(GanforgeError, match="multiple of 16"):
        load_patches(str(photos), crop=40, task="gray2color", log=None)
    gray = tmp_path / "gray"
    gray.mkdir()
    for i in range(3):
        _photo(64, 64, i).convert("L").save(gray / f"{i}.png")
    with pytest.raises(GanforgeError, match="gray2color needs colour"):
        load_patches(str(gray), task="gray2color", log=None)
    assert load_patches(str(gray), task="edges2image", log=None).channels == 1


def test_unet_depth_fits_any_crop_side():
    assert [unet_depth(s) for s in (32, 48, 96, 128, 256)] == [5, 4, 5, 7, 8]


def test_an_untrained_chroma_unet_returns_the_gray_input_and_keeps_the_luma():
    torch.manual_seed(0)
    G = UNetGenerator(1, 3, 4, base=8, output="chroma").eval()
    x = torch.rand(2, 1, 32, 48) * 2 - 1
    assert torch.allclose(G(x), x.expand(-1, 3, -1, -1), atol=1e-6)
    for p in G.parameters():  # any weights: the output's luma is the input
        torch.nn.init.normal_(p, 0, 0.3)
    y = (G(x) + 1) / 2
    lum = 0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2]
    assert torch.allclose(lum * 2 - 1, x[:, 0], atol=1e-5)
    assert (G(x)[:, 0] - G(x)[:, 2]).abs().max() > 0.01  # and it colours
    with pytest.raises(GanforgeError, match="1 channel in, 3 out"):
        UNetGenerator(3, 3, 4, output="chroma")


def test_windows_are_the_crop_size_and_blend_without_seams():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape[-2:]))
        return t * 2

    x = torch.rand(1, 1, 70, 100)
    out = tiled_translate(fn, x, 32)
    assert set(seen) == {(32, 32)} and len(seen) > 4
    assert torch.allclose(out, x * 2, atol=1e-6)  # overlaps blend to the same value
    small = torch.rand(1, 1, 20, 90)
    assert torch.allclose(tiled_translate(fn, small, 32), small * 2, atol=1e-6)
    assert seen[-1] == (20, 32)


def test_padded_call_runs_a_net_on_any_size():
    G = UNetGenerator(1, 3, 4, base=4).eval()
    assert padded_call(G, torch.zeros(1, 1, 37, 50)).shape == (1, 3, 37, 50)


def test_gray2color_trains_on_photos_and_translates_any_size(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "pix2pix", "--data", str(photos), "--max-steps", "2",
                 "--out", str(run), "-q", "task=gray2color", "crop=32", "test_fraction=0.25",
                 "eval_every=2", *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["crop"] == 32 and cfg["model"]["resolution"] == 32
    assert cfg["model"]["in_channels"] == 1 and cfg["model"]["g_output"] == "auto"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if "eval/psnr" in r]
    assert ev and ev[-1]["eval/psnr"] > 10
    assert main(["eval", str(run), "--n", "10"]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"psnr", "psnr_copy_input", "ssim", "ssim_copy_input"} <= set(m)
    big = tmp_path / "big"
    big.mkdir()
    _photo(75, 61, 5).convert("L").save(big / "photo.png")
    out = tmp_path / "out"
    assert main(["translate", str(run), "--input", str(big), "--out", str(out)]) == 0
    got = Image.open(out / "photo.png")
    assert got.size == (75, 61) and got.mode == "RGB"
    # chroma output: its gray is the input's (to 8-bit rounding)
    diff = np.asarray(got.convert("L"), dtype=int) - np.asarray(Image.open(big / "photo.png"),
                                                                 dtype=int)
    assert np.abs(diff).max() <= 2


def test_edges2image_trains_on_photos(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "pix2pix", "--data", str(photos), "--max-steps", "1",
                 "--out", str(run), "-q", "crop=32", *TINY]) == 0
    assert json.loads((run / "config.json").read_text())["data"]["task"] == "edges2image"


@pytest.mark.parametrize("extra,say", [
    (["resolution=64"], "set crop=64"),
    (["direction=BtoA"], "runs AtoB only"),
    (["g_output=chroma"], "not for task=edges2image"),
    (["crop=40"], "multiple of 16"),
    (["unet_depth=6", "crop=32"], "multiple of 64"),
])
def test_bad_photo_translation_settings_are_one_line(photos, tmp_path, capsys, extra, say):
    code = main(["train", "--preset", "pix2pix", "--data", str(photos), "--max-steps", "1",
                 "--out", str(tmp_path / "r"), "-q", *TINY, *extra])
    err = capsys.readouterr().err
    assert code == 2 and say in err and "Traceback" not in err


@pytest.mark.parametrize("args,say", [
    (["--preset", "pix2pix", "crop=16"], "crop=16: not used"),
    (["--preset", "cyclegan", "crop=16"], "crop: not read by recipe=cyclegan"),
    (["--preset", "srgan", "g_output=rgb"], "g_output: not read"),
    (["--preset", "pix2pix", "scale=2"], "scale=2: not read"),
])
def test_options_a_run_does_not_use_are_refused(tmp_path, capsys, args, say):
    code = main(["train", *args, "--max-steps", "1", "--out", str(tmp_path / "r"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and say in err and "Traceback" not in err


def test_runs_saved_before_g_output_rebuild_the_papers_unet():
    cfg = build_config("pix2pix", {"task": "gray2color"})
    d = cfg.to_dict()
    del d["model"]["g_output"]
    old = Config.from_dict(d)
    assert old.model.g_output == "rgb"
    old.model.resolution, old.model.in_channels, old.model.channels = 32, 1, 3
    assert Pix2PixRecipe(old).G.output == "rgb"
    cfg.model.resolution, cfg.model.in_channels, cfg.model.channels = 32, 1, 3
    assert Pix2PixRecipe(cfg).G.output == "chroma"
