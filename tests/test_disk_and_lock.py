"""Issue 19: a disk that refuses writes (full, over quota, read-only, failing) and one writer
per run. Essential writes (checkpoints, metrics.jsonl) stop the run in one line that names the
file, the free space and how to go on, leaving the previous checkpoint intact for an exact
``--resume``; sample grids and TensorBoard only warn once. ``RUN/.lock`` refuses a second
trainer; readers never take it."""

import errno
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from safetensors.torch import load_file

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.utils import write_failure

ENOSPC = OSError(errno.ENOSPC, "No space left on device")
TORCH_WRAPPED = "[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"


def _weights(run):
    path = ck.latest_checkpoint(run)
    return {n: load_file(str(path / f"{n}.safetensors")) for n in ("G", "D")}


def _error_lines(text):
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny):
    """An uninterrupted 6-step run: what every stopped-and-resumed run must reach."""
    run = tmp_path_factory.mktemp("ref") / "run"
    assert main(["train", "--max-steps", "6", "--out", str(run), "-q", *tiny]) == 0
    return _weights(run)


def _fail_on_call(n, exc):
    """A writer that works, except on call number ``n`` (and after), which raises ``exc``."""
    calls = []

    def wrap(real):
        def writer(*a, **k):
            calls.append(1)
            if len(calls) >= n:
                raise exc
            return real(*a, **k)
        return writer
    return wrap


class _FullFile:
    """metrics.jsonl on a disk that fills after ``lines`` lines."""

    def __init__(self, f, lines):
        self.f, self.left = f, lines

    def write(self, text):
        if self.left <= 0:
            raise OSError(errno.ENOSPC, "No space left on device", self.f.name)
        self.left -= 1
        return self.f.write(text)

    def close(self):
        self.f.close()


@pytest.mark.parametrize("site", ["weights", "state", "metrics"])
def test_essential_write_fails_stops_in_one_line_and_resumes_exactly(
        tmp_path, tiny, reference, monkeypatch, capsys, site):
    from ganforge.train import log

    run = tmp_path / "run"
    if site == "weights":  # the 2nd checkpoint's first net (G at step 4)
        monkeypatch.setattr(ck, "save_file", _fail_on_call(4, ENOSPC)(ck.save_file))
    elif site == "state":  # torch.save's own error: the OSError wrapped, its errno lost
        monkeypatch.setattr(torch, "save", _fail_on_call(2, RuntimeError(TORCH_WRAPPED))(
            torch.save))
        monkeypatch.setattr("ganforge.utils.free_space", lambda path: 0)
    else:  # the log line of step 4
        real_open = open
        monkeypatch.setattr(log, "open", lambda *a, **k: _FullFile(real_open(*a, **k), 1),
                            raising=False)
    capsys.readouterr()
    assert main(["train", "--max-steps", "6", "--out", str(run), "-q", *tiny]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1, lines
    msg = lines[0]
    assert msg.startswith("error: could not write ") and "disk full" in msg, msg
    assert "free on that file system" in msg and "at step 4" in msg
    assert str(run / "checkpoints" / "step_00000002") in msg
    assert f"ganforge train --resume {run}" in msg
    name = {"weights": "G.safetensors", "state": "state.pt", "metrics": "metrics.jsonl"}[site]
    assert name in msg.split(" at step")[0]
    # the previous checkpoint is intact and named by latest; no partial folder is left
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    assert ck.load_state(ck.latest_checkpoint(run))["step"] == 2
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--max-steps", "6", "-q"]) == 0
    got = _weights(run)
    for net in ("G", "D"):
        for k in reference[net]:
            assert torch.equal(reference[net][k], got[net][k]), f"{net}.{k} differs"


@pytest.mark.parametrize("site", ["samples", "tensorboard"])
def test_non_essential_write_fails_warns_once_and_trains_on(tmp_path, tiny, monkeypatch,
                                                           capsys, site):
    import ganforge.utils as utils

    if site == "samples":
        monkeypatch.setattr(utils, "save_png", _fail_on_call(1, ENOSPC)(utils.save_png))
    else:
        from torch.utils.tensorboard import SummaryWriter

        monkeypatch.setattr(SummaryWriter, "add_scalar",
                            _fail_on_call(1, OSError(errno.EDQUOT, "Disk quota exceeded"))(
                                SummaryWriter.add_scalar))
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "--max-steps", "6", "--out", str(run), "-q", *tiny]) == 0
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("warning: "), lines
    what = {"samples": "sample grids off", "tensorboard": "TensorBoard logging off"}[site]
    assert what in lines[0] and ("disk full" if site == "samples" else "quota") in lines[0]
    assert [p.name for p in ck.list_checkpoints(run)][-1] == "step_00000006"
    assert (run / "metrics.jsonl").read_text().count("\n") == 3


def test_only_write_failures_count_as_disk_errors(tmp_path, tiny, monkeypatch):
    p = tmp_path / "f"
    for e, meaning in [(OSError(errno.ENOSPC, "x"), "disk full"),
                       (OSError(errno.EDQUOT, "x"), "disk quota exceeded"),
                       (OSError(errno.EROFS, "x"), "read-only file system"),
                       (OSError(errno.EIO, "x"), "I/O error"),
                       (PermissionError(errno.EACCES, "x"), "permission denied")]:
        assert write_failure(e, p).meaning == meaning
    for e in (RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
              FileNotFoundError(errno.ENOENT, "x"), ValueError("unexpected pos")):
        assert write_failure(e, p) is None
    # a bug in torch.save is a traceback as before, never "disk full"
    monkeypatch.setattr(torch, "save", _fail_on_call(1, RuntimeError("boom"))(torch.save))
    with pytest.raises(RuntimeError, match="boom"):
        main(["train", "--max-steps", "2", "--out", str(tmp_path / "run"), "-q", *tiny])


