import json

import pytest

from ganforge.config import Config, apply_overrides, describe, parse_duration, resolve_key
from ganforge.errors import GanforgeError
from ganforge.options import build_config


def test_defaults_are_the_seed_dcgan():
    cfg = build_config()
    assert cfg.model.arch == "dcgan" and cfg.model.latent_dim == 100
    assert (cfg.train.lr_g, cfg.train.lr_d, cfg.train.beta1, cfg.train.beta2) == (
        2e-4, 2e-4, 0.5, 0.999)
    assert cfg.train.loss == "nonsaturating"
    assert cfg.data.source == "digits" and cfg.data.resolution == 32


def test_overrides_short_and_dotted_keys_and_types():
    cfg = build_config("dcgan", ["lr_g=1e-4", "train.batch_size=32", "channels=3",
                                 "max_steps=none", "max_time=10m"])
    assert cfg.train.lr_g == 1e-4 and cfg.train.batch_size == 32
    assert cfg.data.channels == 3 and cfg.train.max_steps is None
    assert build_config("dcgan", ["resolution=64"]).data.resolution == 64
    assert cfg.train.max_time == "10m"
    # diffaug=none (or off) turns the preset's DiffAugment off, as an empty policy does
    for off in ("none", "off", ""):
        assert build_config("small-data", [f"diffaug={off}"]).train.diffaug == ""
    assert build_config("small-data", []).train.diffaug == "color,translation,cutout"


@pytest.mark.parametrize("item, needle", [
    ("lrr_g=1", "unknown config key 'lrr_g' (did you mean 'lr_g'?)"),
    ("batch_size=abc", "bad value for train.batch_size"),
    ("batch_size=1.5", "bad value for train.batch_size"),
    ("resolution=48", "resolution=48 is not supported"),
    ("loss=foo", "unknown loss 'foo'"),
    ("diffaug=colour", "unknown diffaug policy 'colour': use none or any of"),
    ("max_time=soon", "max_time='soon' is not a duration"),
    ("dist_timeout=soon", "dist_timeout='soon' is not a duration"),
    ("device=tpu", "device='tpu'"),
    ("noequals", "written key=value"),
    ("model.resolution=64", "set data.resolution instead"),
])
def test_bad_overrides_are_one_line_errors(item, needle):
    with pytest.raises(GanforgeError) as e:
        build_config("dcgan", [item])
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_unknown_preset():
    with pytest.raises(GanforgeError, match="unknown preset 'dcgann'.*did you mean 'dcgan'"):
        build_config("dcgann")


def test_json_round_trip(tmp_path):
    cfg = build_config("dcgan", ["lr_d=3e-4", "seed=7"])
    cfg.save(tmp_path / "config.json")
    back = Config.load(tmp_path / "config.json")
    assert back == cfg
    d = json.loads((tmp_path / "config.json").read_text())
    d["train"]["bogus"] = 1
    (tmp_path / "config.json").write_text(json.dumps(d))
    with pytest.raises(GanforgeError, match="unknown config key 'train.bogus'"):
        Config.load(tmp_path / "config.json")


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(GanforgeError):
        parse_duration("ten minutes")


def test_describe_lists_every_key_with_comment():
    text = describe(build_config())
    assert "train.lr_g = 0.0002    # generator Adam learning rate" in text
    assert "data.source = \"digits\"" in text


def test_resolve_key_and_apply():
    cfg = Config()
    assert resolve_key(cfg, "epochs") == "train.epochs"
    apply_overrides(cfg, {"epochs": "2.5"})
    assert cfg.train.epochs == 2.5


def test_a_user_stop_rule_replaces_the_default_one():
    assert build_config().train.max_steps == 500
    cfg = build_config("dcgan", ["max_time=10m"])
    assert cfg.train.max_steps is None and cfg.train.max_time == "10m"
    cfg = build_config("dcgan", {"epochs": 3, "max_steps": 100})
    assert (cfg.train.max_steps, cfg.train.epochs, cfg.train.max_time) == (100, 3.0, None)


def test_every_key_has_a_help_text_that_dry_run_prints(capsys):
    import dataclasses

    from ganforge.cli import main
    from ganforge.config import Config

    cfg = Config()
    helps = {f"{s}.{f.name}": f.metadata.get("help", "")
             for s in ("data", "model", "train") for f in dataclasses.fields(getattr(cfg, s))}
    assert all(helps.values()), [k for k, v in helps.items() if not v]
    assert main(["train", "--preset", "srgan-small", "--dry-run"]) == 0
    out = capsys.readouterr().out
    for key in ("model.sr_skip", "model.unet_depth", "train.ema_warmup", "train.degrade"):
        line = next(x for x in out.splitlines() if x.startswith(key + " = "))
        assert "    # " + helps[key] in line
