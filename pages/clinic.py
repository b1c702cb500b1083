"""Clinic meeting (``/clinic``): pseudonymised aggregates for the clinic or a team and period.

Alerts per week, rupture and repair rates, the average courses beside the published trial,
and the within/between analysis of the clinic's own data. Meeting mode hides patient codes
and therapist names and suppresses displayed counts from 1 to 10 (and counts that would
reveal them).
"""

import datetime as dt
import secrets

import streamlit as st

from core import instruments
from core.clinic_figures import build_alerts_per_week_figure, build_courses_figure, build_forest_figure, forest_rows
from core.meeting import (
    SUPPRESSED,
    alerts_per_week,
    alliance_within_sd,
    average_courses,
    caseload_table,
    format_counts,
    models_table,
    pseudonymise,
    read_within_estimate,
    rupture_summary,
    summary_display,
    suppress_counts,
    therapist_counts,
    weekly_trends,
)
from core.models import PUBLISHED
from core.static_export import NO_BROWSER_MESSAGE, chart_available
from ui.meeting_loaders import (
    audit_once,
    current_version,
    load_analysis,
    load_scope,
    load_scope_alerts,
    load_teams,
    png_download,
)
from ui.session import require

actor = require(roles=("supervisor", "admin"))
version = current_version()
st.title("Clinic meeting")

teams = load_teams(actor, version)
options = ([None] if actor.role == "admin" else []) + teams
with st.container(horizontal=True):
    team = st.selectbox("Team", options, format_func=lambda t: "Whole clinic" if t is None else f"Team {t}",
                        help="Supervisors see their own team; admins the whole clinic or one team.")
    limit = st.toggle("Only patients who started in a period")
    meeting = st.toggle("Meeting mode", key="meeting_mode",
                        help="For screens shown to a room: hides patient codes and therapist names and "
                             "suppresses counts from 1 to 10 (and counts from which one could be worked out).")
started_from = started_to = None
if limit:
    today = dt.date.today()
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
alerts = load_scope_alerts(actor, version, dt.date.today(), team, started_from, started_to)
audit_once(actor, "view_clinic", team=team or "all", started_from=started_from, started_to=started_to)
if meeting:
    st.info("Meeting mode: no patient codes or therapist names; counts from 1 to 10, and counts from which "
            f"one could be worked out, show as {SUPPRESSED}.")

# ---------------------------------------------------------------- alerts and ruptures
st.header("Alerts and ruptures")
summary = summary_display(rupture_summary(alerts, patients=len(patients)), meeting=meeting)
cols = st.columns(5)
cols[0].metric("Patients", summary["patients"])
cols[1].metric("Patients with a rupture", summary["patients_with_rupture"], help="Rupture rate: share of patients "
               "with at least one rupture flag. Larsson et al. (2018): 25% of 605 therapies.")
cols[2].metric("Rupture rate", summary["rupture_rate"])
cols[3].metric("Repair rate", summary["repair_rate"], help="Repaired ruptures among those whose repair window "
               "has closed (repaired + unrepaired; addressed without repair counts as unrepaired).")
cols[4].metric("Median weeks to repair", summary["median_weeks_to_repair"])
st.caption(f"Rupture flags: {summary['ruptures']} (repaired {summary['repaired']}, unrepaired "
           f"{summary['unrepaired']}, still open {summary['pending']}).")

per_week = alerts_per_week(alerts)
shown_counts = suppress_counts(per_week) if meeting else suppress_counts(per_week, low=1, high=0)
alerts_fig = build_alerts_per_week_figure(shown_counts, suppressed_marker=SUPPRESSED)
st.plotly_chart(alerts_fig, width="stretch", key="alerts_per_week")
with st.expander("Alerts per week as a table"):
    st.dataframe(format_counts(shown_counts), width="stretch")

st.subheader("By therapist")
by_therapist = therapist_counts(caseload_table(alerts))
if meeting:
    by_therapist = pseudonymise(by_therapist, salt=salt).drop(columns="therapist_name")
    counted = by_therapist.set_index("therapist_id")
    # the column totals are shown; suppression also protects against the (hidden) row sums
    by_therapist = format_counts(suppress_counts(counted).drop(columns="total")).reset_index(names="therapist_id")
st.dataframe(by_therapist, hide_index=True, width="content",
             column_config={"therapist_id": "Therapist", "therapist_name": "Name", "alerts": "Open alerts",
                            "patients": "Patients with an alert", "unrepaired_ruptures": "Unrepaired ruptures",
                            "overdue": "Not addressed > 7 days", "addressed": "Addressed"})

# ---------------------------------------------------------------- courses
st.header("Average courses")
courses = average_courses(scores, min_n=11 if meeting else 1)
courses_fig = build_courses_figure(courses)
st.plotly_chart(courses_fig, width="stretch", key="average_courses")
st.caption("Solid: this clinic's mean by treatment week with ±1 SD between patients (band). Dashed: the week "
           f"means of the published trial ({PUBLISHED.citation})."
           + (" Weeks with fewer than 11 patients are not drawn in meeting mode." if meeting else ""))

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
    st.dataframe(models_table(forest), hide_index=True, width="stretch", key="models_table",
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
    st.markdown("**What the within-person estimate means.** "
                + read_within_estimate(result, within_sd=alliance_within_sd(scores, alliance=alliance),
                                       trends=weekly_trends(scores, instruments=(alliance, symptom))))

# ---------------------------------------------------------------- downloads
st.header("Download the figures")
if not chart_available():
    st.warning(NO_BROWSER_MESSAGE)
else:
    with st.container(horizontal=True):
        st.download_button("Alerts per week (PNG)", data=png_download(actor, alerts_fig, what="clinic_alerts_per_week"),
                           file_name="alerts-per-week.png", mime="image/png", on_click="ignore")
        st.download_button("Average courses (PNG)", data=png_download(actor, courses_fig, what="clinic_courses"),
                           file_name="average-courses.png", mime="image/png", on_click="ignore")
        if not isinstance(result, str):
            st.download_button("Forest plot (PNG)", data=png_download(actor, forest_fig, what="clinic_forest"),
                               file_name="forest-plot.png", mime="image/png", on_click="ignore")
