"""How flags work (``/how-flags-work``): each rule's documentation, from docs/flags.md."""

from pathlib import Path

import streamlit as st

from ui.session import require

require()
DOC = Path(__file__).resolve().parent.parent / "docs" / "flags.md"
st.markdown(DOC.read_text(encoding="utf-8"))
