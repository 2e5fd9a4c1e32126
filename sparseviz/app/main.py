"""sparseviz Streamlit app: how few pixels fool an image classifier, and why.

Run with ``streamlit run app.py``. The page only draws widgets and results; every number
comes from one library call (``sparse_attack``, ``pgd``, ``interpret.explain``,
``experiments.sparsity_sweep``, ``experiments.transfer``) and every figure from ``views``.

Heavy work (attacks, explanations, PGD, sweeps) runs on one server-wide pool of worker
processes (``sparseviz.app.jobs``, the job functions in ``sparseviz.app.tasks``;
``SPARSEVIZ_WORKERS`` sets how many): each session sees its place in the queue, then a
progress bar, and identical requests from any session share one run. The default demo and
the "Try these" presets show a result computed ahead of time (``sparseviz.app.shipped``)
once it checks out on this server.

Model-file uploads (TorchScript / torch.export) run their author's code, so they are off
unless the server was started with ``SPARSEVIZ_TRUST_MODEL_UPLOADS=1`` or
``streamlit run app.py -- --trust-model-uploads``.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any, cast

import streamlit as st
import torch

from ..attacks import SparseConfig
from ..attacks.base import AttackResult
from ..audit import experiments
from ..explain.proof import VERDICTS
from ..images import ImageLoadError, LoadedImage, load_upload, to_pil, to_tensor
from ..images.gallery import bundled_images, load_bundled
from ..models import (
    DEFAULT_MODEL, MODELS, ImageClassifier, ModelError, load_user_model, other_models, resolve_device, user_model_info,
)
from ..views import charts
from ..views.report import attack_report, compare_rows, png_bytes, top_k
from ..views.text import one_line
from . import demo, jobs, shipped, tasks, warmup
from . import settings as settings_logic
from .pool import cached_model, job_pool, pooled, submit_job
from .settings import Settings
from .survival_panel import survival_ui
from .widgets import option_widget

DEFAULTS = SparseConfig()
DEFAULT_IMAGE = demo.DEFAULT_PHOTO  # a photo the model is sure about (espresso 95%)
USER_MODEL = "your model file"
AUDIT_SOURCE = settings_logic.AUDIT_SOURCE
CACHE_LIMIT = 24  # results kept per session (each ~1 MB); older ones are recomputed on demand


# --- cached resources (one per process, shared read-only by every session) -----------------


@st.cache_resource(show_spinner="Loading your model file...", max_entries=4)
def cached_user_model(digest: str, data: bytes, suffix: str, size: int, mean: str, std: str, names: str,
                      device: str) -> ImageClassifier:
    info = user_model_info(size, mean, std, names)
    return load_user_model(data, info, trusted=True, device=device, name=f"model{suffix}")


def remember(name: str, key: tuple, value: Any) -> Any:
    """Keep ``value`` in this session's cache ``name`` (bounded, oldest dropped first)."""
    cache = st.session_state.setdefault(name, {})
    cache[key] = value
    while len(cache) > CACHE_LIMIT:
        cache.pop(next(iter(cache)))
    return value


def recall(name: str, key: tuple) -> Any:
    return st.session_state.get(name, {}).get(key)


# --- query parameters ------------------------------------------------------------------------


def query_default(key: str, parse: Any, fallback: Any) -> Any:
    return settings_logic.query_value(st.query_params.to_dict(), key, parse, fallback)


# --- widgets ---------------------------------------------------------------------------------


