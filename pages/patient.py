"""The patient page (``/patient?patient=CODE``): the weekly course against the patient's own average.

Risk banner, the course chart, rupture cards with repair prompts and "Addressed in feedback",
the bond/goal/task subscales, the flags, the week-by-week table and the downloads (one-page
PDF, HTML, CSV). A code the user may not see answers exactly like one that does not exist:
"No such patient".
"""

import streamlit as st

from core.caseload import STATUS_WORDS
from core.figures import build_subscale_figure
from core.markdown import text
from core.notices import patient_notices
from core.repair import REFERENCES, addressable_flags, describe_card, flag_table, risk_alerts, rupture_cards
from core.reports import week_by_week
from core.static_export import NO_BROWSER_MESSAGE, chart_available
from ui.loaders import (
    audit_view,
    current_version,
    load_course_figure,
    load_patient,
    load_patient_notices,
    load_patients,
    mark_flags,
    report_download,
)
from ui.picker import patient_picker
from ui.session import live_fragment, require

#: The chart's week range: the whole course, or the latest weeks of a long one.
RECENT_WEEKS = 12
WHOLE_COURSE, LAST_WEEKS = "Whole course", f"Last {RECENT_WEEKS} weeks"
NO_SUCH_PATIENT = ("No such patient. Check the code, or choose a patient from the list; you can only "
                   "open patients on your own caseload (supervisors: your team's).")

actor = require()
version = current_version()
patients = load_patients(actor, version)
codes = patients["patient_id"].tolist()
requested = st.query_params.get("patient")
chosen = patient_picker(st, "Patient", codes, current=requested,
                        help="Patients you may see: your caseload (supervisors: your team's).")
if chosen and chosen != requested:
    st.query_params["patient"] = chosen
    requested = chosen
if not requested:
    st.info("Choose a patient to see their weekly course.")
    st.stop()

info, scores, flags = load_patient(actor, requested, version)
if info is None:
    st.error(NO_SUCH_PATIENT)
    st.stop()
audit_view(actor, info.code)

st.title(f"Patient {text(info.code)}")
since = f" since {info.status_since:%d %b %Y}" if info.status_since and info.status != "active" else ""
facts, coverage = load_patient_notices(actor, info.code, version)
notices = patient_notices(facts, coverage=coverage, scores=scores)
states = notices.loc[notices["notice"].eq("clinical_range"), "text"].tolist()
st.caption(f"Therapist: {text(info.therapist_display or info.therapist or 'none')} · status: "
           f"{STATUS_WORDS.get(info.status, info.status)}{since}"
           + (f" · started {info.start_date:%d %b %Y}" if info.start_date else " · no start date")
           + "".join(f" · {text(state.rstrip('.'))}" for state in states))
done = st.session_state.pop("flag_action_done", None)
if done:
    st.success(done)

# --- Risk: cannot be missed -----------------------------------------------------------------
if not flags.empty:
    risks = risk_alerts(flags)
    for message in risks.loc[~risks["addressed"], "message"]:
        st.error(f"**Risk item — act today.** {message}", icon=":material/emergency:")
    for message in risks.loc[risks["addressed"], "message"]:
        st.warning(f"Risk item (addressed in feedback): {message}", icon=":material/emergency:")

for line in notices.loc[notices["notice"].ne("clinical_range"), "text"]:
    st.info(line, icon=":material/info:")

if scores.empty:
    st.info("No questionnaires are stored for this patient yet.")
    st.stop()

# --- Rupture cards ----------------------------------------------------------------------------
cards = rupture_cards(flags, last_week=int(scores["week"].max())) if not flags.empty else rupture_cards(flags)
if len(cards):
    st.subheader("Ruptures", help="A rupture is a fall in the alliance against the patient's own level. "
                                  "Repaired: back within one reliable change of the baseline, with at least "
                                  "half of the fall won back, within the repair window (default 2 weeks).")
