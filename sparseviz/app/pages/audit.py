"""The Audit page as the script file Streamlit runs (the page itself is ``sparseviz.app.audit_page``)."""

from sparseviz.app.audit_page import page

page()