def image_ui() -> tuple[str, LoadedImage] | None:
    """Sidebar image source; returns (image id, loaded image) or None after showing a message."""
    st.sidebar.header("1. Image")
    gallery = bundled_images()
    opened = st.session_state.get("opened")  # (name, bytes) of an image opened from the Audit page
    sources = (["bundled photo"] if gallery else []) + ["upload", "camera"] + ([AUDIT_SOURCE] if opened else [])
    source = st.sidebar.radio("source", sources, horizontal=True, key="source")
    if source == "bundled photo":
        names = list(gallery)
        wanted = query_default("image", str, DEFAULT_IMAGE)
        index = names.index(wanted) if wanted in names else (names.index(DEFAULT_IMAGE) if DEFAULT_IMAGE in names else 0)
        name = st.sidebar.selectbox("bundled photo", names, index=index, key="bundled")
        st.sidebar.caption("Real photos with their licences: sparseviz/assets/ATTRIBUTION.md")
        try:
            return f"bundled:{name}", load_bundled(name)
        except ImageLoadError as error:
            st.error(one_line(error))
            return None
    if source == AUDIT_SOURCE and opened:
        st.sidebar.caption(f"opened from the Audit page: {opened[0]}")
        return audit_image_ui(*opened)
    if source == "upload":
        upload = st.sidebar.file_uploader("upload a photo (PNG, JPEG, WebP, BMP, GIF, TIFF)", key="upload")
        hint = "Upload a photo in the sidebar, or switch the source to a bundled photo."
    else:
        upload = st.sidebar.camera_input("take a photo", key="camera")
        hint = "Take a photo with the camera in the sidebar (the browser asks for permission)."
    if upload is None:
        st.info(hint)
        return None
    data = upload.getvalue()
    loaded = load_upload(upload.name, data)
    if isinstance(loaded, str):
        st.error(f"Cannot use this file. {loaded}")
        return None
    for note in loaded.notes:
        st.sidebar.caption(f"note: {note}")
    return f"{source}:{settings_logic.digest(data)}", loaded


def audit_image_ui(name: str, data: bytes) -> tuple[str, LoadedImage] | None:
    """An image the Audit page opened here: loaded exactly as that audit loaded it."""
    loaded = load_upload(name, data)
    if isinstance(loaded, str):
        st.error(f"Cannot use this file. {loaded}")
        return None
    return f"{AUDIT_SOURCE}:{settings_logic.digest(data)}", loaded


def presets_ui() -> None:
    """The "Try these" row: one click sets photo, goal and weight, and runs the attack."""

    def apply(preset: demo.Preset) -> None:
        st.session_state.update({
            "source": "bundled photo", "bundled": preset.photo, "model": DEFAULT_MODEL,
            "weight": preset.sparsity_weight,
            "steps": DEFAULTS.steps, "seed": DEFAULTS.seed, "mode": "targeted" if preset.target else "untargeted",
            "autorun": True, "lesson": preset.lesson,
        })
        if preset.target:
            st.session_state["target"] = preset.target

    st.markdown("**Try these** (one click each)")
    columns = st.columns(len(demo.PRESETS))
    for number, (column, preset) in enumerate(zip(columns, demo.PRESETS)):
        column.button(preset.label, key=f"preset_{number}", on_click=apply, args=(preset,), width="stretch")
    if st.session_state.get("lesson"):
        st.caption(st.session_state["lesson"])


def model_ui() -> tuple[str, bool]:
    """Model selectbox; returns (model name, weights available)."""
    st.sidebar.header("2. Model")
    names = list(MODELS) + ([USER_MODEL] if settings_logic.trust_uploads() else [])
    wanted = query_default("model", str, DEFAULT_MODEL)
    index = names.index(wanted) if wanted in names else names.index(DEFAULT_MODEL)

    def label(name: str) -> str:
        if name == USER_MODEL:
            return "your model file (TorchScript / .pt2)"
        return name if MODELS[name].weights_available() else f"{name} (weights not installed)"

    name = st.sidebar.selectbox("classifier", names, index=index, format_func=label, key="model")
    if name == USER_MODEL:
        return name, True
    spec = MODELS[name]
    st.sidebar.caption(spec.description)
    if not settings_logic.trust_uploads():
        st.sidebar.caption("Auditing your own model file is off on this server (it would run the file's code); "
                           "start it with SPARSEVIZ_TRUST_MODEL_UPLOADS=1 to allow it.")
    if not spec.weights_available():
        st.sidebar.warning(f"Weights for {name} are not on this machine. To get them: `{spec.how_to_get}`")
        return name, False
    return name, True


