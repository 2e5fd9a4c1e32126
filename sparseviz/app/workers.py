"""Worker processes for the job pool: each runs one job at a time, away from the server's GIL.

Why: a sparse attack is a Python loop over small tensor operations; on worker threads it
competed with every session's script run for the server's GIL, and health checks answered in
seconds. A worker process (spawned, never forked: a forked torch with live threads can hang)
loads each model once, runs torch with its own thread count (one by default, as the audit
engines, so a result does not depend on which engine made it), and talks to its dispatcher
thread in the server over one pipe:

- server -> worker: a pickled :class:`~sparseviz.app.jobs.Task` (module-level function + plain data);
- worker -> server: ``("progress", fraction, text)`` snapshots, then ``("done", result)`` or
  ``("error", message)``; a shared Event set by the server asks the running job to stop.

A worker that dies mid-job (out of memory, a crash in native code) fails that job with one
line and is replaced before the next job; nothing is lost silently.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from multiprocessing.connection import Connection
from collections.abc import Mapping
from typing import Any, Callable, Protocol

from ..models.threads import ATTACK_THREADS

THREADS_ENV = "SPARSEVIZ_WORKER_THREADS"  # torch threads per worker process (default: the audit engines' count)
PROCESSES_ENV = "SPARSEVIZ_WORKER_PROCESSES"  # 0: run jobs on threads in the server (tests with patched registries)
POLL_SECONDS = 0.1  # how often a dispatcher checks its worker is alive and passes on a stop request
PROGRESS_SECONDS = 0.1  # at most this often a worker sends a progress snapshot
START_SECONDS = 300.0  # a worker that is not ready this long after its start (imports, warm-up) counts as failed


class Context(Protocol):
    def should_stop(self) -> bool: ...

    def report(self, fraction: float, text: str) -> None: ...


class JobError(RuntimeError):
    """A job's own error, raised in the worker and passed back as its one-line message."""


class WorkerCrashed(RuntimeError):
    """The worker process ended while running a job."""


def positive_count(name: str, env: Mapping[str, str] | None = None) -> int | None:
    """The whole number >= 1 in environment variable ``name`` (None when unset); a one-line error otherwise."""
    text = (os.environ if env is None else env).get(name, "").strip()
    if not text:
        return None
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number (1 or more); got {text!r}.") from None
    if count < 1:
        raise ValueError(f"{name} must be 1 or more; got {count}.")
    return count


def default_threads(env: Mapping[str, str] | None = None) -> int:
    """Torch threads per worker: ``SPARSEVIZ_WORKER_THREADS`` if set, else ``models.threads.ATTACK_THREADS`` (1),
    so the app's results equal the local audit's and the Ray workers'."""
    threads = positive_count(THREADS_ENV, env)
    return ATTACK_THREADS if threads is None else threads


def use_processes(env: dict[str, str] | None = None) -> bool:
    """Worker processes unless ``SPARSEVIZ_WORKER_PROCESSES=0``."""
    return (os.environ if env is None else env).get(PROCESSES_ENV, "1").strip() != "0"


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


class _WorkerContext:
    """The job's view inside the worker: the shared stop flag and a throttled progress pipe."""

    def __init__(self, conn: Connection, stop: Any) -> None:
        self._conn, self._stop, self._last = conn, stop, 0.0

    def should_stop(self) -> bool:
        return bool(self._stop.is_set())

    def report(self, fraction: float, text: str) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS or fraction >= 1.0:
            self._last = now
            self._conn.send_bytes(pickle.dumps(("progress", float(fraction), str(text))))


