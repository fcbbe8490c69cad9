"""Real-ESRGAN degradations for SR inputs (``degrade=realesrgan``), and the memory check that
splits a batch too big for the device into micro-batches before the first step."""

import json

import pytest
import torch
from test_sr_native import _photo

from ganforge.cli import main
from ganforge.data.degrade import gaussian_kernel, realesrgan, sinc_kernel
from ganforge.data.pairs import downsample
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import memory
from ganforge.train.loop import Trainer


def test_kernels_sum_to_one_and_have_their_shape():
    k = gaussian_kernel(9, 1.0, 3.0, 0.0)
    assert k.shape == (9, 9) and abs(float(k.sum()) - 1) < 1e-5
    assert float(k[0, 4]) > float(k[4, 0])  # narrow along x (sx=1), wide along y (sy=3)
    s = sinc_kernel(11, 1.0)
    assert abs(float(s.sum()) - 1) < 1e-5 and float(s[5, 5]) == float(s.max())
    assert float(s.min()) < 0  # the ringing lobes


def test_realesrgan_degrades_each_sample_its_own_way_and_repeats_with_the_seed():
    hr = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = realesrgan(hr, 4, torch.Generator().manual_seed(1))
    b = realesrgan(hr, 4, torch.Generator().manual_seed(1))
    c = realesrgan(hr, 4, torch.Generator().manual_seed(2))
    assert a.shape == (6, 3, 12, 12) and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    clean = downsample(hr, 4)
    err = (a - clean).abs().mean((1, 2, 3))
    assert (err > 0.01).all()  # every sample degraded beyond the clean downsample
    same = realesrgan(hr[:1].expand(6, -1, -1, -1), 4, torch.Generator().manual_seed(3))
    assert not torch.equal(same[0], same[1])  # one image, six different chains
    grey = realesrgan(hr[:2, :1], 2, torch.Generator().manual_seed(0))
    assert grey.shape == (2, 1, 24, 24)


def test_degrade_is_an_srgan_option_only():
    assert build_config("srgan", {"degrade": "realesrgan"}).train.degrade == "realesrgan"
    with pytest.raises(GanforgeError, match="degrade=.*use none or realesrgan"):
        build_config("srgan", {"degrade": "jpeg"})
    with pytest.raises(GanforgeError, match="degrade: not read by recipe=pix2pix"):
        build_config("pix2pix", {"degrade": "realesrgan"})


def test_srgan_trains_and_scores_on_degraded_inputs(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (w, h) in enumerate(((70, 50), (64, 90), (100, 60), (48, 48))):
        _photo(w, h, i).save(photos / f"{i}.png")
    run = tmp_path / "run"
    assert main(["train", "--preset", "srgan", "--data", str(photos), "--max-steps", "2",
                 "--out", str(run), "-q", "crop=32", "test_fraction=0.25", "eval_every=2",
                 "eval_metric=psnr_y", "degrade=realesrgan", "g_base=8", "d_base=4",
                 "n_blocks=1", "batch_size=4", "content=pixel", "sample_every=0"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    ev = [r for r in rows if "eval/psnr_y" in r]
    # the degraded input scores below what a clean downsample would (bicubic baseline too)
    assert ev and 5 < ev[-1]["eval/psnr_y"] < 60
    assert json.loads((run / "config.json").read_text())["train"]["degrade"] == "realesrgan"


def test_micro_batch_fit_picks_the_largest_divisor_that_fits():
    gib = 2**30
    assert memory.fit_micro_batch(64, gib // 100, 0, 100 * gib) == 64
    m = memory.fit_micro_batch(512, gib // 4, gib, 20 * gib)
    assert 0 < m < 512 and 512 % m == 0
    assert m * gib / 4 * memory.PEAK_FACTOR <= 20 * gib * memory.USABLE - gib
    assert 2 * m * gib / 4 * memory.PEAK_FACTOR > 20 * gib * memory.USABLE - gib
    assert memory.fit_micro_batch(8, 10 * gib, gib, 4 * gib) == 0


def test_probe_counts_more_bytes_for_bigger_samples():
    from ganforge.nets import build_nets
    from ganforge.recipes import RECIPES

    def per_sample(res, n=2):
        cfg = build_config("dcgan", {"max_steps": 1, "resolution": res})
        cfg.model.channels, cfg.model.resolution = 1, res
        G, D = build_nets(cfg.model)
        recipe = RECIPES[cfg.train.recipe](cfg, G, D)
        g = torch.Generator().manual_seed(0)
        ctx = {"step": 0, "progress": 0.0, "noise": g, "device": torch.device("cpu"),
               "sample_z": lambda n: torch.randn(n, cfg.model.latent_dim, generator=g),
               "randint": lambda high, n: torch.randint(0, high, (n,), generator=g)}
        batch = {"image": torch.zeros(n, 1, res, res)}
        return memory.probe_step_bytes(recipe, batch, ctx)

    a, b = per_sample(32), per_sample(64)
    assert a > 100_000 and b > 1.5 * a
    assert 0.8 < per_sample(32, n=6) / a < 1.25  # bytes per sample, whatever the probe's batch


def _weights(tr):
    return {k: v.clone() for k, v in tr.G.state_dict().items()}


def test_a_batch_too_big_for_the_memory_is_split_and_the_probe_leaves_the_run_alone(
        tmp_path, monkeypatch):
    cfg = build_config("dcgan", {"max_steps": 2, "batch_size": 16, "g_channel_base": 256,
                                 "d_channel_base": 256,
                                 "sample_every": 0, "seed": 3})
    monkeypatch.setattr(memory, "available_bytes", lambda device: None)  # no probe
    plain = Trainer(cfg, tmp_path / "a", quiet=True, tensorboard=False)
    plain.train()
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1 << 40)  # probe, fits
    cfg2 = build_config("dcgan", {"max_steps": 2, "batch_size": 16, "g_channel_base": 256,
                                 "d_channel_base": 256,
                                  "sample_every": 0, "seed": 3})
    probed = Trainer(cfg2, tmp_path / "b", quiet=True, tensorboard=False)
    assert cfg2.train.batch_gpu == 0
    probed.train()
    a, b = _weights(plain), _weights(probed)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the probe changed nothing in the run

    monkeypatch.setattr(memory, "fit_micro_batch", lambda local, per, static, free: 4)
    cfg3 = build_config("dcgan", {"max_steps": 1, "batch_size": 16, "g_channel_base": 256,
                                 "d_channel_base": 256,
                                  "sample_every": 0})
    tr = Trainer(cfg3, tmp_path / "c", quiet=True, tensorboard=False)
    assert cfg3.train.batch_gpu == 4
    tr.train()
    saved = json.loads((tmp_path / "c" / "config.json").read_text())
    assert saved["train"]["batch_gpu"] == 4  # a resume keeps the same micro-batches


def test_a_step_that_cannot_fit_stops_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)
    code = main(["train", "--max-steps", "1", "--out", str(tmp_path / "r"), "-q",
                 "g_channel_base=256", "d_channel_base=256"])
    err = capsys.readouterr().err
    assert code != 0 and "per sample" in err and "free" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "checkpoints").exists()
