"""Alliance Monitor: entry point for ``streamlit run app.py``.

This one file is two things:

* **the server** (imported as module ``app``): ``streamlit run app.py`` finds the ``st.App``
  assignment below and serves it with uvicorn, so Streamlit's own routes (``/_stcore/health``
  and the rest) come with the login routes and the session gate of ``ui/web.py``;
* **the script** (run as ``__main__`` on every rerun): page config, the engine (created and
  migrated on first start), the login gate and the navigation by role. Every page guards itself
  as well (see ui/session.py).
"""

from __future__ import annotations

from streamlit.starlette import App

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


def run_script() -> None:
    """One script run: the login gate, then the navigation by role."""
    import streamlit as st

    import ui.loaders  # noqa: F401 - warms the heavy imports (scipy, plotly) while the login page shows
    from db.audit import key_problem
    from ui.session import current_actor, get_engine

    st.set_page_config(page_title="Alliance Monitor", page_icon=":material/monitor_heart:", layout="wide")
    if problem := key_problem(get_engine()):  # nothing could be audited, so nothing may be done
        st.error(problem)
        st.stop()
    actor = current_actor()
    # Every page stays reachable by its URL and guards itself (ui.session.require): logged out it
    # shows the login form, so a shared link (e.g. /patient?patient=P00042) opens the right page
    # after logging in; logged in, a page of another role says so ("This page is not part of
    # your role") instead of Streamlit's "Page not found". The menu lists the role's pages only.
    pages = [st.Page(file, title=title, icon=icon, url_path=url or None, default=(url == ""),
                     visibility="visible" if actor is not None and actor.role in roles else "hidden")
             for url, (file, title, icon, roles) in PAGES.items()]
    navigation = st.navigation(pages, position="sidebar" if actor else "hidden")
    navigation.run()


if __name__ == "__main__":  # a script run (Streamlit runs the main script as __main__; so does AppTest)
    run_script()
else:  # imported by `streamlit run app.py` (or `uvicorn app:app`): the ASGI server
    from streamlit.runtime.pages_manager import PagesManager

    from ui.cache import tune_allocator
    from ui.web import MIDDLEWARE, ROUTES, install_download_guard

    tune_allocator()  # large blocks go back to the system when freed (ui/cache.py)

    # The pages/ folder is this app's page files, not Streamlit's old automatic multipage mode:
    # without this, the first script run of a fresh server that is a deep link (/admin after the
    # login form) runs pages/admin.py alone, with the raw file list as the menu, for every
    # session until someone opens "/" (Streamlit sets this flag only once st.navigation has run).
    PagesManager.uses_pages_directory = False
    install_download_guard()
    app = App(__file__, routes=ROUTES, middleware=MIDDLEWARE)
