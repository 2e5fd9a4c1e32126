"""Audit page: the sparse attack over many images, and what it says about the model.

Widgets only; the work is library calls: ``audit_inputs`` (gallery, uploads, zip, with
their limits), ``audit_session.run_in_memory`` (``sparseviz audit``'s own run_audit and
write_audit), ``audit_views`` (figures) and ``audit_session.reopen`` (one image back in
the single-image view).
"""

from __future__ import annotations

import statistics
from typing import Any, cast

import streamlit as st

from .pool import cached_model, pooled
from ..audit import compare, compare_report, summary
from ..audit import inputs as audit_inputs
from ..audit import session as audit_session
from ..audit.survival import LIMIT_TEXT
from ..views import audit_charts
from ..views.text import one_line
from . import demo, jobs, settings, tasks
from ..attacks import SparseConfig
from ..images.folders import LoadedFolder
from ..models import DEFAULT_MODEL, MODELS, ImageClassifier, ModelError
from .widgets import option_widget

GALLERY = "bundled gallery"
UPLOAD = "upload files or a zip"
SHOWN = 4  # most / least fragile thumbnails


def inputs_ui() -> tuple[str, SparseConfig] | None:
    """Sidebar: model (and models to compare it with), images and attack settings; returns (model name, config)."""
    st.sidebar.header("Audit settings")
    names = [name for name, spec in MODELS.items() if spec.weights_available()]
    if not names:
        st.error("No model has its weights on this machine.")
        return None
    model_name = st.sidebar.selectbox("classifier", names, index=names.index(DEFAULT_MODEL) if DEFAULT_MODEL in names
                                      else 0, key="audit_model")
    st.sidebar.multiselect("compare with", [name for name in names if name != model_name], key="audit_compare",
                           help="Audit the same images with these models too: which needs fewer pixels (paired, "
                                "with a 95% interval), and do the adversarial images of one fool the other? "
                                "As `sparseviz audit --models`.")
    source = st.sidebar.radio("images", [GALLERY, UPLOAD], key="audit_source")
    if source == GALLERY:
        from ..images.gallery import bundled_images

        gallery = list(bundled_images())
        st.sidebar.multiselect("bundled photos", gallery, default=gallery, key="audit_gallery")
    else:
        limits = audit_inputs.BatchLimits()
        st.sidebar.file_uploader(
            "photos, or a .zip of photos", accept_multiple_files=True, key="audit_files",
            help=f"Up to {limits.max_files} images and {limits.max_total_bytes / 2**20:.0f} MiB in all; each file "
                 f"under the single-upload limit ({limits.image.max_bytes / 2**20:.0f} MiB). Archives inside a zip "
                 "are not opened; unreadable files are listed as skipped.")
    weight = option_widget(st.sidebar, SparseConfig, "sparsity_weight", key="audit_weight")
    steps = option_widget(st.sidebar, SparseConfig, "steps", key="audit_steps")
    seed = option_widget(st.sidebar, SparseConfig, "seed", key="audit_seed")
    st.sidebar.caption("Untargeted, one image at a time, as `sparseviz audit`; labels are the model's own clean "
                       "predictions.")
    if audit_session.ray_address() is not None:  # the server was started with SPARSEVIZ_AUDIT_RAY set
        st.sidebar.radio("engine", ["local", "ray"], horizontal=True, key="audit_engine",
                         help=f"ray: `sparseviz audit --engine ray` on {audit_session.ray_address()} "
                              "(runs to the end; Stop is for the local engine)")
    return model_name, settings.sparse_config(float(weight), int(steps), int(seed), quick=settings.quick_mode())


def collect() -> audit_inputs.Collected:
    if st.session_state.get("audit_source") == UPLOAD:
        files = st.session_state.get("audit_files") or []
        return audit_inputs.collect_uploads((f.name, f.getvalue()) for f in files)
    return audit_inputs.collect_gallery(st.session_state.get("audit_gallery") or [])


def audit_work(model: ImageClassifier, model_name: str, folder: LoadedFolder, collected: audit_inputs.Collected,
               config: SparseConfig, gallery: bool, ray_address: str | None,
               others: dict[str, tuple[ImageClassifier, LoadedFolder]] | None = None) -> jobs.Task:
    """The audit as a job on the server's shared pool, in a worker process (models go by name): progress
    per image, stops between images (the Ray engine, when chosen, runs to the end). ``others``:
    models to compare with, each with its own preprocessing of the same files."""
    folders = {model_name: folder, **{name: pair[1] for name, pair in (others or {}).items()}}
    return jobs.Task(tasks.audit, (model_name, str(model.device), folders, collected, config, gallery, ray_address,
                                   SHOWN))


