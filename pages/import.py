"""Import (``/import``, admins): a weekly-scores CSV, an Excel workbook or FHIR JSON.

The file is checked and compared with the stored scores first: the preview shows every
problem (row, column, reason) or what would change (new, unchanged, conflicting rows).
Nothing is written until "Import" is pressed, and then all or nothing.
"""

import streamlit as st

from core.markdown import text
from ui.dataio import MAX_UPLOAD_MB, preview_upload, run_upload
from ui.session import require

actor = require(roles=("admin",))
st.title("Import scores")
st.caption("A weekly-scores file (CSV, comma or semicolon, UTF-8 with or without BOM; or Excel .xlsx) with the "
           "columns patient_id, therapist_id, week, instrument, score and optionally administered_on and "
           "item_1 … item_N; or FHIR R4 JSON (a QuestionnaireResponse or a Bundle of them). "
           "Formats: docs/data-formats.md.")
upload = st.file_uploader("Scores file", type=["csv", "xlsx", "json"], max_upload_size=MAX_UPLOAD_MB,
                          help=f"At most {MAX_UPLOAD_MB} MB; split larger files.")
if upload is None:
    st.info("Choose a file. You will see what it would change before anything is written.")
    st.stop()

data = upload.getvalue()
preview = preview_upload(actor, upload.name, data)
if not preview.ok:
    st.error(f"{text(upload.name)} cannot be imported: {preview.n_problems:,} "
             f"problem{'s' if preview.n_problems != 1 else ''}, listed below. Nothing was written. Correct the "
             f"file and upload it again.")
    st.dataframe(preview.errors, hide_index=True, width="stretch", placeholder="—",
                 column_config={"where": "Where", "column": "Column", "problem": st.column_config.TextColumn(
                     "Problem", width="large")})
    if preview.more:
        st.caption(preview.more)
    st.stop()

new, same, conflicts = st.columns(3)
new.metric("New", preview.new)
same.metric("Unchanged", preview.unchanged)
conflicts.metric("Conflicting", preview.conflicts)
if preview.creation_note:
    st.warning(text(preview.creation_note), icon=":material/person_add:")  # names from the file, shown as typed
if preview.therapist_note:
    st.warning(text(preview.therapist_note))  # names and codes from the file, shown as typed
if preview.risk_note:
    st.warning(text(preview.risk_note))  # names and codes from the file, shown as typed
if preview.calendar_note:
    st.warning(text(preview.calendar_note))  # names and codes from the file, shown as typed
if preview.conflicts:
    rows = "1 row conflicts" if preview.conflicts == 1 else f"{preview.conflicts:,} rows conflict"
    them = "It is" if preview.conflicts == 1 else "They are"
    st.warning(f"{rows} with scores already stored (same patient, questionnaire and week, another value): the "
               f"table shows the stored score beside the file's. {them} refused unless you replace "
               f"{'it' if preview.conflicts == 1 else 'them'}; replaced values stay in the audit trail.")
st.dataframe(preview.rows.head(2000), hide_index=True, width="stretch", placeholder="—",
             column_config={"file_row": st.column_config.NumberColumn("Row", format="%d"), "change": "Change",
                            "patient_id": "Patient", "therapist_id": "Therapist",
                            "week": st.column_config.NumberColumn("Week", format="%d"),
                            "instrument": "Questionnaire", "score": "Score in the file",
                            "stored_score": st.column_config.NumberColumn(
                                "Stored score", help="For a conflict: the score already stored, which the file's "
                                                     "would replace.")})
if len(preview.rows) > 2000:
    st.caption(f"Showing the first 2,000 of {len(preview.rows):,} rows (conflicts first).")
replace = st.checkbox("Replace conflicting scores", value=False, disabled=not preview.conflicts)
if preview.new == 0 and preview.conflicts == 0:
    st.success("Everything in this file is already stored; importing it would change nothing.")
    st.stop()
if st.button("Import", type="primary", disabled=bool(preview.conflicts and not replace)):
    ok, message = run_upload(actor, upload.name, data, replace=replace)
    (st.success if ok else st.error)(message)
