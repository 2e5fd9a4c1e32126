"""The Audit page driven with AppTest on a tiny registered model: runs, figures, downloads, reopen.

The tiny model is added to the model registry for the test (AppTest runs the page in this
process), so an audit of the whole gallery takes seconds and the page's rows can be compared
with `sparseviz audit` on the same images, model and seed.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

import pytest

from conftest import make_tiny_model
from sparseviz import cli
from sparseviz.attacks import SparseConfig
from sparseviz.images.gallery import ASSETS_DIR, bundled_images
from sparseviz.models import MODELS, ModelSpec

APP = str(Path(__file__).resolve().parent.parent / "app.py")
STEPS = 15
TIMING_COLUMNS = {"seconds"}  # wall time: the only column two identical runs may differ in

pytestmark = pytest.mark.slow  # drives the page through AppTest


@pytest.fixture
def tiny_registered(monkeypatch, one_torch_thread):
    spec = ModelSpec("tiny", "a 32x32 test CNN", lambda pretrained, allow_download: make_tiny_model(),
                     lambda: Path(__file__), "built by the tests")
    monkeypatch.setitem(MODELS, "tiny", spec)
    return "tiny"


def _audit_page(photos: list[str] | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("sparseviz/app/pages/audit.py").run()
    assert not at.exception, at.exception
    at.selectbox(key="audit_model").set_value("tiny")
    at.number_input(key="audit_steps").set_value(STEPS)
    if photos is not None:
        at.multiselect(key="audit_gallery").set_value(photos)
    return at


def _rows(data: bytes) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_gallery_audit_matches_cli_rows(tiny_registered, tmp_path):
    """The page's audit.csv has the same rows as `sparseviz audit assets` with the same model and seed."""
    at = _audit_page()
    at.button(key="run_audit").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    page_run = at.session_state["audit_run"].run
    page_csv = page_run.file("audit.csv")

    out = tmp_path / "cli"
    assert cli.main(["audit", str(ASSETS_DIR), "--model", "tiny", "--out", str(out), "--set", f"steps={STEPS}",
                     "--quiet"]) == 0
    cli_rows = _rows((out / "audit.csv").read_bytes())
    assert len(cli_rows) == len(bundled_images())
    assert _rows(page_csv) == cli_rows
    # the HTML report is the CLI's, apart from the run's timings (overview line, last column of each row)
    def untimed(text: str) -> str:
        return re.sub(r"<td>[0-9.]+</td></tr>", "</tr>", text.split("<h2>How many pixels")[1])

    assert untimed(page_run.file("report.html").decode()) == untimed((out / "report.html").read_text())

    # the page shows the numbers and figures of that report
    fooled = sum(r["success"] == "1" for r in cli_rows)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["fooled"] == f"{fooled}/{len(cli_rows)}"
    assert len(at.get("plotly_chart")) >= 2  # pixel distribution, class flow (+ kinds when any)
    table = [d.value for d in at.dataframe if "becomes" in d.value.columns][0]
    assert len(table) == len(cli_rows)
    assert {b.label for b in at.get("download_button")} >= {"audit.csv", "report.html"}


def test_open_fragile_image_in_single_view(tiny_registered):
    """Clicking a thumbnail's button opens the single-image view with that image's audit result."""
    at = _audit_page(["coffee", "chelsea", "camera"])
    at.button(key="run_audit").click().run()
    assert not at.exception, at.exception
    run = at.session_state["audit_run"].run
    most = [r for r in run.report.rows if r["status"] == "attacked"]
    assert most
    at.button(key="open_most_0").click().run()
    assert not at.exception, at.exception
    first = sorted(run.report.flipped, key=lambda r: (r["pixels"], r["image"]))[0]
    assert at.selectbox(key="bundled").value == first["image"].rsplit(".", 1)[0]
    shown = {m.label: m.value for m in at.metric}
    assert int(shown["pixels changed"]) == int(first["pixels"])
    # back on the Audit page, its run is still there
    at.switch_page("sparseviz/app/pages/audit.py").run()
    assert not at.exception and "audit_run" in at.session_state


def test_uploaded_zip_with_hostile_members_lists_them_as_skipped(tiny_registered):
    buffer = io.BytesIO()
    gallery = bundled_images()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/coffee.png", gallery["coffee"].read_bytes())
        archive.writestr("photos/notes.png", b"not an image at all" * 10)
        archive.writestr("photos/inner.zip", b"PK\x03\x04 nested")
        archive.writestr("../../escape/camera.png", gallery["camera"].read_bytes())
    at = _audit_page()
    at.radio(key="audit_source").set_value("upload files or a zip").run()
    at.file_uploader(key="audit_files").upload("batch.zip", buffer.getvalue(), "application/zip").run()
    at.button(key="run_audit").click().run()
    assert not at.exception, at.exception
    report = at.session_state["audit_run"].run.report
    assert sorted(r["image"] for r in report.rows) == ["batch.zip/escape/camera.png", "batch.zip/photos/coffee.png"]
    skipped = dict(report.skipped)
    assert "inside the archive" in skipped["batch.zip/photos/inner.zip"]
    assert "batch.zip/photos/notes.png" in skipped
    table = [d.value for d in at.dataframe if "reason" in d.value.columns][0]
    assert len(table) == 2
    # an uploaded (not bundled) image opens in the single view through the "from the audit" source
    at.button(key="open_most_0").click().run()
    assert not at.exception, at.exception
    assert at.radio(key="source").value == "from the audit"
    assert any(c.value.startswith("Result for batch.zip/") for c in at.caption)  # named, not hashed


