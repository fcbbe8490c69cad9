"""Issue 19, part 3: a process of a multi-process (gloo) run that dies or hangs. The others stop
within ``dist_timeout`` in one line naming the last complete checkpoint; the run resumes with
the same or another number of processes, and ``--max-restarts`` (torchrun's elastic restart)
resumes it by itself, on exactly the trajectory of an uninterrupted run. SIGTERM (a scheduler's
stop) and Ctrl-C finish the step and checkpoint, alone or under torchrun."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import one_error_line
from safetensors.torch import load_file

from ganforge import checkpoint as ck
from ganforge.cli import main
from ganforge.train import dist
from ganforge.train.log import trim_metrics

# a two-process toy run of about 250 steps a second: checkpoints every 200 steps
TOY = ["--preset", "toy", "--data", "ring8", "hidden=32", "batch_size=64", "log_every=50",
       "sample_every=0", "checkpoint_every=200"]


def _env(**more):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **more}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    return {**env, **more}


def _train(args, **popen):
    return subprocess.Popen([sys.executable, "-m", "ganforge", "train", *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _wait_for(path, proc, timeout=120.0):
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() - t0 < timeout, f"no {path} after {timeout}s"
        time.sleep(0.05)


def _workers(agent_pid):
    """{RANK: pid} of the torchrun workers started by the agent process ``agent_pid``."""
    found = {}
    for pid in open(f"/proc/{agent_pid}/task/{agent_pid}/children").read().split():
        try:
            env = dict(kv.split("=", 1) for kv in open(f"/proc/{pid}/environ").read()
                       .split("\0") if "=" in kv)
        except OSError:
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(pid)
    return found


def _steps(run):
    return [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def _G(run, step):
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "G.safetensors"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A two-process run of 1,000 steps, never stopped: the trajectory every stopped and
    resumed run must follow."""
    run = tmp_path_factory.mktemp("full") / "run"
    proc = _train([*TOY, "--max-steps", "1000", "--out", str(run), "--nproc", "2", "-q"])
    assert proc.wait(timeout=300) == 0, proc.communicate()[1][-3000:]
    return _G(run, 1000)


def test_a_failed_collective_is_named_in_a_short_cause():
    gloo = RuntimeError("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:561] "
                        "Connection closed by peer [127.0.0.1]:42896. This is typically caused "
                        "by a remote worker crashing. Check the logs")
    lost = dist.peer_failure(gloo)
    assert lost.cause == "Connection closed by peer [127.0.0.1]:42896"
    hung = dist.peer_failure(RuntimeError("[../gloo/transport/tcp/unbound_buffer.cc:81] Timed "
                                          "out waiting 5000ms for recv operation to complete"))
    assert hung.cause == "Timed out waiting 5000ms for recv operation to complete"
    assert dist.peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert dist.peer_failure(ValueError("connection closed")) is None


