"""Many browser sessions against one `streamlit run app.py`: what a class sharing one server sees.

Starts the app on a loopback port (a fresh server per row, so every row starts with an empty
cache), opens N Chromium pages (Debian's /usr/bin/chromium through Playwright), clicks
"Run attack" on all of them at once and records, per page: seconds from click to result,
the queue/progress lines the page showed while waiting, the pixel count shown, and
exception boxes. Alongside: the health endpoint's worst latency (probed every 0.2 s), the
server's peak RSS (VmHWM) and, from the server's job log (SPARSEVIZ_JOB_LOG), how many
attacks actually ran.

    python benchmarks/load_test.py --sessions 1 4 10 --scenario same       # the default demo for everyone
    python benchmarks/load_test.py --sessions 1 4 10 --scenario distinct   # a different photo per session

Writes a Markdown table (and the raw JSON) to --out. tests/test_load.py reuses these helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-background-timer-throttling",
                 "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"]
PHOTOS = ["chelsea", "coffee", "coins", "astronaut", "rocket", "horse", "grace_hopper", "camera", "china", "flower",
          "clock_motion"]
AHEAD = re.compile(r"(\d+) ahead of you|next in line")
PAGE_STATE_JS = """() => {
  const lines = [...document.querySelectorAll('[data-testid="stAlert"], [data-testid="stProgress"]')]
    .map(e => e.innerText.trim()).filter(t => t.length > 0);
  const metric = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .find(m => m.innerText.trim().startsWith('pixels changed'));
  const value = metric ? metric.querySelector('[data-testid="stMetricValue"]').innerText.trim() : null;
  return {lines, value, exceptions: document.querySelectorAll('[data-testid="stException"]').length};
}"""


# --- the server ---------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    job_log: Path

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory so far (Linux VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def events(self) -> list[dict[str, Any]]:
        if not self.job_log.exists():
            return []
        return [json.loads(line) for line in self.job_log.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_seconds(url: str, timeout: float = 5.0) -> float:
    """Seconds one GET of /_stcore/health took (raises when the server does not answer)."""
    started = time.perf_counter()
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as response:
        response.read()
    return time.perf_counter() - started


@contextmanager
def serve(env: dict[str, str] | None = None, app: str = "app.py", start_timeout: float = 120.0) -> Iterator[Server]:
    """`streamlit run app.py` on a free loopback port, with a job log; stopped on exit."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sparseviz-load-") as tmp:
        job_log = Path(tmp) / "jobs.jsonl"
        full_env = {**os.environ, "SPARSEVIZ_JOB_LOG": str(job_log), **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", app, "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true"],
            cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        server = Server(f"http://127.0.0.1:{port}", process, job_log)
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"streamlit exited with {process.returncode}: {process.stdout.read()[-2000:]}")  # type: ignore[union-attr]
                try:
                    health_seconds(server.url, timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"streamlit did not answer within {start_timeout:.0f} s") from None
                    time.sleep(0.25)  # polling for the server to come up, bounded by the deadline
            yield server
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen) -> None:
    """Ask a server to exit, and kill it if it has not within 15 s (shared with tests/test_browser.py)."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


class HealthProbe:
    """Polls the health endpoint every ``interval`` seconds in a thread; ``worst`` is the slowest answer."""

    def __init__(self, url: str, interval: float = 0.2) -> None:
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.times: list[float] = []  # time.monotonic() of each answer
        self.failed_at: list[float] = []  # time.monotonic() of each request that failed or took over 5 s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.latencies.append(health_seconds(self.url))
                self.times.append(time.monotonic())
            except OSError:
                self.failed_at.append(time.monotonic())

    def worst(self, since: float = 0.0) -> float:
        """The slowest answer received after ``since`` (a time.monotonic() value); inf if one failed."""
        if any(t >= since for t in self.failed_at):
            return float("inf")
        return max((lat for t, lat in zip(self.times, self.latencies) if t >= since), default=float("nan"))

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


# --- the sessions ---------------------------------------------------------------------------------


@dataclass
class SessionRecord:  # times are seconds since ``DriveResult.started``
    query: dict[str, str]
    clicked: float = 0.0  # seconds since the run started
    seconds: float | None = None  # click to result
    pixels: int | None = None
    exceptions: int = 0
    lines: list[str] = field(default_factory=list)  # distinct queue/progress lines, in the order shown

    @property
    def aheads(self) -> list[int]:
        """The "N ahead of you" numbers the page showed, in order (0 = next in line)."""
        found = [AHEAD.search(line) for line in self.lines]
        return [int(m.group(1)) if m.group(1) else 0 for m in found if m]


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)


def open_page(browser: Any, url: str, query: dict[str, str]) -> Any:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(f"{url}/?{urllib.parse.urlencode(query)}", wait_until="commit")
    return page


def wait_ready(page: Any, timeout_ms: int) -> None:
    page.get_by_text("sees: top-5").wait_for(timeout=timeout_ms)
    page.get_by_role("button", name="Run attack").wait_for(timeout=timeout_ms)


def page_state(page: Any) -> dict[str, Any]:
    return page.evaluate(PAGE_STATE_JS)


def drive(url: str, queries: list[dict[str, str]], *, timeout_s: float = 600.0) -> tuple[float, list[SessionRecord]]:
    """One page per query; all click "Run attack" together; polls every page until each shows its result.

    Returns the time.monotonic() of the first click (pages loaded, the pool idle) and one record per page.
    """
    from playwright.sync_api import sync_playwright

    records = [SessionRecord(query) for query in queries]
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            pages = [open_page(browser, url, query) for query in queries]
            for page in pages:
                wait_ready(page, int(timeout_s * 1000))
            started = time.monotonic()
            for page, record in zip(pages, records):
                page.get_by_role("button", name="Run attack").click()
                record.clicked = time.monotonic() - started
            deadline = started + timeout_s
            pending = set(range(len(pages)))
            while pending and time.monotonic() < deadline:
                for index in sorted(pending):
                    state = page_state(pages[index])
                    record = records[index]
                    record.exceptions = max(record.exceptions, state["exceptions"])
                    for line in state["lines"]:
                        if not record.lines or record.lines[-1] != line:
                            record.lines.append(line)
                    if state["value"] is not None:
                        record.seconds = time.monotonic() - started - record.clicked
                        record.pixels = int(state["value"])
                        pending.discard(index)
                pages[0].wait_for_timeout(100)  # polling interval, bounded by the deadline
        finally:
            browser.close()
    return started, records


def attacks_ran(events: list[dict[str, Any]]) -> int:
    return sum(1 for e in events if e["event"] == "started" and e["kind"] == "attack")


# --- the benchmark --------------------------------------------------------------------------------


def queries_for(scenario: str, sessions: int, steps: int | None) -> list[dict[str, str]]:
    extra = {} if steps is None else {"steps": str(steps)}
    if scenario == "same":  # the page as it opens: the default photo and settings
        return [dict(extra) for _ in range(sessions)]
    return [{"image": PHOTOS[i % len(PHOTOS)], **extra} for i in range(sessions)]


def waiting_summary(records: list[SessionRecord]) -> str:
    """What the pages showed while waiting, in words."""
    queued = [r for r in records if r.aheads]
    example = next((line.split(". This server")[0] for r in queued for line in r.lines if AHEAD.search(line)), None)
    bars = sum(1 for r in records if any("step" in line for line in r.lines))
    parts = []
    if queued:
        parts.append(f"{len(queued)} queued (max {max(max(r.aheads) for r in queued)} ahead), e.g. \"{example}\"")
    parts.append(f"{bars} saw the progress bar")
    return "; ".join(parts)


def run_row(scenario: str, sessions: int, steps: int | None, env: dict[str, str], app: str,
            timeout_s: float) -> dict[str, Any]:
    with serve(env, app=app) as server, HealthProbe(server.url) as probe:
        started, records = drive(server.url, queries_for(scenario, sessions, steps), timeout_s=timeout_s)
        peak = server.peak_rss_mib()
        events = server.events()
    times = [r.seconds for r in records if r.seconds is not None]
    return {
        "scenario": scenario, "sessions": sessions, "done": len(times),
        "median_s": statistics.median(times) if times else None, "max_s": max(times) if times else None,
        "waiting": waiting_summary(records), "peak_rss_mib": peak,
        "attacks_ran": attacks_ran(events) if events else None, "health_worst_s": probe.worst(started),
        "health_worst_page_loads_s": probe.worst(), "health_median_s": statistics.median(probe.latencies),
        "health_failures": len(probe.failed_at), "exceptions": sum(r.exceptions for r in records),
        "pixels": sorted({r.pixels for r in records if r.pixels is not None}),
        "records": [asdict(r) for r in records],
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | sessions | got result | median s | max s | attacks ran | peak RSS MiB | worst health s "
            "| exceptions | what the pages showed while waiting |\n|---|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['scenario']} | {r['sessions']} | {r['done']}/{r['sessions']} | {r['median_s']:.1f} | {r['max_s']:.1f} "
        f"| {r['attacks_ran'] if r['attacks_ran'] is not None else 'n/a'} | {r['peak_rss_mib']:.0f} "
        f"| {r['health_worst_s']:.2f} | {r['exceptions']} | {r['waiting']} |\n"
        for r in rows
    )
    return head + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--scenario", choices=["same", "distinct"], default="same")
    parser.add_argument("--steps", type=int, default=None, help="attack steps (default: the app's default)")
    parser.add_argument("--quick", action="store_true", help="start the app with SPARSEVIZ_QUICK=1")
    parser.add_argument("--warmup", action="store_true",
                        help="keep the server's start-up prefetch of the default flip (off by default, so the "
                             "pool's own work is measured)")
    parser.add_argument("--app", default="app.py", help="the Streamlit script (e.g. an older app.py to compare)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each row may take after the clicks")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "load")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2
    env = {**({"SPARSEVIZ_QUICK": "1"} if args.quick else {}), **({} if args.warmup else {"SPARSEVIZ_NO_WARMUP": "1"})}
    rows = []
    for sessions in args.sessions:
        row = run_row(args.scenario, sessions, args.steps, env, args.app, args.timeout)
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"load_{args.scenario}{'_quick' if args.quick else ''}{'_warmup' if args.warmup else ''}{'' if args.app == 'app.py' else '_' + Path(args.app).stem}"
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