def _serve(conn: Connection, stop: Any, threads: int, warmup: Callable[[], None] | None) -> None:
    """A worker process's life: set its threads, warm up, then run jobs until the pipe closes."""
    import torch

    torch.set_num_threads(threads)
    if warmup is not None:
        try:
            warmup()
        except Exception:  # noqa: BLE001 - a failed warm-up only means the first job pays the cost
            pass
    try:
        conn.send_bytes(pickle.dumps(("ready", os.getpid())))
        while True:
            task = pickle.loads(conn.recv_bytes())
            if task is None:
                return
            try:
                reply: tuple[Any, ...] = ("done", task(_WorkerContext(conn, stop)))
            except Exception as error:  # noqa: BLE001 - a failed job is reported to its sessions
                reply = ("error", _one_line(error))
            try:
                data = pickle.dumps(reply)
            except Exception as error:  # noqa: BLE001
                data = pickle.dumps(("error", f"its result cannot be sent back from the worker: {_one_line(error)}"))
            conn.send_bytes(data)
    except (EOFError, OSError):
        return  # the server went away (its end of the pipe closed): nobody is left to answer


class ProcessWorker:
    """One worker process and the pipe to it, driven by one dispatcher thread of the pool."""

    def __init__(self, threads: int = 1, warmup: Callable[[], None] | None = None) -> None:
        self.threads = threads
        self._warmup = warmup
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._process: Any = None
        self._conn: Connection | None = None
        self._ready = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        """(Re)start the process if it is not running; returns at once (it warms up on its own)."""
        if self._process is not None and self._process.is_alive():
            return
        self._discard()
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(target=_serve, args=(child, self._stop, self.threads, self._warmup),
                                        name="sparseviz-worker", daemon=True)
        process.start()
        child.close()
        self._process, self._conn, self._ready = process, parent, False
        self.starts += 1

    def run(self, task: Any, ctx: Context) -> Any:
        """Run ``task`` in the process: pass on progress and stop requests; its result or an error.

        Raises :class:`JobError` with the job's own message, or :class:`WorkerCrashed` when the
        process died (it is restarted by the next :meth:`start`).
        """
        data = pickle.dumps(task)  # an unpicklable job fails here, in the server, with a clear error
        self.start()
        assert self._conn is not None
        self._stop.clear()
        started = time.monotonic()
        while not self._ready:  # the worker's first message says it has imported and warmed up
            if ctx.should_stop():
                return None  # stopped before it began: nothing to show, nothing lost
            message = self._receive(started)
            if message is not None and message[0] == "ready":
                self._ready = True
        self._conn.send_bytes(data)
        while True:
            if ctx.should_stop():
                self._stop.set()  # the job returns its best result so far at its next step
            message = self._receive(None)
            if message is None:
                continue
            if message[0] == "progress":
                ctx.report(message[1], message[2])
            elif message[0] == "done":
                return message[1]
            elif message[0] == "error":
                raise JobError(message[1])

    def _receive(self, started: float | None) -> tuple[Any, ...] | None:
        """The next message, None after a quiet poll; raises :class:`WorkerCrashed` if the process is gone."""
        assert self._conn is not None
        try:
            if self._conn.poll(POLL_SECONDS):
                message: tuple[Any, ...] = pickle.loads(self._conn.recv_bytes())
                return message
        except (EOFError, OSError):
            pass
        else:
            alive = self._process is not None and self._process.is_alive()
            if alive and (started is None or time.monotonic() - started < START_SECONDS):
                return None
        if self._process is not None:
            self._process.join(timeout=5)  # its pipe closes a moment before it can be reaped: wait for the exit code
        code = None if self._process is None else self._process.exitcode
        self._discard()
        raise WorkerCrashed(f"its worker process stopped unexpectedly (exit code {code}); a new worker replaces it, "
                            "so running it again may work")

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        self._process, self._conn, self._ready = None, None, False

    def close(self) -> None:
        """Ask the process to exit after its job and wait briefly, then end it."""
        if self._conn is not None:
            try:
                self._conn.send_bytes(pickle.dumps(None))
            except OSError:
                pass
        if self._process is not None:
            self._stop.set()
            self._process.join(timeout=10)
        self._discard()


__all__ = ["JobError", "PROCESSES_ENV", "ProcessWorker", "THREADS_ENV", "WorkerCrashed", "default_threads",
           "use_processes"]
