"""Fine-tuning (--init): weights copied, classes re-initialised, StyleGAN2 across resolutions,
FreezeD and a frozen mapping network, provenance in config.json, one-line refusals."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from test_zoo import _small

from ganforge import checkpoint as ck
from ganforge import finetune_config
from ganforge.cli import main
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer


def _source(tmp_path, preset="dcgan", *extra, name="src"):
    run = tmp_path / name
    assert main(["train", "--preset", preset, "--max-steps", "3", "--out", str(run), "-q",
                 "checkpoint_every=0", *_small(preset, *extra)]) == 0
    return run


def _trainer(cfg, run):
    return Trainer(cfg, run, quiet=True, tensorboard=False)


def _weights(run, name):
    return load_file(str(ck.latest_checkpoint(run) / f"{name}.safetensors"))


def _class_folder(root, classes=3, n=6, side=8):
    rng = np.random.default_rng(0)
    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i in range(n):
            img = (rng.random((side, side)) * 255).astype(np.uint8)
            Image.fromarray(img, "L").save(root / f"c{k}" / f"{i}.png")
    return root


def test_init_copies_every_net_of_the_source_and_records_where_from(tmp_path):
    src = _source(tmp_path, "dcgan", "ema=0.9")
    cfg = finetune_config(src, {"max_steps": 2})
    tr = _trainer(cfg, tmp_path / "ft")
    for name, net in (("G", tr.G), ("D", tr.D), ("G_ema", tr.G_ema)):
        there = _weights(src, name)
        for k, v in net.state_dict().items():
            assert torch.equal(v, there[k]), (name, k)
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())["train"]
    path = ck.latest_checkpoint(src)
    assert saved["init"] == str(path.resolve())
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    assert saved["init_sha256"] == h.hexdigest()
    assert tr.step == 0 and tr.train().step == 2  # a new step counter


def test_freeze_d_keeps_the_input_blocks_and_trains_the_rest(tmp_path):
    src = _source(tmp_path)
    cfg = finetune_config(src, {"max_steps": 2, "freeze_d": 2})
    tr = _trainer(cfg, tmp_path / "ft")
    blocks = tr.D.input_blocks()
    assert len(blocks) == 3  # 32 -> 16 -> 8 -> 4
    before = {k: v.clone() for k, v in tr.D.state_dict().items()}
    g_before = [p.detach().clone() for p in tr.G.parameters()]
    tr.train()
    frozen = {id(p) for g in blocks[:2] for m in g for p in m.parameters()}
    names = {id(p): n for n, p in tr.D.named_parameters()}
    for p in tr.D.parameters():
        same = torch.equal(p.detach(), before[names[id(p)]])
        assert same == (id(p) in frozen), names[id(p)]
    assert any(not torch.equal(a, b) for a, b in zip(g_before, tr.G.parameters()))
    # resuming keeps them frozen
    assert main(["train", "--resume", str(tmp_path / "ft"), "--max-steps", "4", "-q"]) == 0
    after = _weights(tmp_path / "ft", "D")
    for n, p in tr.D.named_parameters():
        if id(p) in frozen:
            assert torch.equal(after[n], before[n]), n


def test_new_class_count_reinitialises_the_class_embeddings(tmp_path, capsys):
    src = _source(tmp_path, "cgan")  # digits: 10 classes
    data = _class_folder(tmp_path / "three")
    capsys.readouterr()
    assert main(["train", "--init", str(src), "--data", str(data), "--max-steps", "2",
                 "--out", str(tmp_path / "ft")]) == 0
    log = capsys.readouterr().err
    assert "class embeddings re-initialised" in log and "10 classes there, 3 here" in log
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert cfg["model"]["num_classes"] == 3 and cfg["model"]["g_cond"] == "concat"
    g = _weights(tmp_path / "ft", "G")
    assert g["label.embed.weight"].shape[0] == 3


def test_stylegan2_changes_resolution_copying_the_layers_that_match(tmp_path, capsys):
    src = _source(tmp_path, "stylegan2-small")
    capsys.readouterr()
    cfg = finetune_config(src, {"resolution": 64, "max_steps": 1})
    tr = Trainer(cfg, tmp_path / "ft", tensorboard=False)
    log = capsys.readouterr().err
    assert "new at 64px" in log and "synthesis_net.blocks.4" in log.replace("\n", "")
    g, d = _weights(src, "G"), _weights(src, "D")
    mine_g, mine_d = tr.G.state_dict(), tr.D.state_dict()
    for k in ("synthesis_net.blocks.3.convs.0.conv.weight", "mapping_net.layers.0.weight"):
        assert torch.equal(mine_g[k], g[k])
    # D's blocks are numbered from the input: the source's block 0 (32 -> 16) is block 1 here
    assert torch.equal(mine_d["blocks.1.conv0.weight"], d["blocks.0.conv0.weight"])
    assert tr.train().step == 1


def test_freeze_mapping_keeps_the_mapping_network(tmp_path):
    src = _source(tmp_path, "stylegan2-small")
    cfg = finetune_config(src, {"max_steps": 2, "freeze_mapping": True})
    tr = _trainer(cfg, tmp_path / "ft")
    before = [p.detach().clone() for p in tr.G.mapping_net.parameters()]
    synth = [p.detach().clone() for p in tr.G.synthesis_net.parameters()]
    tr.train()
    assert all(torch.equal(a, b) for a, b in zip(before, tr.G.mapping_net.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(synth, tr.G.synthesis_net.parameters()))


def test_a_weights_file_loads_into_the_net_it_is_named_after(tmp_path):
    src = _source(tmp_path)
    f = ck.latest_checkpoint(src) / "G.safetensors"
    run = tmp_path / "ft"
    assert main(["train", "--preset", "dcgan", "--init", str(f), "--max-steps", "1", "--out",
                 str(run), "-q", *_small("dcgan")]) == 0
    assert json.loads((run / "config.json").read_text())["train"]["init"] == str(f.resolve())


def _error(capsys, *args):
    capsys.readouterr()
    assert main(list(args)) == 2
    err = capsys.readouterr().err.strip()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and err.endswith(errors[0]) and "Traceback" not in err, err
    return errors[0]


def test_mismatched_sources_and_options_are_one_line_errors(tmp_path, capsys):
    src = _source(tmp_path)
    toy = _source(tmp_path, "toy", name="toy")
    out = str(tmp_path / "x")
    assert "holds images" in _error(capsys, "train", "--init", str(toy), "--data", "digits",
                                    "--out", out)
    assert "drop --preset" in _error(capsys, "train", "--init", str(src), "--preset", "dcgan",
                                     "--out", out)
    assert "g_channel_base cannot change" in _error(
        capsys, "train", "--init", str(src), "g_channel_base=64", "--out", out)
    assert "resolution cannot change" in _error(capsys, "train", "--init", str(src),
                                                "--resolution", "64", "--out", out)
    assert "use one of them" in _error(capsys, "train", "--init", str(src), "--resume",
                                       str(src))
    assert "does not exist" in _error(capsys, "train", "--init", str(tmp_path / "nope"),
                                      "--out", out)
    g = ck.latest_checkpoint(src) / "G.safetensors"
    assert "does not fit" in _error(capsys, "train", "--preset", "stylegan2-small", "--init",
                                    str(g), "--out", out, *_small("stylegan2-small"))
    assert "only read with init" in _error(capsys, "train", "--preset", "dcgan", "freeze_d=1",
                                           "--out", out)
    assert "use 1 to 3" in _error(capsys, "train", "--init", str(src), "freeze_d=4",
                                  "--out", out)
    assert "arch=stylegan2" in _error(capsys, "train", "--init", str(src),
                                      "freeze_mapping=true", "--out", out)
    assert not (tmp_path / "x").exists()  # a refused run leaves no folder (nor a lock file)


def test_finetune_config_refuses_a_weights_file(tmp_path):
    src = _source(tmp_path)
    with pytest.raises(GanforgeError, match="architecture comes from --preset"):
        finetune_config(ck.latest_checkpoint(src) / "G.safetensors")
    cfg = build_config("dcgan")
    assert cfg.train.init is None and cfg.train.freeze_d == 0
