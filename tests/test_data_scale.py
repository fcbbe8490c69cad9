"""Big sets (issue 18): a set in the disk cache gives the same batches, bit for bit, as the same
set in memory (so resume stays exact), read with positioned reads that map nothing into the
process, ahead of the trainer by a thread that ends with the run; each rank reads only its
part of a batch; the cache build shows a progress bar unless silenced and is reused."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.data import load as load_mod
from ganforge.data import load_dataset
from ganforge.data.cache import RowFile
from ganforge.errors import GanforgeError
from ganforge.options import build_config
from ganforge.train import Trainer
from ganforge.train.batches import Batches
from ganforge.train.health import HealthMonitor

CPU = torch.device("cpu")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "data_scale.py"


def _folder(root: Path, n: int = 90, side: int = 12) -> Path:
    """``n`` seeded noise PNGs in two class sub-folders (labelled, colour)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / ("a" if i % 3 else "b")
        d.mkdir(parents=True, exist_ok=True)
        px = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        Image.fromarray(px).save(d / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """(the set in the disk cache, the same set in memory)."""
    root = tmp_path_factory.mktemp("scale")
    folder = _folder(root / "imgs")
    home = root / "home"
    disk = load_dataset(folder, resolution=8, home=home, log=None, memory_limit_bytes=1)
    mem = load_dataset(folder, resolution=8, home=home, log=None)
    return disk, mem


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ganforge-batches")]


def test_disk_batches_are_the_memory_batches_bit_for_bit(sets):
    disk, mem = sets
    assert disk.rows is not None and mem.rows is None
    a = Batches(disk, 16, seed=3, device=CPU, xflip=True)
    b = Batches(mem, 16, seed=3, device=CPU, xflip=True)
    assert a.prefetch == 2 and b.prefetch == 0  # read-ahead only for the set on disk
    order = [*range(25), 3, 40, 0, 11]  # across epochs (11 a epoch), jumps back and forth
    for i in order:
        x, y = a.get(i), b.get(i)
        assert x.keys() == y.keys() == {"image", "label"}
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["label"], y["label"]), i
    assert set(a._ahead) == {12, 13}  # the window follows the last batch asked for
    a.close()
    assert not a._ahead and a._pool is None
    assert torch.equal(a.get(5)["image"], b.get(5)["image"])  # works again after close
    a.close()


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:  # a mapping's first line
            inside = len(head) >= 6 and head[-1] == str(path)
        elif inside and line.startswith("Rss:"):
            total += int(head[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs Linux /proc")
def test_disk_batches_map_nothing_into_the_process(tmp_path):
    folder = _folder(tmp_path / "imgs", n=300, side=64)
    data = load_dataset(folder, resolution=64, home=tmp_path / "home", log=None,
                        memory_limit_bytes=1)  # 300 x 3 x 64 x 64: 3.5 MiB on disk
    path = data.rows.path
    b = Batches(data, 32, seed=0, device=CPU)
    for i in range(2 * b.steps_per_epoch):  # every row, twice
        b.get(i)
    b.close()
    HealthMonitor(data, build_config("dcgan"), CPU)  # samples 256 real images
    idx = torch.randperm(len(data))[:200]
    took = data.take(idx)
    assert _mapped_kb(path) == 0
    assert torch.equal(data.images[idx], took)  # the old gather: indexing the map...
    assert _mapped_kb(path) > 1024  # ...maps its pages into the process


def test_rowfile_gather_is_fancy_indexing(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (1300, 2, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", arr)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    rows = RowFile.of(mm)
    assert rows.shape == (1300, 2, 3) and rows.offset == mm.offset
    assert RowFile.of(mm[1:]) is None and RowFile.of(arr) is None  # a view, an array
    for idx in (np.arange(1300),  # one run longer than a read takes: split
                np.array([5, 5, 4, 1299, -1, 0, 7, 8, 9, 2]),  # repeats, negatives, runs
                np.random.default_rng(2).integers(0, 1300, 200), np.array([], dtype=int)):
        assert np.array_equal(rows.gather(idx), arr[idx])
    out = np.empty((3, 2, 3), dtype=np.uint8)
    assert rows.gather([2, 1, 0], out=out) is out and np.array_equal(out, arr[[2, 1, 0]])
    with pytest.raises(IndexError):
        rows.gather([1300])


def test_each_rank_reads_only_its_part_of_the_batch(sets):
    disk, mem = sets

    class Counted:  # records how many rows each read asks for
        def __init__(self, rows):
            self.rows, self.sizes, self.shape = rows, [], rows.shape

        def gather(self, idx):
            self.sizes.append(len(idx))
            return self.rows.gather(idx)

    whole = Batches(mem, 16, seed=5, device=CPU, xflip=True)
    ranks = [Batches(disk, 16, seed=5, device=CPU, xflip=True, rank=r, world=2)
             for r in range(2)]
    for r in ranks:
        r.rows = Counted(r.rows)
    for i in range(14):
        parts = [r.get(i) for r in ranks]
        ref = whole.get(i)
        for key in ("image", "label"):
            assert torch.equal(torch.cat([p[key] for p in parts]), ref[key]), (i, key)
    for r in ranks:
        r.close()
        assert r.sharded and set(r.rows.sizes) == {8}  # 8 rows of the 16, never the whole
    with pytest.raises(GanforgeError, match="rank 2 is not one of the 2"):
        Batches(mem, 16, seed=5, device=CPU, rank=2, world=2)


def test_a_failed_read_surfaces_in_the_trainer_thread_and_close_ends_the_thread(sets):
    disk, _ = sets
    b = Batches(disk, 16, seed=0, device=CPU)

    class FailsAfterOne:  # the first read works, the ones made ahead by the thread fail
        shape, calls = b.rows.shape, []

        def gather(self, idx, rows=b.rows):
            self.calls.append(threading.current_thread().name)
            if len(self.calls) > 1:
                raise OSError("disk gone")
            return rows.gather(idx)

    b.rows = FailsAfterOne()
    b.get(0)
    with pytest.raises(OSError, match="disk gone"):
        b.get(1)
    with pytest.raises(OSError, match="disk gone"):
        b.get(2)
    assert b.rows.calls[0] == threading.current_thread().name
    assert all(c.startswith("ganforge-batches") for c in b.rows.calls[1:3])
    b.close()
    assert not _threads()


def _cfg(folder: Path, steps: int):
    return build_config("dcgan", {"source": str(folder), "resolution": 32, "batch_size": 16,
                                  "g_channel_base": 128, "d_channel_base": 128,
                                  "max_steps": steps, "sample_every": 0, "checkpoint_every": 2,
                                  "log_every": 2})


def test_training_on_the_disk_cache_resumes_exactly_and_ends_its_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANFORGE_MEMORY_LIMIT_MB", "0.001")  # 1 kB: every set goes to disk
    folder = _folder(tmp_path / "imgs", n=60)
    quiet = dict(quiet=True, tensorboard=False)
    full = Trainer(_cfg(folder, 6), tmp_path / "full", **quiet)
    assert full.data.rows is not None and full.batches.prefetch
    full.train()
    assert not _threads()
    part = Trainer(_cfg(folder, 3), tmp_path / "part", **quiet)
    part.train()
    again = Trainer(_cfg(folder, 6), tmp_path / "part", resume=True, **quiet)
    again.train()
    assert not _threads()
    for name in ("G", "D"):
        for p, q in zip(full.nets[name].parameters(), again.nets[name].parameters()):
            assert torch.equal(p, q), name


def test_big_builds_decode_in_processes_with_a_bar_unless_silent_and_are_reused(
        tmp_path, monkeypatch, capsys):
    folder = _folder(tmp_path / "imgs", n=40)
    (folder / "a" / "broken.png").write_bytes(b"not an image")
    kw = dict(resolution=8, memory_limit_bytes=1)
    threads = load_dataset(folder, home=tmp_path / "h0", log=None, **kw)  # under 10,000
    monkeypatch.setattr(load_mod, "_ANNOUNCE", 20)  # processes and a bar from 20 images on
    made = []
    real = load_mod._Workers.__init__

    def spy(self, src, n):
        real(self, src, n)
        made.append(self.procs)

    monkeypatch.setattr(load_mod._Workers, "__init__", spy)
    lines: list[str] = []
    procs = load_dataset(folder, home=tmp_path / "h1", log=None, **kw)
    assert capsys.readouterr().err == ""  # silent: no bar
    cpus = os.cpu_count() or 1
    assert made == [min(8, cpus) if cpus > 1 else 0]  # forked workers (on Linux)
    assert torch.equal(procs.images, threads.images) and torch.equal(procs.labels,
                                                                       threads.labels)
    assert procs.skipped == threads.skipped == 1
    load_dataset(folder, home=tmp_path / "h2", log=lines.append, **kw)
    err = capsys.readouterr().err
    assert "decoding" in err and "40/40" in err
    assert any("1 unreadable file (first: a/broken.png" in ln for ln in lines)
    lines.clear()
    again = load_dataset(folder, home=tmp_path / "h2", log=lines.append, **kw)
    assert capsys.readouterr().err == ""  # from the cache: nothing decoded, no bar
    assert len(lines) == 1 and lines[0].startswith("using decoded cache")
    assert again.rows is not None and torch.equal(again.images, threads.images)
    assert len(made) == 2  # the reuse forked nothing


def test_the_benchmark_runs_small(tmp_path):
    spec = importlib.util.spec_from_file_location("data_scale", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    took, reused = mod.make_set(tmp_path / "set", 6, 16, 1)
    assert not reused and len(list((tmp_path / "set").glob("*.jpg"))) == 6
    assert mod.make_set(tmp_path / "set", 6, 16, 1) == (0.0, True)
    out = subprocess.run(
        [sys.executable, str(BENCH), "--n", "200", "--resolution", "32", "--steps", "2",
         "--warmup", "1", "--batches", "20", "--dir", str(tmp_path / "b")],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    for needle in ("set: 200 JPEGs 32x32", "cache build: 200 images", "said 'using decoded",
                   "steps/s", "pipeline, cold", "old mmap gather", "OK: peak RSS"):
        assert needle in out.stdout, (needle, out.stdout)
