"""StyleGAN2 and BigGAN on the one trainer: path length, style mixing, ADA, orthogonal
regularisation, truncation, w-space walks and style-mixing grids."""

import json

import pytest
import torch
from PIL import Image
from test_zoo import _small

import ganforge
from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.regularizers import ortho_penalty, path_lengths
from ganforge.train import Trainer

HIGHFI = ["stylegan2", "stylegan2-small", "biggan", "biggan-small"]


def _trainer(tmp_path, preset, *extra, name="run", resume=False):
    cfg = build_config(preset, _small(preset, *extra))
    return Trainer(cfg, tmp_path / name, resume=resume, quiet=True, tensorboard=False)


@pytest.mark.parametrize("preset", HIGHFI)
def test_preset_trains_resumes_and_samples_with_truncation(preset, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--preset", preset, "--max-steps", "2", "--out", str(run), "-q",
                 *_small(preset)]) == 0
    assert main(["train", "--resume", str(run), "--max-steps", "4", "-q"]) == 0
    state = ck.load_state(ck.latest_checkpoint(run))
    assert state["step"] == 4
    for psi in ("0.5", "1"):
        out = tmp_path / f"s{psi}"
        assert main(["sample", str(run), "--n", "5", "--out", str(out),
                     "--truncation", psi]) == 0
        assert len(list(out.glob("0*.png"))) == 5
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    values = [v for m in metrics for v in m.values()]  # non-finite values are written as null
    assert values and None not in values
    assert all(torch.isfinite(torch.tensor(v)) for v in values if isinstance(v, float))


def test_stylegan2_logs_its_regularisers_and_updates_ema_once_a_step(tmp_path):
    tr = _trainer(tmp_path, "stylegan2", "max_steps=4", "pl_every=2", "r1_every=2",
                  "ada_interval=1", "log_every=4")
    assert [p.name for p in tr.phases] == ["D", "G", "Dreg", "Greg"]
    tr.train()
    for key in ("pl_len", "r1", "ada_p", "ada_rt", "Greg_loss"):
        assert key in tr.last, key
    assert tr.ema_updates == 4  # the path-length phase steps G too, the EMA moves once a step
    assert float(tr.recipe.pl_mean) > 0


def test_path_length_phase_changes_g_and_resume_keeps_its_mean(tmp_path):
    from safetensors.torch import load_file

    a = _trainer(tmp_path, "stylegan2", "max_steps=4", "pl_every=2", "r1=0", name="a")
    a.train()
    b = _trainer(tmp_path, "stylegan2", "max_steps=2", "pl_every=2", "r1=0", name="b")
    b.train()
    st = ck.load_state(ck.latest_checkpoint(tmp_path / "b"))
    assert st["recipe"]["pl_mean"] == pytest.approx(float(b.recipe.pl_mean))
    c = _trainer(tmp_path, "stylegan2", "max_steps=4", "pl_every=2", "r1=0", name="b",
                 resume=True)
    assert float(c.recipe.pl_mean) == pytest.approx(float(b.recipe.pl_mean))
    c.train()
    pa, pb = ck.latest_checkpoint(tmp_path / "a"), ck.latest_checkpoint(tmp_path / "b")
    wa, wb = load_file(str(pa / "G.safetensors")), load_file(str(pb / "G.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # exact resume through the pl phase


def test_path_length_penalty_moves_the_generator():
    tr_cfg = build_config("stylegan2", _small("stylegan2", "pl_weight=2"))
    from ganforge.nets import build_nets
    from ganforge.recipes import RECIPES

    tr_cfg.model.resolution, tr_cfg.model.channels = 32, 1
    G, D = build_nets(tr_cfg.model)
    recipe = RECIPES["gan"](tr_cfg, G, D)
    gen = torch.Generator().manual_seed(0)
    ctx = {"batch": {"image": torch.zeros(8, 1, 32, 32)}, "noise": gen, "device": "cpu",
           "sample_z": lambda n: torch.randn(n, tr_cfg.model.latent_dim, generator=gen)}
    before = [p.detach().clone() for p in G.parameters()]
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    out = recipe.pl_step(ctx)
    out["loss"].backward()
    opt.step()
    assert out["pl_len"] > 0 and out["loss"] > 0
    changed = [not torch.equal(a, p) for a, p in zip(before, G.parameters())]
    assert any(changed)


def test_path_lengths_match_a_linear_generator():
    torch.manual_seed(0)
    n, L, w, C, H = 3, 2, 4, 1, 2
    M = torch.randn(w, C * H * H)
    ws = torch.randn(n, 1, w).expand(-1, L, -1).requires_grad_(True)
    img = (ws.sum(1) @ M).view(n, C, H, H)
    lengths = path_lengths(img, ws, gen=torch.Generator().manual_seed(5))
    y = torch.randn(img.shape, generator=torch.Generator().manual_seed(5)) / H
    expect = (y.flatten(1) @ M.t()).norm(dim=1)  # each layer's Jacobian is M
    assert torch.allclose(lengths, expect, atol=1e-5)


def test_ortho_penalty_by_hand():
    net = torch.nn.Linear(2, 2, bias=True)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    # W W^T = [[2, 1], [1, 1]]: off-diagonal 1 and 1 -> 2
    assert float(ortho_penalty(net).detach()) == pytest.approx(2.0)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.6, 0.8], [-0.8, 0.6]]))
    assert float(ortho_penalty(net).detach()) == pytest.approx(0.0, abs=1e-6)
    emb = torch.nn.Module()
    emb.embed = torch.nn.Embedding(3, 2)
    assert float(ortho_penalty(emb)) == 0.0  # embeddings are left out


