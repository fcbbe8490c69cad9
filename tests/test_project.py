"""Projection of images into a trained run (GAN inversion): ``ganforge.project`` and ``ganforge
project``, on tiny runs. LPIPS is switched off (no download is tried): every projection here
uses the stated fallback distance."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_zoo import _small

import ganforge
import ganforge.metrics.perceptual as perceptual
from ganforge import checkpoint as ck
from ganforge import project as pj
from ganforge.cli import main
from ganforge.directions import load_latent, render
from ganforge.errors import GanforgeError
from ganforge.nets import build_nets
from ganforge.nets.stylegan2 import Generator
from ganforge.utils import save_png, to_uint8

P2P = ["g_base=4", "d_base=4", "batch_size=4"]


@pytest.fixture(autouse=True)
def _offline_one_thread(monkeypatch):
    monkeypatch.setattr(perceptual, "lpips_net", lambda *a, **k: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny nets: a second thread only waits on a shared machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("project")
    args = {"sg": ["--preset", "stylegan2-small", "--max-steps", "1",
                   *_small("stylegan2-small")],
            "dc": ["--preset", "dcgan", "--max-steps", "2", *tiny]}
    for name, a in args.items():
        assert main(["train", *a, "--out", str(root / name), "-q"]) == 0
    torch.set_num_threads(threads)
    return root


def _g(runs, name):
    return ganforge.load(runs / name, device="cpu")


def _calibrated(g):
    """A 2-step DCGAN's BatchNorm statistics are still near their start, so its samples are
    all but constant; set them from 256 samples so that samples differ."""
    for m in g.G.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    g.G.train()
    with torch.no_grad():
        g.G(g.noise(256, seed=1))
    g.G.eval()
    return g


def _w_of(g, n, seed):
    with torch.no_grad():
        return g.G.mapping_net(g.noise(n, seed))


# --- the method ----------------------------------------------------------------------------------


def test_projection_shapes_in_every_space(runs):
    g = _g(runs, "sg")
    x = render(g, _w_of(g, 2, 4), "w")
    layers = g.G.synthesis_net.noise_layers()
    for space, shape in (("w", (2, 16)), ("w+", (2, g.G.num_ws, 16)), ("z", (2, 16))):
        p = pj.project(g, x, space, steps=3, distance="pixel", record_every=1)
        assert p.space == space and p.steps == 3 and tuple(p.latents.shape) == shape
        assert p.reconstructions.shape == x.shape and p.psnr.shape == p.ssim.shape == (2,)
        assert torch.equal(p.reconstructions, render(g, p.latents, space))
        assert p.frame_steps == [0, 1, 2, 3] and len(p.frames) == 4
        assert p.frames[-1].dtype == torch.uint8 and torch.equal(p.frames[-1],
                                                                 to_uint8(p.reconstructions))
        assert p.distance.startswith("pixel MSE + 0.1 x D features")
        if space == "z":
            assert p.noise is None
        else:  # a map per noise layer and image, renormalised after every step
            assert len(p.noise) == len(layers) == g.G.num_ws - 1
            for m, layer in zip(p.noise, layers):
                assert m.shape == (2, 1, layer.resolution, layer.resolution)
                assert m.mean(dim=(1, 2, 3)).abs().max() < 1e-4
                assert torch.allclose(m.square().mean(dim=(1, 2, 3)), torch.ones(2), atol=1e-4)
    assert pj.project(g, x[:1], steps=1, distance="pixel").space == "w"
    assert pj.default_space(_g(runs, "dc")) == "z"
    with pytest.raises(GanforgeError, match="projection targets must be float"):
        pj.project(g, x[:, :, :16], steps=1)
    with pytest.raises(GanforgeError, match="--steps 0"):
        pj.project(g, x, steps=0)
    with pytest.raises(GanforgeError, match="use auto, lpips or pixel"):
        pj.project(g, x, steps=1, distance="nope")
    with pytest.raises(GanforgeError, match="use --space z"):
        pj.project(_g(runs, "dc"), x, "w+", steps=1)
    assert ganforge.project_images is pj.project is pj.project_images


def test_w_projection_of_a_generated_image_beats_the_w_avg_image(runs):
    """The small form of the issue's 'done when': a projection well above the PSNR of the
    w_avg image (the start), on images the generator made from known w."""
    g = _g(runs, "sg")
    w_true = _w_of(g, 2, 11)
    x = render(g, w_true, "w")
    w_avg, _ = pj.w_stats(g, None)
    start_psnr, _ = pj.scores(render(g, w_avg.expand(2, -1), "w"), x)
    p = pj.project(g, x, "w", steps=120, distance="pixel")
    assert (p.psnr >= start_psnr + 10).all(), (p.psnr, start_psnr)
    assert (p.ssim > 0.9).all()
    # the latent itself moved towards the true w
    assert ((p.latents - w_true).norm(dim=1) < (w_avg - w_true).norm(dim=1)).all()


def test_z_projection_into_a_dcgan_run_beats_a_random_sample(runs):
    g = _calibrated(_g(runs, "dc"))
    x = g.generate(g.noise(2, seed=5))
    random_psnr, _ = pj.scores(g.generate(g.noise(2, seed=9)), x)
    logs = []
    p = pj.project(g, x, steps=60, distance="pixel", log=logs.append)
    assert p.space == "z" and p.latents.shape == (2, 100) and p.noise is None
    assert (p.psnr >= random_psnr + 5).all(), (p.psnr, random_psnr)
    assert ((p.latents.square().mean(dim=1) - 1).abs() < 0.5).all()  # a plausible z
    assert "into z (100 dims) in 60 steps" in logs[0] and "distance: pixel MSE" in logs[0]


def test_noise_regularizer_schedules_and_w_stats():
    gen = torch.Generator().manual_seed(0)
    maps = [torch.cat([torch.randn(1, 1, 32, 32, generator=gen), torch.ones(1, 1, 32, 32)]),
            torch.cat([torch.randn(1, 1, 4, 4, generator=gen), torch.ones(1, 1, 4, 4)])]
    reg = pj.noise_regularizer(maps)
    # a constant map correlates fully: 2 axes x (32, 16, 8) + 2 axes x (4) = 8; white noise ~0
    assert reg[1] == pytest.approx(8.0) and reg[0] < 0.05
    assert pj.lr_ramp(0.0) == 0 and pj.lr_ramp(0.5) == 1 and pj.lr_ramp(0.999) < 1e-3
    assert pj.lr_ramp(0.025) == pytest.approx(0.5)
    assert pj.latent_noise(0.0, 2.0) == pytest.approx(0.1) and pj.latent_noise(0.75, 2.0) == 0


def test_explicit_noise_maps_in_the_synthesis_network():
    G = Generator(z_dim=8, w_dim=8, resolution=32, channels=1, channel_base=64, channel_max=8,
                  mapping_layers=2).eval()
    layers = G.synthesis_net.noise_layers()
    assert len(layers) == G.num_ws - 1
    for layer in layers:
        layer.noise_strength.data.fill_(0.5)
    ws = G.mapping(torch.randn(2, 8))
    const = G.synthesis(ws, noise_mode="const")
    assert torch.allclose(G.synthesis(ws, noise=[m.noise_const for m in layers]), const)
    other = [torch.randn(2, 1, m.resolution, m.resolution) for m in layers]
    y = G.synthesis(ws, noise=other)
    assert not torch.allclose(y, const, atol=1e-3)
    assert torch.allclose(G.synthesis(ws[1:], noise=[m[1:] for m in other]), y[1:], atol=1e-5)
    with pytest.raises(ValueError, match="noise needs 7 maps, got 6"):
        G.synthesis(ws, noise=other[:-1])


def test_the_distance_rule(runs, monkeypatch):
    g = _g(runs, "sg")
    logs = []
    d, name = pj.make_distance(g, "auto", log=logs.append)  # lpips_net gives None here
    groups = 3  # stylegan2 D at 32 px: fromRGB + the 32 block, the 16 block, the 8 block
    assert name == ("pixel MSE + 0.1 x D features (unit-normalised over channels, mean of D's "
                    f"{groups} input-block groups)")
    assert any("LPIPS-VGG16 weights not found" in m for m in logs)
    x = render(g, _w_of(g, 2, 1), "w")
    y = render(g, _w_of(g, 2, 2), "w")
    # by hand: D's input blocks run in order, features unit-normalised over channels
    _, D = build_nets(g.cfg.model)
    ck.load_net(D, g.checkpoint, "D")
    D.eval()

    def feats(t):
        out = []
        for group in D.input_blocks():
            for m in group:
                t = m(t)
            out.append(t / t.norm(dim=1, keepdim=True))
        return out

    with torch.no_grad():
        fd = sum((a - b).square().sum(1).mean(dim=(1, 2)) for a, b in zip(feats(x), feats(y)))
        want = (x - y).square().mean(dim=(1, 2, 3)) + 0.1 * fd / groups
        assert torch.allclose(d(x, y), want, rtol=1e-4) and (d(x, x) == 0).all()
    with pytest.raises(GanforgeError, match="VGG16 weights: download"):
        pj.make_distance(g, "lpips")

    def fake(a, b):
        return (a - b).abs().flatten(1).mean(1)

    monkeypatch.setattr(perceptual, "perceptual_distance", lambda device="cpu": (fake, "LPIPS"))
    d, name = pj.make_distance(g, "auto")
    assert name == "LPIPS"
    big = torch.zeros(1, 1, 512, 512)
    assert d(big, big + 0.5).item() == pytest.approx(0.5)  # downsampled to 256 on the way
    assert pj.make_distance(g, "pixel")[1].startswith("pixel MSE")  # forced fallback


def test_load_targets_converts_crops_and_resizes(tmp_path):
    wide = Image.new("RGB", (60, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (15, 0, 45, 20))  # the centre 20x20 crop is all blue
    wide.save(tmp_path / "wide.png")
    Image.new("L", (8, 8), 100).save(tmp_path / "gray.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    files = [tmp_path / n for n in ("wide.png", "gray.png", "bad.png")]
    x, read, failed, notes = pj.load_targets(files, 8, 1)
    assert x.shape == (2, 1, 8, 8) and read == files[:2] and failed[0].startswith("bad.png (")
    blue = np.array(Image.new("RGB", (1, 1), (0, 0, 255)).convert("L"))[0, 0]
    assert torch.allclose(x[0], torch.full((1, 8, 8), blue / 127.5 - 1), atol=1 / 127.5)
    assert torch.allclose(x[1], torch.full((1, 8, 8), 100 / 127.5 - 1))
    assert notes == ["resized 1 image(s) to 8x8 (centre crop to a square, bicubic with "
                     "antialiasing)", "converted 1 image(s) to gray (the run's 1 channel)"]
    x3, _, _, notes3 = pj.load_targets(files[1:2], 8, 3)  # gray onto RGB: repeated
    assert x3.shape == (1, 3, 8, 8) and torch.equal(x3[:, 0], x3[:, 2])
    assert notes3 == ["converted 1 image(s) to RGB (the run's 3 channels)"]


# --- the command ----------------------------------------------------------------------------------


def _targets(g, folder, rgb=True):
    folder.mkdir(parents=True, exist_ok=True)
    imgs = to_uint8(render(g, _w_of(g, 2, 21), "w")) if g.is_style else to_uint8(
        g.generate(g.noise(2, seed=21)))
    for i, img in enumerate(imgs):
        save_png(img, folder / f"t{i}.png")
    if rgb:
        Image.new("RGB", (48, 40), (200, 120, 30)).save(folder / "photo.jpg")
        (folder / "broken.png").write_bytes(b"nope")
    return folder


def test_cli_writes_every_file_and_the_latent_renders_the_reconstruction(runs, tmp_path,
                                                                          capsys):
    g = _g(runs, "sg")
    src, out = _targets(g, tmp_path / "in"), tmp_path / "out"
    assert main(["project", str(runs / "sg"), "--image", str(src), "--out", str(out),
                 "--steps", "4", "--gif", "--distance", "pixel", "--device", "cpu"]) == 0
    cap = capsys.readouterr()
    assert "converted 1 image(s) to gray" in cap.err and "resized 1 image(s) to 32x32" in cap.err
    assert "skipped 1 unreadable file(s): broken.png" in cap.err
    assert "mean" in cap.out and "distance: pixel MSE" in cap.out
    report = json.loads((out / "report.json").read_text())
    assert [r["name"] for r in report["images"]] == ["photo", "t0", "t1"]
    assert report["space"] == "w" and report["steps"] == 4
    assert report["distance"].startswith("pixel MSE + 0.1 x D features")
    assert report["mean_psnr"] == pytest.approx(np.mean([r["psnr"] for r in report["images"]]))
    assert report["mean_ssim"] == pytest.approx(np.mean([r["ssim"] for r in report["images"]]))
    for name in ("photo", "t0", "t1"):
        png = np.array(Image.open(out / f"{name}.png"))
        assert png.shape == (32, 32)  # the RGB photo too: gray like the run
        latent, space, labels = load_latent(out / f"{name}.safetensors")
        assert space == "w" and latent.shape == (1, 16) and labels is None
        assert np.array_equal(to_uint8(render(g, latent, space))[0, 0].numpy(), png)
        compare = np.array(Image.open(out / f"{name}_compare.png").convert("L"))
        assert compare.shape == (34 + 2, 2 * 34 + 2)  # target | reconstruction
        assert np.array_equal(compare[2:34, 36:68], png)
        gif = Image.open(out / f"{name}.gif")
        assert gif.n_frames >= 3 and gif.size[1] >= 128


def test_a_projected_latent_is_edited_by_ganforge_edit(runs, tmp_path):
    g = _g(runs, "sg")
    src, out = _targets(g, tmp_path / "in", rgb=False), tmp_path / "out"
    assert main(["project", str(runs / "sg"), "--image", str(src / "t0.png"), "--out", str(out),
                 "--space", "w+", "--steps", "2", "--distance", "pixel"]) == 0
    latent, space, _ = load_latent(out / "t0.safetensors")
    assert space == "w+" and latent.shape == (1, g.G.num_ws, 16)
    dirs = tmp_path / "d.safetensors"
    assert main(["directions", str(runs / "sg"), "--k", "2", "--n", "100", "--seeds", "1",
                 "--strengths", "1", "--out", str(dirs)]) == 0
    for strength, name in (("0", "e0"), ("3", "e3")):
        assert main(["edit", str(runs / "sg"), "--direction", f"{dirs}:0", "--strength",
                     strength, "--latent", str(out / "t0.safetensors"),
                     "--out", str(tmp_path / name)]) == 0
    recon = np.array(Image.open(out / "t0.png"))
    assert np.array_equal(np.array(Image.open(tmp_path / "e0" / "00000.png")), recon)
    assert not np.array_equal(np.array(Image.open(tmp_path / "e3" / "00000.png")), recon)


@pytest.fixture(scope="module")
def other_runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("project-other")
    args = {"toy": ["--preset", "toy", "--max-steps", "1", "hidden=16", "batch_size=32"],
            "cond": ["--preset", "cgan", "--max-steps", "1", *_small("cgan")],
            "p2p": ["--preset", "pix2pix", "--max-steps", "1", *P2P]}
    for name, a in args.items():
        assert main(["train", *a, "--out", str(root / name), "-q"]) == 0
    torch.set_num_threads(threads)
    return root


@pytest.mark.parametrize("case, msg", [
    ("vector", "this run generates vectors, not images"),
    ("missing", "--image {tmp}/nothere does not exist"),
    ("w-on-dcgan", "--space w needs a StyleGAN run"),
    ("conditional", "this run is conditional (10 classes): give the class of the image(s) "
                    "with --class K"),
    ("img2img", "this is a pix2pix run: it translates images"),
])
def test_bad_inputs_are_one_line_errors(runs, other_runs, tmp_path, capsys, case, msg):
    image = tmp_path / "x.png"
    Image.new("L", (32, 32), 128).save(image)
    run, extra = {"vector": (other_runs / "toy", []), "missing": (runs / "dc", []),
                  "w-on-dcgan": (runs / "dc", ["--space", "w"]),
                  "conditional": (other_runs / "cond", []),
                  "img2img": (other_runs / "p2p", [])}[case]
    if case == "missing":
        image = tmp_path / "nothere"
    capsys.readouterr()
    assert main(["project", str(run), "--image", str(image), "--out", str(tmp_path / "o"),
                 "--steps", "1", "--distance", "pixel", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert msg.replace("{tmp}", str(tmp_path)) in err
    assert not (tmp_path / "o").exists()


def test_a_conditional_run_projects_with_its_class(other_runs, tmp_path):
    g = ganforge.load(other_runs / "cond", device="cpu")
    x = g.generate(g.noise(1, seed=2), g.labels(1, 3))
    with pytest.raises(GanforgeError, match="give the class"):
        pj.project(g, x, steps=1, distance="pixel")
    save_png(to_uint8(x)[0], tmp_path / "three.png")
    assert main(["project", str(other_runs / "cond"), "--image", str(tmp_path / "three.png"),
                 "--out", str(tmp_path / "o"), "--class", "3", "--steps", "2",
                 "--distance", "pixel"]) == 0
    latent, space, labels = load_latent(tmp_path / "o" / "three.safetensors")
    assert space == "z" and labels.tolist() == [3]


def test_the_benchmark_script_runs_on_a_tiny_run(runs, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "projection.py"
    spec = importlib.util.spec_from_file_location("projection_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    g = _g(runs, "sg")
    src = _targets(g, tmp_path / "in", rgb=False)
    out = tmp_path / "r.jsonl"
    assert bench.main(["--run", str(runs / "sg"), "--images", str(src), "--steps", "2",
                       "--distance", "pixel", "--device", "cpu", "--out", str(out)]) == 0
    assert bench.main(["--run", str(runs / "sg"), "--images", str(src), "--steps", "2",
                       "--distance", "pixel", "--device", "cpu", "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["n"] == 2 and lines[0]["space"] == "w"
    for k in ("psnr", "ssim", "psnr_mean_image", "psnr_random_sample", "cpu"):
        assert k in lines[0]
    w_avg, _ = pj.w_stats(g, None)
    x, *_ = pj.load_targets(sorted(src.glob("*.png")), 32, 1)
    base, _ = pj.scores(render(g, w_avg.expand(2, -1), "w"), x)
    assert lines[0]["psnr_mean_image"] == pytest.approx(float(base.mean()))
    assert "projection" in capsys.readouterr().out
