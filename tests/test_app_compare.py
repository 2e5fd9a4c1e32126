"""The Audit page compares two models: its comparison.csv and tables are the CLI's (`--models`)."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

import pytest

from conftest import make_tiny_model
from sparseviz import cli
from sparseviz.audit import compare
from sparseviz.images.gallery import bundled_images
from sparseviz.models import MODELS, ModelSpec

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PHOTOS = ["coffee", "chelsea"]

pytestmark = pytest.mark.slow  # drives the page through AppTest


def _tiny(seed: int, name: str):
    model = make_tiny_model(seed=seed)
    model.name = name
    return model


@pytest.fixture
def two_tiny(monkeypatch, one_torch_thread):
    for seed, name in ((0, "tiny"), (1, "tiny_other")):
        spec = ModelSpec(name, "a 32x32 test CNN", lambda pretrained, allow_download, s=seed, n=name: _tiny(s, n),
                         lambda: Path(__file__), "built by the tests")
        monkeypatch.setitem(MODELS, name, spec)


def _audit_on_page(compare_with: list[str] | None = None):
    """The Audit page after auditing PHOTOS with "tiny" (15 steps), compared with ``compare_with`` if given."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("sparseviz/app/pages/audit.py").run()
    at.selectbox(key="audit_model").set_value("tiny")
    at.number_input(key="audit_steps").set_value(15)
    at.multiselect(key="audit_gallery").set_value(PHOTOS)
    if compare_with:
        at.multiselect(key="audit_compare").set_value(compare_with)
    at.button(key="run_audit").click().run()
    return at


def test_page_comparison_matches_the_cli(two_tiny, tmp_path):
    at = _audit_on_page(compare_with=["tiny_other"])
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    compared = at.session_state["audit_run"].compared
    assert compared is not None and sorted(compared.runs) == ["tiny", "tiny_other"]

    folder = tmp_path / "photos"
    folder.mkdir()
    gallery = bundled_images()
    for stem in PHOTOS:
        shutil.copy(gallery[stem], folder / gallery[stem].name)
    out = tmp_path / "cli"
    assert cli.main(["audit", str(folder), "--models", "tiny,tiny_other", "--out", str(out), "--set", "steps=15",
                     "--workers", "1", "--quiet"]) == 0
    def rows(data: bytes) -> list[dict]:  # the page keeps the order photos were picked in, the CLI the file order
        return sorted(csv.DictReader(io.StringIO(data.decode())), key=lambda row: row["image"])

    assert rows(compared.file("comparison.csv")) == rows((out / "comparison.csv").read_bytes())

    tables = {d.value.columns[0]: d.value for d in at.dataframe}  # each table by its first column's name
    pairs = tables["model A"]
    assert list(pairs.iloc[0]) == [str(c) if not isinstance(c, int) else c for c in compare.pair_table(compared.comparison)[0]]
    assert "| " + " | ".join(str(c) for c in compare.pair_table(compared.comparison)[0]) + " |" in \
        (out / "report.md").read_text()
    assert len(tables[compare.transfer_header(compared.comparison)[0]]) == 2
    assert "measure" in tables and "processing" in tables  # the summary with intervals, the survival table
    assert len(at.get("plotly_chart")) >= 3 + bool(compare.paired_points(compared.comparison, "tiny", "tiny_other"))


def test_single_view_shows_does_it_survive(two_tiny):
    """An audited flip opened in the single-image view gets the survival panel: the library's answer, shown."""
    from sparseviz.audit.survival import survival
    from sparseviz.images import load_image, to_tensor

    at = _audit_on_page()
    assert not at.exception, at.exception
    kept = at.session_state["audit_run"]
    row = sorted(kept.run.report.flipped, key=lambda r: (r["pixels"], r["image"]))[0]
    at.button(key="open_most_0").click().run()
    assert not at.exception, at.exception
    assert "Does it survive?" in [s.value for s in at.subheader]

    adversarial = to_tensor(load_image(kept.run.file(row["adversarial_png"])).image)
    expected = survival(_tiny(0, "tiny"), kept.originals[row["image"]], adversarial, int(row["true_label"]))
    _, shown = at.session_state["survival_check"]
    assert [(o.transform, o.label, o.fools) for o in shown] == [(o.transform, o.label, o.fools) for o in expected]
    assert [int(row[f"survives_{o.transform}"]) for o in expected] == [int(o.fools) for o in expected]  # = audit.csv
    text = " ".join(m.value for m in at.markdown)
    assert f"**{sum(o.fools for o in expected)} of {len(expected)}** copies still fool the model" in text
