"""The patient picker of the patient, entry, My patients, caseload and admin pages, at any size.

A ``st.selectbox`` sends every option to the browser on every run of its page: an admin's
10,000 patient codes on each rerun, and a dropdown of 10,000 rows to scroll (issue 19). Up to
:data:`LISTED` patients the picker is a plain selectbox of them all. Beyond, a search box comes
first ("Find by code": any part of a code, in any case) and the selectbox lists the first
:data:`LISTED` patients that match, in the page's order (the most urgent first where the page
sorts so), the current patient always among them. (Not ``accept_new_options``: Streamlit offers a
typed code as "Add: …", which reads as creating a patient.)
"""

from __future__ import annotations

from typing import Any

#: Up to this many patients the picker lists them all.
LISTED = 300


def patient_picker(where: Any, label: str, codes: list[str], *, current: str | None = None,
                   key: str | None = None, help: str | None = None,
                   placeholder: str = "Choose a patient…") -> str | None:
    """A patient code chosen from ``codes``, or ``None``; drawn in ``where`` (``st`` or a column).
    ``current`` is preselected when it is one of ``codes``."""
    if len(codes) <= LISTED:
        return where.selectbox(label, codes, index=codes.index(current) if current in codes else None,
                               placeholder=placeholder, key=key, help=help)
    found = str(where.text_input(f"{label}: find by code", key=f"find_{key or label}",
                                 placeholder="Part of a code, e.g. 0424",
                                 help=f"{len(codes):,} patients: type any part of a code to list the ones "
                                      "that contain it.") or "").strip().upper()
    matches = [c for c in codes if found in c.upper()] if found else codes
    listed = matches[:LISTED]
    if current is not None and current not in listed and current in matches:
        listed = [current, *listed]
    shown = (f"{len(matches):,} of {len(codes):,} patients contain “{found}”" if found else
             f"{len(codes):,} patients") + (f"; the list shows the first {LISTED:,}, find by code for others."
                                             if len(matches) > LISTED else ".")
    if found and not matches:
        where.caption(f"No patient code contains “{found}”. Check the code, or clear the search.")
    return where.selectbox(label, listed, index=listed.index(current) if current in listed else None,
                           placeholder=placeholder, key=key, help=f"{help} {shown}" if help else shown)
