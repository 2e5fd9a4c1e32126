"""The Streamlit app. Only this package imports streamlit; its non-streamlit modules are plain library code."""
