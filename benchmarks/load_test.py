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

Writes a Markdown table (and the raw JSON) to --out. The harness (server, health probe, page driver) is sparseviz.app.harness; tests/test_load.py uses it too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sparseviz.app import protocol_client
from sparseviz.app.harness import (
    AHEAD, CHROMIUM, PHOTOS, HealthProbe, SessionRecord, attacks_ran, drive, serve,
)

ROOT = Path(__file__).resolve().parent.parent

# --- the benchmark --------------------------------------------------------------------------------


def queries_for(scenario: str, sessions: int, steps: int | None) -> list[dict[str, str]]:
    """``same``: the page as it opens (the shipped demo); ``distinct``: a different photo (then seed) per
    session; ``mixed``: half ask for the same live attack (chelsea), the other half for distinct ones.

    Live attacks use seeds from 1: every bundled photo's seed-0 run at the defaults is shipped
    precomputed (``sparseviz.app.shipped``), and this measures the pool. (Rows recorded before
    2026-12-07 16:30 UTC used seeds from 0, when only coffee was shipped.)"""
    extra = {} if steps is None else {"steps": str(steps)}
    if scenario == "same":  # the page as it opens: the default photo and settings
        return [dict(extra) for _ in range(sessions)]
    if scenario == "mixed":
        same = (sessions + 1) // 2
        others = [p for p in PHOTOS if p not in ("chelsea", "coffee")]
        return ([{"image": "chelsea", "seed": "1", **extra} for _ in range(same)]
                + [{"image": others[i % len(others)], "seed": str(1 + i // len(others)), **extra}
                   for i in range(sessions - same)])
    return [{"image": PHOTOS[i % len(PHOTOS)], "seed": str(1 + i // len(PHOTOS)), **extra}
            for i in range(sessions)]


def sequential_seconds(queries: list[dict[str, str]]) -> float:
    """The distinct attacks of ``queries`` one after another in this process, no server: the baseline."""
    import time

    import torch

    from sparseviz.attacks.sparse import SparseConfig, sparse_attack
    from sparseviz.images import to_tensor
    from sparseviz.images.gallery import load_bundled
    from sparseviz.models import load_model

    model = load_model("efficientnet_lite0", device="cpu")
    unique = {tuple(sorted(q.items())): q for q in queries}.values()
    start = time.perf_counter()
    for query in unique:
        image = model.preprocess(to_tensor(load_bundled(query.get("image", "coffee")).image))[None]
        label = model.predict_proba(image).argmax(dim=1)
        config = SparseConfig(seed=int(query.get("seed", 0)), **({"steps": int(query["steps"])} if "steps" in query
                                                                  else {}))
        sparse_attack(model, image, label, config=config)
    return time.perf_counter() - start


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
            timeout_s: float, clients: str = "browser") -> dict[str, Any]:
    drive_sessions = protocol_client.drive if clients == "protocol" else drive
    with serve(env, app=None if app == "app.py" else ROOT / app) as server, HealthProbe(server.url) as probe:
        started, records = drive_sessions(server.url, queries_for(scenario, sessions, steps), timeout_s=timeout_s)
        peak = server.peak_rss_mib()
        workers = server.workers_rss_mib()
        events = server.events()
    times = [r.seconds for r in records if r.seconds is not None]
    return {
        "scenario": scenario, "sessions": sessions, "clients": clients, "done": len(times),
        "median_s": statistics.median(times) if times else None, "max_s": max(times) if times else None,
        "waiting": waiting_summary(records), "peak_rss_mib": peak, "workers_rss_mib": workers,
        "attacks_ran": attacks_ran(events) if events else None, "health_worst_s": probe.worst(started),
        "health_worst_page_loads_s": probe.worst(), "health_median_s": statistics.median(probe.latencies),
        "health_failures": len(probe.failed_at), "exceptions": sum(r.exceptions for r in records),
        "pixels": sorted({r.pixels for r in records if r.pixels is not None}),
        "records": [asdict(r) for r in records], "job_events": events, "clicked_at": started,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| scenario | clients | sessions | got result | median s | max s | no server, one after another s "
            "| attacks ran | server peak RSS MiB | workers RSS MiB | worst health s | exceptions "
            "| what the pages showed while waiting "
            "|\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        sequential = f"{r['sequential_s']:.1f}" if "sequential_s" in r else "-"
        lines.append(
            f"| {r['scenario']} | {r.get('clients', 'browser')} | {r['sessions']} | {r['done']}/{r['sessions']} "
            f"| {r['median_s']:.1f} | {r['max_s']:.1f} "
            f"| {sequential} | {r['attacks_ran'] if r['attacks_ran'] is not None else 'n/a'} | {r['peak_rss_mib']:.0f} "
            f"| {r.get('workers_rss_mib', 0):.0f} | {r['health_worst_s']:.2f} | {r['exceptions']} | {r['waiting']} |\n")
    return head + "".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--scenario", choices=["same", "distinct", "mixed"], default="same")
    parser.add_argument("--sequential", action="store_true",
                        help="also time each row's distinct attacks one after another with no server (the baseline)")
    parser.add_argument("--steps", type=int, default=None, help="attack steps (default: the app's default)")
    parser.add_argument("--quick", action="store_true", help="start the app with SPARSEVIZ_QUICK=1")
    parser.add_argument("--warmup", action="store_true",
                        help="keep the server's start-up prefetch of the default flip (off by default, so the "
                             "pool's own work is measured)")
    parser.add_argument("--workers", type=int, default=None, help="SPARSEVIZ_WORKERS for the server (default: its own)")
    parser.add_argument("--clients", choices=["browser", "protocol"], default="browser",
                        help="Chromium pages, or script-level sessions speaking Streamlit's websocket protocol "
                             "(sparseviz/app/protocol_client.py: for more sessions than 2 cores can render)")
    parser.add_argument("--app", default="app.py", help="the Streamlit script (e.g. an older app.py to compare)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each row may take after the clicks")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-out" / "load")
    args = parser.parse_args(argv)
    if args.clients == "browser" and not CHROMIUM.exists():
        print("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)", file=sys.stderr)
        return 2
    env = {**({"SPARSEVIZ_QUICK": "1"} if args.quick else {}), **({} if args.warmup else {"SPARSEVIZ_NO_WARMUP": "1"}),
           **({} if args.workers is None else {"SPARSEVIZ_WORKERS": str(args.workers)})}
    rows = []
    for sessions in args.sessions:
        row = run_row(args.scenario, sessions, args.steps, env, args.app, args.timeout, args.clients)
        if args.sequential:
            row["sequential_s"] = sequential_seconds(queries_for(args.scenario, sessions, args.steps))
        rows.append(row)
        print(markdown([row]).splitlines()[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = (f"load_{args.scenario}{'_quick' if args.quick else ''}{'_warmup' if args.warmup else ''}"
            f"{'' if args.app == 'app.py' else '_' + Path(args.app).stem}"
            f"{'_protocol' if args.clients == 'protocol' else ''}")
    (args.out / f"{stem}.json").write_text(json.dumps(rows, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
