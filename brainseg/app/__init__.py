"""Streamlit glue shared by the pages (the only part of brainseg that imports Streamlit)."""
