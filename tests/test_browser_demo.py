"""The instant demo in a real Chromium: the first visitor of a fresh `streamlit run app.py` sees the
default flip within seconds, without a click (the shipped result, checked on the server).

Writes test-artifacts/first_result.txt (page load to the headline "espresso 95% -> ... with N
pixels", and to the big "pixels changed" number, which Chromium draws after the result's Plotly
figures). Needs Debian's chromium (/usr/bin/chromium) and the playwright package.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from sparseviz.app import harness, shipped

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
TARGET_S = 3.0  # the goal for a class's first visitor; measured and written down, not asserted (shared CPU)
# A live default attack takes 40+ s on this 2-core machine; the shipped result, once the server's
# start-up has loaded the page's imports, the model and its check, shows its headline 4-6 s after
# page load here with the CPU shared by other work (Streamlit's own page takes 2-4 s of that):
# 15 s separates the two.
BOUND_S = 15.0
READY_S = 180.0  # the server's start-up (imports, model, check) on a busy 2-core CPU


@pytest.fixture(scope="module")
def fresh_server():
    if not harness.CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    env = {"OMP_NUM_THREADS": "1", "SPARSEVIZ_NO_WARMUP": "0"}  # as a class would start it
    with harness.serve(env, app=ROOT / "app.py") as server:  # `streamlit run app.py`
        yield server


def _wait_ready(server: harness.Server) -> None:
    """Until the server prints that its start-up is done (a class's first visitor comes after the teacher
    started it); a page opened before that waits for the same work instead."""
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {server.process.returncode}")
        if any("ready for the first visitor" in line for line in server.output()):
            return
        time.sleep(0.25)  # polling the server's console, bounded by the deadline
    raise TimeoutError(f"the server's start-up did not finish within {READY_S:.0f} s")


def test_first_visitor_sees_the_shipped_default_flip_at_once(fresh_server):
    from playwright.sync_api import sync_playwright

    expected = json.loads(shipped.all_shipped()[0].report.read_text())["result"]["l0_pixels"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(harness.CHROMIUM), headless=True,
                                             args=["--headless", *harness.CHROMIUM_ARGS])
        try:
            _wait_ready(fresh_server)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            started = time.monotonic()
            page.goto(fresh_server.url, wait_until="domcontentloaded")
            headline = page.locator(".sv-headline", has_text="->").first
            headline.wait_for(timeout=120_000)
            seconds = time.monotonic() - started
            text = headline.inner_text()
            page.locator('[data-testid="stMetric"]', has_text="pixels changed").first.wait_for(timeout=120_000)
            number_seconds = time.monotonic() - started
            value = page.locator('[data-testid="stMetric"]', has_text="pixels changed").first.locator(
                '[data-testid="stMetricValue"]').inner_text()
            assert page.get_by_text("Precomputed with sparseviz").count() >= 1
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    (ARTIFACTS / "first_result.txt").write_text(
        f"streamlit run app.py, first visitor after the server's start-up: page load to the headline "
        f"{seconds:.2f} s (target {TARGET_S:g} s), to the 'pixels changed' number {number_seconds:.2f} s; "
        f"{text}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    assert int(value) == expected and f"with {expected} pixels" in text
    assert seconds <= BOUND_S, f"first result after {seconds:.1f} s: the shipped demo was not used"
