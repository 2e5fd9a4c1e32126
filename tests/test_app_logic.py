"""The app's page logic as plain functions: settings and quick mode, keys, query string, hand-off
to the single page, progress and error lines, comparison rows, transfer candidates, method list."""

from __future__ import annotations

import torch

from sparseviz.app import settings as logic
from sparseviz.app.settings import Settings
from sparseviz.attacks import PGDConfig, pgd
from sparseviz.attacks.base import AttackProgress
from sparseviz.attacks.sparse import QUICK, SparseConfig
from sparseviz.explain.interpret import METHOD_NAMES, METHODS, methods_for
from sparseviz.models import MODELS, other_models
from sparseviz.views.report import compare_rows
from sparseviz.views.text import one_line, progress_line, progress_parts
from tests.conftest import clean_labels

SETTINGS = Settings(sparsity_weight=1.5, steps=40, seed=3, target=None, device="cpu")


def test_quick_mode_reads_its_environment_variable() -> None:
    assert logic.quick_mode({logic.QUICK_ENV: "1"})
    assert not logic.quick_mode({logic.QUICK_ENV: "0"}) and not logic.quick_mode({})


def test_model_uploads_need_the_operator_s_consent() -> None:
    assert not logic.trust_uploads({}, ["streamlit"])
    assert logic.trust_uploads({logic.TRUST_ENV: "1"}, ["streamlit"])
    assert logic.trust_uploads({}, ["app.py", logic.TRUST_FLAG])


def test_both_pages_build_the_same_config_and_quick_mode_retunes_it() -> None:
    plain = logic.sparse_config(1.5, 40, 3, quick=False)
    assert plain == SparseConfig(sparsity_weight=1.5, steps=40, seed=3)
    assert SETTINGS.config(quick=False) == plain
    assert SETTINGS.config(quick=True) == plain.retuned(**QUICK) != plain
    assert SETTINGS.config(quick=False, sparsity_weight=0.25).sparsity_weight == 0.25


def test_run_key_holds_every_setting() -> None:
    key = logic.run_key("bundled:coffee", "efficientnet_lite0", SETTINGS)
    assert key == ("bundled:coffee", "efficientnet_lite0", 1.5, 40, 3, None, "cpu")
    other = Settings(1.5, 40, 4, None, "cpu")
    assert logic.run_key("bundled:coffee", "efficientnet_lite0", other) != key


def test_digests_depend_on_content_and_names() -> None:
    assert logic.digest(b"a") == logic.digest(b"a") != logic.digest(b"b")
    assert len(logic.digest(b"a")) == 16
    assert logic.files_digest({"x.png": b"a"}) != logic.files_digest({"y.png": b"a"})
    assert logic.files_digest({"x.png": b"a"}) != logic.files_digest({"x.png": b"b"})


def test_warm_key_only_for_untargeted_bundled_photos() -> None:
    key = logic.warm_key("bundled:coffee", "efficientnet_lite0", SETTINGS, quick=False)
    assert key is not None and (key.photo, key.device, key.config) == ("coffee", "cpu", SETTINGS.config(quick=False))
    assert logic.warm_key("upload:abc", "m", SETTINGS, quick=False) is None
    assert logic.warm_key("bundled:coffee", "m", Settings(1.5, 40, 3, "tabby", "cpu"), quick=False) is None
    if not torch.cuda.is_available():
        assert logic.warm_key("bundled:coffee", "m", Settings(1.5, 40, 3, None, "cuda"), quick=False) is None


def test_query_string_round_trip() -> None:
    params = logic.query_params("bundled:coffee", "efficientnet_lite0", SETTINGS)
    assert params == {"image": "coffee", "model": "efficientnet_lite0", "weight": "1.5", "steps": "40", "seed": "3",
                      "device": "cpu"}
    assert logic.query_value(params, "weight", float, 1.0) == 1.5
    assert logic.query_value(params, "steps", int, 0) == 40
    assert logic.query_value(params, "target", str, None) is None
    assert logic.query_value({"steps": "many"}, "steps", int, 7) == 7  # a hand-edited link falls back
    assert "image" not in logic.query_params("upload:abc", None, SETTINGS)
    assert "model" not in logic.query_params("upload:abc", None, SETTINGS)


def _result(tiny_model, tiny_images):
    images = tiny_images[:1]
    return pgd(tiny_model, images, clean_labels(tiny_model, images), config=PGDConfig(steps=2))


def test_stopped_result_only_for_its_own_run(tiny_model, tiny_images) -> None:
    result = _result(tiny_model, tiny_images)
    key = ("a", 1)
    assert logic.stopped_result((key, result), key, None) is result
    assert logic.stopped_result((key, result), ("b", 1), None) is None
    assert logic.stopped_result((key, result), key, key) is None  # a full run replaced it
    assert logic.stopped_result(None, key, None) is None


def test_single_page_state_for_gallery_and_uploads(tiny_model, tiny_images) -> None:
    result = _result(tiny_model, tiny_images)
    config = SparseConfig(sparsity_weight=2.0, steps=30, seed=5)
    state = logic.single_page_state(config, "efficientnet_lite0", "coffee.png", result, gallery=True, source=None)
    assert (state["weight"], state["steps"], state["seed"], state["mode"]) == (2.0, 30, 5, "untargeted")
    assert (state["source"], state["bundled"], state["handoff"]) == ("bundled photo", "coffee", result)
    state = logic.single_page_state(config, "m", "a/b.png", result, gallery=False, source=b"png")
    assert (state["source"], state["opened"]) == (logic.AUDIT_SOURCE, ("a/b.png", b"png"))


def test_one_line() -> None:
    assert one_line(ValueError("bad  file\n  at /tmp/x")) == "bad file"
    assert one_line(ValueError("\n\n  second")) == "second"
    assert one_line(KeyError()) == "KeyError"


def _progress(best: int, confidence: float) -> AttackProgress:
    return AttackProgress(step=40, total_steps=200, phase="optimize", best_pixels=torch.tensor([best]),
                          current_pixels=torch.tensor([12]), true_confidence=torch.tensor([confidence]),
                          done=torch.tensor([False]))


def test_progress_line() -> None:
    assert progress_line(_progress(9, 0.8)) == ("optimize: step 40/200 | 12 pixels selected | best so far 9 px | "
                                                "true-class confidence 80.0%")
    assert progress_parts(_progress(-1, float("nan"))) == ["optimize: step 40/200", "12 pixels selected"]


def test_compare_rows(tiny_model, tiny_images) -> None:
    result = _result(tiny_model, tiny_images)
    rows = compare_rows([("a", result), ("b", result)], tiny_model.class_names)
    assert [row["attack"] for row in rows] == ["a", "b"]
    assert rows[0]["pixels changed"] == int(result.l0_pixels[0])
    assert set(rows[0]) == {"attack", "fooled", "pixels changed", "channel entries", "l2", "linf", "adversarial class",
                            "seconds"}


def test_other_models_split_by_weights() -> None:
    available, missing = other_models("efficientnet_lite0")
    assert "efficientnet_lite0" not in available + missing
    assert sorted(available + missing) == sorted(name for name in MODELS if name != "efficientnet_lite0")
    assert all(MODELS[name].weights_available() for name in available)


def test_methods_for_drops_gradcam_without_a_layer(tiny_model) -> None:
    assert methods_for(tiny_model) == list(METHODS)

    class NoLayer:
        cam_layer = None

    assert all("gradcam" not in method for method in methods_for(NoLayer()))  # type: ignore[arg-type]
    assert set(METHOD_NAMES) == set(METHODS)
