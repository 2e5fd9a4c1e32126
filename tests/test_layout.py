"""The layout's one-way rules, read from the source: only the app imports streamlit, the CLI's
Pillow figures do not import Plotly, and tests do not borrow code from the benchmarks."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sparseviz"


def importers(pattern: str, folder: Path) -> set[str]:
    """Files under ``folder`` with an import line matching ``pattern``."""
    line = re.compile(rf"^\s*(import|from)\s+{pattern}\b", re.M)
    return {str(path.relative_to(ROOT)) for path in folder.rglob("*.py") if line.search(path.read_text())}


def test_only_the_app_imports_streamlit() -> None:
    found = importers("streamlit", PACKAGE)
    assert found and all(path.startswith("sparseviz/app/") for path in found), sorted(found)


def test_the_pillow_figures_do_not_import_plotly() -> None:
    figures = (PACKAGE / "views" / "figures.py").read_text()
    assert "plotly" not in figures and "charts" not in figures


def test_tests_do_not_import_benchmarks() -> None:
    assert not importers(r"benchmarks", ROOT / "tests")


def test_the_bundled_photos_live_in_the_package() -> None:
    from sparseviz.images.gallery import ASSETS_DIR, bundled_images

    assert ASSETS_DIR == PACKAGE / "assets" and (ASSETS_DIR / "ATTRIBUTION.md").is_file()
    assert len(bundled_images()) >= 10
