"""A harness for the app's server under load: start it on a loopback port, probe its health,
drive many Chromium pages (Playwright, Debian's /usr/bin/chromium) and read its job log.

Used by ``benchmarks/load_test.py`` (the numbers) and the system tests (``tests/test_load.py``,
``tests/test_browser.py``); Playwright is only needed by the functions that take a browser.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

APP_DIR = Path(__file__).resolve().parent  # entry.py and .streamlit/config.toml
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
    lines: list[str] = field(default_factory=list)  # its console so far (read by a thread, so the pipe never fills)

    def output(self) -> list[str]:
        return list(self.lines)

    def _read(self) -> None:
        for line in self.process.stdout or ():
            self.lines.append(line.rstrip("\n"))

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory so far (Linux VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def workers_rss_mib(self) -> float:
        """The resident memory of the server's child processes now (its job workers), summed (Linux)."""
        total = 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue  # a process that ended meanwhile
            parent = re.search(r"PPid:\s+(\d+)", text)
            rss = re.search(r"VmRSS:\s+(\d+) kB", text)
            if parent and rss and int(parent.group(1)) == self.process.pid:
                total += int(rss.group(1))
        return total / 1024

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
def serve(env: dict[str, str] | None = None, app: str | Path | None = None,
          start_timeout: float = 120.0) -> Iterator[Server]:
    """``streamlit run`` on a free loopback port, with a job log; stopped on exit.

    ``app`` None: this package's app (as ``sparseviz app`` runs it); else a script such as an
    older checkout's ``app.py``, run from its own folder so that folder's settings apply.
    """
    script = APP_DIR / "entry.py" if app is None else Path(app).resolve()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="sparseviz-load-") as tmp:
        job_log = Path(tmp) / "jobs.jsonl"
        inherited = {k: v for k, v in os.environ.items() if k != "SPARSEVIZ_WORKER_PROCESSES"}  # (tests set it)
        full_env = {**inherited, "SPARSEVIZ_JOB_LOG": str(job_log), **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port), "--server.address",
             "127.0.0.1", "--server.headless", "true"],
            cwd=APP_DIR if app is None else script.parent, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        server = Server(f"http://127.0.0.1:{port}", process, job_log)
        threading.Thread(target=server._read, name="sparseviz-server-console", daemon=True).start()
        try:
            deadline = time.monotonic() + start_timeout
            while True:
                if process.poll() is not None:
                    process.wait()
                    raise RuntimeError(f"streamlit exited with {process.returncode}: {' '.join(server.lines)[-2000:]}")
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
    """Ask a server to exit, and kill it if it has not within 15 s ."""
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
