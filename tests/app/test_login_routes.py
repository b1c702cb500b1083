"""The HTTP side of logins (ui/web.py), with Starlette's test client over the demo clinic: the
login post, the cookie, logout, the gate in front of pages, media and uploads, and the re-checks
of downloads and fragments at the moment they run (issue 14)."""

from __future__ import annotations

import asyncio
import types

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

import ui.session
import ui.web
from db.accounts import move_patients
from db.engine import make_engine, session_factory, transaction
from db.models import AuditEvent, LoginSession, Patient
from db.sessions import COOKIE_NAME, token_id
from tests.app.conftest import actor_for

PASSWORD = "demo-password-2026"


def _post_login(client: TestClient, name: str, password: str = PASSWORD, next_path: str = "/", *,  # type: ignore[no-untyped-def]
                fresh: bool = False, **headers: str):
    if fresh:  # another browser: none of this one's cookies
        client.cookies.clear()
    return client.post("/session/login", data={"username": name, "password": password, "next": next_path},
                       headers={"Origin": "http://testserver", **headers})


def _use(client: TestClient, token: str) -> None:
    """Make ``token`` the browser's only session cookie."""
    client.cookies.clear()
    client.cookies.set(COOKIE_NAME, token)


def _audit(url: str, action: str) -> list[str]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        rows = list(session.scalars(select(AuditEvent.detail).where(AuditEvent.action == action)
                                    .order_by(AuditEvent.id)))
    engine.dispose()
    return rows


def test_a_page_without_a_login_gets_only_the_login_page_and_keeps_the_deep_link(client: TestClient) -> None:
    answer = client.get("/patient?patient=P00001")
    assert answer.status_code == 200 and "THE APP" not in answer.text
    assert 'action="/session/login"' in answer.text and 'name="next" value="/patient?patient=P00001"' in answer.text
    assert ">Username<" in answer.text and ">Password<" in answer.text and ">Log in<" in answer.text
    assert PASSWORD in answer.text  # demo mode lists the accounts
    assert client.get("/_stcore/health").status_code == 404  # not a page: the gate leaves it to Streamlit


def test_login_sets_an_httponly_samesite_cookie_without_a_name_and_goes_back(client: TestClient) -> None:
    answer = _post_login(client, "therapist.anna", next_path="/patient?patient=P00001")
    assert answer.status_code == 303 and answer.headers["location"] == "/patient?patient=P00001"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Path=/" in cookie and "Secure" not in cookie and "anna" not in cookie.lower()
    assert client.get("/patient?patient=P00001").text == "THE APP"  # the cookie is the login now


@pytest.mark.parametrize("how", ["proxy", "setting"])
def test_the_cookie_is_secure_behind_tls(client: TestClient, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    headers = {"X-Forwarded-Proto": "https"} if how == "proxy" else {}
    if how == "setting":
        monkeypatch.setenv("ALLIANCE_SECURE_COOKIE", "1")
    assert "Secure" in _post_login(client, "therapist.anna", **headers).headers["set-cookie"]


def test_a_wrong_password_is_refused_and_the_form_says_when_to_try_again(client: TestClient) -> None:
    for attempt in range(4):
        answer = _post_login(client, "therapist.eva", "not the password at all")
        assert answer.status_code == 401 and "Wrong username or password" in answer.text
        assert "Too many failed attempts" not in answer.text and "set-cookie" not in answer.headers, attempt
    answer = _post_login(client, "therapist.eva", "not the password at all")
    assert "the next attempt is checked in 15 minutes at the earliest" in answer.text
    answer = _post_login(client, "therapist.eva")  # right, but too early: refused without being checked
    assert answer.status_code == 401 and "set-cookie" not in answer.headers


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                                     {"Origin": "null"}])
def test_a_login_posted_from_another_site_is_refused(client: TestClient, headers: dict[str, str]) -> None:
    # login CSRF: another site's page must not log the browser in (as the attacker, say)
    answer = client.post("/session/login", data={"username": "therapist.anna", "password": PASSWORD},
                         headers=headers)
    assert answer.status_code == 403 and "set-cookie" not in answer.headers
    assert "another web site" in answer.text


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x",
                                    "patient"])
def test_after_login_the_browser_goes_only_to_a_page_of_this_server(client: TestClient, target: str) -> None:
    assert _post_login(client, "therapist.anna", next_path=target).headers["location"] == "/"


