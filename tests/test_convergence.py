"""Recipes that converge: the relativistic loss, R1 + R2, LeCam, schedules on training
progress (step or time budget), gradient accumulation, and the health monitor."""

import math

import pytest
import torch

from ganforge import checkpoint as ck
from ganforge.errors import GanforgeError
from ganforge.losses import LOSSES
from ganforge.options import build_config
from ganforge.regularizers import lecam_penalty
from ganforge.schedules import interpolate, ramp
from ganforge.train import Trainer
from ganforge.train.health import HealthMonitor

QUIET = dict(quiet=True, tensorboard=False)


def test_relativistic_loss_pairs_reals_with_fakes():
    rp = LOSSES["rpgan"]
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])
    # D: mean softplus(fake - real); G: mean softplus(real - fake)
    sp = torch.nn.functional.softplus
    assert rp.d(real, fake) == pytest.approx(float(sp(torch.tensor([-2.0, 1.0])).mean()))
    assert rp.g(fake, real) == pytest.approx(float(sp(torch.tensor([2.0, -1.0])).mean()))
    assert rp.needs_real and not LOSSES["nonsaturating"].needs_real
    # shifting every logit by a constant changes nothing: only differences count
    assert rp.d(real + 5, fake + 5) == pytest.approx(float(rp.d(real, fake)))
    with pytest.raises(ValueError, match="pass real_logits"):
        rp.g(fake, None)
    with pytest.raises(ValueError, match="one to one"):
        rp.g(fake, real[:1])
    # every G loss takes D's real logits (the others ignore them)
    for loss in LOSSES.values():
        assert torch.isfinite(loss.g(fake, real))


def test_lecam_penalty_is_zero_inside_the_anchors_and_grows_outside():
    anchors = torch.tensor([1.0, -1.0])  # moving averages on real, on fake
    inside = lecam_penalty(torch.tensor([-2.0]), torch.tensor([2.0]), anchors)
    assert float(inside) == 0.0
    out = lecam_penalty(torch.tensor([0.0]), torch.tensor([0.0]), anchors)
    assert float(out) == pytest.approx(1.0 + 1.0)  # relu(0 - -1)^2 + relu(1 - 0)^2


def test_schedule_shapes():
    assert ramp(0.3, "none") == 0.0
    assert ramp(0.25, "linear", start=0.5) == 0.0 and ramp(0.75, "linear", 0.5) == 0.5
    assert ramp(0.5, "cosine") == pytest.approx(0.5) and ramp(1.0, "cosine") == 1.0
    assert interpolate(2e-4, 5e-5, 1.0) == pytest.approx(5e-5)
    assert interpolate(0.9, 0.99, 0.0) == 0.9
    assert ramp(2.0, "linear") == 1.0  # clamped


def _vec(tmp_path, *extra, name="run"):
    cfg = build_config("toy", ["hidden=16", "batch_size=32", "log_every=1", "sample_every=0",
                               "checkpoint_every=0", *extra])
    return Trainer(cfg, tmp_path / name, **QUIET)


def test_rpgan_r1_r2_lecam_train_in_the_d_step(tmp_path):
    tr = _vec(tmp_path, "loss=rpgan", "r1=1", "r2=1", "r1_every=1", "lecam=0.5",
              "max_steps=3")
    assert [p.name for p in tr.phases] == ["D", "G"]  # penalties inside the D step
    before = [p.clone() for p in tr.D.parameters()]
    res = tr.train()
    assert res.step == 3
    assert {"r1", "r2", "lecam"} <= set(res.last) and res.last["r2"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.D.parameters()))
    assert tr.recipe.lecam_anchors.abs().sum() > 0
    state = ck.load_state(ck.latest_checkpoint(tmp_path / "run"))
    assert state["recipe"]["lecam"] == pytest.approx(tr.recipe.lecam_anchors.tolist())


def test_lazy_r2_runs_in_its_own_phase(tmp_path):
    tr = _vec(tmp_path, "r1=0", "r2=2", "r1_every=2", "max_steps=3")
    assert [p.name for p in tr.phases] == ["D", "G", "Dreg"]
    res = tr.train()
    assert res.last["r2"] > 0 and "r1" not in res.last


