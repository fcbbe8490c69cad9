"""The benchmark scripts' own claims: quality-versus-budget snapshots leave the run unchanged,
and a snapshot is what a run stopped there would sample with."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganforge.options import build_config
from ganforge.train import Trainer

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def dq():
    return _module("digits_quality")


def test_schedule_free_recipes_are_told_apart(dq):
    assert dq.schedule_free(build_config("small-data-cond"))
    assert dq.schedule_free(build_config("dcgan"))
    assert not dq.schedule_free(build_config("r3gan-small"))  # cosine lr, EMA, beta2, gamma
    assert not dq.schedule_free(build_config("dcgan", {"lr_decay": "linear"}))


def test_snapshots_do_not_change_the_run_and_match_a_shorter_run(dq, tmp_path, tiny):
    class StepClock(dq.SnapshotTrainer):  # marks in steps, so the test does not hang on time
        def elapsed(self):
            return float(self.step)

    quiet = dict(quiet=True, tensorboard=False)
    over = ["ema=0.9", "sample_every=0", "checkpoint_every=0", "log_every=1000"]
    snap = StepClock(build_config("dcgan", tiny + over + ["max_steps=6"]), tmp_path / "a",
                     marks=[3.0], **quiet)
    snap.train()
    full = Trainer(build_config("dcgan", tiny + over + ["max_steps=6"]), tmp_path / "b", **quiet)
    full.train()
    for name in ("G", "D", "G_ema"):  # the snapshot changed nothing in the run
        for p, q in zip(snap.nets[name].parameters(), full.nets[name].parameters()):
            assert torch.equal(p, q), name
    short = Trainer(build_config("dcgan", tiny + over + ["max_steps=3"]), tmp_path / "c",
                    **quiet)
    short.train()
    [(mark, step, seen, states)] = snap.snapshots
    state = states[10.0]  # the run's own EMA (ema_warmup 10)
    assert (mark, step, seen) == (3.0, 3, 3 * short.cfg.train.batch_size)
    expected = short.G_eval.state_dict()  # what a run stopped at step 3 samples with
    assert state.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(state[k], v), k
    assert any(not torch.equal(v, state[k]) for k, v in full.G_eval.state_dict().items())


def test_budget_plot_table_and_errors(tmp_path):
    lines = [{"preset": "small-data-cond", "seed": s, "minutes": m, "steps": 100 * m,
              "fid": f, "classes": 10, "set": [], "cpu": "test CPU"}
             for s, fs in ((0, (9.0, 3.0)), (1, (11.0, 5.0))) for m, f in zip((1, 2), fs)]
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = subprocess.run([sys.executable, str(BENCH / "budget_plot.py"), str(results)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "| small-data-cond | 1 | 0, 1 | 100 | 9.00 / 11.00 | 10.00 | 10/10 |" in out.stdout
    assert "| small-data-cond | 2 | 0, 1 | 200 | 3.00 / 5.00 | 4.00 | 10/10 |" in out.stdout
    assert "test CPU" in out.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"preset": "x"}\n')
    out = subprocess.run([sys.executable, str(BENCH / "budget_plot.py"), str(bad)],
                         capture_output=True, text=True)
    assert out.returncode != 0 and "bad.jsonl:1" in out.stderr and "Traceback" not in out.stderr


def test_extra_emas_are_those_of_a_run_with_that_warmup(dq, tmp_path, tiny):
    """--ema-warmups: an EMA kept beside the run's own is, at a mark and at the end, the
    sampling generator of a run trained with that ema_warmup (and the run is unchanged)."""
    class StepClock(dq.SnapshotTrainer):
        def elapsed(self):
            return float(self.step)

    quiet = dict(quiet=True, tensorboard=False)
    over = ["ema=0.99", "sample_every=0", "checkpoint_every=0", "log_every=1000", "max_steps=5"]
    both = StepClock(build_config("dcgan", tiny + over), tmp_path / "a", marks=[3.0],
                     ema_warmups=[4.0], **quiet)
    both.train()
    for warmup, at in ((4, 3), (4, 5), (10, 5)):
        alone = Trainer(build_config("dcgan", tiny + over[:-1] + [f"max_steps={at}",
                                                                  f"ema_warmup={warmup}"]),
                        tmp_path / f"w{warmup}-{at}", **quiet)
        alone.train()
        states = both.snapshots[0][3] if at == 3 else both.eval_states()
        expected = alone.G_eval.state_dict()
        for k, v in expected.items():
            torch.testing.assert_close(states[float(warmup)][k], v, rtol=1e-5, atol=1e-6)
    assert set(both.snapshots[0][3]) == {10.0, 4.0}
