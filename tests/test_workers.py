"""The job pool on worker processes: results, progress, stop, errors, a crashing worker, dedupe, threads.

Tiny module-level jobs (no model); one pool with one spawned worker is shared by the module,
since starting a worker (it imports torch) takes seconds on a busy 2-core machine.
"""

from __future__ import annotations

import os
import threading
import time

import pytest
import torch

from sparseviz.app import jobs, workers
from sparseviz.app.jobs import JobPool, Task

pytestmark = pytest.mark.slow  # spawns processes that import torch
DEADLINE = 120.0  # seconds any single wait may take before the test fails


def square(ctx: jobs.JobContext, value: int) -> int:
    ctx.report(1.0, "squared")
    return value * value


def facts(ctx: jobs.JobContext) -> tuple[int, int]:
    return os.getpid(), torch.get_num_threads()


def until_stopped(ctx: jobs.JobContext, steps: int) -> str:
    for step in range(steps):
        if ctx.should_stop():
            return f"stopped at {step}"
        ctx.report(step / steps, f"step {step}")
        time.sleep(0.05)
    return "ran to the end"


def fails(ctx: jobs.JobContext) -> None:
    raise ValueError("this photo is \n too small")


def dies(ctx: jobs.JobContext) -> None:
    os._exit(1)


@pytest.fixture(scope="module")
def pool():
    pool = JobPool(1, processes=True, threads=1)
    yield pool
    pool.close()


def _done(job: jobs.Job) -> jobs.Job:
    assert job.wait(DEADLINE), f"job {job.label} did not finish"
    return job


def test_a_task_runs_in_a_worker_process_with_one_torch_thread(pool):
    job = _done(pool.submit("a", "square", Task(square, (7,))))
    assert job.state == jobs.DONE and job.result == 49 and job.progress == (1.0, "squared")
    pid, threads = _done(pool.submit("a", "facts", Task(facts))).result
    assert pid != os.getpid() and pid == pool.processes[0].pid and threads == 1


def test_identical_requests_share_one_run_and_the_cache(pool):
    before = pool.stats()["ran"]
    first = pool.submit("a", ("slow", 20), Task(until_stopped, (20,)))
    second = pool.submit("b", ("slow", 20), Task(until_stopped, (20,)))
    assert first is second and len(first.owners) == 2
    assert _done(first).result == "ran to the end"
    third = pool.submit("c", ("slow", 20), Task(until_stopped, (20,)))
    assert third.cached and third.result == "ran to the end" and pool.stats()["ran"] == before + 1


def test_progress_crosses_over_and_stop_reaches_the_worker(pool):
    job = pool.submit("a", "long", Task(until_stopped, (2000,)))
    deadline = time.monotonic() + DEADLINE
    while (job.progress is None or job.progress[0] <= 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert job.progress is not None and job.progress[1].startswith("step ")
    assert pool.snapshot(job).state == jobs.RUNNING
    assert pool.cancel("a", job)
    assert _done(job).state == jobs.STOPPED and job.result.startswith("stopped at")


def test_a_job_s_error_is_one_line_and_the_worker_lives_on(pool):
    pid = pool.processes[0].pid
    job = _done(pool.submit("a", "fails", Task(fails)))
    assert job.state == jobs.FAILED and str(job.error) == "this photo is too small"
    assert _done(pool.submit("a", "after error", Task(facts))).result[0] == pid


def test_a_crashed_worker_fails_its_job_and_is_replaced(pool):
    pid = pool.processes[0].pid
    starts = pool.processes[0].starts
    crashed = _done(pool.submit("a", "dies", Task(dies)))
    assert crashed.state == jobs.FAILED and isinstance(crashed.error, workers.WorkerCrashed)
    assert "stopped unexpectedly (exit code 1)" in str(crashed.error)
    again = _done(pool.submit("a", "after crash", Task(facts)))
    assert again.state == jobs.DONE and again.result[0] not in (pid, os.getpid())
    assert pool.processes[0].starts == starts + 1
    assert pool.stats()["failed"] >= 1


def test_an_unpicklable_task_fails_with_a_message_and_closures_run_on_the_thread(pool):
    lock = threading.Lock()
    job = _done(pool.submit("a", "unpicklable", Task(square, (lock,))))
    assert job.state == jobs.FAILED and "pickle" in str(job.error)
    closure = _done(pool.submit("a", "closure", lambda ctx: os.getpid()))
    assert closure.result == os.getpid()  # a plain callable (e.g. over an uploaded model) runs in the server


def test_settings_from_the_environment():
    assert workers.default_threads({}) == 1 and workers.default_threads({workers.THREADS_ENV: "2"}) == 2
    with pytest.raises(ValueError, match="SPARSEVIZ_WORKER_THREADS"):
        workers.default_threads({workers.THREADS_ENV: "zero"})
    assert workers.use_processes({}) and not workers.use_processes({workers.PROCESSES_ENV: "0"})
