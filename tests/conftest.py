import os
import tempfile

import pytest
import torch

# datasets and caches of the tests go to a throw-away folder, never the user's cache
os.environ.setdefault("GANFORGE_HOME", tempfile.mkdtemp(prefix="ganforge-test-home-"))

# tiny nets and short runs: every test trains in seconds on a 2-core CPU
TINY = ["g_channel_base=128", "d_channel_base=128", "batch_size=16", "log_every=2",
        "sample_every=2", "checkpoint_every=2"]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def tiny():
    return list(TINY)


def one_error_line(capsys, *words) -> str:
    """The one ``error: ...`` line a command printed on stderr, containing each of ``words``."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, (w, err)
    return err