def run_ui(model_name: str, config: SparseConfig, start: bool) -> None:
    """Queue the audit on the shared pool (``start``) or keep following this session's queued one.

    The page shows its place in the queue, then a progress bar and Stop (which keeps the images
    done); the finished or stopped run is kept in the session. Identical audits (same model,
    settings, engine and image bytes) from any session share one run.
    """
    waiting = st.session_state.get("job")
    if start:
        try:
            model = cached_model(model_name, "auto")
        except (ModelError, ValueError) as error:
            st.error(one_line(error))
            return
        collected = collect()
        folder = audit_inputs.decode(collected, model)
        if not folder.images:
            st.error("No usable images: " + ("; ".join(f"{n}: {r}" for n, r in folder.skipped[:5]) or "none chosen."))
            return
        address = audit_session.ray_address()
        on_ray = address if address is not None and st.session_state.get("audit_engine") == "ray" else None
        gallery = st.session_state.get("audit_source") == GALLERY
        compare_with = tuple(name for name in st.session_state.get("audit_compare") or [] if name != model_name)
        try:
            others = {name: (cached_model(name, "auto"), audit_inputs.decode(collected, cached_model(name, "auto")))
                      for name in compare_with}
        except (ModelError, ValueError) as error:
            st.error(one_line(error))
            return
        key: tuple = (model_name, config, settings.files_digest(collected.files), gallery, on_ray, compare_with)
        work: jobs.Work | None = audit_work(model, model_name, folder, collected, config, gallery, on_ray, others)
    elif waiting is not None and waiting.kind == "audit":  # this session's audit, queued before a rerun
        key, work = cast(tuple, waiting.key)[1:], None
    else:
        return
    job = pooled("audit", key, work, st.empty(), "The audit", start=start)
    if job is not None and job.state in (jobs.DONE, jobs.STOPPED) and job.result is not None:
        st.session_state["audit_run"] = job.result
    elif job is not None and job.state == jobs.CANCELLED:
        st.info("Stopped while queued: the audit never ran.")


def open_in_single_view(kept: audit_session.KeptAudit, row: dict[str, Any]) -> None:
    """Button callback: hand one image and its result to the single-image page and go there."""
    model = cached_model(kept.model, "auto")
    result = audit_session.reopen(model, kept.originals[row["image"]], kept.run, row)
    name = str(row["image"])
    st.session_state.update(settings.single_page_state(kept.config, kept.model, name, result, gallery=kept.gallery,
                                                       source=kept.sources.get(name)))


def thumbnails_ui(kept: audit_session.KeptAudit, rows: list[dict], title: str, key: str) -> None:
    st.markdown(f"**{title}**")
    if not rows:
        st.caption("none")
        return
    columns = st.columns(SHOWN)  # same thumbnail size whatever the count
    run = kept.run
    for number, (column, row) in enumerate(zip(columns, rows)):
        picture = run.file(audit_session.thumbnail_path(row) or str(row["adversarial_png"]))
        if picture is not None:
            column.image(picture, width="stretch")
        verdict = (f"{row['true_name']} -> {row['adv_name']} with **{row['pixels']} px**" if row["success"] == 1
                   else f"{row['true_name']}: **not fooled**")
        column.markdown(f"{row['image']}: {verdict}")
        if row["image"] in kept.originals:
            column.button("open in the single-image view", key=f"{key}_{number}", on_click=open_in_single_view,
                          args=(kept, row), width="stretch")


def comparison_ui(compared: audit_session.ComparedRun) -> None:
    """The models side by side: the paired table, the scatter, cross-transfer (the CLI's comparison report)."""
    comparison = compared.comparison
    st.subheader("Which model is more fragile?")
    st.caption(compare_report.NOTE)
    st.dataframe([dict(zip(compare_report.MODELS_HEADER[:-1], row[:-1]))
                  for row in compare_report.models_table({n: r.report for n, r in compared.runs.items()})],
                 width="stretch", hide_index=True, key="compare_models")
    st.dataframe([dict(zip(compare.PAIR_HEADER, row)) for row in compare.pair_table(comparison)], width="stretch",
                 hide_index=True, key="compare_pairs")
    for number, pair in enumerate(comparison.pairs):
        st.plotly_chart(audit_charts.paired_figure(comparison, pair.a, pair.b), width="stretch",
                        key=f"compare_scatter_{number}")
    st.markdown("**Cross-transfer**: the share of one model's adversarial images that also fool the other")
    st.dataframe([dict(zip(compare.transfer_header(comparison), row)) for row in compare.transfer_table(comparison)],
                 width="stretch", hide_index=True, key="compare_transfer")
    header, rows = compare_report.survival_by_model({n: r.report for n, r in compared.runs.items()})
    st.markdown("**Does it survive everyday processing?** (share of each model's flips still fooling it)")
    st.dataframe([dict(zip(header, row)) for row in rows], width="stretch", hide_index=True, key="compare_survival")
    columns = st.columns(2)
    columns[0].download_button("comparison.csv", compared.file("comparison.csv") or b"", "comparison.csv", "text/csv",
                               key="dl_compare_csv", width="stretch")
    columns[1].download_button("comparison report.html", compared.file("report.html") or b"", "comparison.html",
                               "text/html", key="dl_compare_html", width="stretch")