def test_schedules_follow_a_time_budget(tmp_path):
    tr = _vec(tmp_path, "max_steps=none", "max_time=2s", "log_every=1000", "lr_decay=cosine",
              "lr_decay_start=0",
              "lr_end=0.25", "beta2_end=0.9", "r1=1", "gamma_end=0.1", "ema_end=0.5")
    seen = []
    real = tr._one_step

    def spy(ctx):
        g = tr.opts["G"].param_groups[0]
        seen.append((ctx["progress"], g["lr"], g["betas"][1], tr.recipe.gamma(ctx, "r1"),
                     tr._ema_beta))
        return real(ctx)

    tr._one_step = spy
    res = tr.train()
    assert res.stopped_by == "max_time"
    assert seen[0][0] < 0.2 and seen[-1][0] > 0.5  # progress ran on the clock
    for p, lr, beta2, gamma, ema in seen:  # every schedule at the point the clock says
        assert lr == pytest.approx(1e-3 * interpolate(1.0, 0.25, p), rel=1e-6)
        assert beta2 == pytest.approx(interpolate(0.999, 0.9, p), rel=1e-6)
        assert gamma == pytest.approx(interpolate(1.0, 0.1, p), rel=1e-6)
        assert ema == pytest.approx(interpolate(0.99, 0.5, p), rel=1e-6)
    assert all(a[1] >= b[1] for a, b in zip(seen, seen[1:]))  # the lr only goes down


def test_max_time_counts_the_whole_run_over_resume(tmp_path):
    tr = _vec(tmp_path, "max_steps=3")
    tr.train()
    first = tr.train_seconds
    assert first > 0
    st = ck.load_state(ck.latest_checkpoint(tmp_path / "run"))
    assert st["train_seconds"] == pytest.approx(first, rel=0.2)
    cfg = build_config("toy", ["hidden=16", "batch_size=32", "log_every=1", "sample_every=0",
                               "checkpoint_every=0", "max_steps=none",
                               f"max_time={first + 0.5:.3f}s"])
    tr2 = Trainer(cfg, tmp_path / "run", resume=True, **QUIET)
    assert tr2.train_seconds == pytest.approx(first, rel=0.2)
    res = tr2.train()
    assert res.stopped_by == "max_time" and tr2.train_seconds < first + 5


def test_options_a_run_does_not_use_are_refused():
    for kv, msg in [(["lr_end=0.5"], "lr_end"), (["gamma_end=0.5"], "gamma_end"),
                    (["ema_end=0.99"], "ema_end"), (["batch_gpu=24"], "batch_gpu"),
                    (["lecam=-1"], "lecam"), (["lr_decay=exp"], "lr_decay"),
                    (["beta2_end=0.99", "optimizer=rmsprop"], "beta2_end")]:
        with pytest.raises(GanforgeError, match=msg):
            build_config("dcgan", kv)
    for preset in ("pix2pix", "cyclegan", "srgan"):  # the image-to-image recipes read none
        for kv in (["lecam=0.3"], ["r2=1"], ["r1=1", "gamma_end=0.5"]):
            with pytest.raises(GanforgeError, match="not read by recipe"):
                build_config(preset, kv)


def _z_slicer(z):
    pos = [0]

    def sample_z(n):
        out = z[pos[0]:pos[0] + n]
        pos[0] += n
        return out

    return sample_z, pos


