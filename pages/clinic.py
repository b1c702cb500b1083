"""Clinic meeting (``/clinic``): pseudonymised aggregates for the clinic or a team and period.

Alerts per week, rupture and repair rates, the average courses beside the published trial,
and the within/between analysis of the clinic's own data. Meeting mode hides patient codes
and therapist names and suppresses displayed counts from 1 to 10 (and counts that would
reveal them).
"""

import datetime as dt
import secrets

import streamlit as st

from core import clock, instruments
from core.clinic_figures import (
    build_alerts_per_week_figure,
    build_courses_figure,
    build_forest_figure,
    build_on_track_figure,
    forest_rows,
)
from core.meeting import (
    SUPPRESSED,
    TOO_FEW,
    alerts_per_week,
    alliance_within_sd,
    average_courses,
    caseload_table,
    format_counts,
    meeting_alerts,
    meeting_therapist_table,
    models_table,
    on_track_by_week,
    read_within_estimate,
    rupture_summary,
    summary_display,
    therapist_counts,
    weekly_trends,
)
from core.models import PUBLISHED
from core.reports import HandoutSection, handout_columns, handout_summary
from core.static_export import NO_BROWSER_MESSAGE, chart_available
from ui.meeting_loaders import (
    audit_once,
    current_version,
    handout_download,
    load_analysis,
    load_scope,
    load_scope_alerts,
    load_scope_expected,
    load_teams,
    png_download,
)
from ui.session import require

#: Meeting mode lasts for the browser session, across visits of other pages, until switched off:
#: Streamlit forgets a widget's value when a page without it runs, so it is kept under this key.
MEETING_KEY = "meeting_mode_on"
#: The per-therapist table's column names.
THERAPIST_COLUMNS = {"therapist_id": "Therapist", "therapist_name": "Name", "alerts": "Open alerts",
                     "patients": "Patients with an alert", "unrepaired_ruptures": "Unrepaired ruptures",
                     "overdue": "Not addressed > 7 days", "addressed": "Addressed"}

actor = require(roles=("supervisor", "admin"))
version = current_version()
if "meeting_mode" not in st.session_state:
    st.session_state["meeting_mode"] = bool(st.session_state.get(MEETING_KEY, False))
if st.session_state["meeting_mode"]:
    st.title("Clinic meeting · meeting mode on")
    st.caption("Meeting mode stays on for this session, on every visit of this page, until you switch it off.")
else:
    st.title("Clinic meeting")

teams = load_teams(actor, version)
options = ([None] if actor.role == "admin" else []) + teams
with st.container(horizontal=True):
    team = st.selectbox("Team", options, format_func=lambda t: "Whole clinic" if t is None else f"Team {t}",
                        help="Supervisors see their own team; admins the whole clinic or one team.")
    limit = st.toggle("Only patients who started in a period")
    meeting = st.toggle("Meeting mode", key="meeting_mode",
                        help="For screens shown to a room: hides patient codes and therapist names and "
                             "suppresses counts from 1 to 10 (and counts from which one could be worked out). "
                             "It stays on for this session until you switch it off.")
st.session_state[MEETING_KEY] = meeting
started_from = started_to = None
if limit:
    today = clock.today()
    period = st.date_input("Started between", (today - dt.timedelta(days=182), today), format="YYYY-MM-DD")
    if len(period) != 2:
        st.info("Choose the first and the last start date of the period.")
        st.stop()
    started_from, started_to = period
salt = st.session_state.setdefault("meeting_salt", secrets.token_hex(8))

patients, scores = load_scope(actor, version, team, started_from, started_to)
if patients.empty:
    st.info("No patients in this team and period. Choose another team, or widen the period.")
    st.stop()
alerts = load_scope_alerts(actor, version, clock.today(), team, started_from, started_to)
audit_once(actor, "view_clinic", team=team or "all", started_from=started_from, started_to=started_to)
if meeting:
    st.info("Meeting mode: no patient codes or therapist names; counts from 1 to 10, and counts from which "
            f"one could be worked out, show as {SUPPRESSED}. A rate is shown only when it is based on more than "
            f"10 patients or ruptures (else {TOO_FEW}); when its count is hidden it shows as the most it can be "
            "(e.g. ≤28%). Per therapist, zeros are hidden too.", icon=":material/visibility_off:")

