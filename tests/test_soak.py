"""Issue 19, part 4: nothing a long run writes grows without bound. Sample grids keep at most
``keep_samples`` files, evenly spread over the run; TensorBoard gets the grids at the same
thinning as it goes (logarithmic growth); ``benchmarks/soak.py`` watches a run from outside."""

import importlib.util
import re
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ganforge.cli import main
from ganforge.train.log import grid_stride, thin_samples

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _grids(folder):
    return sorted(int(re.fullmatch(r"step_(\d{8})\.png", p.name).group(1))
                  for p in folder.iterdir() if p.name.startswith("step_"))


def test_thinning_keeps_the_newest_and_an_even_spread_of_the_whole_run(tmp_path):
    for step in range(20, 20 * 1000 + 1, 20):
        (tmp_path / f"step_{step:08d}.png").write_bytes(b"png")
        thin_samples(tmp_path, 16, 20)
        kept = _grids(tmp_path)
        assert len(kept) <= 16 and kept[-1] == step
    (tmp_path / "final.png").write_bytes(b"png")
    thin_samples(tmp_path, 16, 20)
    kept = _grids(tmp_path)
    gaps = {b - a for a, b in zip(kept, kept[1:-1])}
    assert len(gaps) == 1 and kept[0] == gaps.pop()  # evenly spaced from the run's start
    assert kept[-2] > 20 * 1000 * 0.85  # and up to its end
    assert (tmp_path / "final.png").exists()


def test_keep_samples_zero_keeps_every_grid(tmp_path):
    for step in range(1, 101):
        (tmp_path / f"step_{step:08d}.png").write_bytes(b"png")
    assert thin_samples(tmp_path, 0, 1) == 0 and len(_grids(tmp_path)) == 100


def test_tensorboard_grids_grow_with_the_log_of_the_run():
    def sent(n, keep=64):
        return sum(i % grid_stride(i, keep) == 0 for i in range(1, n + 1))

    assert sent(64) == 64
    assert sent(10_000) < 64 + 32 * 8 + 32  # log2(10_000 / 64) < 8 doublings
    assert sent(100_000) - sent(10_000) < 32 * 4  # 10x longer: a few hundred kB more


def test_a_run_keeps_at_most_keep_samples_grids_and_tensorboard_gets_the_thinned_ones(
        tmp_path, tiny):
    run = tmp_path / "run"
    assert main(["train", "--max-steps", "24", "--out", str(run), "-q", *tiny,
                 "sample_every=1", "keep_samples=4", "checkpoint_every=0"]) == 0
    kept = _grids(run / "samples")
    assert len(kept) <= 4 and kept[-1] == 24 and {8, 16} <= set(kept)  # + the previous newest
    events = EventAccumulator(str(run / "tb"), size_guidance={"images": 0})
    events.Reload()
    steps = [e.step for e in events.Images("samples")]
    assert steps == [i for i in range(1, 25) if i % grid_stride(i, 4) == 0]
    assert main(["train", "keep_samples=1", "--dry-run"]) == 2  # 0 (all) or >= 2


@pytest.mark.slow  # a 300-step run watched from outside: ~20 s
def test_soak_benchmark_reports_bounded_outputs(capsys):
    spec = importlib.util.spec_from_file_location("soak", BENCH / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    assert soak.main(["--steps", "300", "--every", "0.5", "-q"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"checkpoints on disk: at most (\d+) \(keep_last=3\)", out)
    assert found and int(found.group(1)) <= 3, out
    found = re.search(r"sample grids on disk: at most (\d+) \(keep_samples=16\)", out)
    assert found and int(found.group(1)) <= 16, out
    assert re.search(r"resident memory: [\d.]+ MiB .* -> [\d.]+ MiB", out), out


def test_keep_samples_without_sample_grids_is_refused():
    assert main(["train", "sample_every=0", "keep_samples=8", "--dry-run"]) == 2
