"""A server-wide bounded pool for the heavy work (attacks, explanations, sweeps, audits).

Why: a Streamlit server runs each session's script in its own thread, so thirty students
pressing "Run attack" together would start thirty attacks that slow each other down and
each hold their own memory. The pool runs at most ``workers`` jobs at once, first come
first served, and tells each waiting session where it stands. Identical requests (same
key: image, model, settings) share one run, in flight or finished, so a class running the
default demo costs one attack. Jobs are plain callables; the pool never imports the app.

With ``processes=True`` (the app's pool) each worker is a thread that hands :class:`Task` jobs
(a module-level function and plain data) to its own worker process (``sparseviz.app.workers``),
so the attacks' Python loops run outside the server's GIL, each with its own torch thread
count; progress and stop requests cross over a pipe. Other callables (closures over an
uploaded model) run on the thread itself, as every job does with ``processes=False``. The
number of workers comes from ``SPARSEVIZ_WORKERS`` when set, otherwise one per GPU, or half
the CPU cores (at least one) on a CPU.
"""

from __future__ import annotations

import heapq
import json
import os
import statistics
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Mapping

import torch

from .workers import ProcessWorker, positive_count

WORKERS_ENV = "SPARSEVIZ_WORKERS"
JOB_LOG_ENV = "SPARSEVIZ_JOB_LOG"  # optional JSON-lines file of job events (load tests, audits of a server)

QUEUED, RUNNING, DONE, STOPPED, CANCELLED, FAILED = "queued", "running", "done", "stopped", "cancelled", "failed"
FINISHED = frozenset({DONE, STOPPED, CANCELLED, FAILED})


