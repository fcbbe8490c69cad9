"""Pix2Pix, CycleGAN and SRGAN on the one trainer: a few steps, resume, translate/upscale,
eval, on the built-in digits with tiny nets."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import ganforge
from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer

TINY = {
    "pix2pix": ["g_base=4", "d_base=4", "batch_size=4"],
    "cyclegan": ["g_base=4", "d_base=4", "n_blocks=1", "batch_size=2", "pool_size=3"],
    "srgan": ["g_base=8", "d_base=4", "n_blocks=1", "batch_size=4", "warmup_steps=2",
              "warmup=0", "content=pixel"],
}
COMMON = ["log_every=2", "sample_every=2", "checkpoint_every=2"]


def _train(preset, run, steps=4, *extra):
    return main(["train", "--preset", preset, "--max-steps", str(steps), "--out", str(run),
                 "-q", *TINY[preset], *COMMON, *extra])


@pytest.fixture(scope="module", params=["pix2pix", "cyclegan", "srgan"])
def trained(request, tmp_path_factory):
    run = tmp_path_factory.mktemp(request.param) / "run"
    assert _train(request.param, run) == 0
    return request.param, run


def test_trains_writes_previews_and_checkpoints(trained):
    preset, run = trained
    assert (run / "samples" / "final.png").is_file()
    assert ck.latest_checkpoint(run).name == "step_00000004"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["train"]["recipe"] == preset and cfg["model"]["in_channels"] == 1
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*lines)
    want = {"pix2pix": "L1", "cyclegan": "cycle", "srgan": "MSE"}[preset]
    assert want in keys, keys


def test_srgan_warmup_is_a_share_of_the_run(tmp_path):
    """The preset's warm-up is half the run's progress: steps here, --max-time alike."""
    over = dict(x.split("=") for x in TINY["srgan"])
    over.update(warmup_steps=0, max_steps=6, sample_every=0, checkpoint_every=0, log_every=1)
    over.pop("warmup")
    cfg = build_config("srgan", over)
    assert cfg.train.warmup == 0.5
    Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False).train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    adv = [r["step"] for r in rows if "G_adv" in r]
    assert adv and min(adv) == 4 and len(rows) == 6, rows  # steps 0-2 warm up (progress < 0.5)
    with pytest.raises(GanforgeError, match="both set"):
        build_config("srgan", {"warmup_steps": 10})
    with pytest.raises(GanforgeError, match="not read by recipe=gan"):
        build_config("dcgan", {"warmup": 0.2})


@pytest.mark.parametrize("preset", ["pix2pix", "cyclegan", "srgan"])
def test_one_step_changes_every_trained_net(preset, tmp_path):
    over = dict(x.split("=") for x in TINY[preset])
    over.update(max_steps=1, sample_every=0, checkpoint_every=0, log_every=1)
    if preset == "srgan":
        over["warmup_steps"] = 0
    cfg = build_config(preset, over)
    tr = Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False)
    before = {k: [p.detach().clone() for p in n.parameters()] for k, n in tr.nets.items()}
    tr.train()
    for name, net in tr.nets.items():
        moved = any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))
        assert moved, f"{preset}: {name} did not change"


def test_srgan_warmup_trains_only_the_generator(tmp_path):
    over = dict(x.split("=") for x in TINY["srgan"])
    over.update(max_steps=2, warmup_steps=5, sample_every=0, checkpoint_every=0, log_every=1)
    tr = Trainer(build_config("srgan", over), tmp_path / "run", quiet=True, tensorboard=False)
    d0 = [p.detach().clone() for p in tr.nets["D"].parameters()]
    tr.train()
    assert all(torch.equal(a, b) for a, b in zip(d0, tr.nets["D"].parameters()))
    assert "MSE" in tr.last and "G_adv" not in tr.last


@pytest.mark.parametrize("preset", ["pix2pix", "cyclegan", "srgan"])
def test_resume_is_exact(preset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _train(preset, a, 4) == 0
    assert _train(preset, b, 2) == 0
    assert main(["train", "--resume", str(b), "--max-steps", "4", "-q"]) == 0
    pa, pb = ck.latest_checkpoint(a), ck.latest_checkpoint(b)
    for f in sorted(pa.glob("*.safetensors")):
        from safetensors.torch import load_file

        ta, tb = load_file(str(f)), load_file(str(pb / f.name))
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (preset, f.name, k)


def _mixed_sizes(root, channels=1):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate([(32, 32), (45, 21), (70, 64)]):
        shape = (h, w) if channels == 1 else (h, w, 3)
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(root / f"im{i}.png")
    (root / "sub").mkdir()
    Image.fromarray(rng.integers(0, 255, (17, 23, 3), dtype=np.uint8)).save(
        root / "sub" / "rgb.jpg")
    (root / "broken.png").write_bytes(b"not an image")
    return root


def test_translate_and_upscale_on_mixed_sizes(trained, tmp_path):
    preset, run = trained
    inp = _mixed_sizes(tmp_path / "in")
    out = tmp_path / "out"
    if preset == "srgan":
        assert main(["upscale", str(run), "--input", str(inp), "--out", str(out),
                     "--tile", "16"]) == 0
        assert Image.open(out / "im1.png").size == (45 * 4, 21 * 4)
        assert Image.open(out / "im2.png").size == (70 * 4, 64 * 4)
        assert main(["translate", str(run), "--input", str(inp), "--out", str(out)]) == 2
        return
    args = ["translate", str(run), "--input", str(inp), "--out", str(out)]
    assert main(args) == 0
    for name, size in [("im0.png", (32, 32)), ("im1.png", (45, 21)), ("im2.png", (70, 64)),
                       ("sub/rgb.png", (23, 17))]:
        assert Image.open(out / name).size == size, name
    assert not (out / "broken.png").exists()
    assert main(args + ["--resize"]) == 0
    if preset == "cyclegan":
        assert main(args + ["--direction", "BtoA"]) == 0
    else:
        assert main(args + ["--direction", "BtoA"]) == 2  # one way only
    assert main(["upscale", str(run), "--input", str(inp), "--out", str(out)]) == 2
    assert main(["sample", str(run)]) == 2  # not a noise-to-image run


def test_upscale_tiles_agree_with_whole_image(trained):
    preset, run = trained
    if preset != "srgan":
        pytest.skip("super-resolution only")
    t = ganforge.load(run, device="cpu")
    x = torch.rand(1, 1, 40, 52) * 2 - 1
    whole = t.upscale(x, tile=0)
    tiled = t.upscale(x, tile=24, overlap=8)
    assert whole.shape == tiled.shape == (1, 1, 160, 208)
    # BatchNorm in eval mode: tiles differ from the whole only near tile borders
    assert (whole - tiled).abs().mean() < 0.05


def test_eval_reports_heldout_metrics_with_baseline(trained):
    preset, run = trained
    assert main(["eval", str(run), "--n", "20"]) == 0
    rep = json.loads((run / "eval.json").read_text())
    m = rep["metrics"]
    if preset == "cyclegan":
        assert {"cycle", "cycle_a", "cycle_b"} <= set(m)
    else:
        base = "bicubic" if preset == "srgan" else "copy_input"
        assert {"l1", "psnr", "ssim", f"l1_{base}", f"psnr_{base}"} <= set(m)
    assert rep["heldout"] > 0


def test_eval_every_keeps_the_best_heldout_checkpoint(tmp_path):
    run = tmp_path / "run"
    assert _train("srgan", run, 4, "eval_every=2", "eval_n=8") == 0
    st = ck.load_state(run / "checkpoints" / "best")
    assert st["best_eval"]["metric"] == "psnr"
    assert main(["train", "--preset", "pix2pix", "--max-steps", "1", "--out",
                 str(tmp_path / "bad"), "-q", "eval_every=1", "eval_metric=fid"]) == 2


def test_vgg_content_falls_back_to_pixels_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*a, **k):
        raise OSError("offline")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    over = dict(x.split("=") for x in TINY["srgan"])
    over.update(content="vgg", max_steps=1, sample_every=0, checkpoint_every=0)
    tr = Trainer(build_config("srgan", over), tmp_path / "run", tensorboard=False)
    assert tr.recipe.vgg is None
    assert "pixel (MSE) content loss" in capsys.readouterr().err


def test_bad_img2img_input_is_one_line(tmp_path):
    assert main(["train", "--preset", "pix2pix", "task=nope", "--dry-run"]) == 2
    assert main(["train", "--preset", "cyclegan", "--data", str(tmp_path), "--max-steps",
                 "1", "task=unpaired", "--out", str(tmp_path / "r")]) == 2
    assert main(["train", "--preset", "dcgan", "task=edges2image", "--dry-run"]) == 2