for _, card in cards.iterrows():
    key = f"{card['instrument']}-{int(card['week'])}"
    heading = (f"Rupture in week {int(card['week'])}: {card['series']} — {card['repair_words']}"
               + (" · addressed in feedback" if card["addressed"] else ""))
    repaired = card["repair_status"] == "repaired"
    # a repaired rupture is kept, collapsed: what happened stays readable without taking the page
    box = (st.expander(heading, expanded=False, icon=":material/check:", key=f"rupture_card_{key}") if repaired
           else st.container(border=True, key=f"rupture_card_{key}"))
    with box:
        if not repaired:
            st.markdown(f"#### {heading}")
        lines = describe_card(card)
        if card["addressed"]:  # who addressed it, when and how: the note below says it in full
            lines = [line for line in lines if not line.startswith("Addressed in feedback by")]
        st.markdown("\n".join(f"- {line}" for line in lines))
        subscale = card["subscale"] if isinstance(card["subscale"], str) else "general"
        if not repaired:
            with st.expander(f"Repair prompts for this week's feedback ({subscale})", expanded=not card["addressed"]):
                st.markdown("\n".join(f"{n}. {p}" for n, p in enumerate(card["prompts"], start=1)))
                st.caption("After " + "; ".join(REFERENCES) + ".")
        flag_keys = [(card["instrument"], int(w), "rupture") for w in card["weeks"]]
        if card["addressed"]:
            st.success(f"Addressed in feedback by {text(card['note_by'])} ({card['note_at']:%d %b %Y %H:%M} UTC): "
                       f"{text(card['note'])}", icon=":material/check_circle:")
            if st.button("Reopen", key=f"reopen_{key}", help="Gives the rupture back its computed status."):
                error = mark_flags(actor, info.code, flag_keys, action="reopened", note="")
                if error:
                    st.error(text(error))
                else:
                    st.session_state["flag_action_done"] = f"Rupture in week {int(card['week'])} reopened."
                    st.rerun()
        else:
            with st.form(f"address_{key}"):
                note = st.text_area("What did you do in your feedback?", key=f"note_{key}", max_chars=1000,
                                    placeholder="e.g. Asked how our contact has felt and acknowledged my short "
                                                "reply last week.")
                if st.form_submit_button("Mark addressed in feedback"):
                    error = mark_flags(actor, info.code, flag_keys, action="addressed", note=note)
                    if error:
                        st.error(text(error))
                    else:
                        st.session_state["flag_action_done"] = (f"Rupture in week {int(card['week'])} marked "
                                                                "addressed in feedback.")
                        st.rerun()

# --- The course ------------------------------------------------------------------------------
EXPECTED, RUNNING, WHOLE = "Expected", "Average so far", "Whole course"

@live_fragment  # re-checks the login when the fragment reruns on its own (issue 14)
def course_chart() -> None:
    """The chart and its switch; flipping the switch reruns only this part of the page."""
    n_weeks = int(scores["week"].max()) - int(scores["week"].min()) + 1
    with st.container(horizontal=True, vertical_alignment="center"):
        span = st.segmented_control("Weeks shown", [WHOLE_COURSE, LAST_WEEKS], default=WHOLE_COURSE,
                                    key="week_range", disabled=n_weeks <= RECENT_WEEKS,
                                    help=f"For long courses: the latest {RECENT_WEEKS} weeks only (the averages "
                                         "still use every week before them).")
        shown = st.segmented_control(
            "Compare with", [EXPECTED, RUNNING, WHOLE], default=EXPECTED, key="compare_with",
            help="Expected: what the flags compare each week with (alliance: this patient's own level so far plus "
                 "the clinic's usual course; symptoms: the course expected for their starting score). Average so "
                 "far: the plain average of the weeks before. Whole course: the average of all weeks, for looking "
                 "back (retrospective).")
    compare = {RUNNING: "running", WHOLE: "full"}.get(shown or EXPECTED, "expected")
    figure = load_course_figure(actor, info.code, version, compare=compare,
                                last_weeks=RECENT_WEEKS if span == LAST_WEEKS else None)
    st.plotly_chart(figure, width="stretch", key="patient_course")


st.subheader("Course over the weeks")
course_chart()
st.caption("Solid line: the week's score (gaps are missing weeks, marked by a grey tick). Dotted line and band, "
           "with *Expected*: for the alliance, this patient's own level so far plus the clinic's usual "
           "course, ±1 of their own week-to-week standard deviation (SD: how much their scores usually vary); for "
           "a symptom scale with an expected course, what is expected for their starting score and where patients "
           "who started alike usually are. Marked points are flags; hover for the reason.")

# --- Subscales --------------------------------------------------------------------------------
st.subheader("Bond, goal and task", help="The three parts of the alliance (WAI-SR): bond = trust and liking, "
                                         "goal = agreement on what therapy is for, task = agreement on how to "
                                         "work, e.g. the homework.")
