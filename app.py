"""``streamlit run app.py`` from a source checkout: the app lives in ``sparseviz.app``."""

from sparseviz.app.main import navigation

navigation()