def user_model_ui(device: str) -> tuple[str, ImageClassifier] | None:
    """Upload of a TorchScript / torch.export classifier with its input size, normalization, class names."""
    st.sidebar.warning(
        "Loading a TorchScript or torch.export file **runs code chosen by its author**. "
        "Only upload files you trust."
    )
    upload = st.sidebar.file_uploader("model file (.pt, .ts, .pt2)", type=["pt", "ts", "pt2"], key="model_upload")
    with st.sidebar.expander("what your model expects", expanded=upload is None):
        size = st.number_input("input size (pixels, square)", 16, 1024, 224, key="user_size")
        mean = st.text_input("normalization mean (R, G, B)", "0.485, 0.456, 0.406", key="user_mean")
        std = st.text_input("normalization std (R, G, B)", "0.229, 0.224, 0.225", key="user_std")
        names = st.text_area("class names, one per line (empty = the 1000 ImageNet classes)", "", key="user_names")
    if upload is None:
        st.info("Upload a model file in the sidebar.")
        return None
    data = upload.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    try:
        model = cached_user_model(digest, data, Path(upload.name).suffix, int(size), mean, std, names, device)
    except (ModelError, ValueError) as error:
        st.error(f"Cannot use this model file. {one_line(error)}")
        return None
    return f"user:{digest[:16]}:{size}:{mean}:{std}:{hashlib.sha256(names.encode()).hexdigest()[:8]}", model


def device_ui() -> str | None:
    """Resolve the device chosen in the form (read from session state: the form renders later)."""
    choice = st.session_state.get("device", query_default("device", str, "auto"))
    try:
        device = str(resolve_device(choice))
    except ValueError as error:
        st.sidebar.error(one_line(error))
        return None
    gpu = f" ({torch.cuda.get_device_name(0)})" if device.startswith("cuda") else ""
    st.sidebar.caption(f"computing on **{device}**{gpu}")
    return device


def settings_ui(class_names: list[str], true_label: int) -> tuple[Settings, bool]:
    """The attack form; returns (settings, submitted). Nothing runs until the button is pressed."""
    with st.sidebar.form("attack_form"):
        st.header("3. Attack")
        weight = option_widget(st, SparseConfig, "sparsity_weight", key="weight",
                               value=query_default("weight", float, DEFAULTS.sparsity_weight))
        steps = option_widget(st, SparseConfig, "steps", key="steps", value=query_default("steps", int, DEFAULTS.steps))
        seed = option_widget(st, SparseConfig, "seed", key="seed", value=query_default("seed", int, DEFAULTS.seed))
        wanted_target = query_default("target", str, None)
        mode = st.radio("goal", ["untargeted", "targeted"], index=1 if wanted_target else 0, horizontal=True, key="mode")
        choices = [name for i, name in enumerate(class_names) if i != true_label]
        target_index = choices.index(wanted_target) if wanted_target in choices else 0
        target = st.selectbox("target class (type to search; used when targeted)", choices, index=target_index,
                              key="target")
        devices = ["auto", "cpu", "cuda"]
        wanted_device = query_default("device", str, "auto")
        device = st.selectbox("device", devices, index=devices.index(wanted_device) if wanted_device in devices else 0,
                              key="device")
        submitted = st.form_submit_button("Run attack", type="primary", width="stretch")
        if settings_logic.quick_mode():
            st.caption("Quick mode (SPARSEVIZ_QUICK=1): no colour refinement or swap search, so more pixels.")
    settings = Settings(float(weight), int(steps), int(seed), target if mode == "targeted" else None, device)
    return settings, submitted


def how_it_works_ui() -> None:
    with st.expander("How it works (for students)"):
        st.markdown(
            "An image classifier turns 150,528 numbers (224 x 224 pixels x 3 colours) into a score per class. "
            "The attack looks for the **fewest pixels** whose new colours make another class win.\n\n"
            "Each pixel gets a soft on/off gate $m$ (shared by its three colours) and a new colour $v$; "
            "both stay between 0 and 1, so the attacked image is always a valid picture:"
        )
        st.latex(r"x' = x + m \odot (v - x), \qquad m = \sigma(a / T), \quad v = \sigma(w)")
        st.latex(r"\min_{a,\,w}\;\; \max\!\big(z_y(x') - \max_{j \ne y} z_j(x'),\; -\kappa\big)"
                 r" \;+\; \lambda \sum_{\text{pixels}} m")
        st.markdown(
            "The first term is the **margin**: the true class's score $z_y$ minus the best other score; it is "
            "negative exactly when the model is fooled (for a targeted attack: best non-target minus target). "
            "The second term counts (softly) how many pixels are switched on; $\\lambda$ grows with the "
            "**sparsity weight**, so a higher weight means fewer pixels but more risk of failing. "
            "As the temperature $T$ falls the gates become 0 or 1; the final mask is then pruned pixel by pixel, "
            "and a short swap search trades needed pixels for better-placed ones to reach a pixel fewer.\n\n"
            "Every number on this page is measured on the saved 8-bit image you can download."
        )


