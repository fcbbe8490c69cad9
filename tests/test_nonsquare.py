"""Non-square images (``resolution=HxW``) and ``fit=crop|pad|stretch``: each family that builds
them trains, samples and resumes at H x W; the fits give the expected pixels; old square runs
load as before; bad shapes are one-line errors."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.config import Config, image_size, parse_resolution
from ganforge.data import load_dataset
from ganforge.data.cache import CACHE_VERSION, cache_key
from ganforge.data.images import decode_image, resize_batch
from ganforge.errors import GanforgeError
from ganforge.nets import build_nets
from ganforge.options import build_config

RUN = ["--max-steps", "2", "-q", "batch_size=8", "sample_every=0", "checkpoint_every=1",
       "log_every=1"]
# (preset, resolution HxW, tiny widths): one per family that builds non-square images
FAMILIES = [
    ("dcgan", "32x128", ["g_channel_base=128", "d_channel_base=128"]),  # 1:4
    ("projection", "64x32", ["g_channel_base=128", "d_channel_base=128", "n_critic=1"]),
    ("stylegan2-small", "32x64", ["g_channel_base=128", "d_channel_base=128", "latent_dim=32"]),
    ("r3gan-small", "32x64", ["g_channel_base=256", "d_channel_base=256", "latent_dim=16"]),
]


def _photos(root, n=8, size=(48, 24), classes=("a", "b")):
    """``n`` random PIL images of ``size`` (W, H) in each class folder."""
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / c / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("photos") / "imgs")


@pytest.mark.parametrize("preset,res,widths", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_family_trains_samples_and_resumes_at_hxw(preset, res, widths, photos, tmp_path):
    h, w = image_size(res)
    run = tmp_path / "run"
    assert main(["train", "--data", str(photos), "--preset", preset, "--resolution", res,
                 "--out", str(run), *RUN, *widths]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["resolution"] == res and cfg["model"]["resolution"] == res
    # the run's sample grid, 8 a row (2 px padding): W x H cells
    gw, gh = Image.open(run / "samples" / "final.png").size
    assert gw == 8 * (w + 2) + 2 and (gh - 2) % (h + 2) == 0 and gh > h
    out = tmp_path / "s"
    assert main(["sample", str(run), "--n", "3", "--out", str(out)]) == 0
    assert [Image.open(p).size for p in sorted(out.glob("0*.png"))] == [(w, h)] * 3
    assert Image.open(out / "grid.png").size == (2 * (w + 2) + 2, 2 * (h + 2) + 2)
    # resume: one more step, the same shape
    assert main(["train", "--resume", str(run), "--max-steps", "3", "-q"]) == 0
    assert ck.latest_checkpoint(run).name == "step_00000003"
    from ganforge.generate import load

    g = load(run, device="cpu")
    assert g.sample(2, seed=0).shape == (2, 3, h, w)
    assert g.generate(torch.empty(0, g.latent_dim)).shape == (0, 3, h, w)


def test_resume_at_hxw_is_exact_and_gif_keeps_the_shape(photos, tmp_path):
    widths = ["g_channel_base=128", "d_channel_base=128"]
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["train", "--data", str(photos), "--preset", "dcgan", "--resolution", "32x64", "-q",
            "batch_size=8", "checkpoint_every=1", *widths]
    assert main([*base, "--out", str(a), "--max-steps", "2"]) == 0
    assert main([*base, "--out", str(b), "--max-steps", "1"]) == 0
    assert main(["train", "--resume", str(b), "--max-steps", "2", "-q"]) == 0
    from safetensors.torch import load_file

    for net in ("G", "D"):
        wa = load_file(str(ck.latest_checkpoint(a) / f"{net}.safetensors"))
        wb = load_file(str(ck.latest_checkpoint(b) / f"{net}.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), f"{net} differs after resume"
    gif = tmp_path / "walk.gif"
    assert main(["interpolate", str(a), "--out", str(gif), "--points", "2", "--frames", "2",
                 "--rows", "2", "--scale", "1"]) == 0
    assert Image.open(gif).size == (2 * (64 + 2) + 2, 32 + 4)  # 2 walks side by side


def test_stylegan2_noise_maps_are_hxw():
    from ganforge.project import noise_regularizer

    cfg = build_config("stylegan2-small", ["resolution=32x64", "g_channel_base=64",
                                           "d_channel_base=64", "latent_dim=16"]).model
    cfg.resolution, cfg.channels = "32x64", 1
    G, D = build_nets(cfg)
    sizes = [tuple(layer.noise_const.shape) for layer in G.synthesis_net.noise_layers()]
    assert sizes == [(4, 8), (8, 16), (8, 16), (16, 32), (16, 32), (32, 64), (32, 64)]
    maps = [torch.randn(2, 1, *s) for s in sizes]
    assert noise_regularizer(maps).shape == (2,)
    x = G(torch.randn(2, 16), noise_mode="const")
    assert x.shape == (2, 1, 32, 64) and D(x).shape == (2,)
    assert D.fc.weight.shape[1] == D.conv.weight.shape[0] * 32  # D ends on a 4x8 map


def test_projection_targets_meet_the_run_shape(tmp_path):
    from ganforge.project import load_targets

    Image.fromarray(np.zeros((50, 50), np.uint8)).save(tmp_path / "sq.png")
    x, files, failed, notes = load_targets([tmp_path / "sq.png"], "32x64", 1)
    assert x.shape == (1, 1, 32, 64) and not failed and "32x64" in notes[0]


def test_dcgan_and_r3gan_base_maps_follow_the_aspect():
    cfg = build_config("dcgan", ["resolution=64x32", "g_channel_base=128",
                                 "d_channel_base=128"]).model
    cfg.resolution, cfg.channels = "64x32", 3
    G, D = build_nets(cfg)
    assert G.main[0].weight.shape[2:] == (8, 4)  # a 8x4 base map for a 2:1 portrait
    assert D.head.linear.weight.shape[1] == G.main[0].weight.shape[1] * 32
    cfg = build_config("r3gan-small", ["resolution=32x128", "g_channel_base=256",
                                       "d_channel_base=256"]).model
    cfg.resolution, cfg.channels = "32x128", 3
    G, D = build_nets(cfg)
    assert G.stages[0][0].basis.shape[1:] == (4, 16)
    assert D.stages[-1][-1].basis.weight.shape[2:] == (4, 16)
    assert G(torch.randn(2, cfg.latent_dim)).shape == (2, 3, 32, 128)


# --- fit: crop, pad, stretch ------------------------------------------------------------------


def _bar_image(w=40, h=20):
    """Black, with a red bar on the left quarter (W x H PIL size)."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 4, 0] = 255
    return arr


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("how", ["file", "array"])
def test_fit_crop_cuts_the_bar_pad_keeps_it_stretch_fills(how):
    src = _bar_image()  # 40 wide, 20 high: a landscape photo onto a 16x16 square

    def fit(mode):
        if how == "file":
            return decode_image(_png(src), 16, 3, mode)
        return resize_batch(src.transpose(2, 0, 1)[None], 16, 3, mode)[0]

    crop, pad, stretch = fit("crop"), fit("pad"), fit("stretch")
    assert crop.shape == pad.shape == stretch.shape == (3, 16, 16)
    assert crop[0].max() < 40  # the centre square [10, 30) misses the bar [0, 10)
    # pad: the image scaled to 16x8 in rows 4..11, black bars above and below
    assert pad[:, :4].max() == 0 and pad[:, 12:].max() == 0
    assert pad[0, 4:12, :3].min() > 200 and pad[0, 4:12, 6:].max() < 40
    # stretch: the bar on the left quarter of every row
    assert stretch[0, :, :3].min() > 200 and stretch[0, :, 6:].max() < 40


