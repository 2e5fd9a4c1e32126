"""The server-wide job pool: FIFO, queue positions, shared cache, cancellation, replacement, exact results.

Jobs that must wait are held behind a gate (a threading.Event); every wait has a deadline.
"""

from __future__ import annotations

import threading

import pytest
import torch

from sparseviz.app import jobs
from sparseviz.attacks import SparseConfig, sparse_attack
from sparseviz.app.jobs import JobContext, JobPool

DEADLINE = 60.0  # seconds any single wait may take before the test fails


@pytest.fixture
def pool():
    pool = JobPool(1)
    yield pool
    pool.close()


class Recorder:
    """Work functions that note when they start; the first can be held behind a gate."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.gate = threading.Event()
        self.holding = threading.Event()

    def held(self, name: str):
        def work(ctx: JobContext) -> str:
            self.started.append(name)
            self.holding.set()
            assert self.gate.wait(DEADLINE), "gate never opened"
            return name
        return work

    def quick(self, name: str):
        def work(ctx: JobContext) -> str:
            self.started.append(name)
            return name
        return work


def _block_pool(pool: JobPool, recorder: Recorder) -> jobs.Job:
    """Occupy the single worker so later jobs queue."""
    job = pool.submit("holder", "gate", recorder.held("gate"))
    assert recorder.holding.wait(DEADLINE)
    return job


def _finish(*waiting: jobs.Job) -> None:
    for job in waiting:
        assert job.wait(DEADLINE), f"job {job.label} did not finish"


def test_fifo_order_and_consistent_positions(pool):
    recorder = Recorder()
    gate = _block_pool(pool, recorder)
    queued = [pool.submit(f"s{i}", f"k{i}", recorder.quick(f"k{i}"), label=f"k{i}") for i in range(4)]
    views = [pool.snapshot(job) for job in queued]
    assert [v.state for v in views] == ["queued"] * 4
    assert [v.ahead for v in views] == [0, 1, 2, 3]
    assert pool.snapshot(gate).state == "running" and pool.snapshot(gate).ahead is None
    recorder.gate.set()
    _finish(gate, *queued)
    assert recorder.started == ["gate", "k0", "k1", "k2", "k3"]
    assert [job.result for job in queued] == ["k0", "k1", "k2", "k3"]
    assert pool.stats()["ran"] == 5


def test_background_jobs_wait_behind_every_foreground_job(pool):
    recorder = Recorder()
    gate = _block_pool(pool, recorder)
    e1 = pool.submit("s1", "e1", recorder.quick("e1"), kind="explain", background=True)
    a2 = pool.submit("s2", "a2", recorder.quick("a2"), kind="attack")
    e3 = pool.submit("s3", "e3", recorder.quick("e3"), kind="explain", background=True)
    a4 = pool.submit("s4", "a4", recorder.quick("a4"), kind="attack")
    assert [pool.snapshot(job).ahead for job in (a2, a4, e1, e3)] == [0, 1, 2, 3]
    recorder.gate.set()
    _finish(gate, e1, a2, e3, a4)
    assert recorder.started == ["gate", "a2", "a4", "e1", "e3"]  # attacks first, each kind in its order


def test_identical_requests_cost_one_run(pool):
    recorder = Recorder()
    gate = _block_pool(pool, recorder)
    first = pool.submit("a", "same", recorder.quick("same"))
    second = pool.submit("b", "same", recorder.quick("same"))  # joins the queued one
    assert second is first and pool.snapshot(first).sharing == 2
    recorder.gate.set()
    _finish(gate, first)
    later = pool.submit("c", "same", recorder.quick("same"))  # served from the shared cache
    assert later.cached and later.state == "done" and later.result == "same"
    assert recorder.started.count("same") == 1
    assert pool.stats()["cache_hits"] == 1 and pool.stats()["joined"] == 1


def test_cancel_while_queued_never_runs(pool):
    recorder = Recorder()
    gate = _block_pool(pool, recorder)
    doomed = pool.submit("a", "doomed", recorder.quick("doomed"))
    after = pool.submit("b", "after", recorder.quick("after"))
    assert pool.cancel("a", doomed)
    assert doomed.state == "cancelled" and doomed.wait(0)
    assert pool.snapshot(after).ahead == 0  # positions close up
    recorder.gate.set()
    _finish(gate, after)
    assert "doomed" not in recorder.started
    # cancelling a job shared with another session only detaches the canceller
    shared = pool.submit("c", "shared", recorder.quick("shared"))
    pool.submit("d", "shared", recorder.quick("shared"))
    assert not pool.cancel("c", shared)
    _finish(shared)
    assert shared.state == "done" and recorder.started.count("shared") == 1


def test_second_click_replaces_the_first(pool):
    recorder = Recorder()
    gate = _block_pool(pool, recorder)
    first = pool.submit("a", "one", recorder.quick("one"))
    again = pool.submit("a", "one", recorder.quick("one"))
    assert again is first  # the same request twice is still one job
    second = pool.submit("a", "two", recorder.quick("two"))
    assert first.state == "cancelled" and pool.snapshot(second).ahead == 0
    recorder.gate.set()
    _finish(gate, second)
    assert recorder.started == ["gate", "two"]


def test_closed_session_job_is_dropped_before_it_runs():
    gone: set[str] = set()
    pool = JobPool(1, alive=lambda owner: owner not in gone)
    try:
        recorder = Recorder()
        gate = _block_pool(pool, recorder)
        orphan = pool.submit("closed-tab", "orphan", recorder.quick("orphan"))
        kept = pool.submit("open-tab", "kept", recorder.quick("kept"))
        gone.add("closed-tab")
        recorder.gate.set()
        _finish(gate, orphan, kept)
        assert orphan.state == "cancelled" and recorder.started == ["gate", "kept"]
    finally:
        pool.close()


def test_failed_job_reports_and_is_not_cached(pool):
    def broken(ctx: JobContext) -> None:
        raise ValueError("bad settings")

    job = pool.submit("a", "k", broken)
    _finish(job)
    assert job.state == "failed" and "bad settings" in str(job.error)
    recorder = Recorder()
    retry = pool.submit("a", "k", recorder.quick("k"))
    _finish(retry)
    assert retry.state == "done" and not retry.cached


def test_eta_follows_the_queue(pool):
    recorder = Recorder()
    warm = pool.submit("w", "warm", recorder.quick("warm"), kind="attack")
    _finish(warm)
    gate = pool.submit("holder", "gate", recorder.held("gate"), kind="attack")
    assert recorder.holding.wait(DEADLINE)
    queued = [pool.submit(f"s{i}", f"k{i}", recorder.quick(f"k{i}"), kind="attack") for i in range(3)]
    etas = [pool.snapshot(job).eta_seconds for job in queued]
    assert all(eta is not None for eta in etas)
    assert etas == sorted(etas)
    recorder.gate.set()
    _finish(gate, *queued)


def test_default_workers_from_env():
    assert jobs.default_workers({"SPARSEVIZ_WORKERS": "3"}) == 3
    assert jobs.default_workers({}) >= 1
    for bad in ("0", "two"):
        with pytest.raises(ValueError, match="SPARSEVIZ_WORKERS"):
            jobs.default_workers({"SPARSEVIZ_WORKERS": bad})


# --- with a real attack on the tiny model ---------------------------------------------------------


def _attack_work(model, images, labels, config, progress=None):
    def work(ctx: JobContext):
        return sparse_attack(model, images, labels, config=config, should_stop=ctx.should_stop,
                             progress=None if progress is None else lambda info: progress(ctx, info))
    return work


def test_pool_result_equals_a_direct_call(pool, tiny_model, tiny_images, one_torch_thread):
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    config = SparseConfig(steps=20, seed=4)
    direct = sparse_attack(tiny_model, tiny_images, labels, config=config)
    job = pool.submit("a", "tiny", _attack_work(tiny_model, tiny_images, labels, config))
    _finish(job)
    assert job.state == "done"
    assert torch.equal(job.result.adversarials, direct.adversarials)
    assert torch.equal(job.result.success, direct.success)


def test_cancel_while_running_stops_within_a_step(pool, tiny_model, tiny_images, one_torch_thread):
    labels = tiny_model.predict_proba(tiny_images).argmax(1)
    config = SparseConfig(steps=2000, seed=0).retuned(patience=2000)
    steps: list[int] = []
    reached, cancelled = threading.Event(), threading.Event()

    def progress(ctx: JobContext, info) -> None:
        if info.phase != "optimize":
            return
        steps.append(info.step)
        if info.step == 3:
            reached.set()
            assert cancelled.wait(DEADLINE)

    job = pool.submit("a", "long", _attack_work(tiny_model, tiny_images, labels, config, progress))
    assert reached.wait(DEADLINE)
    assert pool.cancel("a", job)
    cancelled.set()
    _finish(job)
    assert job.state == "stopped" and job.result.interrupted
    assert max(steps) <= 4, steps  # at most the step already under way
    assert pool.submit("b", "long", _attack_work(tiny_model, tiny_images, labels, SparseConfig(steps=1))).cached is False
