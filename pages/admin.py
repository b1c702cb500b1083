"""Admin (``/admin``): accounts, roles and teams, password and two-step login resets, caseloads,
the audit trail, the API clients of the FHIR endpoint and the state of the alert e-mails.

Every change is audited; a refusal says what is wrong and how to fix it, and changes nothing.
"""

import datetime as dt

import pandas as pd
import streamlit as st

from core.markdown import text
from db import accounts, mfa
from db.auth import MIN_PASSWORD_LENGTH
from db.models import ROLES
from ui import admin
from ui.picker import patient_picker
from ui.session import require

actor = require(roles=("admin",))
st.title("Admin")
message = admin.flash()
if message:
    st.success(message)

(tab_accounts, tab_patients, tab_caseloads, tab_rules, tab_clients, tab_notify, tab_backups,
 tab_audit) = st.tabs(["Accounts", "Patients", "Move patients", "Rule parameters", "API clients", "Notifications",
                       "Backups", "Audit trail"])

with tab_accounts:
    table = admin.account_table(actor)
    # blanks and "never", not "None", where an account has no e-mail, team or login yet
    logged = pd.to_datetime(table["last_login"], utc=True, errors="coerce")
    shown = table.assign(email=table["email"].astype(object).fillna(""), team=table["team"].astype(object).fillna(""),
                         last_login=logged.dt.strftime("%Y-%m-%d %H:%M").astype(object).fillna("never"))
    st.dataframe(shown, hide_index=True, width="stretch", placeholder="—", column_config={
        "name": "Username", "display_name": "Name", "email": "E-mail (single sign-on)", "role": "Role",
        "team": "Team", "active": st.column_config.CheckboxColumn("Active"),
        "has_password": st.column_config.CheckboxColumn("Password set"),
        "sso_linked": st.column_config.CheckboxColumn(
            "Sign-on linked", help="A single sign-on identity is bound to the account (its first sign-on); "
                                   "changing the e-mail address unlinks it."),
        "patients": st.column_config.NumberColumn("Patients", format="%d"),
        "last_login": st.column_config.TextColumn("Last login (UTC)")})

    st.subheader("Change an account")
    name = st.selectbox("Account", table["name"].tolist(), index=None, placeholder="Choose an account…")
    if name:
        row = table.set_index("name").loc[name]
        with st.form("edit_account"):
            role = st.selectbox("Role", ROLES, index=ROLES.index(row["role"]))
            team = st.text_input("Team", value=row["team"] or "",
                                 help="Empty: no team (a supervisor then sees nobody).")
            email = st.text_input("E-mail for single sign-on", value=row["email"] or "")
            reason = st.text_input("Reason (kept in the audit trail)", key="edit_reason")
            if st.form_submit_button("Save role, team and e-mail"):
                saved = f"Saved {text(name)}."
                error = (admin.change(actor, accounts.set_role, saved, name=name, role=role, reason=reason)
                         or admin.change(actor, accounts.set_team, saved, name=name, team=team,
                                         reason=reason)
                         or admin.change(actor, accounts.set_email, saved, name=name, email=email))
                admin.finish(error)
        with st.form("reset_password", clear_on_submit=True):
            st.markdown(f"**New password for {text(name)}** (logs the account out everywhere)")
            new1 = st.text_input("New password", type="password",
                                 help=f"At least {MIN_PASSWORD_LENGTH} characters; no other rules.")
            new2 = st.text_input("New password again", type="password")
            if st.form_submit_button("Reset password"):
                if new1 != new2:
                    st.error("The two passwords differ; type the same new password twice.")
                else:
                    error = admin.change(actor, accounts.reset_password,
                                         f"Reset the password of {text(name)}; every open session of it is logged out.",
                                         name=name, password=new1)
                    admin.finish(error)
        off_reason = st.text_input("Reason for deactivating or reactivating", key="active_reason")
        if row["active"]:
            if st.button(f"Deactivate {text(name)}", type="secondary"):
                error = admin.change(actor, accounts.deactivate_account,
                                     f"Deactivated {text(name)}; every open session of it is logged out.",
                                     name=name, reason=off_reason)
                admin.finish(error)
        elif st.button(f"Reactivate {text(name)}"):
            error = admin.change(actor, accounts.reactivate_account, f"Reactivated {text(name)}.", name=name,
                                 reason=off_reason)
            admin.finish(error)
        if st.button(f"Reset two-step login of {text(name)}", key="reset_mfa",
                     help="For a lost phone: removes the account's authenticator key and recovery codes and logs "
                          "it out everywhere; at the next login it sets two-step login up again if its role "
                          "requires it."):
            error = admin.change(actor, mfa.reset_mfa, f"Reset the two-step login of {text(name)}; every open "
                                 "session of it is logged out.", name=name, reason=off_reason or None)
            admin.finish(error)

    st.subheader("Two-step login")
    with st.form("mfa_required"):
        required = st.multiselect("Required for these roles", ROLES, default=admin.mfa_required(actor),
                                  help="Accounts of these roles type a code from an authenticator app after their "
                                       "password, and set it up at their next login; others may turn it on "
                                       "themselves (sidebar, \"Two-step login\"). Single sign-on logins are "
                                       "left to the identity provider.")
        if st.form_submit_button("Save two-step login rule"):
            admin.finish(admin.change(actor, mfa.set_required_roles, "Saved who must use two-step login.",
                                      roles=required))

    st.subheader("Add an account")
    # a refused account keeps what was typed (to be corrected); an added one gives an empty form,
    # a fresh one under new widget keys
    form_no = admin.add_account_form()
    with st.form(f"add_account_{form_no}"):
        c1, c2 = st.columns(2)
        new_name = c1.text_input("Username (login)", help="Letters, digits, dots, dashes or underscores.",
                                 key=f"add_name_{form_no}")
        display = c2.text_input("Full name", key=f"add_display_{form_no}")
        new_role = c1.selectbox("Role", ROLES, key=f"add_role_{form_no}")
        new_team = c2.text_input("Team", key=f"add_team_{form_no}")
        new_email = c1.text_input("E-mail for single sign-on (optional)", key=f"add_email_{form_no}")
        new_password = c2.text_input("Initial password", type="password", key=f"add_password_{form_no}",
                                     help=f"At least {MIN_PASSWORD_LENGTH} characters; give it to the person "
                                          f"in person or by phone.")
        if st.form_submit_button("Add account"):
            error = admin.add_account(actor, name=new_name.strip(), role=new_role, password=new_password,
                                      team=new_team.strip() or None, display_name=display.strip() or None,
                                      email=new_email.strip().lower() or None)
            admin.finish(error)