def test_fit_onto_hxw_from_a_square_photo():
    arr = np.zeros((30, 30, 3), np.uint8)
    arr[:6, :, 1] = 255  # a green bar along the top fifth
    x = arr.transpose(2, 0, 1)[None]
    crop = resize_batch(x, "16x32", 3, "crop")[0]
    pad = resize_batch(x, "16x32", 3, "pad")[0]
    stretch = resize_batch(x, "16x32", 3, "stretch")[0]
    assert crop.shape == pad.shape == stretch.shape == (3, 16, 32)
    assert crop[1].max() < 40  # the centre 30x15 band [7.5, 22.5) misses the top rows
    assert pad[:, :, :8].max() == 0 and pad[:, :, 24:].max() == 0  # black left and right
    assert pad[1, :2, 8:24].min() > 200
    assert stretch[1, :2].min() > 200 and stretch[1, 5:].max() < 40
    # the same through the file decoder (PIL): the same layout
    f = decode_image(_png(arr), (16, 32), 3, "pad")
    assert f[:, :, :8].max() == 0 and f[1, :2, 8:24].min() > 200


def test_jpeg_draft_keeps_enough_pixels_for_each_fit():
    arr = np.zeros((400, 800, 3), np.uint8)
    arr[:, :200, 0] = 255
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95)
    pad = decode_image(buf.getvalue(), "32x128", 3, "pad")  # 1:2 photo into a 1:4 canvas
    assert pad.shape == (3, 32, 128)
    assert pad[:, :, :30].max() < 10 and pad[0, :, 34:45].min() > 200  # black, then the bar
    crop = decode_image(buf.getvalue(), "32x128", 3, "crop")
    assert crop.shape == (3, 32, 128) and crop[0, :, :10].min() > 200


