"""Every option is owned by what reads it: a key the run's family does not read is refused,
each key a net family declares changes its nets, and the rules that kept options silent."""

import json

import pytest
import torch

from ganforge.cli import main
from ganforge.config import PRESETS, Config, ModelConfig, TrainConfig
from ganforge.errors import GanforgeError
from ganforge.nets import NET_OPTIONS, build_nets
from ganforge.options import (
    COMMON_TRAIN,
    build_config,
    check_read,
    model_options,
    set_keys,
    train_options,
)
from ganforge.recipes import RECIPES
from ganforge.train import Trainer

# one preset for each net family and each recipe
FAMILIES = {"dcgan": "dcgan", "resnet": "sngan", "mlp": "toy", "stylegan2": "stylegan2-small",
            "biggan": "biggan", "r3gan": "r3gan-small", "pix2pix": "pix2pix",
            "cyclegan": "cyclegan", "srgan": "srgan-small"}
MODEL_KEYS = [f.name for f in ModelConfig.__dataclass_fields__.values()
              if f.name not in ("arch", "num_classes", "resolution", "channels", "in_channels")]
TRAIN_KEYS = [f.name for f in TrainConfig.__dataclass_fields__.values() if f.name != "recipe"]


def test_the_families_cover_every_net_and_recipe():
    archs = {build_config(p).model.arch for p in FAMILIES.values()}
    recipes = {build_config(p).train.recipe for p in FAMILIES.values()}
    assert set(NET_OPTIONS) <= archs and set(RECIPES) <= recipes


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_sets_only_keys_its_family_reads(preset):
    cfg = build_config(preset)
    model, train = set(model_options(cfg)), set(train_options(cfg))
    for key in set_keys(cfg, reference=Config()):
        section, name = key.split(".", 1)
        if name in ("arch", "recipe"):
            continue
        if section == "model":
            assert name in model, (preset, name)
        elif section == "train":
            assert name in train, (preset, name)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_key_the_family_does_not_read_is_refused(family):
    cfg = build_config(FAMILIES[family])
    model, train = set(model_options(cfg)), set(train_options(cfg))
    unread = [f"model.{k}" for k in MODEL_KEYS if k not in model]
    unread += [f"train.{k}" for k in TRAIN_KEYS if k not in train]
    assert unread  # every family leaves some keys to the others
    owner = f"arch={family}" if family in NET_OPTIONS else f"recipe={family}"
    for key in unread:
        name = key.split(".", 1)[1]
        with pytest.raises(GanforgeError, match=f"^{name}: not read by "):
            check_read(cfg, [key])
        if key.startswith("model."):
            with pytest.raises(GanforgeError, match=owner):
                check_read(cfg, [key])
    for key in [f"model.{k}" for k in model] + [f"train.{k}" for k in train - {"recipe"}]:
        try:
            check_read(cfg, [key])
        except GanforgeError as e:  # read, but only behind a switch that is off here
            assert "is only read with" in str(e), (family, key, e)


@pytest.mark.parametrize("preset,kv,say", [
    ("stylegan2-small", ["norm_d=false"], "norm_d: not read by arch=stylegan2 (read by "
                                          "arch=dcgan)"),
    ("pix2pix", ["n_critic=2"], "n_critic: not read by recipe=pix2pix"),
    ("srgan-small", ["dropout=0.1"], "dropout: not read by recipe=srgan"),
    ("cyclegan", ["ema=0.999"], "ema: not read by recipe=cyclegan"),
    ("dcgan", ["r1_every=4"], "r1_every is only read with r1 or r2 > 0"),
    ("r3gan-small", ["mbstd=4"], "mbstd: not read by arch=r3gan"),
    ("dcgan", ["g_base=8"], "g_base: not read by arch=dcgan"),
    ("toy", ["eval_every=10", "eval_metric=fid"], "eval_metric=fid is not computed for vector"),
    ("dcgan", ["eval_every=10", "eval_metric=psnr"], "eval_metric=psnr is not computed for "
                                                     "images"),
    ("pix2pix", ["eval_every=10", "eval_metric=fid"], "not computed for recipe=pix2pix"),
    ("biggan", ["g_cond=concat", "resolution=32"], "g_cond='concat': arch=biggan builds none "
                                                   "or cbn"),
])
def test_unread_options_are_one_line_errors_before_any_work(tmp_path, capsys, preset, kv, say):
    code = main(["train", "--preset", preset, "--max-steps", "1", "--out",
                 str(tmp_path / "r"), "-q", *kv])
    err = capsys.readouterr().err
    assert code == 2 and say in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_eval_on_vector_data_works_with_the_toy_preset(tmp_path):
    cfg = build_config("toy", {"max_steps": 4, "eval_every": 2, "eval_n": 64,
                               "sample_every": 0, "checkpoint_every": 0})
    Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False).train()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/coverage" in r or "coverage" in r for r in rows), rows