patients = admin.patient_table(actor)
therapists = table.loc[(table["role"] == "therapist") & table["active"], "name"].tolist()

with tab_patients:
    st.caption("A patient's treatment calendar decides which weeks are expected: missed questionnaires and "
               "repair windows count from the start date. Pausing stops the calendar on the pause day; a "
               "discharged patient raises no new missed or repair alerts. Every change is audited.")
    undated = patients.loc[pd.to_datetime(patients["start_date"], errors="coerce").isna()
                           & patients["status"].isin(["active", "paused"]), "patient_id"].tolist()
    if undated:
        n = len(undated)
        listed = ", ".join(undated[:10]) + (f" and {n - 10} more" if n > 10 else "")
        st.warning(text(f"{n} patient{'s have' if n != 1 else ' has'} no start date ({listed}): missed "
                        f"questionnaires cannot be detected for {'them' if n != 1 else 'this patient'}. Set the "
                        "start date below, or import their scores with administered_on dates."))
    code = patient_picker(st, "Patient", patients["patient_id"].tolist(), key="calendar_patient")
    if code:
        row = patients.set_index("patient_id").loc[code]
        with st.form("patient_calendar"):
            c1, c2 = st.columns(2)
            start = c1.date_input("Start of treatment", value=admin.day(row["start_date"]), format="YYYY-MM-DD",
                                  help="Week 1 begins on this day; weeks are counted from it.")
            planned = c2.number_input("Planned weeks", min_value=0, max_value=520, step=1,
                                      value=int(row["planned_weeks"]) if admin.known(row["planned_weeks"]) else 0,
                                      help="0: no planned end.")
            status = c1.selectbox("Status", admin.STATUSES, index=admin.STATUSES.index(row["status"]),
                                  format_func=admin.status_words)
            status_since = c2.date_input("Status since", value=admin.day(row["status_since"]) or None,
                                         format="YYYY-MM-DD", help="Empty: today, when the status changes.")
            therapist = c1.selectbox("Therapist", therapists, index=therapists.index(row["therapist_id"])
                                     if row["therapist_id"] in therapists else None, placeholder="No therapist")
            reason = c2.text_input("Reason (kept in the audit trail)", key="calendar_reason")
            if st.form_submit_button("Save calendar"):
                admin.finish(admin.save_calendar(actor, code=code, start_date=start, status=status,
                                                 status_since=status_since, planned_weeks=int(planned),
                                                 therapist=therapist, reason=reason))
    with st.form("add_patient", clear_on_submit=False):
        st.markdown("**Add a patient** (before their first questionnaire)")
        c1, c2, c3 = st.columns(3)
        new_code = c1.text_input("Patient code", help="The clinic's pseudonym, such as P00042; no names.")
        new_therapist = c2.selectbox("Therapist", therapists, index=None, placeholder="Choose a therapist…",
                                     key="add_patient_therapist")
        new_start = c3.date_input("Start of treatment", value=None, format="YYYY-MM-DD", key="add_patient_start")
        if st.form_submit_button("Add patient"):
            admin.finish(admin.save_calendar(actor, code=new_code, start_date=new_start, therapist=new_therapist,
                                             create=True))
    shown_patients = patients.assign(status=patients["status"].map(admin.status_words),
                                     start_date=admin.day_text(patients["start_date"]),
                                     status_since=admin.day_text(patients["status_since"]))
    st.dataframe(shown_patients, hide_index=True, width="stretch", placeholder="—",
                 column_order=["patient_id", "therapist_id", "status", "status_since", "start_date", "planned_weeks",
                               "last_week"],
                 column_config={"patient_id": "Patient", "therapist_id": "Therapist", "status": "Status",
                                "status_since": "Since", "start_date": "Start",
                                "planned_weeks": st.column_config.NumberColumn("Planned weeks", format="%d"),
                                "last_week": st.column_config.NumberColumn("Last week", format="%d")})