# --- running things ---------------------------------------------------------------------------


def pool_task(function: Any, model: ImageClassifier, *args: Any) -> jobs.Task:
    """``function(ctx, model, device, *args)`` as a pool job: a registry model goes by name to a worker
    process (which loads it once); an uploaded model stays in the server and its job on a thread."""
    model_id = st.session_state.get("model_id")
    registry = isinstance(model_id, str) and model_id in MODELS
    return jobs.Task(function, (model_id if registry else model, str(model.device), *args), local=not registry)


def attack_work(model: ImageClassifier, image: torch.Tensor, label: int, settings: Settings) -> jobs.Task:
    """The sparse attack as a pool job: it reports a progress line and stops when asked."""
    target = None if settings.target is None else model.class_index(settings.target)
    return pool_task(tasks.attack, model, image, label, target, settings.config(quick=settings_logic.quick_mode()))


def attack_outcome(job: jobs.Job | None) -> str | None:
    """Keep a finished attack job's result in the session; returns a line to show when nothing ran to the end."""
    if job is None:
        return "You left the shared run. Press **Run attack** to wait for it again."
    key = cast(tuple, job.key)[1:]
    if job.state == jobs.DONE:
        remember("results", key, job.result)
        st.session_state["last_key"] = key
    elif job.state == jobs.STOPPED:
        st.session_state["partial"] = (key, job.result)
    elif job.state == jobs.CANCELLED:
        return "Stopped while queued: the attack never ran. Press **Run attack** to queue it again."
    return None


def prefetched(image_id: str, model_id: str, settings: Settings) -> AttackResult | None:
    """The server's warm-up result when these are exactly the default photo, model and settings."""
    key = settings_logic.warm_key(image_id, model_id, settings, quick=settings_logic.quick_mode())
    return None if key is None else warmup.prefetched(key)


def shipped_result(image_id: str, model_id: str, settings: Settings, device: str) -> AttackResult | None:
    """The precomputed result when these are exactly a shipped demo's photo, model and settings."""
    item = shipped.find(image_id, model_id, settings, quick=settings_logic.quick_mode())
    return None if item is None else shipped.checked(item, cached_model(model_id, device))


def run_key(settings: Settings) -> tuple:
    return settings_logic.run_key(st.session_state.get("image_id"), st.session_state.get("model_id"), settings)


# --- result views ----------------------------------------------------------------------------


def metrics_ui(result: AttackResult, class_names: list[str]) -> None:
    summary = result.summary(0, class_names)
    st.markdown(f"<div class='sv-headline'>{html.escape(demo.flip_headline(result, class_names))}</div>",
                unsafe_allow_html=True)
    if demo.is_near_tie(result.clean_probs[0]):
        st.warning("Near tie: before the attack the model was almost as sure of its runner-up, so this flip shows "
                   "an unsure model more than a fragile one. A confident photo (e.g. coffee) makes the point.")
    if summary["success"]:
        st.success(f"Fooled: **{summary['true_name']}** ({summary['true_confidence']:.1%}) -> "
                   f"**{summary['adv_name']}** ({summary['adv_confidence']:.1%})")
    elif summary["interrupted"]:
        st.warning("Stopped before the model was fooled. Press **Run attack** to run it in full.")
    else:
        st.warning("The attack did not fool the model within its steps; try a lower sparsity weight or more steps.")
    big = st.container(key="big_numbers").columns(3)
    big[0].metric("pixels changed", summary["l0_pixels"])
    big[1].metric(f"{summary['true_name']}: before", demo.percent(summary["true_confidence"]))
    big[2].metric(f"{summary['true_name']}: after", demo.percent(summary["true_confidence_after"]),
                  delta=f"{100 * (summary['true_confidence_after'] - summary['true_confidence']):+.0f} points")
    columns = st.columns(4)
    columns[0].metric("channel entries", summary["l0_entries"])
    columns[1].metric("l2", f"{summary['l2']:.3f}")
    columns[2].metric("linf", f"{summary['linf']:.3f}")
    columns[3].metric("seconds", f"{summary['seconds']:.1f}")
    total = result.originals.shape[-1] * result.originals.shape[-2]
    st.caption(f"{summary['l0_pixels']} of {total:,} pixels ({summary['l0_pixels'] / total:.3%}); "
               f"true class after the attack: {summary['true_confidence_after']:.1%}; {summary['model_calls']} model "
               f"calls. All numbers are measured on the 8-bit images you can download.")


