"""A real Chromium drives the Audit page's model comparison and the single-image view's survival panel.

Two bundled photos, audited on EfficientNet-Lite0 and compared with Lite1 (quick mode: the attack
skips its refinements, so the run fits a busy 2-core machine; the comparison itself is the same
code). Writes test-artifacts/compare_1280x720.png and survive_1280x720.png, and the page's
comparison.csv. Needs Debian's chromium (/usr/bin/chromium), playwright and the Lite1 weights.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from sparseviz.app.harness import CHROMIUM, free_port, health_seconds, launch, stop_process
from sparseviz.models import MODELS

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
PHOTOS = ("chelsea.png", "coffee.png")
AUDIT_TIMEOUT_MS = 900_000  # four quick attacks, two model loads, on a shared 2-core CPU

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@contextmanager
def _app_server(env: dict[str, str]) -> Iterator[str]:
    """`sparseviz app` on a loopback port (as tests/test_browser.py starts it), stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sparseviz.cli", "app", "--port", str(port), "--", "--server.address", "127.0.0.1",
         "--server.headless", "true"], cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health_seconds(url, timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the app server did not start") from None
                time.sleep(0.5)  # polling for the server, bounded by the deadline
        yield url
    finally:
        stop_process(process)


def _at_top(page, locator, name: str) -> None:
    """What a 1280x720 screen shows once ``locator`` is scrolled to its top."""
    page.set_viewport_size({"width": 1280, "height": 720})
    page.wait_for_timeout(800)  # re-layout (bounded)
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # (bounded)
    page.screenshot(path=str(ARTIFACTS / name))


def test_audit_page_compares_two_models_and_the_panel_shows(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    if not MODELS["efficientnet_lite1"].weights_available():
        pytest.skip("the efficientnet-lite1 weights are not installed")
    ARTIFACTS.mkdir(exist_ok=True)
    with _app_server({"SPARSEVIZ_QUICK": "1", "SPARSEVIZ_NO_WARMUP": "1", "OMP_NUM_THREADS": "1"}) as url, \
            sync_api.sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, wait_until="commit")
            page.get_by_role("link", name="Audit").click()
            page.get_by_text("upload files or a zip").click()
            uploader = page.locator('[data-testid="stFileUploader"] input[type="file"]')
            uploader.set_input_files([str(ROOT / "sparseviz" / "assets" / name) for name in PHOTOS])
            page.get_by_text(PHOTOS[-1]).first.wait_for(timeout=60_000)
            page.locator(".st-key-audit_compare").click()
            page.get_by_role("option", name="efficientnet_lite1").click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Run audit").click()
            heading = page.get_by_text("Which model is more fragile?")
            heading.wait_for(timeout=AUDIT_TIMEOUT_MS)
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=60_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            _at_top(page, heading, "compare_1280x720.png")
            with page.expect_download(timeout=60_000) as download:
                page.get_by_role("button", name="comparison.csv").click()
            download.value.save_as(str(ARTIFACTS / "compare_page.csv"))
            with (ARTIFACTS / "compare_page.csv").open() as handle:
                rows = list(csv.DictReader(handle))
            assert sorted(r["image"] for r in rows) == sorted(PHOTOS)
            assert {"pixels_efficientnet_lite0", "pixels_efficientnet_lite1",
                    "transfer_efficientnet_lite0_to_efficientnet_lite1"} <= set(rows[0])

            page.get_by_role("button", name="open in the single-image view").first.click()
            try:
                page.locator(".st-key-big_numbers").first.wait_for(timeout=300_000)  # the single-image view
                panel = page.get_by_role("heading", name="Does it survive?")
                panel.wait_for(timeout=120_000)
                page.get_by_text("copies still fool the model").wait_for(timeout=60_000)
            except Exception:
                page.set_viewport_size({"width": 1280, "height": 2400})
                page.screenshot(path=str(ARTIFACTS / "survive_failed.png"))
                raise
            assert page.locator('[data-testid="stException"]').count() == 0
            _at_top(page, panel, "survive_1280x720.png")
        finally:
            browser.close()
