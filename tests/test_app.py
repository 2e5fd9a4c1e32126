"""The Streamlit page driven headlessly with AppTest, plus its upload handling on the hostile corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hostile_corpus import build_corpus
from sparseviz.attacks import SparseConfig, sparse_attack
from sparseviz.app.demo import DEFAULT_PHOTO
from sparseviz.images.gallery import load_bundled
from sparseviz.images import to_tensor
from sparseviz.images import load_upload

APP = str(Path(__file__).resolve().parent.parent / "app.py")
STEPS = 40  # fewer than the default so the suite stays quick on a 2-core CPU


def _app(timeout: float = 180):
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=timeout)


def _metric(at, label: str) -> str:
    for metric in at.metric:
        if metric.label == label:
            return metric.value
    raise AssertionError(f"no metric {label!r}; have {[m.label for m in at.metric]}")


def _table(at, column: str):
    """The first dataframe with this column (AppTest does not expose dataframe keys)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with column {column!r}")


def _submit(at):
    buttons = [b for b in at.button if b.label == "Run attack"]
    assert buttons, "no Run attack button"
    return buttons[0].click().run()


# --- upload handling (fast) ------------------------------------------------------------------


def test_load_upload_hostile_corpus(tmp_path):
    cases = build_corpus(tmp_path)
    refused = 0
    for case in cases:
        if not case.path.is_file():  # a directory or missing path cannot arrive as an upload
            continue
        outcome = load_upload(case.path.name, case.path.read_bytes())
        if case.loads:
            assert not isinstance(outcome, str), f"{case.name} should load: {outcome}"
            case.check(outcome)
        else:
            assert isinstance(outcome, str), f"{case.name} should be refused"
            case.check_refusal(outcome)
            refused += 1
    assert refused >= 5


# --- the page (real model) -----------------------------------------------------------------


@pytest.mark.slow
def test_page_loads_and_shows_top5():
    at = _app().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    frames = [d.value for d in at.dataframe]
    assert frames and len(frames[0]) == 5
    assert list(frames[0]["class"])[0] == "espresso"  # the default photo is one the model is sure about
    assert any("sure this is" in m.value and "espresso" in m.value for m in at.markdown)
    assert any(b.label == "Run attack" for b in at.button)


@pytest.mark.slow
def test_run_matches_library(real_model):
    at = _app().run()
    at.number_input(key="steps").set_value(STEPS)
    at.slider(key="weight").set_value(1.0)
    at.number_input(key="seed").set_value(3)
    _submit(at)
    assert not at.exception, at.exception
    shown = int(_metric(at, "pixels changed"))

    image = real_model.preprocess(to_tensor(load_bundled(DEFAULT_PHOTO).image))[None]
    label = real_model.predict_proba(image).argmax(1).cpu()
    direct = sparse_attack(real_model, image, label, config=SparseConfig(sparsity_weight=1.0, steps=STEPS, seed=3))
    assert shown == int(direct.l0_pixels[0])
    assert int(_metric(at, "channel entries")) == int(direct.l0_entries[0])
    assert len(at.get("plotly_chart")) >= 2
    assert any(d.label == "JSON report" for d in at.get("download_button"))
    # the query string now restores the run's parameters
    assert at.query_params["steps"] == [str(STEPS)] or at.query_params["steps"] == str(STEPS)


@pytest.mark.system  # a targeted run on the real model takes about half a minute
def test_targeted_run_reaches_target():
    at = _app().run()
    at.selectbox(key="bundled").set_value("chelsea").run()
    at.number_input(key="steps").set_value(STEPS)
    at.radio(key="mode").set_value("targeted")
    at.selectbox(key="target").set_value("tabby")
    _submit(at)
    assert not at.exception, at.exception
    success = [s.value for s in at.success]
    assert success and "-> **tabby**" in success[0], success + [w.value for w in at.warning]