def results_ui(result: AttackResult, model: ImageClassifier, image_name: str, device: str) -> None:
    metrics_ui(result, model.class_names)
    if (made := shipped.note(result)) is not None:
        st.caption(made)
    st.plotly_chart(charts.attack_triptych(result.originals[0], result.adversarials[0]), width="stretch",
                    key="triptych")
    if int(result.l0_pixels[0]):
        st.plotly_chart(charts.pixel_closeups(result.originals[0], result.adversarials[0]), width="stretch",
                        key="closeups")
    st.plotly_chart(charts.top5_bars(result.clean_probs[0], result.adv_probs[0], model.class_names),
                    width="stretch", key="top5_bars")
    survival_ui(model, result)
    st.markdown("**Keep it**")
    report = attack_report(result, model.class_names, image_name, device)
    columns = st.columns(3)
    columns[0].download_button("adversarial PNG", png_bytes(result.adversarials[0]), "adversarial.png", "image/png",
                               key="dl_adv", width="stretch")
    columns[1].download_button("mask PNG", png_bytes(result.pixel_mask[0].float().expand(3, -1, -1)), "mask.png",
                               "image/png", key="dl_mask", width="stretch")
    columns[2].download_button("JSON report", json.dumps(report, indent=2), "report.json", "application/json",
                               key="dl_json", width="stretch")
    if image_name.startswith("bundled:"):
        st.caption("The address bar now holds a link that restores this photo, model and settings.")


def explain_work(model: ImageClassifier, result: AttackResult, method: str) -> jobs.Task:
    """The explanation as a pool job: it reports the split's progress."""
    return pool_task(tasks.explain, model, result, method)


def explanation_ui(model: ImageClassifier, result: AttackResult, key: tuple) -> None:
    if not bool(result.success[0]):
        st.info("Nothing to explain: the attack did not fool the model.")
        return
    from ..explain import interpret

    methods = interpret.methods_for(model)
    method = st.selectbox("attribution maps (Captum)", methods, format_func=lambda m: interpret.METHOD_NAMES.get(m, m),
                          key="method")
    explain_key = (*key, method)
    explanation = recall("explanations", explain_key)
    if explanation is None:
        stopped = st.session_state.setdefault("stopped_explanations", set())
        start = explain_key not in stopped or st.button("Compute the explanation", key="run_explain")
        job = pooled("explain", explain_key, explain_work(model, result, method),
                     st.empty(), f"The {interpret.METHOD_NAMES.get(method, method)} explanation", start=bool(start))
        if job is None or job.state != jobs.DONE:
            if job is not None and job.state in (jobs.STOPPED, jobs.CANCELLED):
                stopped.add(explain_key)  # stopped by the user: do not start it again on the next rerun
                st.info("Explanation stopped. Press **Compute the explanation** to run it.")
            return
        stopped.discard(explain_key)
        explanation = remember("explanations", explain_key, job.result)
    st.markdown(f"**{explanation.sentence}**")
    st.markdown(
        "Each changed pixel gets two numbers that **add up** over the pixels: its part of the drop of the "
        f"true class's evidence (**obscuring**, '{explanation.true_name}') and its part of the rise of the "
        f"adversarial class's evidence (**leading**, '{explanation.adv_name}'). Evidence is the centred logit "
        "z - mean(z), which the softmax does not couple. A pixel is labelled by the part that is at least "
        f"{explanation.label_ratio:.3g}x the other, **both** when neither is, **neither** when both work against "
        "the flip." + ("" if explanation.label_ratio <= explanation.config.split.label_ratio else
                       f" (The usual {explanation.config.split.label_ratio:g}x was raised on this image until the "
                       "contributions themselves predict the test below to pass: the least one-sided pixels "
                       "became **both**.)")
    )
    joint = explanation.joint
    columns = st.columns(4)
    columns[0].metric("best pixel alone: share of flip", f"{joint.best_single_share:.0%}",
                      help="the share of the flip the strongest pixel does when pasted alone onto the clean photo: "
                           "its part of the whole attack's change of "
                           "the margin between the two classes")
    columns[1].metric("smallest set that flips", f"{joint.smallest_flipping_set} of {joint.pixels} px",
                      help="the top pixels by contribution, pasted together onto the clean photo")
    short = {"holds": "yes", "fails": "no", "inseparable": "can't split"}[explanation.verdict]  # fits a quarter row
    columns[2].metric("split holds on this image", short,
                      help=f"{VERDICTS[explanation.verdict]}: {explanation.holds_why}")
    columns[3].metric("maps agree with the causes", "n/a" if explanation.agreement is None
                      else f"{explanation.agreement:+.2f}",
                      help="Spearman rank correlation over the changed pixels between the maps and the measured "
                           "contributions (1 = same order, 0 = unrelated)")
    for warning in explanation.warnings:
        st.warning(warning)
    st.plotly_chart(charts.contribution_chart(explanation.pixels), width="stretch", key="contributions")
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(charts.ablation_bars(explanation.ablation), width="stretch", key="ablation")
    with right:
        st.plotly_chart(charts.joint_action_bars(explanation.pixels), width="stretch", key="joint")
    st.caption(f"Group ablation: obscuring group = obscuring + both pixels, leading group = leading + both. "
               f"{explanation.holds_why}.")
    if explanation.maps:
        st.markdown("The four maps share **one colour scale** and lie over their photo; changed pixels are ringed "
                    "in their label's colour (hover one for its contributions).")
        opacity = st.slider("map opacity (0 = photo only, 1 = map only)", 0.0, 1.0, 0.6, 0.05, key="map_opacity")
        photos = {"clean": result.originals[0], "adv": result.adversarials[0]}
        st.plotly_chart(charts.maps_grid(explanation.maps, explanation.vmin, explanation.vmax, explanation.pixels,
                                        photos=photos, opacity=opacity), width="stretch", key="maps")
    st.plotly_chart(charts.pixels_by_kind(result.adversarials[0], explanation.pixels), width="stretch", key="kinds")
    st.dataframe(charts.pixel_table(explanation.pixels), width="stretch", hide_index=True, key="pixel_table")
    st.caption(f"Split by {explanation.split_method} ({explanation.split_note}); completeness error "
               f"{explanation.completeness_error:.3f} of a {explanation.total_drop + explanation.total_rise:.2f} "
               f"margin change; explained in {explanation.seconds:.1f} s "
               f"({explanation.split_seconds:.1f} s for the split and its proof).")