def test_biggan_g_step_carries_the_ortho_term(tmp_path):
    tr = _trainer(tmp_path, "biggan-small", "max_steps=2", "ortho=1e-2")
    tr.train()
    assert tr.last["ortho"] > 0


def test_style_mixing_draws_a_second_latent(tmp_path):
    tr = _trainer(tmp_path, "stylegan2-small", "max_steps=1", "style_mixing=1")
    calls = []
    real = tr.G.mapping
    tr.G.mapping = lambda z, c=None, psi=1.0: calls.append(z.shape[0]) or real(z, c, psi)
    tr.train()
    assert len(calls) == 2  # the D step maps two latents (the G step reuses its fakes)


def test_ada_p_rises_on_a_confident_d_and_is_restored_on_resume(tmp_path):
    extra = ["ada_interval=1", "ada_kimg=0.1", "ada_target=0.01", "max_steps=3"]
    tr = _trainer(tmp_path, "stylegan2-small", *extra)
    tr.train()
    p = tr.recipe.ada.p
    assert 0 < p <= 1 and tr.last["ada_p"] > 0
    st = ck.load_state(ck.latest_checkpoint(tmp_path / "run"))
    assert st["recipe"]["ada"]["p"] == pytest.approx(p)
    again = _trainer(tmp_path, "stylegan2-small", *extra[:-1], "max_steps=5", resume=True)
    assert again.recipe.ada.p == pytest.approx(p)


def test_fixed_ada_p_augments_without_a_controller(tmp_path):
    tr = _trainer(tmp_path, "dcgan", "max_steps=1", "ada_p=0.5")
    assert tr.recipe.ada is None
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    assert not torch.equal(tr.recipe.augment(x), x)
    tr.train()
    assert tr.last["ada_p"] == pytest.approx(0.5)


def _style_run(tmp_path):
    run = tmp_path / "style"
    assert main(["train", "--preset", "stylegan2-small", "--max-steps", "1", "--out", str(run),
                 "-q", *_small("stylegan2-small")]) == 0
    return run


def test_truncation_zero_gives_the_mean_image_and_w_walks(tmp_path):
    run = _style_run(tmp_path)
    g = ganforge.load(run, device="cpu")
    x = g.generate(g.noise(4, seed=1), truncation=0.0, noise_mode="const")
    assert torch.allclose(x, x[:1].expand_as(x), atol=1e-5)
    y = g.generate(g.noise(4, seed=1), truncation=1.0, noise_mode="const")
    assert not torch.allclose(y, y[:1].expand_as(y), atol=1e-3)
    gif = tmp_path / "walk.gif"
    assert main(["interpolate", str(run), "--space", "w", "--points", "2", "--frames", "2",
                 "--rows", "1", "--out", str(gif), "--truncation", "0.7"]) == 0
    assert Image.open(gif).n_frames == 4
    assert main(["interpolate", str(run), "--points", "2", "--frames", "2", "--rows", "1"]) == 0
    assert Image.open(run / "interpolation.gif").n_frames == 4  # in the run, not the cwd