def default_workers(env: Mapping[str, str] | None = None) -> int:
    """Workers for this machine: ``SPARSEVIZ_WORKERS`` if set, else 1 per GPU, else cores // 2 (at least 1)."""
    count = positive_count(WORKERS_ENV, env)
    if count is not None:
        return count
    if torch.cuda.is_available():
        return torch.cuda.device_count()
    return max(1, (os.cpu_count() or 2) // 2)


class JobContext:
    """What a running job sees: whether to stop, and where to report progress."""

    def __init__(self, job: Job, pool: JobPool) -> None:
        self._job = job
        self._pool = pool

    def should_stop(self) -> bool:
        """True once every session that asked for this job has stopped it or gone away."""
        return self._pool._should_stop(self._job)

    def report(self, fraction: float, text: str) -> None:
        """Latest progress, shown by every waiting session (``fraction`` in [0, 1])."""
        self._job.progress = (min(1.0, max(0.0, float(fraction))), text)


Work = Callable[[JobContext], Any]


@dataclass(frozen=True)
class Task:
    """A job as plain data, so a worker process can run it: ``function(ctx, *args)``.

    ``function`` must be importable by name (module level) and ``args`` picklable (tensors,
    names, config dataclasses). ``local`` keeps it on the server's thread (e.g. a model that
    cannot be pickled).
    """

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()
    local: bool = False

    def __call__(self, ctx: JobContext) -> Any:
        return self.function(ctx, *self.args)


@dataclass(eq=False)
class Job:
    """One unit of heavy work; sessions keep a reference and read its state and result."""

    id: int
    key: Hashable
    kind: str
    label: str
    work: Work | None
    owners: set[str] = field(default_factory=set)
    state: str = QUEUED
    result: Any = None
    error: BaseException | None = None
    progress: tuple[float, str] | None = None
    cached: bool = False  # served from the shared cache without running
    background: bool = False  # queued behind every foreground job (see JobPool.submit)
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished_state(self) -> bool:
        return self.state in FINISHED

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job has finished or ``timeout`` passed; True when finished."""
        return self._done.wait(timeout)


@dataclass(frozen=True)
class JobView:
    """A consistent snapshot of one job, for display."""

    state: str
    ahead: int | None  # queued jobs in front of it (0 = next), None unless queued
    eta_seconds: float | None  # estimated seconds until its result, None while no similar job has finished
    fraction: float
    text: str
    sharing: int  # sessions waiting on this job


class JobPool:
    """A fixed set of worker threads running submitted jobs in FIFO order, with a shared result cache.

    ``alive(owner)`` says whether a session is still connected; jobs whose sessions have
    all gone are dropped before they run and stopped while they run. ``warmup`` runs once in
    each worker before its first job, to pay first-use costs (imports, a thread's first
    autograd pass) before anyone waits on them.
    """

    def __init__(self, workers: int, *, cache_size: int = 64, alive: Callable[[str], bool] | None = None,
                 log_path: str | Path | None = None, history: int = 20,
                 warmup: Callable[[], None] | None = None, processes: bool = False, threads: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"a job pool needs at least one worker; got {workers}.")
        self.workers = workers
        self._alive = alive
        self._log_path = Path(log_path) if log_path else None
        self._cache_size = cache_size
        self._lock = threading.Condition()
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._pending: dict[Hashable, Job] = {}  # key -> unfinished job that new identical requests may join
        self._by_owner: dict[str, Job] = {}  # owner -> its one unfinished job
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()
        self._durations: dict[str, deque[float]] = {}
        self._history = history
        self._warmup = warmup
        self._next_id = 0
        self._last_reap = 0.0
        self._closed = False
        self.counts = {"submitted": 0, "ran": 0, "cache_hits": 0, "joined": 0, "cancelled": 0, "stopped": 0,
                       "failed": 0}
        self.processes = [ProcessWorker(threads, warmup) for _ in range(workers)] if processes else []
        self._threads = [threading.Thread(target=self._worker, args=(i,), name=f"sparseviz-job-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    # --- sessions' side ------------------------------------------------------------------------

    def submit(self, owner: str, key: Hashable, work: Work, *, kind: str = "job", label: str = "",
               background: bool = False) -> Job:
        """Ask for ``work``'s result under ``key``; replaces ``owner``'s earlier unfinished job.

        Returns at once: a finished job on a cache hit, the identical request already in
        flight (joined, it runs once), or a new job at the back of the queue. A
        ``background`` job (work a page starts on its own, e.g. the explanation of a result
        just shown) queues behind every queued foreground job, so a class's attacks are not
        held up by explanations nobody asked for yet; among themselves both keep their order.
        """
        with self._lock:
            self.counts["submitted"] += 1
            previous = self._by_owner.get(owner)
            if previous is not None and previous.key == key and not previous._stop.is_set():
                return previous
            if previous is not None:
                self._detach(owner, previous)
            if key in self._cache:
                self._cache.move_to_end(key)
                self.counts["cache_hits"] += 1
                job = self._new_job(key, kind, label, None)
                job.owners.add(owner)
                job.state, job.result, job.cached = DONE, self._cache[key], True
                job.started = job.finished = job.submitted
                job._done.set()
                self._log("cache_hit", job)
                return job
            joined = self._pending.get(key)
            if joined is not None:
                job = joined
                self.counts["joined"] += 1
                job.owners.add(owner)
                self._log("joined", job)
            else:
                job = self._new_job(key, kind, label, work)
                job.background = background
                job.owners.add(owner)
                behind = len(self._queue) if background else next(
                    (i for i, queued in enumerate(self._queue) if queued.background), len(self._queue))
                self._queue.insert(behind, job)
                self._pending[key] = job
                self._log("queued", job)
                self._lock.notify()
            self._by_owner[owner] = job
            return job

    def cancel(self, owner: str, job: Job) -> bool:
        """``owner`` no longer wants ``job``. True when the job ends because of it (nobody else waits on it)."""
        with self._lock:
            if job.finished_state or owner not in job.owners:
                return False
            self._detach(owner, job)
            return not job.owners

    def snapshot(self, job: Job) -> JobView:
        with self._lock:
            self._reap()
            ahead = None
            if job.state == QUEUED:
                ahead = next((i for i, queued in enumerate(self._queue) if queued is job), None)
            fraction, text = job.progress or (0.0, "")
            return JobView(job.state, ahead, self._eta(job), fraction, text, len(job.owners))

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self.counts, "queued": len(self._queue), "running": len(self._running)}

    def close(self) -> None:
        """Stop the workers after their current jobs; queued jobs are cancelled."""
        with self._lock:
            self._closed = True
            while self._queue:
                self._cancel_queued(self._queue[0])
            for job in self._running:
                job._stop.set()
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        for process in self.processes:
            process.close()

    # --- internals (call with the lock held) --------------------------------------------------------

    def _new_job(self, key: Hashable, kind: str, label: str, work: Work | None) -> Job:
        self._next_id += 1
        return Job(self._next_id, key, kind, label or kind, work)

    def _detach(self, owner: str, job: Job) -> None:
        job.owners.discard(owner)
        if self._by_owner.get(owner) is job:
            del self._by_owner[owner]
        if job.owners:
            return
        if job.state == QUEUED:
            self._cancel_queued(job)
        elif job.state == RUNNING and not job._stop.is_set():
            job._stop.set()  # the work returns its best result so far at its next step
            if self._pending.get(job.key) is job:
                del self._pending[job.key]  # a new identical request starts afresh
            self._log("stopping", job)

    def _forget(self, job: Job) -> None:
        """Drop a job that will not run (on) from the identical-request and per-session indexes."""
        if self._pending.get(job.key) is job:
            del self._pending[job.key]
        for owner in list(job.owners):
            if self._by_owner.get(owner) is job:
                del self._by_owner[owner]

    def _cancel_queued(self, job: Job) -> None:
        self._queue.remove(job)
        self._forget(job)
        job.state, job.finished, job.work = CANCELLED, time.monotonic(), None
        self.counts["cancelled"] += 1
        job._done.set()
        self._log("cancelled", job)

    def _reap(self, force: bool = False) -> None:
        """Drop sessions that went away (closed tabs); at most twice a second unless forced."""
        now = time.monotonic()
        if self._alive is None or (not force and now - self._last_reap < 0.5):
            return
        self._last_reap = now
        for job in [*self._queue, *self._running]:
            for owner in [o for o in job.owners if not self._alive(o)]:
                self._detach(owner, job)

    def _should_stop(self, job: Job) -> bool:
        if job._stop.is_set():
            return True
        with self._lock:
            self._reap()
        return job._stop.is_set()

    def _estimate(self, kind: str) -> float | None:
        durations = self._durations.get(kind) or [d for ds in self._durations.values() for d in ds]
        return statistics.median(durations) if durations else None

    def _eta(self, job: Job) -> float | None:
        """Seconds until ``job``'s result: the queue ahead of it laid onto the workers, using recent durations."""
        if job.finished_state:
            return 0.0
        now = time.monotonic()
        own = self._estimate(job.kind)
        if own is None:
            return None
        if job.state == RUNNING:
            return max(0.0, own - (now - (job.started or now)))
        free = [max(0.0, (self._estimate(r.kind) or own) - (now - (r.started or now))) for r in self._running]
        free += [0.0] * max(0, self.workers - len(free))
        heapq.heapify(free)
        for queued in self._queue:
            start = heapq.heappop(free)
            if queued is job:
                return start + own
            heapq.heappush(free, start + (self._estimate(queued.kind) or own))
        return None

    def _log(self, event: str, job: Job) -> None:
        if self._log_path is None:
            return
        line = {"t": round(time.time(), 3), "event": event, "job": job.id, "kind": job.kind, "label": job.label,
                "owners": len(job.owners), "queued": len(self._queue), "running": len(self._running)}
        with self._log_path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")

    # --- workers ----------------------------------------------------------------------------------

    def _worker(self, index: int) -> None:
        process = self.processes[index] if self.processes else None
        if process is None and self._warmup is not None:
            try:
                self._warmup()
            except Exception:  # noqa: BLE001 - a failed warm-up only means the first job pays the cost
                pass
        while True:
            if process is not None:
                process.start()  # at once, and again after a crash: the next job finds a worker warming up
            with self._lock:
                self._reap(force=True)
                while not self._queue and not self._closed:
                    self._lock.wait()
                    self._reap(force=True)
                if self._closed:
                    return
                job = self._queue.popleft()
                job.state, job.started = RUNNING, time.monotonic()
                self._running.append(job)
                self.counts["ran"] += 1
                self._log("started", job)
            result, error = None, None
            try:
                assert job.work is not None
                if process is not None and isinstance(job.work, Task) and not job.work.local:
                    result = process.run(job.work, JobContext(job, self))
                else:
                    result = job.work(JobContext(job, self))
            except Exception as caught:  # noqa: BLE001 - a failed job is reported to its sessions
                error = caught
            self._finish(job, result, error)

    def _finish(self, job: Job, result: Any, error: BaseException | None) -> None:
        with self._lock:
            self._running.remove(job)
            self._forget(job)
            job.finished = time.monotonic()
            job.result, job.error, job.work = result, error, None
            if error is not None:
                job.state = FAILED
                self.counts["failed"] += 1
            elif job._stop.is_set():
                job.state = STOPPED  # a partial result: shown to whoever stopped it, never cached
                self.counts["stopped"] += 1
            else:
                job.state = DONE
                self._cache[job.key] = result
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
                durations = self._durations.setdefault(job.kind, deque(maxlen=self._history))
                durations.append(job.finished - (job.started or job.finished))
            job._done.set()
            self._log(job.state, job)
