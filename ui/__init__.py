"""Streamlit glue shared by app.py and the pages: engine, login gate, cached loaders.

Not under pages/ (Streamlit would serve it as a page). No SQL here either: data come from
``db`` functions, which enforce access control.
"""
