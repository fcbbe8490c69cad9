"""Latent directions (SeFa, GANSpace) and editing along them: ``ganforge.directions``,
``ganforge directions`` and ``ganforge edit``, on tiny runs."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_zoo import _small

import ganforge
from ganforge import directions as dr
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.generate import TrainedGAN
from ganforge.nets import build_nets
from ganforge.options import build_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("directions")
    args = {"dc": ["--preset", "dcgan", "--max-steps", "2", *tiny],
            "sg": ["--preset", "stylegan2-small", "--max-steps", "1",
                   *_small("stylegan2-small")],
            "toy": ["--preset", "toy", "--max-steps", "1", "hidden=16", "batch_size=32"]}
    for name, a in args.items():
        assert main(["train", *a, "--out", str(root / name), "-q"]) == 0
    return root


def _g(runs, name) -> TrainedGAN:
    return ganforge.load(runs / name, device="cpu")


@pytest.mark.parametrize("name,space,dim", [("dc", "z", 100), ("sg", "w", 16)])
def test_sefa_directions_are_unit_eigenvectors_largest_first(runs, name, space, dim):
    g = _g(runs, name)
    d = dr.sefa(g, k=5, n=500)
    assert d.space == space and d.method == "sefa"
    assert d.vectors.shape == (5, dim) and d.values.shape == d.stds.shape == (5,)
    assert torch.allclose(d.vectors.norm(dim=1), torch.ones(5), atol=1e-5)
    a, s = dr.latent_weight(g)
    assert s == space and a.shape[1] == dim
    ata = (a.t() @ a).double()
    top = torch.linalg.matrix_norm(a.double(), 2) ** 2
    assert d.values[0] == pytest.approx(top.item(), rel=1e-4)
    assert (d.values[:-1] >= d.values[1:]).all()
    for v, lam in zip(d.vectors.double(), d.values.double()):
        assert (ata @ v - lam * v).norm() <= 1e-4 * top
    r = torch.randn(dim, dtype=torch.float64)
    r = r / r.norm()  # the check has teeth: a random vector is no eigenvector
    assert (ata @ r - (r @ ata @ r) * r).norm() > 1e-2 * top
    if space == "z":
        assert torch.equal(d.stds, torch.ones(5))
    else:  # strength 1 = one std of w along the direction
        w = dr.sample_w(g, 500, 0)
        assert torch.allclose(d.stds, (w @ d.vectors.t()).std(dim=0), rtol=1e-4)


def test_sefa_layers_pick_the_style_affines(runs):
    g = _g(runs, "sg")
    blocks = g.G.synthesis_net.blocks
    a0, _ = dr.latent_weight(g, [0])  # w 0 drives the 4x4 conv only
    assert a0.shape[0] == blocks[0].convs[0].conv.in_channels
    a1, _ = dr.latent_weight(g, [1])  # w 1: the 4x4 toRGB and the 8x8 block's first conv
    assert a1.shape[0] == blocks[0].torgb.conv.in_channels + blocks[1].convs[0].conv.in_channels
    last, _ = dr.latent_weight(g, [g.G.num_ws - 1])  # the last toRGB only
    assert last.shape[0] == blocks[-1].torgb.conv.in_channels
    assert dr.sefa(g, k=2, layers=[0, 1], n=100).layers == [0, 1]
    with pytest.raises(GanforgeError, match="--layers: this generator has layers"):
        dr.sefa(g, layers=[g.G.num_ws])
    with pytest.raises(GanforgeError, match="drop --layers"):
        dr.sefa(_g(runs, "dc"), layers=[0])


def test_ganspace_is_the_pca_of_w_and_refuses_generators_without_mapping(runs):
    g = _g(runs, "sg")
    d = dr.ganspace(g, k=4, n=2000, seed=1)
    assert d.space == "w" and d.vectors.shape == (4, 16)
    assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(4), atol=1e-5)
    assert (d.values[:-1] >= d.values[1:]).all()
    proj = dr.sample_w(g, 2000, 1) @ d.vectors.t()
    assert torch.allclose(proj.var(dim=0), d.values, rtol=1e-3)
    assert torch.allclose(d.stds, d.values.sqrt())
    with pytest.raises(GanforgeError, match="use --method sefa"):
        dr.ganspace(_g(runs, "dc"))


def _changes(g, latent, space, vs, strength, c=None) -> list[float]:
    """Mean absolute pixel change of the images when the latents move along each of ``vs``."""
    src = dr.render(g, latent, space, c)
    return [(dr.edit(g, latent, v, strength, space, c) - src).abs().mean().item() for v in vs]


def _top_and_random(g, latent, space, top, strength, c=None, n=8) -> tuple[float, float]:
    """The change along ``top`` and the mean change along ``n`` random directions of its norm."""
    gen = torch.Generator().manual_seed(1)
    vs = torch.randn(n, top.shape[0], generator=gen)
    vs = vs / vs.norm(dim=1, keepdim=True) * top.norm()
    first, *rest = _changes(g, latent, space, [top, *vs], strength, c)
    return first, sum(rest) / n


def test_a_constructed_dominant_direction_is_found_and_edits_most():
    cfg = build_config("dcgan", ["g_channel_base=128", "d_channel_base=128"])
    cfg.model.resolution, cfg.model.channels = 32, 1
    G, _ = build_nets(cfg.model)
    with torch.no_grad():
        G.main[0].weight[7] *= 10  # z_7 reaches the first layer 10x as strongly
    g = TrainedGAN(cfg, G, torch.device("cpu"), 0, Path("run/checkpoints/step_0"))
    d = dr.sefa(g, k=3)
    assert d.vectors[0, 7] > 0.99 and d.values[0] > 20 * d.values[1]
    z, _ = dr.seed_latent(g, 8, 0, "z")
    top, rand = _top_and_random(g, z, "z", d.vectors[0], 3.0)
    assert top > 3 * rand


@pytest.mark.parametrize("name", ["dc", "sg"])
def test_the_top_sefa_direction_edits_more_than_random_ones(runs, name):
    g = _g(runs, name)
    d = dr.sefa(g, k=1, n=200)
    latent, c = dr.seed_latent(g, 8, 0, d.space)  # 8 seeds
    top, rand = _top_and_random(g, latent, d.space, d.vectors[0], 2.0, c)
    assert top > 1.1 * rand


@pytest.mark.parametrize("name", ["dc", "sg"])
def test_the_strength_zero_column_is_the_source_exactly(runs, name):
    g = _g(runs, name)
    d = dr.sefa(g, k=2, n=200)
    latent, c = dr.seed_latent(g, 3, 5, d.space)
    grid = dr.direction_grid(g, d, 1, latent, [-2.0, 0.0, 2.0], c)
    grid = grid.view(3, 3, *grid.shape[1:])
    src = dr.render(g, latent, d.space, c)
    assert torch.equal(grid[:, 1], src)
    assert not torch.equal(grid[:, 2], src) and not torch.equal(grid[:, 0], grid[:, 2])
    if g.is_style:  # a w+ latent edits every layer, the same images as the w latent
        wp = latent[:, None].expand(-1, g.G.num_ws, -1)
        assert torch.equal(dr.edit(g, wp, d.step_of(1), 0.0, "w+"), src)
        assert torch.allclose(dr.edit(g, wp, d.step_of(1), 2.0, "w+"), grid[:, 2], atol=1e-5)


def test_shift_moves_every_w_plus_layer_or_the_chosen_ones():
    wp, v = torch.randn(2, 6, 4), torch.randn(4)
    assert torch.allclose(dr.shift(wp, v, 2.0, "w+") - wp, (2 * v).expand(2, 6, 4))
    moved = dr.shift(wp, v, 2.0, "w+", layers=[1, 3])
    assert torch.allclose(moved[:, [1, 3]] - wp[:, [1, 3]], (2 * v).expand(2, 2, 4))
    assert torch.equal(moved[:, [0, 2, 4, 5]], wp[:, [0, 2, 4, 5]])
    w = torch.randn(2, 4)
    assert dr.shift(w, v, 1.0, "w", layers=[0], num_ws=6).shape == (2, 6, 4)
    with pytest.raises(GanforgeError, match="the direction has"):
        dr.shift(w, torch.randn(5), 1.0)


def test_files_round_trip_and_malformed_ones_are_one_line_errors(tmp_path):
    d = dr.Directions(torch.eye(3)[:2], torch.tensor([2.0, 1.0]), torch.tensor([0.5, 1.5]),
                      "w", "sefa", [0, 2], "runs/x", 7)
    back = dr.load_directions(dr.save_directions(d, tmp_path / "d.safetensors"))
    assert torch.equal(back.vectors, d.vectors) and torch.equal(back.stds, d.stds)
    assert (back.space, back.method, back.layers, back.run, back.step) == \
        ("w", "sefa", [0, 2], "runs/x", 7)
    assert torch.equal(back.step_of(1), torch.tensor([0.0, 1.5, 0.0]))
    with pytest.raises(GanforgeError, match="direction 2 does not exist"):
        back.step_of(2)
    lat, labels = torch.randn(3, 4, 5), torch.tensor([0, 1, 2])
    got = dr.load_latent(dr.save_latent(tmp_path / "l.safetensors", lat, "w+", labels))
    assert torch.equal(got[0], lat) and got[1] == "w+" and torch.equal(got[2], labels)
    with pytest.raises(GanforgeError, match=r"a w\+ latent is \[N, num_ws, w_dim\]"):
        dr.save_latent(tmp_path / "bad.safetensors", torch.randn(3, 5), "w+")
    with pytest.raises(GanforgeError, match="is not a directions file"):
        dr.load_directions(tmp_path / "l.safetensors")
    with pytest.raises(GanforgeError, match="does not exist"):
        dr.load_latent(tmp_path / "missing.safetensors")


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_cli_directions_then_edit_by_seed_and_by_latent_file(runs, tmp_path):
    run = runs / "sg"
    out = tmp_path / "dirs" / "sg.safetensors"
    assert main(["directions", str(run), "--k", "2", "--seeds", "2", "--strengths", "1,2",
                 "--n", "200", "--out", str(out)]) == 0
    d = dr.load_directions(out)
    assert d.vectors.shape == (2, 16) and d.space == "w" and d.run == str(run) and d.step == 1
    side = 32 + 2  # image + grid padding
    for k in (0, 1):
        assert Image.open(tmp_path / "dirs" / "sg" / f"{k:02d}.png").size == \
            (5 * side + 2, 2 * side + 2)
    e = tmp_path / "e"
    assert main(["edit", str(run), "--direction", f"{out}:1", "--strength", "0", "--seed",
                 "3", "--out", str(e)]) == 0
    cmp = _png(e / "compare.png")  # strength 0: source | edited are the same image
    assert cmp.shape[:2] == (side + 2, 2 * side + 2)
    assert np.array_equal(cmp[2:34, 2:34], cmp[2:34, 36:68])
    assert np.array_equal(_png(e / "00000.png"), cmp[2:34, 2:34, 0])  # the grid is RGB
    assert main(["edit", str(run), "--direction", f"{out}:1", "--strength", "3", "--seed",
                 "3", "--out", str(e)]) == 0
    cmp = _png(e / "compare.png")
    assert not np.array_equal(cmp[2:34, 2:34], cmp[2:34, 36:68])
    g = _g(runs, "sg")
    lat = tmp_path / "wp.safetensors"
    dr.save_latent(lat, torch.randn(3, g.G.num_ws, 16), "w+")
    assert main(["edit", str(run), "--direction", f"{out}:0", "--strength", "2", "--latent",
                 str(lat), "--out", str(tmp_path / "e2")]) == 0
    assert sorted(p.name for p in (tmp_path / "e2").iterdir()) == \
        ["00000.png", "00001.png", "00002.png", "compare.png"]


def test_cli_z_space_run_writes_directions_and_edits_z_latents(runs, tmp_path):
    run = runs / "dc"
    assert main(["directions", str(run), "--k", "1", "--seeds", "1", "--strengths", "3"]) == 0
    file = run / "directions" / "sefa.safetensors"
    assert dr.load_directions(file).space == "z" and (run / "directions" / "sefa" /
                                                       "00.png").is_file()
    lat = tmp_path / "z.safetensors"
    dr.save_latent(lat, torch.randn(2, 100), "z")
    assert main(["edit", str(run), "--direction", f"{file}:0", "--strength", "1", "--latent",
                 str(lat)]) == 0
    assert (run / "edits" / "00001.png").is_file() and (run / "edits" / "compare.png").is_file()


@pytest.fixture(scope="module")
def bad_files(runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    g = _g(runs, "sg")
    for name in ("sg", "dc"):
        dr.save_directions(dr.sefa(_g(runs, name), k=2, n=100), root / f"{name}.safetensors")
    dr.save_directions(dr.Directions(torch.eye(7)[:1], torch.ones(1), torch.ones(1), "z",
                                     "sefa"), root / "z7.safetensors")
    dr.save_latent(root / "z.safetensors", torch.randn(2, 16), "z")
    dr.save_latent(root / "w9.safetensors", torch.randn(2, g.G.num_ws, 9), "w+")
    return root


@pytest.mark.parametrize("args,msg", [
    (["directions", "{toy}"], "generates vectors"),
    (["edit", "{toy}", "--direction", "{b}/dc.safetensors:0", "--strength", "1", "--seed",
      "0"], "generates vectors"),
    (["edit", "{sg}", "--direction", "{b}/sg.safetensors:2", "--strength", "1", "--seed",
      "0"], "direction 2 does not exist"),
    (["edit", "{dc}", "--direction", "{b}/sg.safetensors:0", "--strength", "1", "--seed",
      "0"], "these directions live in w"),
    (["edit", "{sg}", "--direction", "{b}/sg.safetensors:0", "--strength", "1", "--latent",
      "{b}/z.safetensors"], "the direction lives in w but the latents are z"),
    (["edit", "{dc}", "--direction", "{b}/z7.safetensors:0", "--strength", "1", "--seed",
      "0"], "have 7 dimensions; this run's z has 100"),
    (["edit", "{sg}", "--direction", "{b}/sg.safetensors:0", "--strength", "1", "--latent",
      "{b}/w9.safetensors"], "the w+ latents are"),
    (["edit", "{sg}", "--direction", "{b}/missing.safetensors:0", "--strength", "1",
      "--seed", "0"], "does not exist"),
    (["edit", "{sg}", "--direction", "{b}/sg.safetensors:0", "--strength", "1", "--latent",
      "{b}/missing.safetensors"], "does not exist"),
    (["edit", "{sg}", "--direction", "{b}/sg.safetensors:0", "--strength", "1"],
     "--latent FILE or --seed N"),
    (["directions", "{dc}", "--method", "ganspace"], "use --method sefa"),
    (["directions", "{dc}", "--k", "101"], "--k 101"),
    (["directions", "{sg}", "--strengths", "0"], "--strengths"),
])
def test_cli_bad_inputs_are_one_line_errors(runs, bad_files, capsys, args, msg):
    names = {"{toy}": runs / "toy", "{sg}": runs / "sg", "{dc}": runs / "dc", "{b}": bad_files}
    argv = []
    for a in args:
        for key, val in names.items():
            a = a.replace(key, str(val))
        argv.append(a)
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], lines


def test_directions_name_the_run_or_hub_folder_they_came_from(tmp_path):
    from types import SimpleNamespace

    from ganforge.directions import run_path

    ckpt = tmp_path / "run" / "checkpoints" / "step_00000100"
    ckpt.mkdir(parents=True)
    assert run_path(SimpleNamespace(checkpoint=ckpt)) == str(tmp_path / "run")
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "model.safetensors").write_bytes(b"")
    assert run_path(SimpleNamespace(checkpoint=hub)) == str(hub)
