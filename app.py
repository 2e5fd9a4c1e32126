"""``streamlit run app.py`` from a source checkout: the app lives in ``sparseviz.app``.

Under ``streamlit run`` this file declares the server: a Streamlit ``App`` whose start-up
(``sparseviz.app.preload``) loads the model, checks the shipped demo and starts the worker
processes before anyone connects, so the first visitor sees the demo at once. Run as a page
script (Streamlit's AppTest), it draws the page.
"""

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

if get_script_run_ctx() is None and hasattr(st, "App"):  # imported by `streamlit run app.py` (Streamlit 1.5x+ App)
    from sparseviz.app.preload import ENTRY, lifespan

    app = st.App(ENTRY, lifespan=lifespan)
else:  # run as the page script
    from sparseviz.app.main import navigation

    navigation()