def compare_ui(model: ImageClassifier, result: AttackResult, image: torch.Tensor, label: int, key: tuple,
               settings: Settings) -> None:
    st.subheader("Dense vs sparse")
    st.markdown("A dense attack (PGD, l-inf 4/255) changes almost **every pixel a little**; the sparse one changes "
                "**a few pixels a lot**.")
    dense = recall("comparisons", key)
    if dense is None:
        clicked = st.button("Run PGD on the same image", key="run_pgd")
        job = pooled("pgd", key, pool_task(tasks.dense, model, image, label, result.targets), st.empty(), "PGD",
                     start=clicked)
        if job is not None and job.state == jobs.DONE:
            dense = remember("comparisons", key, job.result)
    if dense is not None:
        rows = compare_rows([("sparse (sparseviz)", result), ("PGD (dense)", dense)], model.class_names)
        st.dataframe(rows, width="stretch", hide_index=True, key="compare_table")
        left, right = st.columns([1, 2])
        left.plotly_chart(charts.compare_bars(rows), width="stretch", key="compare_bars")
        right.plotly_chart(charts.attack_triptych(dense.originals[0], dense.adversarials[0],
                                                 titles=("clean", "PGD perturbation (amplified)", "PGD adversarial")),
                           width="stretch", key="pgd_triptych")

    st.subheader("Sparsity weight sweep")
    weights = experiments.DEFAULT_SWEEP
    st.markdown(f"The same attack (same steps, seed and goal) at weights {', '.join(f'{w:g}' for w in weights)}, "
                "one after another: how many pixels each needs and how confident the fooled model is.")
    sweep_key = (*key[:2], *key[3:], weights)  # every setting except the weight itself
    points = recall("sweeps", sweep_key)
    if points is None:
        clicked = st.button(f"Run the sweep ({len(weights)} attacks)", key="run_sweep")
        target = None if settings.target is None else model.class_index(settings.target)
        config = settings.config(quick=settings_logic.quick_mode(), sparsity_weight=DEFAULTS.sparsity_weight)
        sweep = pool_task(tasks.sweep, model, image, label, tuple(weights), target, config)
        job = pooled("sweep", sweep_key, sweep, st.empty(), "The sweep", start=clicked)
        if job is not None and job.state == jobs.DONE:
            points = remember("sweeps", sweep_key, job.result)
        elif job is not None and job.state == jobs.STOPPED and job.result:
            points = job.result
            st.caption(f"Stopped after {len(points)} of {len(weights)} weights.")
    if points is not None:
        st.plotly_chart(charts.sweep_figure(points), width="stretch", key="sweep_figure")
        st.dataframe(charts.sweep_table(points), width="stretch", hide_index=True, key="sweep_table")