def test_stylemix_writes_a_grid(tmp_path):
    run = _style_run(tmp_path)
    out = tmp_path / "mix.png"
    assert main(["stylemix", str(run), "--rows", "2", "--cols", "3", "--layers", "0-1",
                 "--out", str(out)]) == 0
    im = Image.open(out)
    r = 32 + 2  # image side + grid padding
    assert im.size == (4 * r + 2, 3 * r + 2)
    g = ganforge.load(run, device="cpu")
    grid = g.style_mix(2, 3, seed=0, layers=[0, 1])
    # cell (0, 0) differs from both of its sources, unless the layers change nothing
    cell = grid[:, r + 2:2 * r, r + 2:2 * r].float()
    row_src = grid[:, r + 2:2 * r, 2:r].float()
    assert (cell - row_src).abs().mean() > 0


def test_z_truncation_for_biggan_bounds_the_latents(tmp_path):
    run = tmp_path / "bg"
    assert main(["train", "--preset", "biggan-small", "--max-steps", "1", "--out", str(run),
                 "-q", *_small("biggan-small")]) == 0
    g = ganforge.load(run, device="cpu")
    z = g.noise(500, seed=3, truncation=0.5)
    assert z.abs().max() <= 0.5 and torch.equal(z, g.noise(500, seed=3, truncation=0.5))
    assert g.noise(500, seed=3).abs().max() > 1
    with pytest.raises(GanforgeError, match="style mixing needs a StyleGAN run"):
        g.style_mix()
    with pytest.raises(GanforgeError, match="--space w needs a StyleGAN run"):
        g.interpolate(space="w")


@pytest.mark.parametrize("args, msg", [
    (["stylemix", "{run}", "--layers", "0-99"], "--layers: this generator has layers"),
    (["sample", "{run}", "--truncation", "-1"], "--truncation -1"),
    (["sample", "{run}", "--truncation", "0.5", "--rejection", "80"], "use one of them"),
])
def test_bad_sampling_options_are_one_line_errors(tmp_path, capsys, args, msg):
    run = _style_run(tmp_path)
    assert main([a.replace("{run}", str(run)) for a in args]) != 0
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err


def test_style_options_need_a_style_generator():
    with pytest.raises(GanforgeError, match="pl_weight is only read with arch=stylegan2"):
        build_config("dcgan", ["pl_weight=2"])
    with pytest.raises(GanforgeError, match="resolution=2048"):
        build_config("stylegan2", ["resolution=2048"])
    assert build_config("stylegan2", ["resolution=1024"]).data.resolution == 1024


def test_meter_averages_lazy_scalars_over_the_steps_that_report_them():
    from ganforge.train.loop import Meter

    m = Meter()
    m.add({"loss": torch.tensor(1.0), "r1": torch.tensor(4.0)})
    m.add({"loss": torch.tensor(3.0)})
    assert m.mean() == {"loss": 2.0, "r1": 4.0}


def test_class_conditional_stylegan2_samples_and_mixes_a_class(tmp_path):
    run = tmp_path / "cond"
    assert main(["train", "--preset", "stylegan2-small", "--max-steps", "1", "--out", str(run),
                 "-q", *_small("stylegan2-small"), "g_cond=concat",
                 "d_cond=projection"]) == 0
    g = ganforge.load(run, device="cpu")
    assert g.num_classes == 10 and g.G.mapping_net.embed is not None
    assert main(["sample", str(run), "--n", "3", "--class", "3", "--truncation", "0.7",
                 "--out", str(tmp_path / "s")]) == 0
    assert main(["stylemix", str(run), "--rows", "1", "--cols", "1", "--class", "3",
                 "--out", str(tmp_path / "m.png")]) == 0
    z = g.noise(2, seed=0)
    one, two = (g.generate(z, g.labels(2, k), noise_mode="const") for k in (1, 2))
    assert not torch.allclose(one, two, atol=1e-4)  # the class reaches G through w


def test_a_net_the_family_cannot_build_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", "--preset", "biggan-small", "attention=12", "--max-steps", "1",
                 "--out", str(tmp_path / "r"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "attention=12 has no block" in err and "Traceback" not in err
