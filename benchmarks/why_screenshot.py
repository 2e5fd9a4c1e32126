"""The "Why it works" tab at 1280x720 in Chromium: is a 50+ pixel explanation readable? (issue 27)

    python benchmarks/why_screenshot.py --query weight=0.25 --out docs/why_1280x720.png        # bundled coffee
    python benchmarks/why_screenshot.py --upload ../shared/imagenet-dev/n01677366_common_iguana.png --out /tmp/why.png

Starts ``streamlit run`` on a loopback port (sparseviz.app.harness), opens the page at
1280x720 in Debian's Chromium, runs the attack (a bundled photo through the query string, or
an uploaded photo), opens the Why tab, waits for the explanation and writes screenshots of
the viewport at the sentence, at the metrics (NAME-metrics.png) and at the maps (NAME-maps.png). Prints what it measured: the pixel count,
the sentence, the verdict, and the smallest font size (px) of the tab's text and of the
Plotly figures' text, for the readability check.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sparseviz.app.harness import launch, serve

FONT_SIZES_JS = """() => {
  const panel = [...document.querySelectorAll('[role="tabpanel"]')].find(p => !p.hidden && p.offsetParent);
  const sizes = (nodes) => [...nodes].filter(n => n.offsetParent || n.closest('svg'))
      .map(n => parseFloat(getComputedStyle(n).fontSize)).filter(s => s > 0);
  const text = sizes(panel.querySelectorAll('p, li, span, label, div[data-testid="stMetricValue"]'));
  const plot = sizes(panel.querySelectorAll('svg text'));
  return {text_min: Math.min(...text), plot_min: Math.min(...plot), plots: panel.querySelectorAll('.js-plotly-plot').length};
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--query", action="append", default=[], help="KEY=VALUE for the page's query string")
    parser.add_argument("--upload", type=Path, help="a photo to upload instead of a bundled one")
    parser.add_argument("--out", type=Path, required=True, help="the first screenshot (then NAME-metrics, NAME-maps)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    query = "&".join(args.query)
    timeout_ms = int(args.timeout * 1000)
    with serve() as server, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{server.url}/?{query}")
        page.get_by_role("button", name="Run attack").wait_for(timeout=timeout_ms)
        if args.upload:
            page.get_by_text("upload", exact=True).click()
            page.locator('input[type="file"]').first.set_input_files(str(args.upload))
            page.get_by_text("sees: top-5").wait_for(timeout=timeout_ms)
        start = time.monotonic()
        page.get_by_role("button", name="Run attack").click()
        page.get_by_role("tab", name="Why it works").wait_for(timeout=timeout_ms)
        attacked = time.monotonic() - start
        page.get_by_role("tab", name="Why it works").click()
        metric = page.get_by_text("split holds on this image")
        metric.wait_for(timeout=timeout_ms)
        explained = time.monotonic() - start - attacked
        page.wait_for_timeout(1500)  # let Plotly finish drawing before the screenshot
        sentence = page.locator('[role="tabpanel"]:not([hidden]) strong').first
        sentence.scroll_into_view_if_needed()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        top = "e => e.scrollIntoView({block: 'start'})"
        sentence.evaluate(top)
        page.mouse.wheel(0, -100)  # below the page's sticky header
        page.wait_for_timeout(500)
        page.screenshot(path=str(args.out.with_name(args.out.stem + "-metrics.png")))
        page.get_by_text("The four maps share").evaluate(top)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(args.out.with_name(args.out.stem + "-maps.png")))
        verdict = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
        fonts = page.evaluate(FONT_SIZES_JS)
        print(f"attack shown after {attacked:.1f} s, explanation after {explained:.1f} s more")
        print(f"sentence: {sentence.inner_text()}")
        print(f"metrics: {verdict}")
        print(f"fonts: {fonts}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