# (value in a, value in b) of each net key; the rest of the config as the family's preset
CHANGES = {
    "latent_dim": (16, 24), "g_channel_base": (256, 512), "g_channel_max": (32, 16),
    "d_channel_base": (256, 512), "d_channel_max": (32, 16), "mbstd": (0, 2), "pack": (1, 2),
    "spectral_norm": ("none", "d"), "norm_d": (True, False), "hidden": (32, 16),
    "layers": (2, 3), "latent_mixture": (0, 4), "latent_mixture_std": (0.1, 0.5),
    "mapping_layers": (1, 2), "attention": (0, 16), "shared_dim": (16, 8), "blocks": (1, 2),
    "group_channels": (8, 16), "expansion": (1, 2),
}
CONDS = {"g_cond": {"dcgan": "cbn", "resnet": "cbn", "mlp": "cbn", "stylegan2": "concat",
                    "biggan": "cbn", "r3gan": "concat"},
         "d_cond": {"dcgan": "projection", "resnet": "projection", "mlp": "projection",
                    "stylegan2": "projection", "biggan": "projection", "r3gan": "projection"}}


def _nets(arch: str, **over):
    m = build_config(FAMILIES[arch]).model
    m.resolution, m.channels = (0, 2) if arch == "mlp" else (32, 3)
    m.g_channel_base = m.d_channel_base = 512
    m.g_channel_max = m.d_channel_max = 32
    m.latent_dim, m.hidden, m.shared_dim = 16, 32, 16
    m.attention, m.num_classes, m.g_cond, m.d_cond = 0, 4, "none", "none"
    for k, v in over.items():
        setattr(m, k, v)
    torch.manual_seed(0)
    return build_nets(m)


def _same(a, b, z_dim: int = 16) -> bool:
    """The same nets: the same weights' names and shapes and, built from one seed, the same
    outputs (G on fixed z and labels, D on fixed inputs)."""
    (ga, da), (gb, db) = a, b
    for x, y in ((ga, gb), (da, db)):
        sa, sb = x.state_dict(), y.state_dict()
        if sa.keys() != sb.keys() or any(sa[k].shape != sb[k].shape for k in sa):
            return False
    gen = torch.Generator().manual_seed(1)
    z, c = torch.randn(4, z_dim, generator=gen), torch.arange(4)
    outs = []
    for g, d in ((ga, da), (gb, db)):
        torch.manual_seed(2)  # the same noise inputs, where a G draws them
        with torch.no_grad():
            x = g.eval()(z, c)
            outs.append((x, d.eval()(x, c)))
    return all(torch.equal(p, q) for p, q in zip(*outs))


@pytest.mark.parametrize("arch", sorted(NET_OPTIONS))
def test_every_key_a_net_family_declares_changes_its_nets(arch):
    for key in NET_OPTIONS[arch]:
        if key in CONDS:
            a, b = {key: "none"}, {key: CONDS[key][arch]}
        else:
            a, b = ({key: v} for v in CHANGES[key])
            if key == "latent_mixture_std":  # read only behind its switch (options.NEEDS)
                a["latent_mixture"] = b["latent_mixture"] = 4
            if key == "shared_dim":
                a["g_cond"] = b["g_cond"] = "cbn"
        na, nb = _nets(arch, **a), _nets(arch, **b)
        assert not _same(na, nb, a.get("latent_dim", 16)), (arch, key)
    assert _same(_nets(arch), _nets(arch))  # the comparison itself can say "the same"


