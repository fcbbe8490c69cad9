"""The default recipe: chosen from the data when no --preset is given, and said so first."""

import json

from ganforge.cli import main
from ganforge.train.auto import auto_config, choose_preset

SMALL = ["g_channel_base=128", "d_channel_base=128", "batch_size=16", "sample_every=0",
         "checkpoint_every=0", "log_every=1"]


def test_choice_follows_the_data():
    assert choose_preset(1797, 10)[0] == "small-data-cond"
    assert choose_preset(300, 0)[0] == "small-data"
    assert choose_preset(300, 1)[0] == "small-data"  # one class is no label
    assert choose_preset(2500, 0, vector=True)[0] == "toy"
    assert choose_preset(0, 0, task="unpaired")[0] == "cyclegan"
    assert choose_preset(0, 0, task="lowres2highres")[0] == "srgan"


def test_default_train_on_digits_says_the_recipe_first(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--max-steps", "1", "--out", str(run), *SMALL]) == 0
    err = capsys.readouterr().err
    first = err.strip().splitlines()[0]
    assert first.startswith("recipe: small-data-cond") and "10 classes" in first
    assert "8x8 images upscaled to 32x32" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["preset"] == "small-data-cond" and cfg["model"]["d_cond"] == "projection"


def test_default_on_a_folder_of_bigger_images_says_they_are_resized(tmp_path, capsys,
                                                                     monkeypatch):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(12):
        Image.new("RGB", (64, 64), (i * 20, 100, 200 - i * 10)).save(d / f"{i}.png")
    cfg, data, choice = auto_config([f"source={d}"], log=None)
    assert choice.preset == "small-data" and cfg.preset == "small-data" and len(data) == 12
    assert choice.notes == ["64x64 images trained at 32x32: pass --resolution 64 to train at "
                            "64x64 (about 4x the time a step)"]
    _, _, chosen = auto_config([f"source={d}", "resolution=64"], log=None)
    assert chosen.notes == []  # asked for: nothing to say
    import ganforge.data.sources as sources

    listed = []
    real_folder_source = sources.folder_source
    monkeypatch.setattr(sources, "folder_source",
                        lambda *a, **k: listed.append(a[0]) or real_folder_source(*a, **k))
    auto_config([f"source={d}"], log=None)
    assert listed == [d]  # the folder is listed once, its image size read on the way
    run = tmp_path / "run"
    assert main(["train", "--data", str(d), "--max-steps", "1", "--out", str(run), *SMALL]) == 0
    assert "pass --resolution 64" in capsys.readouterr().err


def test_default_on_vectors_is_the_toy_recipe(tmp_path):
    cfg, data, choice = auto_config(["source=ring8", "max_steps=1"], log=None)
    assert choice.preset == "toy" and cfg.model.arch == "mlp" and data.dim == 2
    assert cfg.train.max_steps == 1
