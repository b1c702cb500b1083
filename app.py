"""Alliance Monitor: entry point for ``streamlit run app.py``.

Page config, the engine (created and migrated on first start), the login gate and the
navigation by role. Every page guards itself as well (see ui/session.py).
"""

from __future__ import annotations

import streamlit as st

import ui.loaders  # noqa: F401 - warms the heavy imports (scipy, plotly) while the login page shows
from db.audit import key_problem
from ui.session import current_actor, get_engine

st.set_page_config(page_title="Alliance Monitor", page_icon=":material/monitor_heart:", layout="wide")
if problem := key_problem(get_engine()):  # nothing could be audited, so nothing may be done
    st.error(problem)
    st.stop()

PAGES = {
    # url path: (file, title, icon, roles); the menu follows this order.
    "": ("pages/my_patients.py", "My patients", ":material/group:", ("therapist", "supervisor", "admin")),
    "patient": ("pages/patient.py", "Patient", ":material/person:", ("therapist", "supervisor", "admin")),
    "entry": ("pages/entry.py", "Weekly entry", ":material/edit_note:", ("therapist", "supervisor", "admin")),
    "caseload": ("pages/caseload.py", "Caseload", ":material/assignment_late:", ("supervisor", "admin")),
    "clinic": ("pages/clinic.py", "Clinic meeting", ":material/groups:", ("supervisor", "admin")),
    "import": ("pages/import.py", "Import", ":material/upload_file:", ("admin",)),
    "admin": ("pages/admin.py", "Admin", ":material/admin_panel_settings:", ("admin",)),
    "how-flags-work": ("pages/how_flags_work.py", "How flags work", ":material/help:",
                       ("therapist", "supervisor", "admin")),
}

actor = current_actor()
allowed = [st.Page(file, title=title, icon=icon, url_path=url or None, default=(url == ""))
           for url, (file, title, icon, roles) in PAGES.items()
           if actor is None or actor.role in roles]
# Logged out: every page stays reachable by its URL and shows the login form itself, so a
# shared link (e.g. /patient?patient=P00042) opens the right page after logging in.
navigation = st.navigation(allowed, position="sidebar" if actor else "hidden")
navigation.run()