def results_ui(kept: audit_session.KeptAudit) -> None:
    run = kept.run
    report = run.report
    fooled, attacked = audit_session.success_rate(report)
    pixels = [r["pixels"] for r in report.flipped]
    big = st.container(key="big_audit").columns(4)
    big[0].metric("fooled", f"{fooled}/{attacked}")
    big[1].metric("success rate", demo.percent(fooled / attacked) if attacked else "-")
    big[2].metric("median pixels", f"{statistics.median(pixels):g}" if pixels else "-")
    big[3].metric("skipped files", len(report.skipped))
    if report.meta.get("stopped"):
        st.warning(f"Stopped: {report.meta['not_run']} image(s) were not attacked; everything below covers the "
                   f"{len(report.rows)} done.")
    st.plotly_chart(audit_charts.pixels_figure(report), width="stretch", key="audit_pixels")
    left, right = st.columns(2)
    left.markdown("**Summary with 95% intervals** (bootstrap over images)")
    left.dataframe([{"measure": m, "value [95% interval]": v} for m, v in summary.summary_table(report.rows)],
                   width="stretch", hide_index=True, key="audit_summary")
    right.markdown("**Does it survive everyday processing?**")
    right.dataframe([dict(zip(summary.SURVIVAL_HEADER, row)) for row in summary.survival_table(report.rows)],
                    width="stretch", hide_index=True, key="audit_survival")
    right.caption(LIMIT_TEXT)
    most, least = audit_session.extremes(report, SHOWN)
    thumbnails_ui(kept, most, "Most fragile (fewest pixels): original | adversarial | changed pixels", "open_most")
    thumbnails_ui(kept, least, "Least fragile (most pixels, or not fooled)", "open_least")
    left, right = st.columns(2)
    left.plotly_chart(audit_charts.flow_figure(report), width="stretch", key="audit_flow")
    if audit_charts.kind_shares(report):
        right.plotly_chart(audit_charts.kinds_figure(report), width="stretch", key="audit_kinds")
    st.dataframe(audit_charts.rows_table(report), width="stretch", hide_index=True, key="audit_table")
    if report.skipped:
        st.markdown("**Skipped files**")
        st.dataframe([{"file": name, "reason": reason} for name, reason in report.skipped], width="stretch",
                     hide_index=True, key="audit_skipped")
    st.markdown("**Keep it** (the same files `sparseviz audit` writes)")
    columns = st.columns(3)
    columns[0].download_button("audit.csv", run.file("audit.csv") or b"", "audit.csv", "text/csv", key="dl_audit_csv",
                               width="stretch")
    columns[1].download_button("report.html", run.file("report.html") or b"", "report.html", "text/html",
                               key="dl_audit_html", width="stretch")
    columns[2].download_button("everything (.zip, with thumbnails)", run.zip_bytes(), "sparseviz-audit.zip",
                               "application/zip", key="dl_audit_zip", width="stretch")
    if kept.compared is not None:
        comparison_ui(kept.compared)


def page() -> None:
    st.set_page_config(page_title="sparseviz audit", page_icon=":mag:", layout="wide")
    st.html(demo.PROJECTOR_CSS)
    st.title("Audit: how many pixels does each image take?")
    st.caption("The sparse attack over many images: which are most fragile, where the flips land, and what the "
               "changed pixels do. Pick the images in the sidebar and press **Run audit**.")
    chosen = inputs_ui()
    if chosen is None:
        return
    run_ui(*chosen, start=st.button("Run audit", type="primary", key="run_audit"))
    kept = st.session_state.get("audit_run")
    if kept is None:
        st.info("No audit yet in this session.")
        return
    results_ui(kept)

