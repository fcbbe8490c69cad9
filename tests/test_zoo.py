"""The GAN zoo on one trainer: every preset trains and samples; the options do what they say."""

import json

import pytest
import torch

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.config import PRESETS
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer

SMALL = ["batch_size=16", "log_every=2", "sample_every=0", "checkpoint_every=0",
         "health_every=2"]
# small widths per architecture, so every preset trains in a second or two
WIDTH = {"dcgan": ["g_channel_base=128", "d_channel_base=128"],
         "resnet": ["g_channel_base=128", "d_channel_base=128", "g_channel_max=32",
                    "d_channel_max=32"],
         "mlp": ["hidden=32", "batch_size=32"],
         "stylegan2": ["g_channel_base=256", "d_channel_base=256", "g_channel_max=16",
                       "d_channel_max=16", "latent_dim=16"],
         "r3gan": ["g_channel_base=256", "d_channel_base=256", "g_channel_max=16",
                   "d_channel_max=16", "latent_dim=16", "group_channels=8", "blocks=1"],
         "biggan": ["g_channel_base=256", "d_channel_base=256", "g_channel_max=16",
                    "d_channel_max=16", "latent_dim=16", "shared_dim=8"]}


def _small(preset, *extra):
    cfg = build_config(preset)
    # the big presets (256x256 StyleGAN2, 128x128 BigGAN) are tried at 64x64: same nets,
    # one or two blocks fewer (BigGAN's attention moves from 64 to 32, half the side again)
    res = ["resolution=64"] if cfg.data.resolution > 64 else []
    if res and cfg.model.attention:
        res.append("attention=32")
    return SMALL + WIDTH[cfg.model.arch] + res + list(extra)


# the noise-to-sample presets; the image-to-image ones are in tests/test_img2img.py
NOISE_PRESETS = [p for p in sorted(PRESETS) if build_config(p).data.task == "none"]


@pytest.mark.parametrize("preset", NOISE_PRESETS)
def test_every_preset_trains_and_samples(preset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", preset, "--max-steps", "2", "--out", str(run), "-q",
                 *_small(preset)]) == 0
    out = tmp_path / "s"
    assert main(["sample", str(run), "--n", "6", "--out", str(out)]) == 0
    if build_config(preset).model.arch == "mlp":
        rows = (out / "samples.csv").read_text().strip().splitlines()
        assert len(rows) == 7 and (out / "scatter.png").is_file()
    else:
        assert len(list(out.glob("0*.png"))) == 6
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    # non-finite values are written as null: none may be but reverse_kl (inf when no sample
    # is near a mode yet), and every number is finite
    values = [v for m in metrics for k, v in m.items() if k != "reverse_kl"]
    assert values and None not in values
    assert all(torch.isfinite(torch.tensor(v)) for v in values if isinstance(v, float))


def test_presets_command_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name in PRESETS:
        assert name in text


def _trainer(tmp_path, preset, *extra, name="run"):
    cfg = build_config(preset, _small(preset, *extra))
    return Trainer(cfg, tmp_path / name, quiet=True, tensorboard=False)


def test_n_critic_draws_a_batch_per_critic_step(tmp_path):
    tr = _trainer(tmp_path, "wgan-gp", "max_steps=2")
    tr.train()
    assert tr.batch_index == 10 and tr.images_seen == 160
    assert "gp" in tr.last


def test_wgan_clipping_keeps_weights_in_range(tmp_path):
    tr = _trainer(tmp_path, "wgan", "max_steps=2")
    tr.train()
    assert max(p.abs().max().item() for p in tr.D.parameters()) <= 0.01 + 1e-7


def test_lazy_r1_runs_every_k_steps(tmp_path):
    tr = _trainer(tmp_path, "dcgan", "max_steps=4", "r1=1", "r1_every=2")
    calls = []
    real = tr.recipe.r1_step
    tr.phases[-1].fn = lambda ctx: calls.append(ctx["step"]) or real(ctx)
    tr.train()
    assert calls == [0, 2]
    assert "r1" in tr.last