def test_load_dataset_fit_and_shape_in_the_cache_key(tmp_path):
    folder = tmp_path / "bars"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_bar_image(60, 20)).save(folder / f"{i}.png")  # 3:1
    home = tmp_path / "home"
    got = {}
    for res, fit in (("16x32", "crop"), ("16x32", "pad"), ("32x16", "crop"), (16, "crop")):
        ds = load_dataset(str(folder), res, home=home, log=None, memory_limit_bytes=1, fit=fit)
        got[(res, fit)] = ds
        assert ds.size == image_size(res) and ds.resolution == parse_resolution(res)
    assert len(list((home / "cache").glob("*.json"))) == 4  # one decoded cache each
    assert not torch.equal(got[("16x32", "crop")].images, got[("16x32", "pad")].images)
    again = load_dataset(str(folder), "16x32", home=home, log=None, memory_limit_bytes=1,
                         fit="pad")
    assert torch.equal(again.images, got[("16x32", "pad")].images)
    # square crops keep the key of the versions before H x W and fit: old caches stay valid
    old = hashlib.sha256(json.dumps([CACHE_VERSION, "fp", 32, 3]).encode()).hexdigest()[:32]
    assert cache_key("fp", 32, 3) == cache_key("fp", (32, 32), 3, "crop") == old
    assert len({cache_key("fp", s, 3, f) for s in ((32, 64), (64, 32), (32, 32))
                for f in ("crop", "pad", "stretch")}) == 9


def test_fit_pad_on_a_square_run(photos, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(photos), "--preset", "dcgan", "fit=pad", "--out",
                 str(run), "--max-steps", "1", "-q", "batch_size=8", "g_channel_base=128",
                 "d_channel_base=128"]) == 0
    cfg = Config.load(run / "config.json")
    assert (cfg.data.fit, cfg.model.size) == ("pad", (32, 32))
    ds = load_dataset(str(photos), 32, log=None, fit="pad")  # 48x24 photos: black rows
    assert ds.images[:, :, :8].max() == 0 and ds.images[:, :, 8:24].float().mean() > 50


# --- old runs, bad values -----------------------------------------------------------------------


def test_old_square_config_json_loads_as_before(tmp_path):
    d = build_config("dcgan", ["resolution=64"]).to_dict()
    del d["data"]["fit"]  # written before the key existed
    d["model"]["resolution"] = 64
    (tmp_path / "config.json").write_text(json.dumps(d))
    cfg = Config.load(tmp_path / "config.json")
    assert cfg.data.resolution == 64 and cfg.data.size == (64, 64) and cfg.data.fit == "crop"
    assert cfg.model.resolution == 64 and cfg.model.size == (64, 64)
    # and a new square run still writes a plain side
    assert json.loads(cfg.to_json())["data"]["resolution"] == 64
    assert build_config("dcgan", ["resolution=64x64"]).data.resolution == 64