with tab_caseloads:
    st.caption("Each patient is on one therapist's caseload; the therapist's supervisor sees them too.")
    with st.form("move_patients"):
        codes = st.multiselect("Patients", patients["patient_id"].tolist(), placeholder="Choose patients…")
        target = st.selectbox("Move to therapist", therapists, index=None, placeholder="Choose a therapist…")
        move_reason = st.text_input("Reason (kept in the audit trail)", key="move_reason")
        if st.form_submit_button("Move patients"):
            if target is None:
                st.error("Choose the therapist to move the patients to.")
            else:
                error = admin.change(actor, accounts.move_patients,
                                     f"Moved {len(codes)} patient(s) to {text(target)}.", codes=codes,
                                     therapist=target, reason=move_reason)
                admin.finish(error)
    st.dataframe(patients, hide_index=True, width="stretch", placeholder="—",
                 column_order=["patient_id", "therapist_id", "team", "status", "last_week"],
                 column_config={"patient_id": "Patient", "therapist_id": "Therapist", "team": "Team",
                                "status": "Status", "last_week": st.column_config.NumberColumn("Last week",
                                                                                               format="%d")})

with tab_rules:
    version, params, history = admin.parameter_table(actor)
    st.markdown(f"**Rule set {version} is in force.** Every stored flag names the rule set that raised it. "
                "No number a rule uses is taken from whichever patients are being looked at: each is a "
                "frozen setting with its source, so a flag is the same for every viewer and does not change "
                "when another patient arrives.")
    st.dataframe(params, hide_index=True, width="stretch", column_config={
        "instrument": "Instrument", "sd": "SD", "r": "r", "rc": "Published reliable change",
        "week1": st.column_config.TextColumn("Week-1 scores stored now", help="How many week-1 scores the clinic "
                                             "has today, and their SD: what freezing would store."),
        "source": st.column_config.TextColumn("Source of SD and r", width="large")})
    freezable = params.loc[params["rc"] == "–", "instrument"].tolist() if len(params) else []
    with st.form("freeze_parameters"):
        st.markdown("**Freeze the clinic's own week-1 SD** (needs at least 30 week-1 scores). This writes a new "
                    "rule set and recomputes every flag once.")
        chosen = st.multiselect("Instruments", freezable, default=[c for c in freezable if c == "SPIN"])
        if st.form_submit_button("Freeze and recompute"):
            admin.finish(admin.freeze(actor, chosen))
    st.markdown("**Expected courses.** Alliance (rule `below_expected`): the clinic's typical alliance by "
                "treatment week and how much patients usually vary from week to week; a patient's alliance is "
                "compared with their own level plus this course, on their own scale. Symptoms (kind "
                "`not_on_track`): the typical change from the intake score, and how much patients and weeks differ.")
    st.dataframe(admin.course_table(actor), hide_index=True, width="stretch", column_config={
        "instrument": "Instrument", "course": st.column_config.TextColumn("Expected course", width="large"),
        "spread": st.column_config.TextColumn("Spread"),
        "source": st.column_config.TextColumn("Source", width="large")})
    with st.form("freeze_course"):
        st.markdown("**Freeze the clinic's own courses**: the alliance course needs 30 patients with three or more "
                    "weeks, a symptom course 100 completed courses (a week-1 score and six weeks). This writes a new "
                    "rule set and recomputes every flag once.")
        if st.form_submit_button("Estimate, freeze and recompute"):
            admin.finish(admin.freeze_course(actor))
    rules = admin.rule_table(actor)
    st.markdown("**Rule settings.** Every parameter of every rule, with the release's default. A change writes "
                "a new rule set (with your reason, in the audit trail) and recomputes every flag once; "
                "docs/flags.md and *How flags work* explain each parameter.")
    st.dataframe(rules, hide_index=True, width="stretch", column_config={
        "rule": "Rule", "param": "Parameter", "value": "In force", "default": "Default", "changed": ""})
    if len(rules):
        c1, c2 = st.columns(2)
        rule = c1.selectbox("Rule to change", list(dict.fromkeys(rules["rule"])))
        param = c2.selectbox("Parameter", rules.loc[rules["rule"] == rule, "param"].tolist(),
                             help="'(on/off)' switches the rule on or off; '(value)' is a plain setting.")
        with st.form("set_rule"):
            c3, c4 = st.columns([1, 2])
            value = c3.text_input("New value", help="A number, true/false, on/off, or none.")
            reason = c4.text_input("Reason (kept with the rule set)")
            if st.form_submit_button("Change and recompute"):
                admin.finish(admin.set_rule(actor, rule=rule, param=param, value=value, reason=reason))
    st.caption("Rule-set history, newest first")
    st.dataframe(history, hide_index=True, width="stretch", column_config={
        "version": st.column_config.NumberColumn("Version", format="%d"),
        "created_at": st.column_config.DatetimeColumn("Written (UTC)", format="YYYY-MM-DD HH:mm"),
        "created_by": "By", "note": "What changed"})