def test_ema_generator_is_saved_and_used_for_sampling(tmp_path):
    tr = _trainer(tmp_path, "small-data", "max_steps=3")
    tr.train()
    path = ck.latest_checkpoint(tmp_path / "run")
    assert (path / "G_ema.safetensors").is_file()
    import ganforge

    g = ganforge.load(tmp_path / "run")
    assert torch.equal(next(g.G.parameters()).cpu(), next(tr.G_ema.parameters()).cpu())
    assert not torch.equal(next(tr.G_ema.parameters()), next(tr.G.parameters()))


@pytest.mark.parametrize("preset, extra", [("wgan-gp", []), ("small-data", []),
                                            ("acgan", ["r1=1", "r1_every=2"])])
def test_resume_is_exact_for_zoo_options(tmp_path, preset, extra):
    from safetensors.torch import load_file

    a = _trainer(tmp_path, preset, "max_steps=4", *extra, name="a")
    a.train()
    b = _trainer(tmp_path, preset, "max_steps=2", *extra, name="b")
    b.train()
    cfg = build_config(preset, _small(preset, "max_steps=4", *extra))
    Trainer(cfg, tmp_path / "b", resume=True, quiet=True, tensorboard=False).train()
    pa, pb = ck.latest_checkpoint(tmp_path / "a"), ck.latest_checkpoint(tmp_path / "b")
    for f in pa.glob("*.safetensors"):
        wa, wb = load_file(str(f)), load_file(str(pb / f.name))
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{f.name}:{k}"


def test_divergence_stops_without_writing_garbage(tmp_path):
    tr = _trainer(tmp_path, "dcgan", "max_steps=6", "checkpoint_every=2")
    real = tr.recipe.d_step

    def poisoned(ctx):
        out = real(ctx)
        if ctx["step"] >= 3:
            out["loss"] = out["loss"] * float("nan")
        return out

    tr.phases[0].fn = poisoned
    with pytest.raises(GanforgeError, match="diverged.*last good checkpoint kept at"):
        tr.train()
    assert ck.latest_checkpoint(tmp_path / "run").name == "step_00000002"


def test_rollback_reloads_last_good_checkpoint_with_lower_lr(tmp_path):
    tr = _trainer(tmp_path, "dcgan", "max_steps=6", "checkpoint_every=2",
                  "on_divergence=rollback")
    real = tr.recipe.d_step
    poisoned_once = []

    def poisoned(ctx):
        out = real(ctx)
        if ctx["step"] == 3 and not poisoned_once:
            poisoned_once.append(1)
            out["loss"] = out["loss"] * float("nan")
        return out

    tr.phases[0].fn = poisoned
    res = tr.train()
    assert res.step == 6 and tr.rollbacks == 1 and tr.lr_scale == 0.5
    assert tr.opts["G"].param_groups[0]["lr"] == pytest.approx(1e-4)
    state = ck.load_state(ck.latest_checkpoint(tmp_path / "run"))
    assert state["lr_scale"] == 0.5


def test_health_warns_on_collapse_and_overpowering(tmp_path):
    from ganforge.train.health import HealthMonitor

    tr = _trainer(tmp_path, "dcgan", "max_steps=1")
    hm = HealthMonitor(tr.data, tr.cfg, tr.device, patience=2)
    assert any("collapsing" in w for w in hm.check(301, {"diversity": 0.01}))
    assert hm.check(302, {"diversity": 0.01}) == []  # warned once per episode
    strong = {"D(x)": 0.999, "D(G(z))": 0.001}
    assert hm.check(303, strong) == []
    assert any("overpowers" in w for w in hm.check(304, strong))


def test_conditional_needs_labels(tmp_path):
    from PIL import Image

    d = tmp_path / "flat"
    d.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / f"{i}.png")
    with pytest.raises(GanforgeError, match="need class labels"):
        Trainer(build_config("cgan", ["source=" + str(d)] + _small("cgan")), tmp_path / "r",
                quiet=True)