def test_nothing_usable_is_a_message(tiny_registered):
    at = _audit_page()
    at.radio(key="audit_source").set_value("upload files or a zip").run()
    at.file_uploader(key="audit_files").upload("junk.png", b"junk" * 100, "image/png").run()
    at.button(key="run_audit").click().run()
    assert not at.exception, at.exception
    assert any("No usable images" in e.value for e in at.error)


def test_stop_keeps_the_images_done(one_torch_thread, tmp_path):
    """The library's audit stops between images when asked and reports what it did (the page's Stop)."""
    from sparseviz.audit.run import write_audit
    from sparseviz.audit.inputs import collect_gallery, decode
    from sparseviz.audit.session import run_in_memory

    model = make_tiny_model()
    folder = decode(collect_gallery(["coffee", "chelsea", "camera"]), model)
    done: list[str] = []
    run = run_in_memory(model, folder, config=SparseConfig(steps=STEPS), on_step=done.append,
                        should_stop=lambda: len(done) >= 2)
    assert done == ["coffee.png", "chelsea.png"]
    assert sorted(r["image"] for r in run.report.rows) == sorted(done)
    assert run.report.meta["stopped"] and run.report.meta["not_run"] == 1
    assert b"Stopped by the user: 1 image(s) not attacked" in run.file("report.html")
    assert set(zipfile.ZipFile(io.BytesIO(run.zip_bytes())).namelist()) >= {"sparseviz-audit/audit.csv",
                                                                            "sparseviz-audit/report.html"}
    write_audit(run.report, tmp_path)  # the CLI writer accepts a stopped report as it is


def test_results_stay_when_settings_change_and_come_back(tiny_registered):
    """A session that runs, switches photo (or page) and comes back sees its result again without re-running."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=120).run()
    at.selectbox(key="model").set_value("tiny").run()
    at.number_input(key="steps").set_value(STEPS)
    [b for b in at.button if b.label == "Run attack"][0].click().run()
    assert not at.exception, at.exception
    first = {m.label: m.value for m in at.metric}["pixels changed"]
    assert len(at.session_state["results"]) == 1
    at.selectbox(key="bundled").set_value("chelsea").run()
    assert "pixels changed" not in {m.label for m in at.metric}
    assert any("press **Run attack**" in i.value for i in at.info)
    [b for b in at.button if b.label == "Run attack"][0].click().run()  # a second result, on chelsea
    assert len(at.session_state["results"]) == 2
    at.selectbox(key="bundled").set_value("coffee").run()  # back to coffee: its result, no click needed
    assert {m.label: m.value for m in at.metric}["pixels changed"] == first
    at.switch_page("sparseviz/app/pages/audit.py").run()  # a visit to the other page, then back by its link
    at.session_state["switch_to_single"] = True  # what the sidebar link does (AppTest cannot click it)
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="model").value == "tiny" and at.number_input(key="steps").value == STEPS
    assert {m.label: m.value for m in at.metric}["pixels changed"] == first
    assert len(at.session_state["results"]) == 2  # shown from the session's results, never run again


def test_ray_engine_is_offered_when_configured(tiny_registered, monkeypatch):
    """With SPARSEVIZ_AUDIT_RAY set the page offers the Ray engine and hands it the files (flat, as one folder).

    Ray itself is replaced by the local engine on that folder (tests/test_ray_audit.py covers Ray).
    """
    from sparseviz.audit import ray_engine as audit_ray
    from sparseviz.audit.run import run_audit
    from sparseviz.images.folders import load_folder

    calls: list[dict] = []

    def fake_ray(folder, loader, *, out, config=None, settings=None, on_row=None, attack="sparse"):
        calls.append({"files": sorted(p.name for p in Path(folder).iterdir()), "address": settings.address})
        model = loader("cpu")
        return run_audit(model, load_folder(folder, model), out=out, config=config,
                         on_step=lambda name: on_row({"image": name}, True) if on_row else None)

    monkeypatch.setattr(audit_ray, "run_ray_audit", fake_ray)
    at = _audit_page(["coffee", "chelsea"])
    assert not [r for r in at.sidebar.radio if r.key == "audit_engine"]
    monkeypatch.setenv("SPARSEVIZ_AUDIT_RAY", "local")
    at.run()
    at.radio(key="audit_engine").set_value("ray")
    at.button(key="run_audit").click().run()
    assert not at.exception, at.exception
    assert calls == [{"files": ["chelsea.png", "coffee.png"], "address": None}]
    run = at.session_state["audit_run"].run
    assert sorted(r["image"] for r in run.report.rows) == ["chelsea.png", "coffee.png"]
    assert run.file("report.html") and run.file("audit.csv")
