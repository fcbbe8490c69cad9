"""End-to-end CLI runs on the built-in digits, and the one-line errors for bad input."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from ganforge.cli import main


def _run_cli(*args, cwd=None):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "ganforge", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env={**os.environ})
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--max-steps", "4", "--out", str(run), "-q", *tiny]) == 0
    return run


def test_train_sample_interpolate_info(trained, tmp_path, capsys):
    run = trained
    assert (run / "samples" / "final.png").is_file()
    out = tmp_path / "s"
    assert main(["sample", str(run), "--n", "10", "--out", str(out), "--seed", "3"]) == 0
    pngs = sorted(p.name for p in out.glob("0*.png"))
    assert len(pngs) == 10 and (out / "grid.png").is_file()
    im = Image.open(out / pngs[0])
    assert im.size == (32, 32) and im.mode == "L"
    # the same seed gives the same images
    out2 = tmp_path / "s2"
    assert main(["sample", str(run), "--n", "2", "--out", str(out2), "--seed", "3"]) == 0
    assert (out / pngs[0]).read_bytes() == (out2 / pngs[0]).read_bytes()

    gif = tmp_path / "walk.gif"
    assert main(["interpolate", str(run), "--out", str(gif), "--points", "3",
                 "--frames", "4", "--rows", "2"]) == 0
    im = Image.open(gif)
    assert im.n_frames == 12

    capsys.readouterr()
    assert main(["info", str(run), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["step"] == 4 and info["images_seen"] == 64
    assert set(info["last"]) >= {"D_loss", "G_loss"}


def test_resume_from_cli(trained, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    assert main(["train", "--resume", str(run), "--max-steps", "6", "-q"]) == 0
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000006"
    assert main(["train", "--resume", str(run), "lr_g=1"]) == 2


def test_python_api(trained):
    import ganforge

    g = ganforge.load(trained)
    x = g.sample(5, seed=1)
    assert x.shape == (5, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert (g.sample(5, seed=1) == x).all()
    ims = g.sample_images(2)
    assert ims[0].size == (32, 32)


def test_dry_run_prints_resolved_config(capsys):
    assert main(["train", "--dry-run", "lr_g=1e-4", "--data", "digits"]) == 0
    text = capsys.readouterr().out
    assert "train.lr_g = 0.0001" in text and 'data.source = "digits"' in text


def test_presets_lists_dcgan(capsys):
    assert main(["presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("dcgan ") and "DCGAN" in line for line in lines)


@pytest.mark.parametrize("args, needle", [
    (["train", "lr=3", "--dry-run"], "unknown config key 'lr' (did you mean 'lr_g'?)"),
    (["train", "lrr_g=3", "--dry-run"], "unknown config key 'lrr_g'"),
    (["train", "--preset", "nope", "--dry-run"], "unknown preset 'nope'"),
    (["train", "--data", "/no/such/folder", "--max-steps", "1"], "/no/such/folder"),
    (["train", "--bogus-flag"], "No such option"),
    (["sample", "/no/such/run"], "does not exist"),
    (["info", "/no/such/run"], "does not exist"),
])
def test_bad_input_is_one_line_no_traceback(args, needle, tmp_path):
    code, out, err = _run_cli(*args, cwd=tmp_path)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0]


def test_sample_from_run_without_checkpoint(tmp_path):
    (tmp_path / "run").mkdir()
    from ganforge.options import build_config

    build_config().save(tmp_path / "run" / "config.json")
    code, _, err = _run_cli("sample", tmp_path / "run")
    assert code == 2 and "no complete checkpoint" in err and "Traceback" not in err


def _png_folder(root, classes=None, n=12, size=(40, 30)):
    """A folder of small random PNGs: flat, or one sub-folder per class."""
    import numpy as np

    rng = np.random.default_rng(0)
    for k, sub in enumerate(classes or [""]):
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(d / f"img{k}_{i}.png")
    return root


@pytest.mark.parametrize("classes", [None, ["cats", "dogs"]])
def test_train_then_sample_on_a_png_folder(tmp_path, tiny, classes):
    data = _png_folder(tmp_path / "images", classes)
    run = tmp_path / "run"
    code = main(["train", "--data", str(data), "--max-time", "10m", "--max-steps", "2",
                 "--out", str(run), "-q", *tiny])
    assert code == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["channels"] == 3 and cfg["model"]["resolution"] == 32
    out = tmp_path / "S"
    assert main(["sample", str(run), "--n", "20", "--out", str(out)]) == 0
    assert len(list(out.glob("0*.png"))) == 20
    assert Image.open(out / "00000.png").size == (32, 32)
