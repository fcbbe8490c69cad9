import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ganforge import checkpoint as ck
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer


def _cfg(tiny, *extra):
    return build_config("dcgan", tiny + list(extra))


def test_one_step_changes_both_nets(tmp_path, tiny):
    tr = Trainer(_cfg(tiny, "max_steps=1"), tmp_path / "run", quiet=True, tensorboard=False)
    before = {n: [p.detach().clone() for p in net.parameters()] for n, net in tr.nets.items()}
    tr.train()
    for n, net in tr.nets.items():
        changed = [not torch.equal(a, b) for a, b in zip(before[n], net.parameters())]
        assert all(changed), f"{n}: some parameters did not move"


def test_run_folder_layout(tmp_path, tiny):
    run = tmp_path / "run"
    res = Trainer(_cfg(tiny, "max_steps=4"), run, quiet=True).train()
    assert res.step == 4 and res.images_seen == 64
    assert (run / "config.json").is_file()
    assert (run / "samples" / "final.png").is_file()
    assert (run / "samples" / "step_00000002.png").is_file()
    assert (run / "metrics.jsonl").read_text().count("\n") == 2
    assert any((run / "tb").iterdir())
    names = [p.name for p in ck.list_checkpoints(run)]
    assert names == ["step_00000002", "step_00000004"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000004"
    state = torch.load(run / "checkpoints" / "step_00000004" / "state.pt", weights_only=True)
    assert state["step"] == 4 and state["images_seen"] == 64


def test_keep_last(tmp_path, tiny):
    run = tmp_path / "run"
    Trainer(_cfg(tiny, "max_steps=8", "keep_last=2"), run, quiet=True,
            tensorboard=False).train()
    assert [p.name for p in ck.list_checkpoints(run)] == ["step_00000006", "step_00000008"]


def _weights(run):
    from safetensors.torch import load_file

    path = ck.latest_checkpoint(run)
    return {n: load_file(str(path / f"{n}.safetensors")) for n in ("G", "D")}


def test_resume_is_exact(tmp_path, tiny):
    a, b = tmp_path / "a", tmp_path / "b"
    Trainer(_cfg(tiny, "max_steps=6"), a, quiet=True, tensorboard=False).train()
    Trainer(_cfg(tiny, "max_steps=3"), b, quiet=True, tensorboard=False).train()
    cfg_b = _cfg(tiny, "max_steps=6")
    res = Trainer(cfg_b, b, resume=True, quiet=True, tensorboard=False).train()
    assert res.step == 6
    wa, wb = _weights(a), _weights(b)
    for net in ("G", "D"):
        for k in wa[net]:
            assert torch.equal(wa[net][k], wb[net][k]), f"{net}.{k} differs after resume"


def test_not_empty_run_folder_refused(tmp_path, tiny):
    run = tmp_path / "run"
    Trainer(_cfg(tiny, "max_steps=1"), run, quiet=True, tensorboard=False).train()
    with pytest.raises(GanforgeError, match="not empty: resume it with --resume"):
        Trainer(_cfg(tiny, "max_steps=1"), run, quiet=True)


def test_killed_checkpoint_write_leaves_previous_loadable(tmp_path, tiny):
    """A process killed (os._exit) in the middle of writing checkpoint 4 leaves checkpoint 2."""
    run = tmp_path / "run"
    code = textwrap.dedent(f"""
        import os, torch
        from ganforge.options import build_config
        from ganforge.train import Trainer
        cfg = build_config("dcgan", {tiny!r} + ["max_steps=4"])
        real_save = torch.save
        calls = []
        def dying_save(obj, f, *a, **k):
            calls.append(f)
            if len(calls) == 2:          # the second checkpoint: die halfway through it
                with open(f, "wb") as fh:
                    fh.write(b"half")
                os._exit(9)
            return real_save(obj, f, *a, **k)
        torch.save = dying_save
        Trainer(cfg, {str(run)!r}, quiet=True, tensorboard=False).train()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == 9, proc.stderr
    assert any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())
    path = ck.latest_checkpoint(run)
    assert path.name == "step_00000002"
    assert ck.load_state(path)["step"] == 2
    # resuming cleans the partial write and goes on from step 2
    res = Trainer(_cfg(tiny, "max_steps=4"), run, resume=True, quiet=True,
                  tensorboard=False).train()
    assert res.step == 4
    assert not any(p.name.startswith(".tmp-") for p in (run / "checkpoints").iterdir())


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path, tiny):
    run = tmp_path / "run"
    Trainer(_cfg(tiny, "max_steps=1"), run, quiet=True, tensorboard=False).train()
    cfg = _cfg(tiny, "g_channel_base=256")  # wider G than the one saved
    with pytest.raises(GanforgeError, match="written by another model") as e:
        import json
        (run / "config.json").write_text(json.dumps(cfg.to_dict() | {
            "model": cfg.to_dict()["model"] | {"resolution": 32, "channels": 1}}))
        from ganforge import load
        load(run)
    assert "\n" not in str(e.value)


def test_stop_by_epochs_and_time(tmp_path, tiny):
    res = Trainer(_cfg(tiny, "max_steps=none", "epochs=0.05", "log_every=1"), tmp_path / "a",
                  quiet=True, tensorboard=False).train()
    spe = 1797 // 16
    assert res.step == -(-spe * 5 // 100) and res.stopped_by == "epochs"
    res = Trainer(_cfg(tiny, "max_steps=none", "max_time=1s"), tmp_path / "b", quiet=True,
                  tensorboard=False).train()
    assert res.stopped_by == "max_time" and res.seconds < 30


def test_minimax_loss_trains(tmp_path, tiny):
    tr = Trainer(_cfg(tiny, "max_steps=2", "loss=minimax"), tmp_path / "r", quiet=True,
                 tensorboard=False)
    before = [p.detach().clone() for p in tr.G.parameters()]
    res = tr.train()
    assert set(res.last) >= {"D_loss", "G_loss", "D(x)", "D(G(z))"}
    # G minimises log(1 - D(G(z))) < 0 (the non-saturating loss -log D(G(z)) is > 0)
    assert res.last["G_loss"] < 0
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters()))


def test_ema_generator_measures_its_own_batchnorm_statistics(tmp_path, tiny):
    """G_ema's running BN statistics are measured on its own outputs (standing statistics),
    so in eval mode it normalises like it does on a large batch; and measuring them changes
    nothing in training (same weights with or without checkpoints and grids mid-run)."""
    quiet = dict(quiet=True, tensorboard=False)
    a = Trainer(_cfg(tiny, "max_steps=6", "ema=0.9"), tmp_path / "a", **quiet)
    a.train()
    b = Trainer(_cfg(tiny, "max_steps=6", "ema=0.9", "sample_every=0", "checkpoint_every=0",
                     "log_every=1000"), tmp_path / "b", **quiet)
    b.train()
    for name in ("G", "D", "G_ema"):  # a saved and sampled 3 times mid-run, b never
        for p, q in zip(a.nets[name].parameters(), b.nets[name].parameters()):
            assert torch.equal(p, q), name
    G = a.G_eval
    bn = next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    g_bn = next(m for m in a.G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not torch.allclose(bn.running_mean, g_bn.running_mean)  # not the training G's
    z = torch.randn(512, a.cfg.model.latent_dim, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        eval_out = G(z, None)
        G.train()
        batch_out = G(z, None)  # normalised by this batch's own statistics
        G.eval()
    import copy

    stale = copy.deepcopy(G)  # with the training G's statistics, as before
    for be, b in zip(stale.buffers(), a.G.buffers()):
        be.copy_(b)
    with torch.no_grad():
        stale_out = stale(z, None)
    err, stale_err = ((eval_out - batch_out).abs().mean(), (stale_out - batch_out).abs().mean())
    assert err < stale_err / 2, (err, stale_err)
    saved = ck.latest_checkpoint(tmp_path / "a")
    from safetensors.torch import load_file

    stored = load_file(str(saved / "G_ema.safetensors"))
    key = next(k for k in stored if k.endswith("running_mean"))
    assert not torch.equal(stored[key], a.G.state_dict()[key])  # checkpoints keep them too


def test_ema_warmup_sets_how_much_of_a_young_run_the_average_spans(tmp_path, tiny):
    """After k updates the EMA decay is min(ema, (1 + k) / (ema_warmup + k)): recomputed by
    hand from G's weights at each update, for the default and for a longer average."""

    class Recording(Trainer):
        def _update_ema(self):
            self.seen_g = getattr(self, "seen_g", []) + [
                [p.detach().clone() for p in self.G.parameters()]]
            super()._update_ema()

    ema = {}
    for warmup in (10, 4):
        tr = Recording(_cfg(tiny, "max_steps=5", "ema=0.99", f"ema_warmup={warmup}",
                            "sample_every=0", "checkpoint_every=0", "log_every=1000"),
                       tmp_path / f"w{warmup}", quiet=True, tensorboard=False)
        start = [p.detach().clone() for p in tr.G_ema.parameters()]
        tr.train()
        expect = start
        for k, g in enumerate(tr.seen_g, 1):
            beta = min(0.99, (1 + k) / (warmup + k))
            expect = [beta * e + (1 - beta) * p for e, p in zip(expect, g)]
        for e, p in zip(expect, tr.G_ema.parameters()):
            torch.testing.assert_close(p, e, rtol=1e-5, atol=1e-6)
        ema[warmup] = [p.detach().clone() for p in tr.G_ema.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(ema[10], ema[4]))


def test_ema_warmup_is_refused_without_an_ema(tiny):
    with pytest.raises(GanforgeError, match="ema_warmup shapes the generator EMA"):
        _cfg(tiny, "ema_warmup=4")
    with pytest.raises(GanforgeError, match="ema_warmup must be > 1"):
        _cfg(tiny, "ema=0.999", "ema_warmup=1")