with tab_audit:
    st.caption("Every login, failed login, lockout, view of a patient, change, import, export and account change. "
               "Rows cannot be edited or deleted; each carries a hash chained to the row before it.")
    f1, f2, f3 = st.columns(3)
    since = f1.date_input("From (UTC)", value=None, format="YYYY-MM-DD")
    until = f2.date_input("To (UTC)", value=None, format="YYYY-MM-DD")
    limit = f3.number_input("At most rows", min_value=10, max_value=100_000, value=500, step=100)
    f4, f5, f6 = st.columns(3)
    who = f4.text_input("Who (username)")
    patient_code = f6.text_input("Patient code")
    action = f5.selectbox("Action", admin.audit_actions(actor), index=None, placeholder="All actions")
    events = admin.trail(actor, since=since, until=until, who=who or None, action=action,
                         patient_code=patient_code or None, limit=int(limit))
    st.dataframe(admin.readable_trail(events), hide_index=True, width="stretch", placeholder="—",
                 column_order=["id", "at", "actor", "action_words", "patient_code", "details"], column_config={
                     "id": st.column_config.NumberColumn("Row", format="%d", width=60),
                     "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm:ss", width=160),
                     "actor": st.column_config.TextColumn("Who", width=170), "action_words": "Action",
                     "patient_code": st.column_config.TextColumn("Patient", width=80),
                     "details": st.column_config.TextColumn("Details", width="large",
                                                            help="What the row records, field by field.")})
    st.download_button("Download these rows (CSV)", data=admin.trail_csv(actor, events), icon=":material/download:",
                       file_name=f"audit-trail-{admin.today():%Y-%m-%d}.csv", mime="text/csv", on_click="ignore",
                       key="audit_csv", help="The rows above with the raw detail (JSON); the download is audited.")
    if st.button("Verify chain"):
        ok, result = admin.verify(actor)
        (st.success if ok else st.error)(result)