def transfer_ui(model_id: str, model: ImageClassifier, result: AttackResult, key: tuple, device: str) -> None:
    st.markdown("Does the same adversarial image (8-bit, as downloaded) fool the **other** models on this machine? "
                "Sparse attacks are usually tuned to one network, so they often do not transfer.")
    if not bool(result.success[0]):
        st.info("Nothing to transfer: the attack did not fool this model.")
        return
    others, missing = other_models(model_id)
    if missing:
        st.caption(f"Not installed here (skipped): {', '.join(missing)}.")
    if not others:
        st.info("No other model has its weights on this machine.")
        return
    rows = recall("transfers", key)
    if rows is None and st.button(f"Check on {len(others)} other model(s): {', '.join(others)}", key="run_transfer"):
        try:
            with st.spinner("Loading the other models and classifying..."):
                rows = remember("transfers", key, experiments.transfer(
                    result, {name: cached_model(name, device) for name in others}))
        except Exception as error:  # noqa: BLE001
            st.error(f"The transfer check failed: {one_line(error)}")
    if rows is not None:
        st.dataframe(charts.transfer_table(rows), width="stretch", hide_index=True, key="transfer_table")


def demo_markdown(text: str) -> str:
    """The library's **bold** sentences as HTML (class names escaped), for the large-type blocks."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{part}</b>" if i % 2 else part for i, part in enumerate(parts))


def clean_ui(image: torch.Tensor, clean: torch.Tensor, model: ImageClassifier) -> None:
    left, right = st.columns([1, 3])
    left.image(to_pil(image[0]), caption=f"model input ({model.input_size}x{model.input_size}, 8-bit)",
               width="stretch")
    right.subheader(f"What {getattr(model, 'name', 'the model')} sees: top-5")
    right.markdown(f"<div class='sv-verdict'>{demo_markdown(demo.clean_verdict(clean, model.class_names))}</div>",
                   unsafe_allow_html=True)
    right.dataframe(
        [{"class": r["class"], "probability": r["probability"]} for r in top_k(clean, model.class_names)],
        hide_index=True, width="stretch", key="clean_top5",
        column_config={"probability": st.column_config.ProgressColumn("probability", format="percent",
                                                                      min_value=0.0, max_value=1.0)},
    )


# --- page --------------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="sparseviz", page_icon=":mag:", layout="wide")
    st.html(demo.PROJECTOR_CSS)
    warmup.start()  # once per server: the default model and the default flip, before anyone clicks
    st.title("sparseviz: how few pixels does it take?")
    st.caption("Change a handful of pixels until the classifier changes its mind, then see why it worked.")
    presets_ui()
    how_it_works_ui()

    picked = image_ui()
    model_name, weights_ok = model_ui()
    device = device_ui()
    if picked is None or device is None:
        return
    if not weights_ok:
        st.error(f"{model_name} cannot run here: its weights are not installed ({MODELS[model_name].how_to_get}). "
                 f"Pick another model, e.g. {DEFAULT_MODEL}.")
        return
    image_id, loaded = picked
    try:
        if model_name == USER_MODEL:
            loaded_user = user_model_ui(device)
            if loaded_user is None:
                return
            model_id, model = loaded_user
        else:
            model_id, model = model_name, cached_model(model_name, device)
    except (ModelError, ValueError) as error:
        st.error(one_line(error))
        return
    st.session_state["image_id"], st.session_state["model_id"] = image_id, model_id

    image = model.preprocess(to_tensor(loaded.image))[None]
    clean = model.predict_proba(image)[0].cpu()
    label = int(clean.argmax())
    settings, submitted = settings_ui(model.class_names, label)
    submitted = bool(st.session_state.pop("autorun", False)) or submitted  # a "Try these" click runs at once
    clean_ui(image, clean, model)

    key = run_key(settings)
    handoff = st.session_state.pop("handoff", None)
    if isinstance(handoff, AttackResult) and torch.equal(handoff.originals[0], image[0].cpu()):
        remember("results", key, handoff)  # an image opened from the Audit page, with its audit result
        st.session_state["last_key"] = key
    # the default demo or a preset: computed ahead of time, checked once on this server, shown at once
    ready = shipped_result(image_id, model_id, settings, device) if recall("results", key) is None else None
    if submitted and recall("results", key) is None and ready is None:
        with st.spinner("The server started this very attack when it started; taking its result..."):
            warm = prefetched(image_id, model_id, settings)
        if warm is not None:  # the server computed the default flip at start: same settings, same pixels
            remember("results", key, warm)
    status = st.empty()  # queue place / progress bar + Stop while waiting, one line otherwise: the tabs never move
    note = None
    if submitted:
        st.query_params.from_dict(settings_logic.query_params(
            image_id, model_name if model_name != USER_MODEL else None, settings))
        if recall("results", key) is None and ready is None:
            submit_job("attack", key, attack_work(model, image, label, settings))  # replaces an unfinished job
        else:
            st.session_state["last_key"] = key
    waiting = st.session_state.get("job")
    if waiting is not None and waiting.kind == "attack":  # this session's attack, submitted before a rerun
        job = pooled("attack", cast(tuple, waiting.key)[1:], None, status, "The attack", start=False)
        note = attack_outcome(job)
        if job is not None and job.state == jobs.FAILED:
            return
    result = recall("results", key)
    if result is None:
        result = ready
    stopped = settings_logic.stopped_result(st.session_state.get("partial"), key, st.session_state.get("last_key"))
    if result is None and stopped is not None:
        result = stopped  # stopped by the user: show the best valid result found so far
        key = (*key, "stopped")  # its explanation/comparisons must not be reused for a full run
        if bool(result.success[0]):  # (a stop before any success is said once, by the result view)
            status.warning("Stopped early: showing the best valid result found before you pressed Stop. "
                           "Press **Run attack** to run it in full.")
        else:
            status.caption(f"Stopped by you after {result.seconds:.1f} s, before the model was fooled; "
                           "press Run attack to run it in full.")
    elif result is None:  # a result for these settings stays shown when the session comes back to them
        status.info(note or "Set the attack in the sidebar and press **Run attack**.")
        job_pool()  # created now (its workers warming up), not at the first click
        return
    else:
        target = f"target {settings.target}" if settings.target else "untargeted"
        opened = st.session_state.get("opened")
        shown = opened[0] if opened and image_id.startswith(f"{AUDIT_SOURCE}:") else image_id.split(":", 1)[-1]
        status.caption(f"Result for {shown} on {model_id}: sparsity weight "
                       f"{settings.sparsity_weight:g}, {settings.steps} steps, seed {settings.seed}, {target}, {device}.")
    tab_result, tab_why, tab_compare, tab_transfer = st.tabs(["Result", "Why it works", "Compare", "Transfer"])
    with tab_result:
        results_ui(result, model, image_id, device)
    with tab_why:
        explanation_ui(model, result, key)
    with tab_compare:
        compare_ui(model, result, image, label, key, settings)
    with tab_transfer:
        transfer_ui(model_id, model, result, key, device)
    job_pool()  # created (its workers warming up) at the first page load, after the page is drawn


# --- pages -------------------------------------------------------------------------------------

# The single-image page's widgets: Streamlit forgets a widget's value while another page is
# shown, so the router re-asserts them and a visit to the Audit page changes nothing here.
KEEP_ACROSS_PAGES = ("source", "bundled", "model", "weight", "steps", "seed", "mode", "target", "device", "method")

AUDIT_PAGE = Path(__file__).with_name("pages") / "audit.py"


def navigation() -> None:
    """Two pages: this single-image view (the default) and the Audit page (pages/audit.py, a script
    file because Streamlit's test harness switches pages by file)."""
    for key in KEEP_ACROSS_PAGES:
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
    single = st.Page(main, title="Single image", icon=":material/image:", default=True)
    audit = st.Page(AUDIT_PAGE, title="Audit", icon=":material/fact_check:", url_path="audit")
    pages = st.navigation([single, audit])
    if st.session_state.pop("switch_to_single", False):  # "open in the single-image view" on the Audit page
        st.switch_page(single)
    pages.run()

