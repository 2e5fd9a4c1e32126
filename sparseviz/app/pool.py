"""Streamlit wiring of the server-wide job pool (``sparseviz.app.jobs``), shared by the app's pages.

The pool runs its jobs in worker processes (``sparseviz.app.workers``; ``SPARSEVIZ_WORKER_PROCESSES=0``
keeps them on threads in the server, ``SPARSEVIZ_WORKER_THREADS`` sets each worker's torch threads).

Every heavy call of a page (attack, explanation, PGD, sweep, audit) goes through
:func:`pooled`: it queues the work as the session's one job, shows "queued, 3 ahead of you,
about 20 s" and then the job's progress bar with a Stop button, and returns the finished job.
"""

from __future__ import annotations

import os
from typing import Any

import streamlit as st
import torch
from streamlit.runtime.scriptrunner import get_script_run_ctx

from . import jobs, tasks, workers
from ..models import ImageClassifier, load_model

POLL_SECONDS = 0.25  # how often a waiting page refreshes its queue position / progress bar


def session_alive(session_id: str) -> bool:
    """Whether a browser tab is still connected to the session (a closed tab's queued job is dropped)."""
    from streamlit.runtime import Runtime

    return not Runtime.exists() or bool(Runtime.instance().is_active_session(session_id))


@st.cache_resource(show_spinner="Loading model...")
def cached_model(name: str, device: str) -> ImageClassifier:
    """One model per (name, device) for the whole server, shared read-only by every page and session."""
    return load_model(name, device=device)


@st.cache_resource(show_spinner=False)
def job_pool() -> jobs.JobPool:
    """The one pool of this server process: every session's heavy work queues here."""
    return jobs.JobPool(jobs.default_workers(), alive=session_alive, log_path=os.environ.get(jobs.JOB_LOG_ENV),
                        warmup=tasks.warm_worker, processes=workers.use_processes(),
                        threads=workers.default_threads())


def session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else "local"


def queue_text(view: jobs.JobView, what: str, workers: int) -> str:
    ahead = "next in line" if view.ahead == 0 else f"{view.ahead} ahead of you"
    eta = "" if view.eta_seconds is None else f", about {max(1, round(view.eta_seconds))} s"
    shared = f" (shared with {view.sharing - 1} other session(s) asking for the same)" if view.sharing > 1 else ""
    return (f"{what} queued, {ahead}{eta}{shared}. This server runs {workers} heavy job(s) at a time "
            f"for everyone; identical requests share one run.")


def follow(job: jobs.Job, place: Any, what: str) -> bool:
    """Show ``job``'s place in the queue, then its progress bar, until it ends; False if the user left it.

    The script waits here in short slices and redraws each time: a click anywhere makes
    Streamlit interrupt it at that redraw and rerun the page, which comes back here while the
    job is unfinished. Stop cancels a queued job (it never runs) and stops a running one at
    its next step, unless other sessions wait on the same job: then only this one leaves it.
    """
    if job.finished_state:
        return True
    pool = job_pool()
    with place.container():
        left, right = st.columns([5, 1], vertical_alignment="center")
        line = left.empty()
        stop = right.button("Stop", key=f"stop_{job.kind}", width="stretch")
    if stop and not pool.cancel(session_id(), job) and not job.finished_state:
        place.info(f"You stopped waiting; {what.lower()} goes on for the other session(s) that asked for it.")
        return False
    while not job.wait(POLL_SECONDS):
        view = pool.snapshot(job)
        if view.state == jobs.QUEUED:
            line.info(queue_text(view, what, pool.workers))
        else:
            line.progress(view.fraction, text=view.text or f"{what} running...")
    place.empty()
    return True


BACKGROUND_KINDS = frozenset({"explain"})  # started by the page itself when a result is shown (the Why tab)


def submit_job(kind: str, key: tuple, work: jobs.Work) -> jobs.Job:
    """Queue ``work`` on the shared pool as this session's one job (replacing its unfinished one).

    Explanations queue behind every waiting attack (``BACKGROUND_KINDS``): each result page
    starts one on its own, and with a class on one server they would otherwise double the
    wait for everyone's first result.
    """
    job_key = (kind, *key)
    job = job_pool().submit(session_id(), job_key, work, kind=kind, label=" ".join(map(str, job_key)),
                            background=kind in BACKGROUND_KINDS)
    st.session_state["job"] = job
    return job


def pooled(kind: str, key: tuple, work: jobs.Work | None, place: Any, what: str, *, start: bool) -> jobs.Job | None:
    """This session's finished job for ``(kind, *key)``, run on the shared pool; None if not asked for.

    ``start`` submits it (replacing this session's other unfinished job); after a rerun the
    session's unfinished job with this key is followed again without a new click.
    """
    job: jobs.Job | None = st.session_state.get("job")
    if job is None or job.key != (kind, *key):
        if not start or work is None:
            return None
        job = submit_job(kind, key, work)
    if not follow(job, place, what):
        st.session_state.pop("job", None)
        return None
    if st.session_state.get("job") == job:
        del st.session_state["job"]
    if job.state == jobs.FAILED:
        error = job.error or RuntimeError("unknown error")
        place.error(f"{what} failed: {' '.join(str(error).split()) or type(error).__name__}")
    return job
