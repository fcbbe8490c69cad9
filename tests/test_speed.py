"""Speed options (precision, channels-last, compile) and multi-process training (torchrun,
gloo on CPU) against single-process training with the same global batch."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.options import build_config
from ganforge.train import Trainer

TOY = ["--preset", "toy", "--data", "ring8", "--max-steps", "12", "hidden=32",
       "batch_size=64", "log_every=4", "sample_every=0", "checkpoint_every=0", "r1_every=2"]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    """Tolerance: max |weight difference| < 1e-4 after 12 steps (float summation order
    differs: two half-batch gradients averaged vs one full-batch gradient)."""
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, "-m", "ganforge", "train", *TOY, "--out", str(one),
                             "-q"], env=_env(), capture_output=True, text=True)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", "-m", "ganforge", "train", *TOY, "--out",
                          str(two), "-q"], env=_env(), capture_output=True, text=True)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = ck.latest_checkpoint(one), ck.latest_checkpoint(two)
    assert a.name == b.name == "step_00000012"
    for net in ("G", "D", "G_ema"):
        ta, tb = load_file(str(a / f"{net}.safetensors")), load_file(str(b / f"{net}.safetensors"))
        for k in ta:
            diff = (ta[k] - tb[k]).abs().max().item()
            assert diff < 1e-4, (net, k, diff)
    # rank 0 alone wrote the run: one metrics file, steps logged once each
    rows = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 8, 12]
    st = ck.load_state(b)
    assert st["images_seen"] == 12 * 64  # images counted over the global batch


def test_nproc_shortcut_launches_torchrun(tmp_path):
    run = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "ganforge", "train", *TOY, "--max-steps", "2",
                           "--out", str(run), "--nproc", "2", "-q"], env=_env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "launching: torchrun --standalone --nproc-per-node=2" in proc.stderr
    assert ck.latest_checkpoint(run).name == "step_00000002"


def test_global_batch_must_split_over_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    assert main(["train", "--out", str(tmp_path / "r"), "--max-steps", "1",
                 "batch_size=64"]) == 2


@pytest.mark.parametrize("over", [
    {"precision": "bf16"},
    {"precision": "bf16", "channels_last": True},
    {"precision": "fp16"},
])
def test_mixed_precision_trains_finite_and_resumes(tmp_path, over):
    base = {"g_channel_base": 128, "d_channel_base": 128, "batch_size": 16, "max_steps": 2,
            "log_every": 1, "sample_every": 0, "checkpoint_every": 0, **over}
    tr = Trainer(build_config("dcgan", base), tmp_path / "run", quiet=True, tensorboard=False)
    before = [p.detach().clone() for p in tr.G.parameters()]
    res = tr.train()
    assert all(v == v and abs(v) < 1e6 for v in res.last.values()), res.last
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.G.parameters()))
    assert tr.speed.startswith(over["precision"])
    g = Trainer(build_config("dcgan", {**base, "max_steps": 3}), tmp_path / "run",
                resume=True, quiet=True, tensorboard=False)
    assert g.train().step == 3


def test_fastest_says_what_it_picked(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "1", "--fastest", "--device",
                 "cpu", "g_channel_base=128", "d_channel_base=128", "batch_size=8",
                 "sample_every=0"]) == 0
    err = capsys.readouterr().err
    assert "channels-last" in err and "compiled" not in err  # no compile on CPUs
    cfg = json.loads((run / "config.json").read_text())["train"]
    assert cfg["precision"] == "auto" and cfg["channels_last"] and not cfg["compile"]


@pytest.mark.slow  # torch.compile on the CPU takes about a minute
def test_compile_trains(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "2", "--compile",
                 "g_channel_base=128", "d_channel_base=128", "batch_size=8",
                 "sample_every=0"]) == 0
    assert "compiled" in capsys.readouterr().err


def test_unknown_precision_is_one_line():
    assert main(["train", "precision=fp8", "--dry-run"]) == 2


def test_compile_failure_falls_back_with_a_warning(tmp_path, monkeypatch, capsys):
    def broken(self, *a, **k):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--max-steps", "1", "--compile",
                 "g_channel_base=128", "d_channel_base=128", "batch_size=8",
                 "sample_every=0"]) == 0
    err = capsys.readouterr().err
    assert "torch.compile failed (no compiler here); training uncompiled" in err


def test_ema_copy_of_a_compiled_generator_runs_its_own_weights(tmp_path, monkeypatch):
    calls = []

    def fake_compile(self, *a, **k):  # what nn.Module.compile does, minus the compiler
        calls.append(type(self).__name__)
        self._compiled_call_impl = self._call_impl

    monkeypatch.setattr(torch.nn.Module, "compile", fake_compile)
    cfg = build_config("dcgan", {"g_channel_base": 128, "d_channel_base": 128, "ema": 0.9,
                                 "compile": True, "max_steps": 1, "batch_size": 8,
                                 "sample_every": 0, "checkpoint_every": 0})
    tr = Trainer(cfg, tmp_path / "run", quiet=True, tensorboard=False)
    assert calls and tr.G_ema._compiled_call_impl is None
    with torch.no_grad():
        for p in tr.G_ema.parameters():
            p.zero_()
    z = torch.randn(2, 100)
    assert not torch.equal(tr.G_ema(z), tr.G.eval()(z))