def test_warns_when_the_checkpoints_will_not_fit(tmp_path, tiny, monkeypatch, capsys):
    from ganforge.train import loop

    monkeypatch.setattr(loop, "free_space", lambda path: 10_000)
    capsys.readouterr()
    assert main(["train", "--max-steps", "1", "--out", str(tmp_path / "run"), "-q", *tiny,
                 "checkpoint_every=0"]) == 0
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "checkpoints of this run need about" in lines[0], lines
    assert "(4 of " in lines[0] and "9.8 KiB free" in lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    """An 8 MiB tmpfs (Linux, as root), unmounted afterwards; skipped where it cannot mount."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    if sys.platform != "linux" or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (Linux as root only)")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_really_full_disk(tmpfs, tiny, capsys):
    run = tmpfs / "run"
    assert main(["train", "--max-steps", "2", "--out", str(run), "-q", *tiny]) == 0
    filler = tmpfs / "filler"
    with open(filler, "wb") as f:  # fill what is left, to the last block
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-steps", "4", "-q"]) == 2
    lines = _error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "disk full" in lines[0] and "0 B free" in lines[0], lines
    assert ck.latest_checkpoint(run).name == "step_00000002"
    filler.unlink()
    assert main(["train", "--resume", str(run), "--max-steps", "4", "-q"]) == 0
    assert ck.latest_checkpoint(run).name == "step_00000004"


# -- one writer per run ------------------------------------------------------------------------

HOLD = textwrap.dedent("""
    import sys, time
    from ganforge.train.lock import RunLock
    lock = RunLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def _holder(run):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_trainer_is_refused_until_the_first_dies(tmp_path, tiny, capsys):
    run = tmp_path / "run"
    assert main(["train", "--max-steps", "2", "--out", str(run), "-q", *tiny]) == 0
    proc = _holder(run)
    try:
        for args in (["--out", str(run), *tiny], ["--resume", str(run)]):
            capsys.readouterr()
            assert main(["train", "--max-steps", "4", "-q", *args]) == 2
            lines = _error_lines(capsys.readouterr().err)
            assert len(lines) == 1, lines
            assert lines[0].startswith(f"error: {run} is being trained by process {proc.pid} "
                                       f"on ") and " since " in lines[0]
            assert lines[0].endswith("wait for it, or stop it (Ctrl-C) first")
        assert ck.latest_checkpoint(run).name == "step_00000002"  # nothing was touched
        # readers never take the lock
        assert main(["info", str(run), "--json"]) == 0
        assert main(["sample", str(run), "--n", "2", "--out", str(tmp_path / "s")]) == 0
        hub = tmp_path / "hub"
        assert main(["export", str(run), "--format", "hub", "--out", str(hub)]) == 0
        assert not (hub / ".lock").exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # the kernel released the killed holder's lock: resuming just works
    assert main(["train", "--resume", str(run), "--max-steps", "4", "-q"]) == 0
    assert ck.latest_checkpoint(run).name == "step_00000004"


def test_the_lock_is_held_while_training_and_released_after(tmp_path, tiny):
    from ganforge.errors import GanforgeError
    from ganforge.options import build_config
    from ganforge.train import Trainer

    run = tmp_path / "run"
    cfg = build_config("dcgan", tiny + ["max_steps=2"])
    tr = Trainer(cfg, run, quiet=True, tensorboard=False)
    with pytest.raises(GanforgeError, match=f"is being trained by process {os.getpid()} "):
        Trainer(build_config("dcgan", tiny + ["max_steps=3"]), run, resume=True, quiet=True)
    tr.train()
    again = Trainer(build_config("dcgan", tiny + ["max_steps=3"]), run, resume=True,
                    quiet=True, tensorboard=False)
    assert again.train().step == 3


def test_a_reader_always_finds_a_complete_checkpoint(tmp_path, tiny):
    """``latest`` read in a loop while checkpoints are written: never partial, never missing."""
    from ganforge.options import build_config
    from ganforge.train import Trainer

    run = tmp_path / "run"
    tr = Trainer(build_config("dcgan", tiny + ["max_steps=1"]), run, quiet=True,
                 tensorboard=False)
    tr.train()
    done, seen, errors = threading.Event(), set(), []

    def read():
        while not done.is_set():
            try:
                path = ck.find_checkpoint(run)
                load_file(str(path / "G.safetensors"))
                seen.add(ck.load_state(path)["step"])
            except Exception as e:  # noqa: BLE001 - any failure is what the test looks for
                errors.append(repr(e))

    reader = threading.Thread(target=read)
    reader.start()
    t0 = time.perf_counter()
    try:
        for step in range(2, 12):
            tr.step = step
            ck.save_checkpoint(run, step, tr.nets, tr._state(), keep_last=2)
    finally:
        done.set()
        reader.join()
    assert not errors, errors[:3]
    assert len(seen) > 1 and time.perf_counter() - t0 < 30
    shutil.rmtree(run)
