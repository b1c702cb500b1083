"""The patient picker of the patient, entry, My patients, caseload and admin pages, at any size.

A ``st.selectbox`` sends every option to the browser on every run of its page: an admin's
10,000 patient codes on each rerun, and a dropdown of 10,000 rows to scroll (issue 19). Up to
:data:`LISTED` patients the picker lists them all, as a plain selectbox; beyond, it lists the
first :data:`LISTED` (in the page's order: the most urgent first where the page sorts so, and the
current patient always) and takes any other code typed into it (``accept_new_options``), which
is how someone with thousands of patients looks one up anyway.
"""

from __future__ import annotations

from typing import Any

#: Up to this many patients the picker lists them all.
LISTED = 300


def patient_picker(where: Any, label: str, codes: list[str], *, current: str | None = None,
                   key: str | None = None, help: str | None = None,
                   placeholder: str = "Choose a patient…") -> str | None:
    """A patient code chosen from ``codes`` (or typed), or ``None``; drawn in ``where`` (``st`` or
    a column). ``current`` is preselected when it is one of ``codes``.

    A typed code is matched to ``codes`` regardless of case (``p00042`` is ``P00042``); one that
    matches none comes back as typed, so the page answers it exactly like a code the user may not
    see ("No such patient"), never with a hint that it exists.
    """
    if len(codes) <= LISTED:
        return where.selectbox(label, codes, index=codes.index(current) if current in codes else None,
                               placeholder=placeholder, key=key, help=help)
    listed = codes[:LISTED]
    if current is not None and current not in listed and current in set(codes):
        listed = [current, *listed]
    more = f"The list shows {LISTED:,} of your {len(codes):,} patients; type any code and press Enter."
    chosen = where.selectbox(label, listed, index=listed.index(current) if current in listed else None,
                             placeholder="Type a patient code, or choose…", key=key,
                             help=f"{help} {more}" if help else more, accept_new_options=True)
    if chosen is None or chosen in listed:
        return chosen
    typed = str(chosen).strip()
    return {c.upper(): c for c in codes}.get(typed.upper(), typed)