with tab_clients:
    st.caption("Integration clients of the FHIR endpoint (POST /fhir/QuestionnaireResponse, docs/data-formats.md): "
               "each sends scores with its own bearer token, and may do nothing else. Revoking a client refuses "
               "its token from the next request on; its name stays in the audit trail.")
    created = admin.new_token()
    if created:
        st.success(text(f"The token of {created[0]} is below. Copy it now and give it to the platform's "
                        "administrator: it will not be shown again (only its hash is stored)."))
        st.code(created[1], language=None)
    clients = admin.api_client_table(actor)
    st.dataframe(clients, hide_index=True, width="stretch", placeholder="—", column_config={
        "name": "Name", "can_replace": st.column_config.CheckboxColumn("Can replace scores"),
        "created_at": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
        "created_by": "By", "last_used_at": st.column_config.DatetimeColumn("Last used (UTC)",
                                                                           format="YYYY-MM-DD HH:mm"),
        "revoked_at": st.column_config.DatetimeColumn("Revoked (UTC)", format="YYYY-MM-DD HH:mm")})
    with st.form("create_api_client", clear_on_submit=True):
        st.markdown("**Add a client**")
        c1, c2 = st.columns([2, 1], vertical_alignment="bottom")
        client_name = c1.text_input("Client name", help="1-48 letters, digits, dots, dashes or underscores, "
                                                        "such as treatment-platform.")
        can_replace = c2.checkbox("May replace stored scores", help="A resent resource with other answers then "
                                  "overwrites the stored score (the old value stays in the audit trail).")
        if st.form_submit_button("Create client and show its token"):
            admin.finish(admin.create_api_client(actor, name=client_name.strip(), can_replace=can_replace))
    live = clients.loc[clients["revoked_at"].isna(), "name"].tolist()
    if live:
        st.markdown("**Revoke a client**")
        to_revoke = st.selectbox("Client to revoke", live, index=None, placeholder="Choose a client…")
        if to_revoke:
            sure = st.checkbox(f"Yes, revoke {to_revoke}: its token stops working at once and cannot be restored",
                               key="confirm_revoke")
            if st.button(f"Revoke {to_revoke}", disabled=not sure, type="primary"):
                admin.finish(admin.revoke_api_client(actor, to_revoke))

with tab_notify:
    problem, counts, stuck = admin.notification_status(actor)
    if problem:
        st.warning(problem)
    else:
        st.success("Alert e-mails are configured: manage.py send-notifications sends them (docs/notifications.md).")
    st.caption("When a write raises an urgent or high alert, the patient's therapist (and, for risk items and "
               "unrepaired ruptures, their supervisor) is owed an e-mail naming the patient code, the kind and a "
               "link. Each person chooses immediately, a daily digest or off under My notifications.")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Waiting to be sent", counts["pending"])
    m2.metric("Failed (gave up)", counts["failed"])
    m3.metric("Undeliverable", counts["undeliverable"], help="The account has no e-mail address (or is "
              "deactivated); add the address under Accounts.")
    m4.metric("Sent", counts["sent"])
    if len(stuck):
        st.markdown("**E-mails that need you** (newest first)")
        st.dataframe(stuck, hide_index=True, width="stretch", placeholder="—", column_config={
            "account": "To", "patient_id": "Patient", "event": "Alert", "status": "State",
            "attempts": st.column_config.NumberColumn("Attempts", format="%d"),
            "created_at": st.column_config.DatetimeColumn("Queued (UTC)", format="YYYY-MM-DD HH:mm"),
            "last_error": st.column_config.TextColumn("Why", width="large")})

with tab_backups:
    history = admin.backup_history(actor)
    level, sentence = admin.backup_state(history, dialect=admin.database_dialect(),
                                         now=dt.datetime.now(dt.UTC))
    {"ok": st.success, "warning": st.warning, "info": st.info}[level](sentence)
    st.caption("Backups and restores made with `manage.py backup` and `manage.py restore`, as the audit trail "
               "records them (newest first). A backup copies scores, patients, accounts and the audit trail; the "
               "audit key is kept separately (docs/operations.md).")
    if len(history):
        st.dataframe(history, hide_index=True, width="stretch", placeholder="—", column_config={
            "at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm"),
            "actor": "Who", "action": "What", "file": st.column_config.TextColumn("File", width="large"),
            "rows": st.column_config.NumberColumn("Audit rows in the copy", format="%d")})
