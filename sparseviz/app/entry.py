"""The script ``streamlit run`` executes for ``sparseviz app``; the repository's ``app.py`` does the same."""

from sparseviz.app.main import navigation

navigation()