# ---------------------------------------------------------------- alerts and ruptures
st.header("Alerts and ruptures")
summary = summary_display(rupture_summary(alerts, patients=len(patients)), meeting=meeting)
cols = st.columns(5)
cols[0].metric("Patients", summary["patients"])
cols[1].metric("With a rupture", summary["patients_with_rupture"], help="Patients with at least one rupture flag.")
cols[2].metric("Rupture rate", summary["rupture_rate"], help="Share of patients with at least one rupture flag. "
               "Larsson et al. (2018): 25% of 605 therapies.")
cols[3].metric("Repair rate", summary["repair_rate"], help="Repaired ruptures among those whose repair window "
               "has closed (repaired + unrepaired).")
cols[4].metric("Weeks to repair", summary["median_weeks_to_repair"], help="Median weeks from a rupture to its "
               "repair, over repaired ruptures.")
st.caption(f"Rupture flags: {summary['ruptures']} (repaired {summary['repaired']}, unrepaired "
           f"{summary['unrepaired']}, still open {summary['pending']}).")

per_week = alerts_per_week(alerts)
shown_counts, period = meeting_alerts(per_week, meeting=meeting)
alerts_fig = build_alerts_per_week_figure(shown_counts, suppressed_marker=SUPPRESSED, weeks_per_bar=period)
st.plotly_chart(alerts_fig, width="stretch", key="alerts_per_week")
if period > 1:
    st.caption(f"Meeting mode pools {period} weeks per bar: week by week, most counts of this team are from 1 to "
               "10 and would be hidden.")
with st.expander("Alerts per week as a table" if period == 1 else f"Alerts per {period} weeks as a table"):
    st.dataframe(format_counts(shown_counts), width="stretch", placeholder="—")

st.subheader("By therapist")
by_therapist = therapist_counts(caseload_table(alerts))
if meeting:  # ordered by pseudonym; zeros hidden too; whatever the totals would give away hidden with them
    by_therapist = meeting_therapist_table(by_therapist, salt=salt)
st.dataframe(by_therapist, hide_index=True, width="content", placeholder="—", column_config=THERAPIST_COLUMNS)

# ---------------------------------------------------------------- courses
st.header("Average courses")
courses = average_courses(scores, min_n=11 if meeting else 1)
courses_fig = build_courses_figure(courses)
st.plotly_chart(courses_fig, width="stretch", key="average_courses")
courses_caption = ("Solid: this clinic's mean by treatment week with ±1 SD between patients (band); weeks with "
                   "fewer than 20 patients say their n. Dashed: the week means of the published trial "
                   f"({PUBLISHED.citation})."
                   + (" Weeks with fewer than 11 patients are not drawn in meeting mode." if meeting else ""))
st.caption(courses_caption)

# ---------------------------------------------------------------- on track
st.header("On track")
on_track = on_track_by_week(load_scope_expected(actor, version, team, started_from, started_to),
                            min_n=11 if meeting else 1)
if len(on_track):
    on_track_fig = build_on_track_figure(on_track)
    st.plotly_chart(on_track_fig, width="stretch", key="on_track")
else:
    on_track_fig = None
    st.info("No SPIN course can be judged yet: *not on track* needs the expected SPIN course, which needs the "
            "clinic's SPIN SD (Admin → Rule parameters → freeze) and patients with a week-1 score and three weeks.")
on_track_caption = ("Bars: of the patients with a SPIN score that week (from week 3), the share whose course is on "
                    "track for their starting score (the `not_on_track` rule; How flags work); weeks with fewer "
                    "than 20 patients say their n. Lines: those patients' mean SPIN and the mean expected for their "
                    "starting scores, from the clinic's expected course."
                    + (" Weeks with fewer than 11 patients are not drawn in meeting mode." if meeting else ""))
st.caption(on_track_caption)

# ---------------------------------------------------------------- models
st.header("Within- and between-person analysis")
symptoms = [c for c in instruments.symptom_codes() if c in set(scores["instrument"])] or ["SPIN"]
alliances = [c for c in instruments.alliance_codes() if c in set(scores["instrument"])] or ["WAI-SR"]
with st.container(horizontal=True):
    symptom = st.selectbox("Symptom", symptoms, index=symptoms.index("SPIN") if "SPIN" in symptoms else 0)
    alliance = st.selectbox("Alliance", alliances, index=alliances.index("WAI-SR") if "WAI-SR" in alliances else 0)
bar = st.progress(0.0, text="Fitting the models…")
result = load_analysis(actor, version, symptom, alliance, team, started_from, started_to,
                       progress=lambda fraction, message: bar.progress(min(max(fraction, 0.0), 1.0), text=message))
bar.empty()
if isinstance(result, str):
    st.warning(result + " Choose a larger team or a wider period, or wait until more weeks are stored.")
