"""The instant demo in a real Chromium: the first visitor of a fresh `streamlit run app.py` sees the
default flip within seconds, without a click (the shipped result, checked on the server).

Writes test-artifacts/first_result.txt (page load to the result's numbers). Needs Debian's
chromium (/usr/bin/chromium) and the playwright package.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from sparseviz.app import harness, shipped

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
TARGET_S = 3.0  # the goal for a class's first visitor; measured and written down, not asserted (shared CPU)
# A live default attack takes 40+ s on this 2-core machine; the shipped result needs the page's
# imports, the model and one check (about 3-10 s here, depending on the other load), so 20 s
# separates the two even on a busy machine.
BOUND_S = 20.0


@pytest.fixture(scope="module")
def fresh_server():
    if not harness.CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    env = {"OMP_NUM_THREADS": "1", "SPARSEVIZ_NO_WARMUP": "0"}  # as a class would start it
    with harness.serve(env, app=ROOT / "app.py") as server:  # `streamlit run app.py`
        yield server


def test_first_visitor_sees_the_shipped_default_flip_at_once(fresh_server):
    from playwright.sync_api import sync_playwright

    expected = json.loads(shipped.all_shipped()[0].report.read_text())["result"]["l0_pixels"]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(harness.CHROMIUM), headless=True,
                                             args=["--headless", *harness.CHROMIUM_ARGS])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            started = time.monotonic()
            page.goto(fresh_server.url, wait_until="domcontentloaded")
            page.locator('[data-testid="stMetric"]', has_text="pixels changed").first.wait_for(timeout=120_000)
            seconds = time.monotonic() - started
            value = page.locator('[data-testid="stMetric"]', has_text="pixels changed").first.locator(
                '[data-testid="stMetricValue"]').inner_text()
            assert page.get_by_text("Precomputed with sparseviz").count() >= 1
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
    (ARTIFACTS / "first_result.txt").write_text(
        f"streamlit run app.py, first visitor, page load to the default flip's numbers: {seconds:.2f} s "
        f"(target {TARGET_S:g} s; python {sys.version.split()[0]})\n")
    assert int(value) == expected
    assert seconds <= BOUND_S, f"first result after {seconds:.1f} s: the shipped demo was not used"