def test_a_killed_process_ends_the_run_in_one_line_and_it_resumes_with_one_process(tmp_path):
    """kill -9 of rank 1: rank 0 (its peer's connection gone) and the launcher stop at once,
    each in one line; the run keeps step 400; one process continues it, and metrics.jsonl
    holds each logged step once (the lines after step 400 of the lost trajectory are gone)."""
    run = tmp_path / "run"
    proc = _train([*TOY, "--max-steps", "100000", "--out", str(run), "--nproc", "2"])
    _wait_for(run / "checkpoints" / "step_00000400", proc)
    t0 = time.monotonic()
    os.kill(_workers(proc.pid)[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - t0
    assert proc.returncode == 2, err[-3000:]
    assert took < 20, took
    assert "Traceback" not in err, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, err[-3000:]  # rank 0's view, then the launcher's
    assert "process 0: the process group failed" in errors[0]
    assert "process 1 of 2 was killed by SIGKILL" in errors[1]
    assert f"continue with ganforge train --resume {run} --nproc 2" in errors[1]
    assert ck.latest_checkpoint(run).name == "step_00000400"
    assert main(["train", "--resume", str(run), "--max-steps", "600", "-q"]) == 0
    assert _steps(run) == list(range(50, 601, 50))


def test_a_hung_process_stops_the_others_within_dist_timeout(tmp_path):
    """SIGSTOP (alive, never answering: no agent notices it) of rank 1 of two processes
    started by hand: rank 0 gives up after dist_timeout=5s, in one line, exit 2."""
    run = tmp_path / "run"
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": "2"}
    args = [*TOY, "--max-steps", "100000", "dist_timeout=5s", "--out", str(run)]
    procs = [subprocess.Popen([sys.executable, "-m", "ganforge", "train", *args],
                              env=_env(**common, RANK=str(r), LOCAL_RANK=str(r)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    try:
        _wait_for(run / "checkpoints" / "step_00000200", procs[0])
        procs[1].send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert procs[0].returncode == 2, err[-3000:]
    assert 4 < took < 5 + 10, took
    line = err.strip().splitlines()[-1]
    assert "Traceback" not in err and line.startswith("error: process 0: the process group "
                                                       "failed (Timed out"), err[-3000:]
    assert "(dist_timeout=5s)" in line and "checkpoint step_00000200" in line


def test_max_restarts_resumes_on_the_trajectory_of_an_uninterrupted_run(tmp_path,
                                                                        uninterrupted):
    run = tmp_path / "run"
    proc = _train([*TOY, "--max-steps", "1000", "--out", str(run), "--nproc", "2",
                   "--max-restarts", "1"])
    _wait_for(run / "checkpoints" / "step_00000400", proc)
    os.kill(_workers(proc.pid)[1], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert "restart 1 of this run's processes: resuming from its last checkpoint" in err
    assert "torchrun restarts the processes (1 restarts left), from checkpoint" in err
    got = _G(run, 1000)
    assert all(torch.equal(got[k], uninterrupted[k]) for k in got)
    assert _steps(run) == list(range(50, 1001, 50))


@pytest.mark.slow  # a multi-process run: ~10 s
def test_a_one_process_run_resumed_with_two_follows_the_same_global_batches(tmp_path):
    """Noise and data order are drawn for the global batch, so the number of processes can
    change at a checkpoint: 400 steps alone + 10 with two processes = 410 steps alone, up to
    float summation order (1e-4, as test_speed's two-vs-one; the wrong batches for 10 steps
    move the weights by ~1e-3)."""
    one, two = tmp_path / "one", tmp_path / "two"
    flat = [*TOY, "lr_decay=none"]  # a schedule would tie the trajectory to max_steps
    assert main(["train", *flat, "--max-steps", "410", "--out", str(one), "-q"]) == 0
    assert main(["train", *flat, "--max-steps", "400", "--out", str(two), "-q"]) == 0
    proc = _train(["--resume", str(two), "--max-steps", "410", "--nproc", "2", "-q"])
    assert proc.wait(timeout=300) == 0, proc.communicate()[1][-3000:]
    a, b = _G(one, 410), _G(two, 410)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-4


def test_sigterm_finishes_the_step_and_checkpoints(tmp_path):
    """A cluster scheduler's stop: SIGTERM, then SIGKILL a grace period later."""
    run = tmp_path / "run"
    proc = _train([*TOY, "--max-steps", "100000", "--out", str(run)])
    _wait_for(run / "checkpoints" / "step_00000200", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-3000:]
    line = err.strip().splitlines()[-1]
    assert line.startswith("stopped by SIGTERM at step ") and "--resume" in line, err[-2000:]
    step = int(line.split("at step ")[1].split(";")[0])
    assert ck.latest_checkpoint(run).name == f"step_{step:08d}"


@pytest.mark.slow  # a multi-process run: ~10 s
def test_ctrl_c_under_nproc_stops_every_process_after_its_step(tmp_path):
    """The terminal sends SIGINT to the launcher (torchrun's agent) and to each process; the
    agent passes it on once more: still one stop after the step, one checkpoint, exit 130."""
    run = tmp_path / "run"
    proc = _train([*TOY, "--max-steps", "100000", "--out", str(run), "--nproc", "2"],
                  start_new_session=True)
    _wait_for(run / "checkpoints" / "step_00000200", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted at step")]
    assert len(lines) == 1 and f"--resume {run} --nproc 2" in lines[0], err[-3000:]
    step = int(lines[0].split("at step ")[1].split(";")[0])
    assert ck.latest_checkpoint(run).name == f"step_{step:08d}"


@pytest.mark.slow  # a multi-process run: ~10 s
def test_a_second_multi_process_trainer_on_a_run_in_use_is_refused_in_one_line(tmp_path):
    """Rank 0 of the second run is refused the lock; its other process stops with it,
    silently (no "process group failed" line from a rank left waiting)."""
    run = tmp_path / "run"
    first = _train([*TOY, "--max-steps", "100000", "--out", str(run), "--nproc", "2"])
    try:
        _wait_for(run / "checkpoints" / "step_00000200", first)
        second = _train(["--resume", str(run), "--max-steps", "100000", "--nproc", "2"])
        _, err = second.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert second.returncode == 2, err[-3000:]
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "is being trained by" in errors[0], err[-3000:]


def test_trim_metrics_drops_the_lines_after_the_checkpoint_and_a_torn_line(tmp_path):
    rows = [json.dumps({"step": s, "G_loss": 1.0}) for s in (10, 20, 30, 40)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(rows) + '\n{"step": 50, "G_lo')
    assert trim_metrics(tmp_path, 20) == 3
    assert _steps(tmp_path) == [10, 20]
    assert trim_metrics(tmp_path, 20) == 0
    assert trim_metrics(tmp_path / "missing", 0) == 0


def test_max_restarts_needs_nproc(capsys):
    assert main(["train", "--max-restarts", "2", "--max-steps", "1", "--out", "x"]) == 2
    one_error_line(capsys, "--max-restarts is for runs launched with --nproc N")


def test_dist_timeout_is_a_duration():
    assert main(["train", "dist_timeout=soon", "--dry-run"]) == 2
    assert main(["train", "dist_timeout=0s", "--dry-run"]) == 2


def test_multi_process_keys_are_refused_in_a_one_process_run(capsys):
    assert main(["train", "dist_timeout=5m", "--max-steps", "1", "--out", "x"]) == 2
    one_error_line(capsys, "dist_timeout is only read by multi-process runs")
    assert main(["train", "sync_bn=true", "--max-steps", "1", "--out", "x"]) == 2
    one_error_line(capsys, "sync_bn is only read by multi-process runs")