def test_stylegan2_mbstd_0_turns_minibatch_std_off_and_old_runs_keep_theirs(tmp_path):
    _, d = _nets("stylegan2", mbstd=0)
    assert d.mbstd is None
    cfg = build_config("stylegan2-small")
    assert cfg.model.mbstd == 4
    old = cfg.to_dict()
    del old["version"]  # a config.json written before version 2
    old["model"]["mbstd"] = 0
    (tmp_path / "config.json").write_text(json.dumps(old))
    assert Config.load(tmp_path / "config.json").model.mbstd == 4  # as that run was built
    new = cfg.to_dict()
    new["model"]["mbstd"] = 0
    (tmp_path / "config.json").write_text(json.dumps(new))
    assert Config.load(tmp_path / "config.json").model.mbstd == 0
    new["version"] = 99
    (tmp_path / "config.json").write_text(json.dumps(new))
    with pytest.raises(GanforgeError, match="unknown version 99"):
        Config.load(tmp_path / "config.json")


def test_old_biggan_and_stylegan2_conditioning_names_load_as_the_net_they_built(tmp_path):
    for preset, old, new in (("biggan", "concat", "cbn"), ("stylegan2-small", "cbn", "concat")):
        d = build_config(preset).to_dict()
        del d["version"]
        d["model"]["g_cond"] = old
        (tmp_path / "config.json").write_text(json.dumps(d))
        assert Config.load(tmp_path / "config.json").model.g_cond == new


def _tiny_dcgan(**over):
    return build_config("dcgan", {"max_steps": 2, "batch_size": 8, "g_channel_base": 256,
                                  "d_channel_base": 256, "sample_every": 0,
                                  "checkpoint_every": 1, **over})


def test_resuming_through_the_api_keeps_the_rules_of_the_cli(tmp_path):
    run = tmp_path / "run"
    Trainer(_tiny_dcgan(), run, quiet=True, tensorboard=False).train()
    with pytest.raises(GanforgeError, match="^loss cannot change when resuming"):
        Trainer(_tiny_dcgan(loss="hinge", max_steps=4), run, resume=True, quiet=True,
                tensorboard=False)
    tr = Trainer(_tiny_dcgan(max_steps=4), run, resume=True, quiet=True, tensorboard=False)
    assert tr.step == 2 and tr.train().step == 4


def test_a_hand_edited_config_is_checked_by_the_trainer(tmp_path):
    cfg = _tiny_dcgan()
    cfg.model.mapping_layers = 4  # not through build_config
    with pytest.raises(GanforgeError, match="mapping_layers: not read by arch=dcgan"):
        Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False)


def test_pix2pix_ema_is_what_previews_metrics_and_translate_use(tmp_path, monkeypatch):
    from ganforge.generate import load_translator
    from ganforge.train import evaluator

    seen = []
    real = evaluator.heldout_metrics

    def spy(recipe, data, device, n=None, G=None, **kw):
        seen.append(G)
        return real(recipe, data, device, n, G=G, **kw)

    monkeypatch.setattr(evaluator, "heldout_metrics", spy)
    cfg = build_config("pix2pix", {"g_base": 4, "d_base": 4, "batch_size": 4, "max_steps": 3,
                                   "ema": 0.9, "eval_every": 3, "eval_n": 8,
                                   "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False)
    tr.train()
    assert tr.G_eval is tr.G_ema and seen and all(g is tr.G_ema for g in seen)
    with torch.no_grad():  # the sample grids too
        grid = tr.fixed_samples()
        assert torch.equal(grid, tr.recipe.preview(tr.G_ema.eval(), tr.fixed))
        assert not torch.equal(grid, tr.recipe.preview(tr.G.eval(), tr.fixed))
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        want, raw = tr.G_ema.eval()(x), tr.G.eval()(x)
    assert not torch.allclose(want, raw)
    t = load_translator(tmp_path / "run", device="cpu")
    with torch.no_grad():
        got = t.translate(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_common_keys_are_not_also_declared_by_a_recipe():
    for name, cls in RECIPES.items():
        assert not set(getattr(cls, "OPTIONS", ())) & set(COMMON_TRAIN), name


def test_resuming_with_eval_every_checks_the_runs_metric_first(tmp_path, capsys):
    """An old toy run kept eval_metric=fid (the toy preset's before it became coverage):
    turning eval_every on when resuming is refused before any work, not at the first eval."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "toy", "--max-steps", "2", "--out", str(run), "-q",
                 "hidden=16", "sample_every=0", "checkpoint_every=0"]) == 0
    saved = json.loads((run / "config.json").read_text())
    saved["train"]["eval_metric"] = "fid"
    (run / "config.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-steps", "4", "eval_every=2", "-q"]) == 2
    err = capsys.readouterr().err
    assert "eval_metric=fid is not computed for vector data" in err and "Traceback" not in err
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step")] == [
        "step_00000002"]
