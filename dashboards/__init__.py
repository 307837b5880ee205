"""Streamlit what-if dashboard: read-only views over library results."""
