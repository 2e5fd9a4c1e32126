"""The package type-checks: mypy over sparseviz/, strict on the attacks and interpret (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.system  # a cold mypy run over the whole package takes minutes on a small machine
def test_mypy_passes() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary"], cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
