"""Start ``streamlit run`` on the packaged app from Python (``sparseviz app``), source checkout or wheel."""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent  # entry.py and .streamlit/config.toml


def serve(port: int, streamlit_args: list[str]) -> int:
    """Run the app's server in this process until it stops; its exit status."""
    os.chdir(APP_DIR)  # Streamlit reads .streamlit/config.toml from the working directory; the package ships it
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", "run", str(APP_DIR / "entry.py"), "--server.port", str(port), *streamlit_args]
    try:
        streamlit_cli.main()
    except SystemExit as done:
        return int(done.code or 0)
    return 0