# the state_dict keys and shapes of square nets, hashed, as the code before H x W built them:
# old checkpoints load into the nets unchanged
SQUARE_NETS = {"dcgan": "a339dedd8fbf17fb", "cgan": "ff70c99227768049",
               "acgan": "e4b7d18bd9ddad54", "sngan": "1d012f93bd7623a6",
               "projection": "00ac835020e039c1", "stylegan2-small": "b5b893242a081036",
               "r3gan-small": "581ac7f0c29276d7", "biggan-small": "b01d99dde2df0f97"}


@pytest.mark.parametrize("preset", sorted(SQUARE_NETS))
def test_square_nets_keep_their_state_dict_layout(preset):
    over = {"g_channel_base": 256, "d_channel_base": 256}
    if preset == "r3gan-small":
        over = {"g_channel_base": 512, "d_channel_base": 512}
    m = build_config(preset, over).model
    m.resolution, m.channels = 32, 3
    if m.g_cond != "none" or m.d_cond != "none":
        m.num_classes = 3
    G, D = build_nets(m)
    text = ";".join(f"{n}.{k}:{list(v.shape)}" for n, net in (("G", G), ("D", D))
                    for k, v in sorted(net.state_dict().items()))
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == SQUARE_NETS[preset]


@pytest.mark.parametrize("preset,args,needle", [
    ("dcgan", ["resolution=48x64"], "resolution=48x64 is not supported: use 32, 64 or 128 on"),
    ("dcgan", ["resolution=32x96"], "resolution=32x96 is not supported"),  # 1:3
    ("stylegan2-small", ["resolution=32x2048"], "not supported by stylegan2"),
    ("dcgan", ["resolution=32x"], "bad value for data.resolution"),
    ("biggan-small", ["resolution=32x64"], "arch=biggan builds square images only"),
    ("pix2pix", ["resolution=32x64"], "image-to-image runs (task=edges2image) train on squares"),
    ("toy", ["resolution=32x64"], "arch=mlp builds square images only"),
    ("dcgan", ["fit=zoom"], "fit='zoom': use crop, pad or stretch"),
    ("pix2pix", ["fit=pad"], "fit=pad: not read by task=edges2image"),
    ("toy", ["fit=stretch"], "fit=stretch: not read by arch=mlp"),
    ("dcgan", ["model.resolution=32x64"], "set data.resolution instead"),
])
def test_bad_shapes_are_one_line_errors(preset, args, needle):
    with pytest.raises(GanforgeError) as e:
        build_config(preset, args)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_refuses_a_bad_hxw_in_one_line(capsys):
    assert main(["train", "--preset", "biggan-small", "--resolution", "32x64", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resolution=32x64: arch=biggan") and "\n" not in err


def test_a_hand_built_square_only_net_refuses_hxw():
    m = build_config("biggan-small").model
    m.resolution, m.channels, m.num_classes = "32x64", 3, 2
    with pytest.raises(GanforgeError, match="arch=biggan builds square images only"):
        build_nets(m)


def test_feature_spaces_take_non_square_images():
    from ganforge.metrics.classifier import DomainClassifier
    from ganforge.metrics.features import ClassifierFeatures, clean_resize

    x = torch.randint(0, 256, (3, 3, 32, 64), dtype=torch.uint8)
    space = ClassifierFeatures(DomainClassifier(2, 3), "test", "cpu")
    feats, probs = space(x)
    assert feats.shape[0] == 3 and probs.shape == (3, 2)
    assert clean_resize(x, 40).shape == (3, 3, 40, 40)
    from torch_fidelity.interpolate_compat_tensorflow import (
        interpolate_bilinear_2d_like_tensorflow1x,
    )  # what Inception / DINOv2 / CLIP resize with (legacy)

    y = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299),
                                                  align_corners=False)
    assert y.shape == (3, 3, 299, 299)


def test_ppl_resizes_the_shorter_side_and_keeps_the_aspect():
    from ganforge.metrics.ppl import _lpips_size

    assert _lpips_size(torch.zeros(1, 3, 32, 64)).shape[2:] == (64, 128)
    assert _lpips_size(torch.zeros(1, 3, 512, 1024)).shape[2:] == (256, 512)
    assert _lpips_size(torch.zeros(1, 3, 32, 32)).shape[2:] == (64, 64)  # squares as before
