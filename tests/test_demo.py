"""``ganforge demo``: the page's picture functions (no browser), the CLI's one-line refusals,
and the page itself driven in headless Chromium through Selenium (skipped where Gradio,
Selenium, Chromium or ChromeDriver is missing).

GANFORGE_DEMO_SCREENSHOT=path/demo.png also writes the browser test's screenshot there."""

import os
import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ganforge
from ganforge import demo as D
from ganforge.cli import main
from ganforge.errors import GanforgeError

COMMON = ["log_every=2", "sample_every=2", "checkpoint_every=2"]
# Gradio's queue calls pandas options that pandas 3 deprecates: not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")


@pytest.fixture(scope="module")
def cond(tmp_path_factory, tiny):
    """A tiny conditional run (small-data-cond on digits, 10 classes)."""
    run = tmp_path_factory.mktemp("demo") / "cond"
    assert main(["train", "--max-steps", "2", "--out", str(run), "-q", *tiny]) == 0
    return run


@pytest.fixture(scope="module")
def pix2pix(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "pix2pix"
    assert main(["train", "--preset", "pix2pix", "--max-steps", "2", "--out", str(run), "-q",
                 "g_base=4", "d_base=4", "batch_size=4", *COMMON]) == 0
    return run


@pytest.fixture(scope="module")
def srgan(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "srgan"
    assert main(["train", "--preset", "srgan", "--max-steps", "2", "--out", str(run), "-q",
                 "g_base=8", "d_base=4", "n_blocks=1", "batch_size=4", "warmup_steps=2",
                 "warmup=0", "content=pixel", *COMMON]) == 0
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grid_side(nrow: int) -> int:
    """Width of torchvision's grid of ``nrow`` 32 px images (2 px padding)."""
    return nrow * 34 + 2


# --- the picture functions, no browser --------------------------------------------------------


def test_grid_image_size_seed_class_and_truncation(cond):
    g = ganforge.load(cond, device="cpu")
    im = D.grid_image(g, seed=3, n=10)
    w = _grid_side(4)  # 10 samples: 4 a row, 3 rows
    assert im.size == (2 * w, 2 * (3 * 34 + 2))  # enlarged x2 to reach 256 px
    a = np.asarray(im)
    assert (np.asarray(D.grid_image(g, 3, 10, D.BALANCED, 0)) == a).all()  # same seed, same
    assert (np.asarray(D.grid_image(g, 4, 10)) != a).any()
    assert (np.asarray(D.grid_image(g, 3, 10, "3")) != a).any()  # one class, not balanced
    assert (np.asarray(D.grid_image(g, 3, 10, D.BALANCED, 0.5)) != a).any()
    assert D.grid_image(g, 0, 64).size == (_grid_side(8),) * 2  # 274 px: not enlarged
    assert D.truncation_value(g, 0) is None and D.truncation_value(g, 0.7) == 0.7
    for bad in [dict(n=0), dict(n=65), dict(seed=-1), dict(seed=1.5), dict(cls="nope")]:
        with pytest.raises(GanforgeError):
            D.grid_image(g, **{"seed": 0, "n": 4, **bad})


def test_truncation_slider_is_psi_for_stylegan_and_a_threshold_otherwise():
    from types import SimpleNamespace

    checked = []
    style = SimpleNamespace(is_style=True, check_truncation=checked.append)
    assert D.truncation_value(style, 1) is None and D.truncation_value(style, 0.0) == 0.0
    plain = SimpleNamespace(is_style=False, check_truncation=checked.append)
    assert D.truncation_value(plain, 0) is None and D.truncation_value(plain, 1.0) == 1.0
    assert D.truncation_value(plain, None) is None
    assert checked == [None, 0.0, None, 1.0]  # every value goes through the run's own check


def test_walk_goes_from_the_first_seed_to_the_second(cond, tmp_path):
    g = ganforge.load(cond, device="cpu")
    strip, gif = D.walk(g, seed_a=5, seed_b=9, frames=5, cls="2", gif_dir=tmp_path)
    assert gif.parent == tmp_path
    with Image.open(gif) as im:
        assert im.n_frames == 5 + 3  # there and back, without repeating the ends
    k = strip.width // _grid_side(5)
    assert strip.size == (k * _grid_side(5), k * 36) and k * _grid_side(5) >= 512
    cells = np.asarray(strip)[::k, ::k, 0]  # back to 1 px per pixel, one channel

    def cell(i):
        return cells[2:34, 2 + 34 * i:34 + 34 * i].astype(int)

    from ganforge.utils import to_uint8

    for i, seed in [(0, 5), (4, 9)]:
        want = to_uint8(g.sample(1, seed=seed, c=2))[0, 0].numpy().astype(int)
        assert np.abs(cell(i) - want).max() <= 1
    assert np.abs(cell(2) - cell(0)).max() > 1  # the middle moved away from both ends
    with pytest.raises(GanforgeError, match="frames"):
        D.walk(g, 0, 1, frames=1)


def test_convert_image_translates_and_upscales_any_mode_and_size(pix2pix, srgan):
    t = ganforge.load(pix2pix, device="cpu")
    rgba = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 45, 4), np.uint8))
    out = D.convert_image(t, rgba)
    assert out.size == (45, 37) and out.mode == "L"  # the run's 1 channel, the image's size
    s = ganforge.load(srgan, device="cpu")
    assert D.convert_image(s, rgba).size == (45 * 4, 37 * 4)
    assert D.convert_image(s, rgba, tile=32).size == (45 * 4, 37 * 4)  # in 4 tiles
    for model, image, direction, needle in [
            (t, None, "AtoB", "upload one"),
            (t, Image.new("L", (D.MAX_UPLOAD_SIDE + 1, 8)), "AtoB", "ganforge translate"),
            (t, rgba, "BtoA", "one way only"),
            (s, rgba, "BtoA", "no direction")]:
        with pytest.raises(GanforgeError, match=needle):
            D.convert_image(model, image, direction)