def test_every_login_gets_a_fresh_session_and_ends_the_one_the_browser_had(client: TestClient,
                                                                          writable_demo: str) -> None:
    _use(client, "a-value-an-attacker-planted")  # session fixation: never adopted
    first = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    assert first != "a-value-an-attacker-planted"
    _use(client, first)
    second = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    assert second != first
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        old = session.get(LoginSession, token_id(first))
        assert old is not None and old.revoke_reason == "replaced"
        assert session.get(LoginSession, "a-value-an-attacker-planted") is None
    engine.dispose()


def test_logout_ends_the_session_on_the_server_and_clears_the_cookie(client: TestClient, writable_demo: str) -> None:
    laptop = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    bens = _post_login(client, "therapist.ben", fresh=True).cookies[COOKIE_NAME]
    token = _post_login(client, "therapist.anna", fresh=True).cookies[COOKIE_NAME]
    _use(client, token)
    answer = client.post("/session/logout", headers={"Origin": "http://testserver"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    assert f'{COOKIE_NAME}=""' in answer.headers["set-cookie"] and "Max-Age=0" in answer.headers["set-cookie"]
    _use(client, token)  # a copy kept elsewhere is worth nothing now
    again = client.get("/")
    assert "THE APP" not in again.text and "Your login was ended" in again.text
    for other, still in ((laptop, False), (bens, True)):  # every session of the account, nobody else's
        _use(client, other)
        assert (client.get("/").text == "THE APP") is still
    assert _audit(writable_demo, "logout")
    assert client.post("/session/logout", headers={"Origin": "http://evil.example"}).status_code == 403


def test_a_tampered_cookie_gets_the_login_page_is_cleared_and_audited(client: TestClient, writable_demo: str) -> None:
    token = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    _use(client, token[:-2] + "xy")
    answer = client.get("/patient?patient=P00001")
    assert "THE APP" not in answer.text and "could not be recognised" in answer.text
    assert "Max-Age=0" in answer.headers["set-cookie"]
    refused = _audit(writable_demo, "session_refused")
    assert refused and '"reason": "unknown"' in refused[-1] and token[:20] not in refused[-1]


def test_media_files_answer_only_a_live_login_and_a_download_only_its_own(client: TestClient) -> None:
    assert client.get("/media/abc123.csv").status_code == 404  # no session at all
    anna = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    ben = _post_login(client, "therapist.ben", fresh=True).cookies[COOKIE_NAME]
    ui.web.register_download("abc123", token_id(anna))
    _use(client, anna)
    assert client.get("/media/abc123.csv").text == "THE APP"
    _use(client, ben)
    assert client.get("/media/abc123.csv").status_code == 404  # another login
    _use(client, anna)
    ui.web._downloads["abc123"] = (token_id(anna), 0.0)  # past its time
    assert client.get("/media/abc123.csv").status_code == 404


def test_an_upload_url_answers_only_the_login_its_streamlit_session_runs_under(client: TestClient) -> None:
    anna = _post_login(client, "admin").cookies[COOKIE_NAME]
    ben = _post_login(client, "therapist.ben", fresh=True).cookies[COOKIE_NAME]
    url = "/_stcore/upload_file/streamlit-session-1/file-1"
    ui.session.bind("streamlit-session-1", token_id(anna))
    try:
        assert client.put(url).status_code == 403  # the id alone is no credential
        _use(client, ben)
        assert client.put(url).status_code == 403  # nor with another login
        _use(client, anna)
        assert client.put(url).text == "THE APP"
    finally:
        ui.session.unbind("streamlit-session-1")


class _Manager:
    """Just enough of Streamlit's MediaFileManager for the deferred-download handler."""

    def __init__(self, owner: str) -> None:
        import threading

        self._lock = threading.Lock()
        self._deferred_callables = {"deferred-1": {"session_id": owner}}
        self.ran = 0

    def execute_deferred(self, file_id: str) -> str:
        self.ran += 1
        return "/media/made-file.csv"


def _request():  # type: ignore[no-untyped-def]
    from streamlit.proto.BackMsg_pb2 import BackendOperationRequest

    request = BackendOperationRequest(request_id="r1")
    request.deferred_file.file_id = "deferred-1"
    return request


def test_a_deferred_download_runs_only_for_the_session_that_drew_it_while_its_login_lives(
        client: TestClient, writable_demo: str) -> None:
    from streamlit.runtime.backend_operation_handler import DeferredFileHandler

    ui.web.install_download_guard()
    token = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    manager = _Manager(owner="victim-session")
    handler = DeferredFileHandler(lambda: manager)
    ui.session.bind("victim-session", token_id(token))
    ui.session.bind("attacker-session", token_id(token))
    try:
        stolen = asyncio.run(handler.handle(_request(), "attacker-session"))  # another connection sends the id
        assert stolen.error_msg and manager.ran == 0
        own = asyncio.run(handler.handle(_request(), "victim-session"))
        assert own.deferred_file.url == "/media/made-file.csv" and manager.ran == 1
        assert ui.web._download_owner("made-file")[0] == token_id(token)  # the file answers this login only
        _use(client, token)
        client.post("/session/logout", headers={"Origin": "http://testserver"})
        after = asyncio.run(handler.handle(_request(), "victim-session"))  # pending, after logout
        assert after.error_msg and manager.ran == 1
    finally:
        ui.session.unbind("victim-session")
        ui.session.unbind("attacker-session")


def test_a_download_callable_rechecks_the_login_and_the_patient_when_clicked(
        client: TestClient, writable_demo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.loaders import report_download

    token = _post_login(client, "therapist.anna").cookies[COOKIE_NAME]
    monkeypatch.setattr(ui.session.st, "session_state", {"login_session_id": token_id(token)})
    anna = actor_for(writable_demo, "therapist.anna")
    csv = report_download(anna, "P00001", kind="csv")
    assert csv().startswith(b"patient_id")
    # the patient moves to another caseload while the button waits: nothing
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        move_patients(session, actor=actor_for(writable_demo, "admin"), codes=["P00001"], therapist="therapist.ben")
    with pytest.raises(PermissionError, match="no longer available"):
        csv()
    still_mine = report_download(anna, "P00046", kind="csv")
    with session_factory(engine)() as session:
        assert session.scalar(select(Patient.therapist_id).where(Patient.code == "P00046")) == anna.id
    engine.dispose()
    assert still_mine().startswith(b"patient_id")
    _use(client, token)
    client.post("/session/logout", headers={"Origin": "http://testserver"})
    with pytest.raises(PermissionError, match="no longer available"):  # logged out: nothing
        still_mine()
    assert any('"where": "download"' in d for d in _audit(writable_demo, "session_refused"))


def test_a_fragment_rerun_after_the_login_ended_reruns_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    state: dict[str, object] = {"login_session_id": "s1"}
    monkeypatch.setattr(ui.session.st, "session_state", state)
    monkeypatch.setattr(ui.session.st, "fragment", lambda f: f)
    monkeypatch.setattr(ui.session, "get_script_run_ctx", lambda: types.SimpleNamespace(fragment_ids_this_run=["f"]))
    monkeypatch.setattr(ui.session, "current_actor", lambda: None)

    def rerun(*, scope: str = "app") -> None:
        calls.append(scope)
        raise RuntimeError("rerun")

    monkeypatch.setattr(ui.session.st, "rerun", rerun)
    shown = ui.session.live_fragment(lambda: calls.append("drawn"))
    with pytest.raises(RuntimeError, match="rerun"):
        shown()
    assert calls == ["app"]  # the whole page reruns (and shows the login form); the fragment draws nothing


def test_an_app_page_preloads_the_chart_bundle_and_other_answers_pass_untouched() -> None:
    from pathlib import Path

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, PlainTextResponse
    from starlette.routing import Route
    from streamlit import file_util

    href = ui.web.chart_chunk()
    # this Streamlit's bundle, found where its index page loads scripts from
    assert href is not None and href.startswith("./static/js/PlotlyChart.")
    assert (Path(file_util.get_static_dir()) / href.removeprefix("./")).is_file()

    async def page(request):  # type: ignore[no-untyped-def]
        return HTMLResponse("<html><head><title>t</title></head><body>THE APP</body></html>")

    async def text(request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("</head> not html")

    async def missing(request):  # type: ignore[no-untyped-def]
        return HTMLResponse("<html><head></head></html>", status_code=404)

    app = Starlette(routes=[Route("/", page), Route("/patient", page), Route("/plain", text),
                            Route("/gone", missing), Route("/static/x.html", page)],
                    middleware=[Middleware(ui.web.ChartPreload)])
    tag = f'<link rel="modulepreload" crossorigin href="{href}">'
    with TestClient(app) as c:
        for path in ("/", "/patient?patient=P00001"):
            answer = c.get(path)
            assert answer.status_code == 200 and answer.text.count(tag) == 1
            assert answer.text.index(tag) < answer.text.index("</head>") < answer.text.index("THE APP")
            assert int(answer.headers["content-length"]) == len(answer.content)
        assert c.get("/plain").text == "</head> not html"
        assert tag not in c.get("/gone").text and c.get("/gone").status_code == 404
        assert tag not in c.get("/static/x.html").text  # not a page: Streamlit's own files
        assert c.head("/").status_code in (200, 405) and not c.head("/").content