@pytest.mark.slow
def test_missing_weights_model_explains(monkeypatch):
    at = _app().run()
    from sparseviz.models import MODELS

    missing = [name for name, spec in MODELS.items() if not spec.weights_available()]
    if not missing:
        pytest.skip("every registry model has weights here")
    at.selectbox(key="model").set_value(missing[0]).run()
    assert not at.exception, at.exception
    assert any("weights are not installed" in e.value for e in at.error)


@pytest.mark.slow
def test_cuda_without_gpu_is_a_message():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    at = _app().run()
    at.selectbox(key="device").set_value("cuda")
    _submit(at)
    assert not at.exception, at.exception
    assert any("no GPU" in e.value for e in at.sidebar.error) or any("no GPU" in e.value for e in at.error)


@pytest.mark.system  # attack, explanation and PGD on the real model: about a minute
def test_query_params_restore_and_compare_and_explain():
    at = _app()
    at.query_params["image"] = "coffee"
    at.query_params["steps"] = str(STEPS)
    at.query_params["weight"] = "1.5"
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="bundled").value == "coffee"
    assert at.number_input(key="steps").value == STEPS
    assert at.slider(key="weight").value == 1.5
    _submit(at)
    assert not at.exception, at.exception
    assert not [w.value for w in at.warning if "unavailable" in w.value]
    assert len(at.get("plotly_chart")) >= 5  # triptych, top-5, maps, kinds, ablation
    at.slider(key="map_opacity").set_value(0.3).run()  # maps drawn over the photos, opacity from the page
    assert not at.exception, at.exception
    at.button(key="run_pgd").click().run()
    assert not at.exception, at.exception
    tables = [d.value for d in at.dataframe]
    compare = [t for t in tables if "attack" in t.columns]
    assert compare and len(compare[0]) == 2
    assert compare[0]["pixels changed"].iloc[1] > 10 * compare[0]["pixels changed"].iloc[0]


@pytest.mark.slow
def test_model_upload_only_when_trusted(monkeypatch):
    monkeypatch.delenv("SPARSEVIZ_TRUST_MODEL_UPLOADS", raising=False)
    at = _app().run()
    assert not any(o.startswith("your model file") for o in at.selectbox(key="model").options)
    monkeypatch.setenv("SPARSEVIZ_TRUST_MODEL_UPLOADS", "1")
    at = _app().run()
    assert "your model file (TorchScript / .pt2)" in at.selectbox(key="model").options
    at.selectbox(key="model").set_value("your model file").run()
    assert not at.exception, at.exception
    assert any("runs code chosen by its author" in w.value for w in at.sidebar.warning)

    # a scripted tiny classifier with its own input size, normalization and class names
    import io

    from conftest import TinyNet

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(TinyNet(3).eval()), buffer)
    at.text_input(key="user_mean").set_value("0.5, 0.5, 0.5")
    at.text_input(key="user_std").set_value("0.25, 0.25, 0.25")
    at.number_input(key="user_size").set_value(32)
    at.text_area(key="user_names").set_value("apple\nbanana\ncherry")
    at.file_uploader(key="model_upload").upload("mine.pt", buffer.getvalue()).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert set(_table(at, "probability")["class"]) == {"apple", "banana", "cherry"}
    _submit(at)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert int(_metric(at, "pixels changed")) >= 0
    # a file that is not a model is a message
    at.file_uploader(key="model_upload").upload("junk.pt", b"not a model").run()
    assert not at.exception, at.exception
    assert any("Cannot use this model file" in e.value for e in at.error)


