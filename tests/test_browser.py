"""A real Chromium against `streamlit run app.py`: run, look at the results, break an upload.

Writes test-artifacts/browser_timing.txt and screenshots result.png, interpretation.png,
compare.png, running.png (progress bar + Stop), stopped.png, bad_upload.png. Needs Debian's chromium (/usr/bin/chromium) and the playwright package.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
RESULT_TIMEOUT_MS = 240_000  # model load + a full default attack on a busy 2-core CPU

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}: {process.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)  # polling interval, bounded by the deadline
    raise TimeoutError(f"streamlit did not become healthy within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server():
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install playwright)")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


def _screenshot(page, name: str, height: int = 2600) -> None:
    """Streamlit scrolls inside its own container, so full_page misses content: grow the viewport instead."""
    page.set_viewport_size({"width": 1500, "height": height})
    page.wait_for_timeout(800)  # let plotly re-layout to the new size (bounded)
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size({"width": 1500, "height": 1100})


def test_browser_run_explain_and_bad_upload(server, tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            started = time.monotonic()
            page.goto(server, wait_until="domcontentloaded")
            run = page.get_by_role("button", name="Run attack")
            run.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("sees: top-5").wait_for(timeout=RESULT_TIMEOUT_MS)
            run.click()
            page.get_by_text("pixels changed").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            seconds = time.monotonic() - started
            (ARTIFACTS / "browser_timing.txt").write_text(f"page load to first result: {seconds:.1f} s\n")
            assert page.locator(".js-plotly-plot").count() >= 2
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, "result.png")

            page.get_by_role("tab", name="Why it works").click()
            page.get_by_text("shared scale").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            page.get_by_text("group ablation").first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, "interpretation.png")

            page.get_by_role("tab", name="Compare").click()
            page.get_by_role("button", name="Run PGD on the same image").click()
            page.get_by_text("PGD adversarial").first.wait_for(timeout=RESULT_TIMEOUT_MS)
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, "compare.png", height=1900)

            # a slow (targeted) run, stopped from the page: the best valid result so far is shown
            page.get_by_text("targeted", exact=True).click()
            page.get_by_role("button", name="Run attack").click()
            stop = page.locator(".st-key-stop_attack button")
            stop.wait_for(timeout=RESULT_TIMEOUT_MS)
            _screenshot(page, "running.png", height=1100)
            stop.click()
            page.get_by_text("Stopped", exact=False).first.wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, "stopped.png", height=1400)

            junk = tmp_path / "holiday.png"
            junk.write_bytes(b"this is not a picture\n" * 50)
            page.get_by_text("upload", exact=True).click()
            page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(junk))
            page.get_by_text("Cannot use this file").wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            _screenshot(page, "bad_upload.png", height=900)
        finally:
            browser.close()