st.plotly_chart(build_subscale_figure(scores, instrument="WAI-SR"), width="stretch", key="patient_subscales")

# --- Flags ------------------------------------------------------------------------------------
if not flags.empty:
    st.subheader("Flags")
    st.dataframe(flag_table(flags), hide_index=True, width="stretch", placeholder="—", key="flags_table",
                 column_order=["week", "instrument", "kind_words", "severity", "status_words", "explanation", "note",
                               "note_by", "note_at"],
                 column_config={"week": st.column_config.NumberColumn("Week", format="%d"),
                                "instrument": "Questionnaire", "kind_words": "Kind", "severity": "Severity",
                                "status_words": st.column_config.TextColumn(
                                    "Status", help="open, repaired, not repaired (not back within the repair "
                                                   "window); and whether you addressed it in your feedback."),
                                "explanation": st.column_config.TextColumn("Why", width="large"),
                                "note": st.column_config.TextColumn("Feedback note", width="medium"),
                                "note_by": "Noted by",
                                "note_at": st.column_config.DatetimeColumn("Noted at (UTC)",
                                                                           format="D MMM YYYY HH:mm")})
    choices = addressable_flags(flags)
    if len(choices):
        with st.expander("Mark another flag addressed in feedback, or reopen one"):
            picked = st.selectbox("Flag", choices.index, format_func=lambda i: choices.loc[i, "label"],
                                  key="other_flag")
            row = choices.loc[picked]
            keys = [(row["instrument"], int(row["week"]), row["kind"])]
            if row["status"] == "addressed":
                st.caption(f"Note by {text(row['note_by'])}: {text(row['note'])}")
                if st.button("Reopen this flag", key="reopen_other"):
                    error = mark_flags(actor, info.code, keys, action="reopened", note="")
                    if error:
                        st.error(text(error))
                    else:
                        st.session_state["flag_action_done"] = "Flag reopened."
                        st.rerun()
            else:
                with st.form("address_other"):
                    note = st.text_area("What did you do in your feedback?", key="note_other", max_chars=1000)
                    if st.form_submit_button("Mark addressed in feedback"):
                        error = mark_flags(actor, info.code, keys, action="addressed", note=note)
                        if error:
                            st.error(text(error))
                        else:
                            st.session_state["flag_action_done"] = "Flag marked addressed in feedback."
                            st.rerun()

# --- Week by week -----------------------------------------------------------------------------
@live_fragment  # re-checks the login when the fragment reruns on its own (issue 14)
def week_table() -> None:
    """The week-by-week table; "Show item answers" reruns only this part of the page."""
    with_items = st.toggle("Show item answers", value=False, key="show_items",
                           help="One column per questionnaire item (WAI-SR items are shown as 'Item N' numbers "
                                "only).")
    table = week_by_week(scores, items=with_items, newest_first=True)
    # every week on the page, the latest on top: no scrolling inside the table to reach this week
    st.dataframe(table, hide_index=True, width="stretch", placeholder="—", key="week_table",
                 height=35 * (len(table) + 1) + 3, row_height=35,
                 column_config={"week": st.column_config.NumberColumn("Week", format="%d", pinned=True)})


st.subheader("Week by week")
week_table()
st.caption("Scores are in each questionnaire's own units: WAI-SR and WAI-P 12–60 (higher = better), SPIN 0–68, "
           "PHQ-9 0–27, GAD-7 0–21 (higher = worse). The latest week is on top; a dash is a week without that "
           "questionnaire.")

# --- Downloads --------------------------------------------------------------------------------
st.subheader("Report and data")
left, middle, right = st.columns(3)
if chart_available():
    left.download_button("Download the one-page report (PDF)", data=report_download(actor, info.code, kind="pdf"),
                         file_name=f"{info.code}-report.pdf", mime="application/pdf", key="download_pdf",
                         icon=":material/picture_as_pdf:", on_click="ignore")
else:
    left.warning(NO_BROWSER_MESSAGE)
middle.download_button("Download the report as HTML", data=report_download(actor, info.code, kind="html"),
                       file_name=f"{info.code}-report.html", mime="text/html", key="download_html",
                       icon=":material/html:", on_click="ignore")
right.download_button("Download the scores (CSV)", data=report_download(actor, info.code, kind="csv"),
                      file_name=f"{info.code}-scores.csv", mime="text/csv", key="download_csv",
                      icon=":material/download:", on_click="ignore")
st.caption("Every download is recorded in the audit trail.")