def test_vector_runs_show_a_scatter_plot(tmp_path):
    run = tmp_path / "toy"
    assert main(["train", "--preset", "toy", "--data", "ring8", "--max-steps", "2",
                 "--out", str(run), "-q", *COMMON]) == 0
    g = ganforge.load(run, device="cpu")
    im = D.scatter_image(g, seed=0, n=200)
    assert im.size == (512, 512)
    assert "vectors (ring8)" in D.describe_run(g)
    with pytest.raises(GanforgeError, match="number of points"):
        D.scatter_image(g, 0, 0)
    try:
        import gradio  # noqa: F401
    except ImportError:
        return
    page = D.build_demo(g)
    assert {f.api_name for f in page.fns.values()} == {"generate"}


# --- the page without a browser, the CLI's refusals -------------------------------------------


def test_build_demo_wires_the_functions(cond, pix2pix):
    gr = pytest.importorskip("gradio")
    page = D.build_demo(cond, device="cpu")
    fns = {f.api_name: f.fn for f in page.fns.values()}
    assert set(fns) == {"generate", "walk"}
    g = page.ganforge_model
    assert (np.asarray(fns["generate"](3, 10, D.BALANCED, 0))
            == np.asarray(D.grid_image(g, 3, 10))).all()
    with pytest.raises(gr.Error, match="number of samples"):
        fns["generate"](3, 0, D.BALANCED, 0)
    strip, gif = fns["walk"](0, 1, 3, "0", 0)
    assert Path(gif).suffix == ".gif" and strip.width >= 512
    page = D.build_demo(ganforge.load(pix2pix, device="cpu"))  # an already loaded model
    assert {f.api_name for f in page.fns.values()} == {"convert"}
    assert "preset **pix2pix**" in D.describe_run(page.ganforge_model)
    with pytest.raises(GanforgeError, match="loaded model"):
        D.build_demo(g, checkpoint="best")