@pytest.mark.parametrize("loss", ["nonsaturating", "rpgan"])
def test_gradient_accumulation_equals_the_whole_batch(tmp_path, loss):
    """64 at once vs 4 x 16 on nets without BatchNorm (the toy MLPs): equal gradients."""
    grads = {}
    z = torch.randn(64, 16, generator=torch.Generator().manual_seed(3))
    for gpu in (0, 16):
        torch.manual_seed(0)
        tr = _vec(tmp_path, f"batch_gpu={gpu}", "batch_size=64", f"loss={loss}", "r1=1",
                  "r1_every=1", "lecam=0.1", "max_steps=1", name=f"g{gpu}")
        batch = tr._local(tr.batches.get(0))
        for phase in tr.phases:  # D (with R1 inside) then G, each on the same batch and z
            sample_z, _ = _z_slicer(z)
            chunks = tr._micro_batches(batch)
            assert len(chunks) == (4 if gpu else 1)
            micro = [{"batch": c, "step": 1, "progress": 0.5, "sample_z": sample_z,
                      "noise": tr.noise, "device": tr.device, "micro_batches": len(chunks)}
                     for c in chunks]
            for name, net in tr.nets.items():
                net.requires_grad_(name in phase.trainable)
            net = tr.D if phase.opt == "D" else tr.G
            net.zero_grad(set_to_none=True)
            scalars = tr.backward(phase, micro)
            grads[(gpu, phase.name)] = [p.grad.clone() for p in net.parameters()]
            grads[(gpu, phase.name, "loss")] = float(scalars["loss"])
    for name in ("D", "G"):
        for a, b in zip(grads[(0, name)], grads[(16, name)]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
        assert grads[(0, name, "loss")] == pytest.approx(grads[(16, name, "loss")], rel=1e-5)


def test_gradient_accumulation_trains_end_to_end(tmp_path):
    res = _vec(tmp_path, "batch_gpu=8", "max_steps=2").train()
    assert res.step == 2 and math.isfinite(res.last["D_loss"] + res.last["G_loss"])


# -- every preset trains on a time budget -------------------------------------------------------

def test_every_noise_preset_trains_under_max_time(tmp_path):
    from test_zoo import NOISE_PRESETS, _small

    for preset in NOISE_PRESETS:
        cfg = build_config(preset, _small(preset, "max_time=3s", "max_steps=none"))
        res = Trainer(cfg, tmp_path / preset, **QUIET).train()
        assert res.stopped_by == "max_time" and res.step >= 1, preset


def test_every_image_to_image_preset_trains_under_max_time(tmp_path):
    from test_img2img import TINY

    for preset, tiny in TINY.items():
        over = dict(x.split("=") for x in tiny)
        if preset == "srgan":  # the preset's own warm-up: a share of the time budget
            over.pop("warmup_steps"), over.pop("warmup")
        over.update(max_steps="none", max_time="5s", sample_every=0, checkpoint_every=0,
                    log_every=1)
        tr = Trainer(build_config(preset, over), tmp_path / preset, **QUIET)
        res = tr.train()
        assert res.stopped_by == "max_time" and res.step >= 2, preset
        if preset == "srgan":  # half the time in the SRResNet warm-up, then the GAN phase
            rows = (tmp_path / preset / "metrics.jsonl").read_text().splitlines()
            assert '"G_adv"' in rows[-1] and '"G_adv"' not in rows[0], (rows[0], rows[-1])


# -- the health monitor ------------------------------------------------------------------------

def _monitor(tmp_path, preset="dcgan", *extra):
    from test_zoo import _small

    tr = Trainer(build_config(preset, _small(preset, "max_steps=1", *extra)), tmp_path / "h",
                 **QUIET)
    return HealthMonitor(tr.data, tr.cfg, tr.device)


def test_health_is_quiet_in_warm_up_and_warns_on_each_new_collapse(tmp_path):
    hm = _monitor(tmp_path)
    assert hm.check(5, {"diversity": 0.04}, progress=0.5) == []  # step 5: warm-up
    assert hm.check(400, {"diversity": 0.04}, progress=0.01) == []  # 1% of the run: warm-up
    first = hm.check(400, {"diversity": 0.04}, progress=0.5)
    assert len(first) == 1 and "collapsing" in first[0]
    assert hm.check(450, {"diversity": 0.03}, progress=0.6) == []  # the same collapse
    assert hm.check(500, {"diversity": 0.8}, progress=0.7) == []  # recovered
    again = hm.check(550, {"diversity": 0.05}, progress=0.8)
    assert len(again) == 1  # a new collapse: a new warning
    assert "550" in hm.final(600)[0] and "600" in hm.final(600)[0]


def test_health_advice_fits_the_run(tmp_path):
    plain = _monitor(tmp_path).check(400, {"diversity": 0.01}, 0.5)[0]
    assert "diffaug" in plain and "r3gan-small" in plain
    small = _monitor(tmp_path / "s", "small-data").check(400, {"diversity": 0.01}, 0.5)[0]
    assert "diffaug" not in small  # the run already has it


def test_health_warns_on_a_run_made_to_collapse(tmp_path):
    """A G whose output ignores z (its last layer zeroed, its bias learned) collapses: the
    monitor says so after warm-up, with the step."""
    from test_zoo import _small

    cfg = build_config("dcgan", _small("dcgan", "max_steps=8", "health_every=2"))
    tr = Trainer(cfg, tmp_path / "c", **QUIET)
    tr.health.warmup_steps, tr.health.warmup_progress = 4, 0.0
    with torch.no_grad():
        for p in tr.G.parameters():
            p.zero_()
    tr.opts["G"].param_groups[0]["lr"] = 0.0
    tr.base_lrs["G"] = [0.0]
    lines = []

    import ganforge.train.loop as loop

    orig = loop.RunLogger.line

    def capture(self, text, throttle=0.0):
        lines.append(text)
        return orig(self, text, throttle)

    loop.RunLogger.line = capture
    try:
        tr.train()
    finally:
        loop.RunLogger.line = orig
    warned = [w for w in lines if "collapsing" in w]
    assert len(warned) == 1 and "step 4" in warned[0], lines
    assert any("stayed collapsed" in w for w in lines)
