"""The README's screenshot of `ganforge demo`: serves the page of a run, clicks Generate in
headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) and saves the page.

    python benchmarks/demo_screenshot.py runs/mine --out docs/demo.png

Needs the [demo] extra, selenium, and `apt-get install chromium chromium-driver`.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", default="docs/demo.png")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1150)
    args = ap.parse_args()

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from ganforge.demo import launch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = launch(args.run, port=port, device="cpu", block=False, say=lambda m: None)
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--window-size={args.width},{args.height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-')}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get(served.url)
        wait = WebDriverWait(drv, 120, poll_frequency=0.2)
        wait.until(lambda d: d.find_element(By.ID, "header").text)
        drv.find_element(By.ID, "generate").click()
        wait.until(lambda d: d.execute_script(
            "const i = document.querySelector('#grid img');"
            "return i && i.complete && i.naturalWidth > 0;"))
        drv.save_screenshot(args.out)
        print(f"wrote {args.out} ({served.url})")
    finally:
        drv.quit()
        served.close()


if __name__ == "__main__":
    main()
