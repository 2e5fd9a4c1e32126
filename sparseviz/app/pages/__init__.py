"""Page scripts that Streamlit runs by file."""