def _one_error_line(capsys) -> str:
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_cli_without_gradio_names_the_install(cond, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    assert main(["demo", str(cond)]) == 2
    assert 'pip install "ganforge[demo]"' in _one_error_line(capsys)


def test_cli_refuses_bad_ports_hosts_and_runs(cond, tmp_path, capsys):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", str(cond), "--port", str(port)]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in _one_error_line(capsys)
    for args, needle in [(["--port", "0"], "from 1 to 65535"),
                         (["--port", "70000"], "from 1 to 65535"),
                         (["--host", "192.0.2.1"], "cannot listen on 192.0.2.1")]:
        assert main(["demo", str(cond), *args]) == 2
        assert needle in _one_error_line(capsys)
    assert main(["demo", str(tmp_path / "nope"), "--port", str(_free_port())]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_share_without_internet_keeps_the_page_local(cond, monkeypatch):
    pytest.importorskip("gradio")
    import gradio.networking
    import httpx

    def no_tunnel(*args, **kwargs):
        raise ConnectionError("no route to the share server")

    monkeypatch.setattr(gradio.networking, "setup_tunnel", no_tunnel)
    lines: list[str] = []
    served = D.launch(cond, port=_free_port(), share=True, device="cpu", block=False,
                      say=lines.append)
    try:
        assert served.share_url is None
        assert "could not create a share link" in lines[-1] and served.url in lines[-1]
        assert httpx.get(served.url, timeout=30).status_code == 200
    finally:
        served.close()


# --- the page in headless Chromium -------------------------------------------------------------

CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,1200"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through Selenium with Debian's chromedriver (no downloads)."""
    pytest.importorskip("gradio", reason='no Gradio: pip install "ganforge[demo]"')
    pytest.importorskip("selenium", reason="no Selenium: pip install selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no Chromium: apt-get install chromium chromium-driver")
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no usage stats
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in CHROME_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _wait(drv, fn, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, seconds, poll_frequency=0.2).until(fn)


def _image_width(drv, elem_id: str):
    """naturalWidth of the loaded <img> inside #elem_id, or None (falsy: keep waiting)."""
    return drv.execute_script(
        "const i = document.querySelector(arguments[0] + ' img');"
        "return i && i.src && i.complete && i.naturalWidth > 0 ? i.naturalWidth : null;",
        "#" + elem_id)


def _open(drv, served, preset: str) -> None:
    from selenium.webdriver.common.by import By

    drv.get(served.url)
    _wait(drv, lambda d: preset in d.find_element(By.ID, "header").text)
    assert "ganforge demo" in drv.title


def test_page_generates_a_grid_and_a_walk(browser, cond, tmp_path):
    from selenium.webdriver.common.by import By

    served = D.launch(cond, port=_free_port(), device="cpu", block=False, say=lambda s: None)
    try:
        _open(browser, served, "small-data-cond")
        assert _image_width(browser, "grid") is None
        browser.find_element(By.ID, "generate").click()
        assert _wait(browser, lambda d: _image_width(d, "grid")) == 2 * _grid_side(4)
        shot = tmp_path / "demo.png"
        assert browser.save_screenshot(str(shot))
        assert Image.open(shot).size[0] >= 1000
        if os.environ.get("GANFORGE_DEMO_SCREENSHOT"):
            dest = Path(os.environ["GANFORGE_DEMO_SCREENSHOT"])
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, dest)
        browser.find_element(By.XPATH, "//button[@role='tab'][contains(., 'Interpolation')]"
                             ).click()
        browser.find_element(By.ID, "walk").click()
        assert _wait(browser, lambda d: _image_width(d, "gif")) >= 256
        assert _image_width(browser, "strip") >= 512
    finally:
        served.close()


def test_page_translates_an_upload(browser, pix2pix, tmp_path):
    from selenium.webdriver.common.by import By

    png = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56), np.uint8)).save(png)
    served = D.launch(pix2pix, port=_free_port(), device="cpu", block=False,
                      say=lambda s: None)
    try:
        _open(browser, served, "pix2pix")
        upload = browser.find_element(By.CSS_SELECTOR, "#input input[type=file]")
        upload.send_keys(str(png))  # Chromedriver fills hidden file inputs too
        assert _wait(browser, lambda d: _image_width(d, "input")) == 56
        browser.find_element(By.ID, "convert").click()
        assert _wait(browser, lambda d: _image_width(d, "output")) == 56
    finally:
        served.close()
