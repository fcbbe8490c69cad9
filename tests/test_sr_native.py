"""Super-resolution from photo folders: images at native size, random crops anywhere, a net
that starts at bicubic, tiled upscaling, the SR papers' metrics."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import ganforge
from ganforge.cli import main
from ganforge.config import Config
from ganforge.data.patches import load_patches
from ganforge.errors import GanforgeError
from ganforge.metrics.paired import checkerboard, sr_metrics
from ganforge.nets.img2img import SRResNet, icnr_, tiled_upscale
from ganforge.train.batches import PatchBatches

SIZES = {"a.png": (70, 50), "b.png": (64, 90), "c.jpg": (100, 60), "d.png": (48, 48)}
TINY = ["g_base=8", "d_base=4", "n_blocks=1", "batch_size=4", "content=pixel",
        "sample_every=0", "checkpoint_every=0", "log_every=1"]


def _photo(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([127 + 100 * np.sin(x / (3 + c) + y / (5 + seed) + c) for c in range(3)], -1)
    img += rng.normal(0, 8, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture()
def photos(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    for i, (name, (w, h)) in enumerate(SIZES.items()):
        _photo(w, h, i).save(root / name)
    _photo(20, 20, 9).save(root / "tiny.png")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_images_stay_at_native_size_and_whole_ones_are_held_out(photos):
    lines = []
    d = load_patches(str(photos), crop=32, scale=4, test_fraction=0.25, seed=0,
                     log=lines.append)
    assert d.crop == 32 and d.channels == 3
    assert len(d.images) == 3 and len(d.test_images) == 1
    got = sorted((int(x.shape[2]), int(x.shape[1])) for x in d.images + d.test_images)
    assert got == sorted(SIZES.values())
    assert d.skipped == 2
    text = " ".join(lines)
    assert "broken.png" in text and "tiny.png" in text and "smaller than crop=32" in text
    # the same seed holds out the same image; another may not
    again = load_patches(str(photos), crop=32, test_fraction=0.25, seed=0, log=None)
    assert torch.equal(again.test_images[0], d.test_images[0])


def test_crop_zero_picks_what_fits(photos):
    d = load_patches(str(photos), crop=0, scale=4, test_fraction=0, log=None)
    # no image reaches 96 px: the largest crop every image holds (20 px, a multiple of 4)
    assert d.crop == 20 and len(d.images) == 5
    big = photos.parent / "big"
    big.mkdir()
    _photo(120, 100, 1).save(big / "x.png")
    _photo(40, 40, 2).save(big / "small.png")
    lines = []
    d = load_patches(str(big), crop=0, test_fraction=0, log=lines.append)
    assert d.crop == 96 and len(d.images) == 1 and "small.png" in " ".join(lines)


def test_train_and_test_sub_folders(tmp_path):
    for sub, names in (("train", ["x.png", "y.png"]), ("test", ["z.png"])):
        (tmp_path / sub).mkdir()
        for i, n in enumerate(names):
            _photo(40 + 8 * i, 36, i).save(tmp_path / sub / n)
    d = load_patches(str(tmp_path), crop=16, log=None)
    assert [tuple(x.shape) for x in d.images] == [(3, 36, 40), (3, 36, 48)]
    assert [tuple(x.shape) for x in d.test_images] == [(3, 36, 40)]


@pytest.mark.parametrize("kw, match", [
    ({"crop": 30}, "multiple of scale"),
    ({"crop": 8}, "at least 16"),
    ({"crop": 200}, "smaller than crop=200"),
    ({"crop": 32, "test_fraction": 0.99}, "too few to hold out"),
])
def test_bad_patch_settings_are_one_line(photos, kw, match):
    with pytest.raises(GanforgeError, match=match) as e:
        load_patches(str(photos), log=None, **kw)
    assert "\n" not in str(e.value)


def test_patch_batches_are_random_crops_of_the_images_and_repeatable(photos):
    d = load_patches(str(photos), crop=16, test_fraction=0, log=None)
    b = PatchBatches(d, 6, seed=3, device=torch.device("cpu"))
    x = b.get(5)["target"]
    assert x.shape == (6, 3, 16, 16) and -1 <= x.min() and x.max() <= 1
    assert torch.equal(x, PatchBatches(d, 6, 3, torch.device("cpu")).get(5)["target"])
    assert not torch.equal(x, b.get(6)["target"])
    u8 = ((x + 1) * 127.5).round().to(torch.uint8)

    def found(p):  # the crop, up to a flip / quarter turn, somewhere in one of the images
        for img in d.images:
            for t in range(8):  # undo in reverse order: transpose, then the flips
                r = p.transpose(-1, -2) if t & 4 else p
                r = r.flip(-2) if t & 2 else r
                r = r.flip(-1) if t & 1 else r
                win = img.unfold(1, 16, 1).unfold(2, 16, 1)  # [C, H', W', 16, 16]
                hit = (win == r[:, None, None]).flatten(3).all(-1).all(0)
                if hit.any():
                    return True
        return False

    assert all(found(p) for p in u8)
    # an epoch covers the images' area once in crops
    assert b.steps_per_epoch == max(1, d.pixels // (16 * 16 * 6))
    fixed = b.fixed(4)
    assert fixed["source"].shape == (4, 3, 4, 4) and fixed["target"].shape == (4, 3, 16, 16)


def test_an_untrained_upscaler_is_bicubic():
    torch.manual_seed(0)
    for scale in (2, 4):
        for up in ("pixelshuffle", "nearest"):
            g = SRResNet(3, scale=scale, n_blocks=2, n_feats=8, skip="bicubic", norm="none",
                         upsample=up)
            x = torch.rand(2, 3, 9, 11) * 2 - 1
            want = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
            assert torch.equal(g(x), want)
    paper = SRResNet(3, scale=4, n_blocks=1, n_feats=8)  # skip=none: the paper's Tanh net
    assert not torch.allclose(paper(x), F.interpolate(x, scale_factor=4, mode="bicubic",
                                                      align_corners=False))


def test_icnr_starts_each_pixel_shuffle_as_nearest_neighbour():
    conv = torch.nn.Conv2d(4, 16, 3, padding=1)
    icnr_(conv.weight)
    torch.nn.init.zeros_(conv.bias)
    y = torch.nn.PixelShuffle(2)(conv(torch.randn(1, 4, 5, 5)))  # [1, 4, 10, 10]
    blocks = y.unfold(2, 2, 2).unfold(3, 2, 2)  # each 2x2 output block holds one value
    assert torch.allclose(blocks, blocks[..., :1, :1].expand_as(blocks))
    with pytest.raises(GanforgeError, match="multiple"):
        icnr_(torch.empty(6, 4, 3, 3))


def test_tiles_bound_the_input_the_net_sees():
    seen = []

    def net(x):
        seen.append(tuple(x.shape[-2:]))
        return F.interpolate(x, scale_factor=2, mode="nearest")

    x = torch.rand(1, 3, 150, 200)  # stands in for a 2,000 x 1,500 photo
    out = tiled_upscale(net, x, 2, tile=32, overlap=4)
    assert torch.equal(out, F.interpolate(x, scale_factor=2, mode="nearest"))
    assert max(max(s) for s in seen) <= 32 + 2 * 4 and len(seen) > 20
    # the smallest tile the CLI takes (16) still advances by half a tile, not one pixel
    seen.clear()
    out = tiled_upscale(net, x[..., :45, :37], 2, tile=16, overlap=8)
    assert torch.equal(out, F.interpolate(x[..., :45, :37], scale_factor=2, mode="nearest"))
    assert max(max(s) for s in seen) <= 16 and len(seen) <= 6 * 5


def test_sr_metrics_follow_the_papers_protocol():
    x = torch.rand(1, 3, 40, 40) * 2 - 1
    m = sr_metrics(x, x, shave=4)
    assert m["psnr_y"] == 100.0 and m["ssim_y"] == pytest.approx(1.0)
    y = x.clone()
    y[..., :4, :] = -1  # differences only inside the cut border do not count
    assert sr_metrics(y, x, shave=4)["psnr_y"] == 100.0
    assert sr_metrics(y, x, shave=0)["psnr_y"] < 40
    with pytest.raises(GanforgeError, match="too small"):
        sr_metrics(x[..., :16, :16], x[..., :16, :16], shave=4)


def test_checkerboard_energy_sees_period_two_patterns_only():
    i = torch.arange(34)
    board = (((i.view(-1, 1) + i.view(1, -1)) % 2) * 2 - 1).float()
    ramp = torch.linspace(-1, 1, 34)
    smooth = (ramp.view(1, -1) ** 2 + ramp.view(-1, 1)).clamp(-1, 1)
    assert checkerboard(smooth.expand(1, 3, 34, 34)) < 0.01
    assert checkerboard((smooth + 0.1 * board).clamp(-1, 1).expand(1, 3, 34, 34)) > 50
    stripes = ((i % 2) * 2 - 1).float().view(1, -1).expand(34, 34)
    assert checkerboard((0.1 * stripes).expand(1, 1, 34, 34)) > 50


def test_srgan_trains_on_a_photo_folder_and_upscales_any_size(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "3",
                 "--out", str(run), "-q", "crop=32", "test_fraction=0.25", "eval_every=3",
                 "eval_metric=psnr_y", *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["crop"] == 32 and cfg["model"]["resolution"] == 32
    assert cfg["model"]["sr_skip"] == "bicubic"
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if "eval/psnr_y" in r]
    assert ev and ev[-1]["eval/psnr_y"] > 15
    big = tmp_path / "big"
    big.mkdir()
    _photo(150, 110, 5).save(big / "photo.png")
    out = tmp_path / "out"
    assert main(["upscale", str(run), "--input", str(big), "--out", str(out),
                 "--tile", "32"]) == 0
    assert Image.open(out / "photo.png").size == (600, 440)
    assert main(["eval", str(run), "--n", "10"]) == 0
    m = json.loads((run / "eval.json").read_text())["metrics"]
    assert {"psnr_y", "psnr_y_bicubic", "ssim_y", "ssim_y_bicubic"} <= set(m)


def test_resolution_and_backwards_direction_are_refused_for_photo_folders(photos, tmp_path,
                                                                           capsys):
    for extra, say in ((["resolution=64"], "set crop=64"), (["direction=BtoA"], "downscaler")):
        code = main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "1",
                     "--out", str(tmp_path / "r"), "-q", *TINY, *extra])
        assert code == 2
        err = capsys.readouterr().err
        assert say in err and "Traceback" not in err


def test_built_in_sets_still_train_resized_and_refuse_a_crop_too_big(tmp_path):
    code = main(["train", "--preset", "srgan", "--max-steps", "1", "--out",
                 str(tmp_path / "r"), "-q", "crop=32", *TINY])
    assert code == 2  # digits at 32x32: a 32 px crop is the whole image


def test_srgan_small_trains_whole_digits_and_says_so(tmp_path, capsys):
    # its crop=48 is for photos; on the built-in 32x32 digits the preset still runs
    assert main(["train", "--preset", "srgan-small", "--max-steps", "1", "--out",
                 str(tmp_path / "r"), "g_base=8", "d_base=4", "n_blocks=1", "batch_size=4",
                 "content=pixel", "sample_every=0"]) == 0
    assert "crop=48 is for photos" in capsys.readouterr().err


def test_runs_saved_before_the_bicubic_skip_rebuild_the_paper_net():
    old = {"preset": "srgan", "data": {"task": "lowres2highres"},
           "model": {"arch": "srgan"}, "train": {"recipe": "srgan"}}
    assert Config.from_dict(old).model.sr_skip == "none"
    new = {**old, "model": {"arch": "srgan", "sr_skip": "bicubic"}}
    assert Config.from_dict(new).model.sr_skip == "bicubic"


def test_srgan_samples_with_its_ema(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "2",
                 "--out", str(run), "-q", "crop=32", "ema=0.5", *TINY]) == 0
    t = ganforge.load(run, device="cpu")
    from safetensors.torch import load_file

    ema = load_file(str(t.checkpoint / "G_ema.safetensors"))
    raw = load_file(str(t.checkpoint / "G.safetensors"))
    state = t.G.state_dict()
    assert all(torch.equal(state[k], ema[k]) for k in ema)
    assert any(not torch.equal(raw[k], ema[k]) for k in ema)


def test_the_pixel_phase_ends_when_held_out_psnr_stops_improving(photos, tmp_path, capsys):
    run = tmp_path / "run"
    # a generator that cannot move (lr 1e-12): the first evaluation is the best, the second is
    # not, so patience 1 ends the warm-up after step 2 and the GAN phase trains D from step 3
    assert main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "4",
                 "--out", str(run), "crop=32", "test_fraction=0.25", "eval_every=1",
                 "eval_metric=psnr_y", "warmup=0", "warmup_steps=100", "warmup_patience=1",
                 "lr_g=1e-12", *TINY]) == 0
    err = capsys.readouterr().err
    assert "SRResNet phase ended at step 2" in err
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    d_steps = [r["step"] for r in rows if "D_loss" in r]
    assert d_steps and min(d_steps) >= 3
    assert (run / "checkpoints" / "best").is_dir()  # the pixel phase's best generator
    code = main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "1",
                 "--out", str(tmp_path / "r2"), "-q", "warmup_patience=2", *TINY])
    assert code == 2 and "set eval_every" in capsys.readouterr().err


def test_resize_conv_upsampling_is_an_srgan_option():
    from ganforge.options import build_config

    cfg = build_config("srgan", {"sr_upsample": "nearest", "content": "pixel"})
    cfg.model.channels = 3
    from ganforge.recipes import RECIPES

    G = RECIPES["srgan"](cfg).G
    assert any(isinstance(m, torch.nn.Upsample) for m in G.modules())
    assert not any(isinstance(m, torch.nn.PixelShuffle) for m in G.modules())
    with pytest.raises(GanforgeError, match="sr_upsample: not read by recipe=pix2pix"):
        build_config("pix2pix", {"sr_upsample": "nearest"})
    with pytest.raises(GanforgeError, match="use pixelshuffle or nearest"):
        build_config("srgan", {"sr_upsample": "bilinear"})


def test_srgan_small_trains_on_a_time_budget_and_upscales(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "srgan-small", "--data", str(photos), "--max-time", "3s",
                 "--out", str(run), "-q", "crop=32", "batch_size=4", "content=pixel",
                 "sample_every=0"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["g_base"] == 32 and cfg["model"]["norm"] == "none"
    assert cfg["train"]["pixel_loss"] == "l1" and cfg["train"]["ema"] > 0
    out = tmp_path / "out"
    assert main(["upscale", str(run), "--input", str(photos), "--out", str(out)]) == 0
    assert Image.open(out / "a.png").size == (280, 200)