@pytest.mark.system  # two full runs on the real model
def test_two_sessions_at_once_each_get_their_own_correct_result(real_model):
    """Two open sessions share the cached model; each keeps its own image, settings and result.

    The sessions are interleaved, not run in threads: AppTest's mock runtime is a
    process-wide singleton that every run creates and tears down, so two AppTests in
    threads race on it ("Runtime hasn't been created!"). Attacks on one shared model
    from several threads are tested in ``test_concurrency.py``.
    """
    photos = ["chelsea", "coins"]
    sessions = [_app().run() for _ in photos]
    for at, photo in zip(sessions, photos):
        at.selectbox(key="bundled").set_value(photo).run()
        at.number_input(key="steps").set_value(STEPS)
        at.number_input(key="seed").set_value(1)
    for at in sessions:
        _submit(at)
        assert not at.exception, at.exception
    sessions[0].run()  # the first session, redrawn after the second one ran, still shows its own result
    for at, photo in zip(sessions, photos):
        image = real_model.preprocess(to_tensor(load_bundled(photo).image))[None]
        label = real_model.predict_proba(image).argmax(1)
        expected = sparse_attack(real_model, image, label, config=SparseConfig(steps=STEPS, seed=1))
        assert int(_metric(at, "pixels changed")) == int(expected.l0_pixels[0]), photo
        assert at.selectbox(key="bundled").value == photo


@pytest.mark.slow
def test_bad_uploads_in_the_page_are_errors_not_exceptions(tmp_path):
    """Hostile files through the real file_uploader: an st.error each, never an exception."""
    cases = [c for c in build_corpus(tmp_path) if c.path.is_file() and not c.loads][:6]
    assert cases
    at = _app().run()
    at.radio(key="source").set_value("upload").run()
    assert any("Upload a photo" in i.value for i in at.info)
    for case in cases:
        at.file_uploader(key="upload").upload(case.path.name, case.path.read_bytes()).run()
        assert not at.exception, (case.name, at.exception)
        errors = [e.value for e in at.error]
        assert errors and errors[0].startswith("Cannot use this file."), (case.name, errors)
        assert "Traceback" not in errors[0]
    # the page still serves: a good photo afterwards shows its top-5
    good = load_bundled("coffee")
    import io

    buffer = io.BytesIO()
    good.image.save(buffer, format="PNG")
    at.file_uploader(key="upload").upload("coffee.png", buffer.getvalue(), "image/png").run()
    assert not at.exception and not at.error
    assert len(_table(at, "probability")) == 5


@pytest.mark.slow
def test_camera_photo_is_classified():
    import io

    buffer = io.BytesIO()
    load_bundled("chelsea").image.save(buffer, format="JPEG", quality=92)
    at = _app().run()
    at.radio(key="source").set_value("camera").run()
    assert not at.exception and any("camera" in i.value for i in at.info)
    at.camera_input(key="camera").upload("photo.jpg", buffer.getvalue()).run()
    assert not at.exception, at.exception
    assert "cat" in " ".join(_table(at, "probability")["class"])


@pytest.mark.system  # six attacks and every other registry model: minutes on two cores
def test_sweep_and_transfer_tabs(real_model):
    """The sweep's weight-1 point is the main run (same steps and seed); transfer fills one row per model."""
    from sparseviz.models import MODELS

    at = _app(timeout=600).run()  # the sweep is six attacks in one script run: minutes on a busy machine
    at.number_input(key="steps").set_value(STEPS)
    _submit(at)
    assert not at.exception, at.exception
    shown = int(_metric(at, "pixels changed"))
    at.button(key="run_sweep").click().run()
    assert not at.exception, at.exception
    sweep = _table(at, "sparsity weight")
    assert list(sweep["sparsity weight"]) == [0.25, 0.5, 1.0, 2.0, 4.0]
    assert int(sweep.loc[sweep["sparsity weight"] == 1.0, "pixels changed"].iloc[0]) == shown
    others = [n for n, s in MODELS.items() if n != "efficientnet_lite0" and s.weights_available()]
    if others:
        at.button(key="run_transfer").click().run()
        assert not at.exception, at.exception
        assert list(_table(at, "fooled too")["model"]) == others


@pytest.mark.system  # an attack and two explanations on the real model
def test_attribution_method_is_selectable():
    at = _app().run()
    at.number_input(key="steps").set_value(STEPS)
    _submit(at)
    assert not at.exception, at.exception
    assert at.selectbox(key="method").value == "gradcam"
    at.selectbox(key="method").set_value("saliency").run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.get("plotly_chart") and len(_table(at, "kind")) == int(_metric(at, "pixels changed"))
