"""Server start-up for ``streamlit run app.py``: the page's imports, the model, the shipped demo's
check and the worker processes, before the first visitor arrives.

Why: Streamlit runs a page script only when a browser connects, so the first visitor of a
fresh server used to wait for torch's imports, the model and the pool's start (tens of
seconds on a busy 2-core machine) before the shipped demo could be shown. The root
``app.py`` declares a Streamlit ``App`` whose lifespan calls :func:`start`; the same work
then happens in a background thread as the server comes up, and the first page run finds it done.
"""

from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

ENTRY = str(Path(__file__).resolve().with_name("entry.py"))  # the page script every session runs

_started: threading.Thread | None = None
_lock = threading.Lock()


def _load() -> None:
    started = time.perf_counter()
    from . import main, warmup  # the page's imports (torch, torchvision, plotly): most of the cost
    import pandas  # noqa: F401 - Streamlit's tables import it at the first dataframe (seconds on a busy CPU)
    import pyarrow  # noqa: F401
    from .pool import job_pool

    future = warmup.start()  # the default model, and its shipped demo checked (or attacked, if that fails)
    if future is not None:
        future.exception()  # first the demo, then the workers (on two cores they would slow each other)
    job_pool()  # the worker processes warm up now, not during the first visit
    print(f"sparseviz: ready for the first visitor after {time.perf_counter() - started:.1f} s "
          f"({main.__name__} loaded)", flush=True)


def start() -> threading.Thread:
    """Begin the start-up work once per process, in a daemon thread; returns that thread."""
    global _started
    with _lock:
        if _started is None:
            _started = threading.Thread(target=_load, name="sparseviz-preload", daemon=True)
            _started.start()
        return _started


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """The Streamlit App's lifespan: start the preload and serve at once (pages work while it runs)."""
    start()
    yield


__all__ = ["ENTRY", "lifespan", "start"]