else:
    failed = [m for m in result.all_models.values() if not m.converged]
    if failed:
        st.error(f"The {', '.join(m.name for m in failed)} model(s) did not converge, so their numbers are not shown "
                 "as results. " + " ".join(m.message for m in failed if m.message)
                 + " Try another pair of instruments, or wait for more data.")
    forest = forest_rows(result)
    n_obs = f"{result.total.n_obs} week pairs of {result.n_patients} patients"
    st.caption(f"{symptom} next week on {alliance} this week ({n_obs}); linear mixed models with a random "
               "intercept per patient (REML) and, for between, least squares over person means. Published: "
               f"{PUBLISHED.citation} (SPIN on WAI-SR, {PUBLISHED.n_patients} patients).")
    st.dataframe(models_table(forest), hide_index=True, width="stretch", placeholder="—", key="models_table",
                 column_config={"Note": st.column_config.TextColumn("Note", width="large")})
    st.caption("**Person-mean alliance in the within model** (trial: −0.028): about 0 by construction, because "
               "that model's outcome is each patient's distance from their own average, so no difference between "
               "patients is left for it to explain. It is not a between-person effect, here or in the trial; the "
               "between model is.")
    st.caption("**Adjusted for week** (sensitivity model; Wang & Maxwell 2015, Curran & Bauer 2011): the within "
               "model with each patient's own straight-line alliance course taken out of the alliance part and "
               "the treatment week added. **When alliance and symptoms both trend over the weeks, read the "
               "adjusted estimate**: the trial's specification also counts the shared trend as a week-to-week "
               "link. When neither trends, the two agree.")
    forest_fig = build_forest_figure(result)
    st.plotly_chart(forest_fig, width="stretch", key="forest")
    reading = ("**What the within-person estimate means.** "
               + read_within_estimate(result, within_sd=alliance_within_sd(scores, alliance=alliance),
                                      trends=weekly_trends(scores, instruments=(alliance, symptom))))
    st.markdown(reading)

# ---------------------------------------------------------------- downloads
st.header("Download the figures")
if not chart_available():
    st.warning(NO_BROWSER_MESSAGE)
else:
    sections = [
        HandoutSection("Alerts and ruptures", table=handout_summary(summary),
                       text=f"Rupture flags: {summary['ruptures']} (repaired {summary['repaired']}, unrepaired "
                            f"{summary['unrepaired']}, still open {summary['pending']})."),
        HandoutSection("Alerts per week" if period == 1 else f"Alerts per {period} weeks", figure=alerts_fig),
        HandoutSection("By therapist", table=handout_columns(by_therapist, THERAPIST_COLUMNS)),
        HandoutSection("Average courses", figure=courses_fig, text=courses_caption),
    ]
    if on_track_fig is not None:
        sections.append(HandoutSection("On track", figure=on_track_fig, text=on_track_caption))
    if not isinstance(result, str):
        sections += [HandoutSection("Within- and between-person analysis", table=models_table(forest).drop(
            columns="Note"), figure=forest_fig, text=reading)]
    scope_words = ("Whole clinic" if team is None else f"Team {team}") + (
        f", patients who started {started_from:%Y-%m-%d} to {started_to:%Y-%m-%d}" if started_from else "")
    st.download_button(
        "Meeting handout (PDF)", icon=":material/picture_as_pdf:", on_click="ignore", key="clinic_handout",
        data=handout_download(actor, sections, title="Clinic meeting" + (" (meeting mode)" if meeting else ""),
                              subtitle=f"{scope_words}." + (" Pseudonymised; counts from 1 to 10 and counts that "
                                                            "would reveal them show as ≤10." if meeting else ""),
                              meeting=meeting),
        file_name=f"clinic-meeting-{clock.today():%Y-%m-%d}.pdf", mime="application/pdf",
        help="The page as one PDF, with the same pseudonyms and suppression as the screen.")
    with st.container(horizontal=True):
        st.download_button("Alerts per week (PNG)", data=png_download(actor, alerts_fig, what="clinic_alerts_per_week"),
                           file_name="alerts-per-week.png", mime="image/png", on_click="ignore")
        st.download_button("Average courses (PNG)", data=png_download(actor, courses_fig, what="clinic_courses"),
                           file_name="average-courses.png", mime="image/png", on_click="ignore")
        if not isinstance(result, str):
            st.download_button("Forest plot (PNG)", data=png_download(actor, forest_fig, what="clinic_forest"),
                               file_name="forest-plot.png", mime="image/png", on_click="ignore")
