"""sparseviz Streamlit app: how few pixels fool an image classifier, and why.

Run with ``streamlit run app.py``. The page only draws widgets and results; every number
comes from one library call (``sparse_attack``, ``pgd``, ``interpret.explain``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
import torch

from sparseviz import views
from sparseviz.attacks import PGDConfig, SparseConfig, pgd, sparse_attack
from sparseviz.attacks.base import AttackProgress, AttackResult
from sparseviz.commands.attack import build_report
from sparseviz.gallery import bundled_images, load_bundled
from sparseviz.images import ImageLoadError, LoadedImage, to_pil, to_tensor
from sparseviz.models import (
    DEFAULT_MODEL, MODELS, ImageClassifier, ModelError, UserModelInfo, load_model, load_user_model, resolve_device,
)

DEFAULTS = SparseConfig()
DEFAULT_IMAGE = "chelsea"
TRUST_UPLOADS = os.environ.get("SPARSEVIZ_TRUST_MODEL_UPLOADS") == "1"
USER_MODEL = "your model file"


@dataclass(frozen=True)
class Settings:
    sparsity_weight: float
    steps: int
    seed: int
    target: str | None  # class name, None = untargeted
    device: str


# --- cached resources ------------------------------------------------------------------


@st.cache_resource(show_spinner="Loading model...")
def cached_model(name: str, device: str) -> ImageClassifier:
    return load_model(name, device=device)


@st.cache_resource(show_spinner="Loading your model file...")
def cached_user_model(digest: str, data: bytes, suffix: str, device: str) -> ImageClassifier:
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
        handle.write(data)
    try:
        return load_user_model(handle.name, UserModelInfo(), trusted=True, device=device)
    finally:
        Path(handle.name).unlink(missing_ok=True)


# --- query parameters ------------------------------------------------------------------


def query_default(key: str, cast: Any, fallback: Any) -> Any:
    try:
        return cast(st.query_params[key]) if key in st.query_params else fallback
    except (TypeError, ValueError):
        return fallback


# --- widgets ---------------------------------------------------------------------------


def image_ui() -> tuple[str, LoadedImage] | None:
    """Sidebar image source; returns (image id, loaded image) or None after showing an error."""
    st.sidebar.header("1. Image")
    gallery = bundled_images()
    sources = ["bundled photo", "upload"] if gallery else ["upload"]
    source = st.sidebar.radio("source", sources, horizontal=True, key="source")
    if source == "bundled photo":
        names = list(gallery)
        wanted = query_default("image", str, DEFAULT_IMAGE)
        index = names.index(wanted) if wanted in names else (names.index(DEFAULT_IMAGE) if DEFAULT_IMAGE in names else 0)
        name = st.sidebar.selectbox("bundled photo", names, index=index, key="bundled")
        st.sidebar.caption("Photos and credits: assets/ATTRIBUTION.md")
        try:
            return f"bundled:{name}", load_bundled(name)
        except ImageLoadError as error:
            st.error(str(error))
            return None
    upload = st.sidebar.file_uploader("upload a photo (PNG, JPEG, WebP, BMP, GIF, TIFF)", key="upload")
    if upload is None:
        st.info("Upload a photo in the sidebar, or switch the source to a bundled photo.")
        return None
    data = upload.getvalue()
    loaded = views.load_upload(upload.name, data)
    if isinstance(loaded, str):
        st.error(f"Cannot use this file. {loaded}")
        return None
    for note in loaded.notes:
        st.sidebar.caption(f"note: {note}")
    return f"upload:{hashlib.sha256(data).hexdigest()[:16]}", loaded


def model_ui() -> tuple[str, bool]:
    """Model selectbox; returns (model name, weights available)."""
    st.sidebar.header("2. Model")
    names = list(MODELS) + ([USER_MODEL] if TRUST_UPLOADS else [])
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
    if not spec.weights_available():
        st.sidebar.warning(f"Weights for {name} are not on this machine. To get them: `{spec.how_to_get}`")
        return name, False
    return name, True


def user_model_ui(device: str) -> ImageClassifier | None:
    st.sidebar.warning(
        "Loading a TorchScript or torch.export file runs code chosen by its author. "
        "Only upload files you trust. The model must take 224x224 ImageNet-normalized images "
        "and output 1000 ImageNet logits."
    )
    upload = st.sidebar.file_uploader("model file (.pt, .ts, .pt2)", type=["pt", "ts", "pt2"], key="model_upload")
    if upload is None:
        st.info("Upload a model file in the sidebar.")
        return None
    data = upload.getvalue()
    try:
        return cached_user_model(hashlib.sha256(data).hexdigest(), data, Path(upload.name).suffix, device)
    except (ModelError, ValueError) as error:
        st.error(" ".join(str(error).split()))
        return None


def settings_ui(class_names: list[str], true_label: int) -> tuple[Settings, bool]:
    """The attack form; returns (settings, submitted)."""
    with st.sidebar.form("attack_form"):
        st.header("3. Attack")
        weight = st.slider("sparsity weight (higher = fewer pixels, more risk of failing)", 0.1, 4.0,
                           float(query_default("weight", float, DEFAULTS.sparsity_weight)), 0.1, key="weight")
        steps = st.number_input("steps", 1, 2000, int(query_default("steps", int, DEFAULTS.steps)), 10, key="steps")
        seed = st.number_input("seed (same seed, same result)", 0, 2**31 - 1, int(query_default("seed", int, DEFAULTS.seed)),
                               key="seed")
        wanted_target = query_default("target", str, None)
        mode = st.radio("goal", ["untargeted", "targeted"], index=1 if wanted_target else 0, horizontal=True, key="mode")
        choices = [name for i, name in enumerate(class_names) if i != true_label]
        target_index = choices.index(wanted_target) if wanted_target in choices else 0
        target = st.selectbox("target class (type to search; used when targeted)", choices, index=target_index,
                              key="target")
        devices = ["auto", "cpu", "cuda"]
        device = st.selectbox("device", devices, index=devices.index(query_default("device", str, "auto"))
                              if query_default("device", str, "auto") in devices else 0, key="device")
        submitted = st.form_submit_button("Run attack", type="primary", width="stretch")
    settings = Settings(float(weight), int(steps), int(seed), target if mode == "targeted" else None, device)
    return settings, submitted


def device_ui() -> str | None:
    """Resolve the device chosen in the form (read from session state: the form renders later)."""
    choice = st.session_state.get("device", query_default("device", str, "auto"))
    try:
        device = str(resolve_device(choice))
    except ValueError as error:
        st.sidebar.error(str(error))
        return None
    st.sidebar.caption(f"computing on **{device}**")
    return device


def how_it_works_ui() -> None:
    with st.expander("How it works"):
        st.markdown(
            "Each pixel gets a gate $m = \\sigma(a/T)$ (all three channels together) and a colour $v$; "
            "the adversarial image stays in range by construction:"
        )
        st.latex(r"x' = x + m\,(v - x), \qquad m = \sigma(a / T)")
        st.latex(r"\text{loss} = \max\big(\text{margin}(x'), -\kappa\big) + \lambda \sum m")
        st.markdown(
            "`margin` is the true class's logit minus the best other logit (targeted: best non-target minus "
            "target), negative exactly when the model is fooled. $\\sum m$ is the relaxed pixel count and "
            "$\\lambda$ grows with the **sparsity weight**. The final mask is binary, pruned pixel by pixel, "
            "and every number is measured on the saved 8-bit image."
        )


# --- results -----------------------------------------------------------------------------


def run_attack(model: ImageClassifier, image: torch.Tensor, label: int, settings: Settings) -> AttackResult:
    config = SparseConfig(sparsity_weight=settings.sparsity_weight, steps=settings.steps, seed=settings.seed)
    bar = st.progress(0.0, text="starting the attack...")

    def on_progress(info: AttackProgress) -> None:
        fraction = min(1.0, info.step / max(1, info.total_steps))
        bar.progress(fraction, text=(
            f"{info.phase}: step {info.step}/{info.total_steps}, {int(info.current_pixels[0])} pixels selected, "
            f"true-class confidence {float(info.true_confidence[0]):.1%}"
        ))

    targets = None if settings.target is None else torch.tensor([model.class_index(settings.target)])
    result = sparse_attack(model, image, torch.tensor([label]), targets=targets, config=config, progress=on_progress)
    bar.empty()
    return result


def png_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    to_pil(tensor).save(buffer, format="PNG")
    return buffer.getvalue()


def metrics_ui(result: AttackResult, class_names: list[str]) -> None:
    summary = result.summary(0, class_names)
    if summary["success"]:
        st.success(f"Fooled: **{summary['true_name']}** ({summary['true_confidence']:.1%}) -> "
                   f"**{summary['adv_name']}** ({summary['adv_confidence']:.1%})")
    else:
        st.warning("The attack did not fool the model within its steps; try a lower sparsity weight or more steps.")
    columns = st.columns(5)
    columns[0].metric("pixels changed", summary["l0_pixels"])
    columns[1].metric("channel entries", summary["l0_entries"])
    columns[2].metric("l2", f"{summary['l2']:.3f}")
    columns[3].metric("linf", f"{summary['linf']:.3f}")
    columns[4].metric("seconds", f"{summary['seconds']:.1f}")
    st.caption(f"true class after the attack: {summary['true_confidence_after']:.1%}; "
               f"{summary['model_calls']} model calls. All numbers are measured on the 8-bit images you can download.")


def results_ui(result: AttackResult, model: ImageClassifier, image_name: str, device: str) -> None:
    metrics_ui(result, model.class_names)
    st.plotly_chart(views.attack_triptych(result.originals[0], result.adversarials[0]), width="stretch",
                    key="triptych")
    st.plotly_chart(views.top5_bars(result.clean_probs[0], result.adv_probs[0], model.class_names),
                    width="stretch", key="top5_bars")
    report = build_report(result, model, image_name, device)
    columns = st.columns(3)
    columns[0].download_button("adversarial PNG", png_bytes(result.adversarials[0]), "adversarial.png", "image/png",
                               key="dl_adv")
    columns[1].download_button("mask PNG", png_bytes(result.pixel_mask[0].float().expand(3, -1, -1)), "mask.png",
                               "image/png", key="dl_mask")
    columns[2].download_button("JSON report", json.dumps(report, indent=2), "report.json", "application/json",
                               key="dl_json")


def explanation_ui(model: ImageClassifier, result: AttackResult, key: tuple) -> None:
    if not bool(result.success[0]):
        st.info("Nothing to explain: the attack did not fool the model.")
        return
    try:
        from sparseviz import interpret
    except ImportError as error:
        st.warning(f"Interpretation unavailable: {error}")
        return
    cache = st.session_state.setdefault("explanations", {})
    if key not in cache:
        try:
            with st.spinner("Computing attribution maps and ablations..."):
                cache[key] = interpret.explain(model, result, 0, method="gradcam")
        except (ValueError, ModelError) as error:
            st.warning(f"Interpretation unavailable: {' '.join(str(error).split())}")
            return
    explanation = cache[key]
    for warning in views.field(explanation, "warnings", default=()) or ():
        st.warning(warning)
    st.markdown(
        "**Obscuring** pixels hide evidence for the true class (reverting one brings the true class back); "
        "**leading** pixels add evidence for the adversarial class (reverting one lowers it)."
    )
    maps = views.field(explanation, "maps", default={}) or {}
    if maps:
        st.plotly_chart(views.maps_grid(maps, explanation.vmin, explanation.vmax, explanation.pixels),
                        width="stretch", key="maps")
    st.plotly_chart(views.pixels_by_kind(result.adversarials[0], explanation.pixels), width="stretch",
                    key="kinds")
    st.dataframe(views.pixel_table(explanation.pixels), width="stretch", hide_index=True)
    st.plotly_chart(views.ablation_bars(explanation.ablation), width="stretch", key="ablation")
    st.caption(f"explained in {explanation.seconds:.1f} s")


def compare_ui(model: ImageClassifier, result: AttackResult, image: torch.Tensor, label: int, key: tuple) -> None:
    st.markdown("A dense attack (PGD, l-inf 4/255) changes almost every pixel a little; the sparse one changes "
                "a few pixels a lot.")
    cache = st.session_state.setdefault("comparisons", {})
    if key not in cache:
        if not st.button("Run PGD on the same image", key="run_pgd"):
            return
        with st.spinner("Running PGD..."):
            cache[key] = pgd(model, image, torch.tensor([label]), targets=result.targets, config=PGDConfig())
    dense = cache[key]
    rows = []
    for name, res in (("sparse (sparseviz)", result), ("PGD (dense)", dense)):
        s = res.summary(0, model.class_names)
        rows.append({"attack": name, "fooled": s["success"], "pixels changed": s["l0_pixels"],
                     "channel entries": s["l0_entries"], "l2": round(s["l2"], 3), "linf": round(s["linf"], 4),
                     "adversarial class": s["adv_name"], "seconds": round(s["seconds"], 2)})
    st.dataframe(rows, width="stretch", hide_index=True)
    st.plotly_chart(views.compare_bars(rows), width="stretch", key="compare_bars")
    st.plotly_chart(views.attack_triptych(dense.originals[0], dense.adversarials[0],
                                          titles=("clean", "PGD perturbation (amplified)", "PGD adversarial")),
                    width="stretch", key="pgd_triptych")


# --- page ----------------------------------------------------------------------------------


def main() -> None:
    st.set_page_config(page_title="sparseviz", page_icon=":mag:", layout="wide")
    st.title("sparseviz: how few pixels does it take?")
    st.caption("Change a handful of pixels until the classifier changes its mind, then see why it worked.")
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
        model = user_model_ui(device) if model_name == USER_MODEL else cached_model(model_name, device)
    except (ModelError, ValueError) as error:
        st.error(" ".join(str(error).split()))
        return
    if model is None:
        return

    image = model.preprocess(to_tensor(loaded.image))[None]
    clean = model.predict_proba(image)[0].cpu()
    label = int(clean.argmax())
    settings, submitted = settings_ui(model.class_names, label)

    left, right = st.columns([1, 3])
    left.image(to_pil(image[0]), caption=f"model input ({model.input_size}x{model.input_size}, 8-bit)",
               width="stretch")
    right.subheader("Clean top-5")
    right.dataframe([{"class": r["class"], "probability": f"{r['probability']:.1%}"}
                     for r in views.top5_frame(clean, model.class_names)], hide_index=True, width="stretch")

    key = (image_id, getattr(model, "name", model_name), settings.sparsity_weight, settings.steps, settings.seed,
           settings.target, device)
    results = st.session_state.setdefault("results", {})
    if submitted:
        st.query_params.from_dict({k: str(v) for k, v in {
            "image": image_id.split(":", 1)[1] if image_id.startswith("bundled:") else None,
            "model": model_name, "weight": settings.sparsity_weight, "steps": settings.steps,
            "seed": settings.seed, "target": settings.target, "device": settings.device,
        }.items() if v is not None})
        if key not in results:
            try:
                results[key] = run_attack(model, image, label, settings)
            except ValueError as error:
                st.error(" ".join(str(error).split()))
                return
        st.session_state["last_key"] = key
    if st.session_state.get("last_key") != key or key not in results:
        st.info("Set the attack in the sidebar and press **Run attack**.")
        return
    result = results[key]
    tab_result, tab_why, tab_compare = st.tabs(["Result", "Why it works", "Compare"])
    with tab_result:
        results_ui(result, model, image_id, device)
    with tab_why:
        explanation_ui(model, result, key)
    with tab_compare:
        compare_ui(model, result, image, label, key)


main()
