"""The README's Python API examples run as written (with 2 training steps instead of 300 and
fewer evaluation samples), in a fresh folder."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_blocks() -> list[str]:
    text = README.read_text()
    section = text[text.index("## Python API"):text.index("## Presets")]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_python_api_examples_run(tmp_path, monkeypatch):
    blocks = _api_blocks()
    assert len(blocks) == 2
    code = "\n".join(blocks)
    assert code.count('"max_steps": 300') >= 6 and "n=10_000" in code
    code = code.replace('"max_steps": 300', '"max_steps": 2').replace("n=10_000", "n=64")
    assert "port=7860, block=False" in code  # the demo example serves in the background
    import socket

    with socket.socket() as s:  # a free port: 7860 may be taken on the test machine
        s.bind(("127.0.0.1", 0))
        code = code.replace("port=7860", f"port={s.getsockname()[1]}")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    assert scope["y"].shape == scope["x"].shape
    assert tuple(scope["big_x"].shape) == (16, 1, 32, 32)
    assert scope["threes"].shape[0] == 8 and scope["report"]["metrics"]["fid"] >= 0
    for run in ("quick", "quick-ft", "sg2", "big", "mine", "p2p", "sr"):
        assert (tmp_path / "runs" / run / "config.json").is_file()


@pytest.mark.parametrize("name", ["import ganforge", "import ganforge.cli"])
def test_importing_the_package_or_the_cli_does_not_load_torch(name):
    import subprocess
    import sys

    code = f"{name}; import sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
