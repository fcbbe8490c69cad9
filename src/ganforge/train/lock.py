"""One writer per run: ``RUN/.lock``, held with ``flock`` while a trainer writes the run.

The kernel releases the lock when the holding process ends, however it ends, so a killed run
never leaves a stale lock; the file stays and records who held it last (pid, host, start time),
which is read only when the lock is refused. Readers (sample, eval, info, export) never take
it: checkpoints are complete when they appear (temp folder + rename). On Windows (no ``fcntl``)
no lock is taken.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import GanforgeError
from ..utils import write_failure

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunLock:
    """An exclusive, non-blocking lock on ``RUN/.lock``; :meth:`release` (or the process's
    end) frees it."""

    def __init__(self, run: Path) -> None:
        self.path = Path(run) / LOCK_FILE
        self.fd: int | None = None

    @property
    def held(self) -> bool:
        return self.fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise a one-line error naming the process that holds it."""
        if self.fd is not None or fcntl is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise (write_failure(e, self.path) or e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise GanforgeError(f"{self.path.parent} is being trained by {holder(self.path)}: "
                                "wait for it, or stop it (Ctrl-C) first") from None
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.write(fd, (json.dumps(info) + "\n").encode())
        except OSError:  # who holds it is a courtesy for the next process: the lock is held
            pass

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __del__(self) -> None:
        self.release()


def holder(path: Path) -> str:
    """``process PID on HOST since TIME`` from a lock file, or ``another process``."""
    try:
        info = json.loads(Path(path).read_text())
        return f"process {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"