def test_sample_by_class_and_class(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", "cgan", "--max-steps", "1", "--out", str(run), "-q",
                 *_small("cgan")]) == 0
    out = tmp_path / "syn"
    assert main(["sample", str(run), "--n", "3", "--out", str(out), "--by-class"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [str(i) for i in range(10)]
    assert len(list((out / "7").glob("*.png"))) == 3 and (out / "grid.png").is_file()
    assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "k"), "--class",
                 "4"]) == 0
    assert main(["sample", str(run), "--n", "2", "--class", "12"]) == 2


def test_linear_lr_decay_reaches_zero_at_max_steps(tmp_path):
    tr = _trainer(tmp_path, "dcgan", "max_steps=4", "lr_decay=linear", "lr_decay_start=0.5")
    lrs = []
    real = tr._one_step
    tr._one_step = lambda ctx: lrs.append(tr.opts["G"].param_groups[0]["lr"]) or real(ctx)
    tr.train()
    assert lrs == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    build_config("dcgan", ["lr_decay=linear", "max_time=1m"])  # time budgets decay too


def test_top_k_keeps_the_fakes_d_rates_best():
    from ganforge.recipes.gan import GANRecipe

    cfg = build_config("dcgan", {"topk": 0.5, "topk_decay": 0.5})
    recipe = GANRecipe(cfg, torch.nn.Identity(), torch.nn.Identity())
    logits = torch.tensor([0.1, 3.0, -2.0, 1.0, 0.5, -1.0, 2.0, 0.0])
    assert recipe.top_k({"epoch": 0.0}, logits) == slice(None)  # fraction 1 at the start
    keep = recipe.top_k({"epoch": 5.0}, logits)  # 0.5**5 < 0.5: the floor, 4 of 8
    assert sorted(keep.tolist()) == [1, 3, 4, 6]
    off = GANRecipe(build_config("dcgan"), torch.nn.Identity(), torch.nn.Identity())
    assert off.top_k({"epoch": 9.0}, logits) == slice(None)
    with pytest.raises(GanforgeError, match="topk"):
        build_config("dcgan", {"topk": 1.5})


def test_top_k_trains(tmp_path):
    cfg = build_config("toy", {"max_steps": 6, "topk": 0.5, "topk_decay": 0.1,
                               "batch_size": 32, "hidden": 16, "log_every": 3,
                               "sample_every": 0, "checkpoint_every": 0})
    res = Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False).train()
    assert res.step == 6 and all(map(lambda v: v == v, res.last.values()))


@pytest.mark.parametrize("preset", ["r3gan-small", "r3gan"])
def test_resume_is_exact_mid_schedule(tmp_path, preset):
    """A run interrupted half-way and resumed ends with the weights of an uninterrupted one,
    schedules (lr, beta2, gamma, EMA) and LeCam anchors included."""
    from safetensors.torch import load_file

    extra = ("max_steps=4", "lecam=0.3")
    _trainer(tmp_path, preset, *extra, name="a").train()
    b = _trainer(tmp_path, preset, *extra, name="b")
    real = b._one_step

    def stop_after_two(ctx):
        out = real(ctx)
        b._interrupted = b.step >= 1  # the loop stops once this step is counted
        return out

    b._one_step = stop_after_two
    assert b.train().stopped_by == "interrupt" and b.step == 2
    cfg = build_config(preset, _small(preset, *extra))
    Trainer(cfg, tmp_path / "b", resume=True, quiet=True, tensorboard=False).train()
    pa, pb = ck.latest_checkpoint(tmp_path / "a"), ck.latest_checkpoint(tmp_path / "b")
    assert pa.name == pb.name
    for f in pa.glob("*.safetensors"):
        wa, wb = load_file(str(f)), load_file(str(pb / f.name))
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{f.name}:{k}"
