"""deploy/nginx-two-servers.conf for real: Debian's nginx in front of two Streamlit processes on
one PostgreSQL database (docs/deploy.md, "Two or more app servers").

A throwaway database on the test server is seeded with ``manage.py seed-demo``; two real
``streamlit run app.py`` processes serve it; nginx runs the configuration with the test's ports, a
self-signed certificate and, in the test's copy only, an ``X-Upstream: $upstream_addr`` header
that says which process answered. Checked: both processes answer through nginx, a browser keeps
its process on every request (the websocket included), the app's page is served with the same
security headers as deploy/nginx.conf.

Needs ``nginx``, ``openssl`` and the PostgreSQL server; skipped without them locally, failed
under CI=true (tests/conftest.py).
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.conftest import PG_URL, _pg_admin_engine
from tests.e2e.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "deploy" / "nginx-two-servers.conf"
HOST = "monitor.clinic.example"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
COOKIE = "alliance_route"


def _add_headers(conf: Path) -> list[str]:
    """The ``add_header`` lines of the HTTPS server, without the routing cookie."""
    return [line.strip() for line in conf.read_text(encoding="utf-8").splitlines()
            if line.strip().startswith("add_header") and "Set-Cookie" not in line]


def test_the_two_server_config_sets_the_same_security_headers_as_the_single_one() -> None:
    single = _add_headers(ROOT / "deploy" / "nginx.conf")
    assert single and _add_headers(CONF) == single


def _wait_for_port(port: int, procs: list[tuple[str, subprocess.Popen, Path]], deadline: float) -> None:
    while time.monotonic() < deadline:
        for name, proc, log in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def _wait_healthy(port: int, name: str, proc: subprocess.Popen, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{name} did not answer in time:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_available: bool) -> Iterator[dict]:
    if not Path(NGINX).exists() or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is missing; install them with `apt-get install -y nginx openssl`.")
    if not pg_available:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}; start it (see README) or set ALLIANCE_TEST_PG_URL.")
    tmp = tmp_path_factory.mktemp("two_servers")
    name = f"am_two_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    procs: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        seed = subprocess.run([sys.executable, "manage.py", "seed-demo", "--db", url], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert seed.returncode == 0, seed.stderr
        ports: list[int] = []
        while len(ports) < 2:
            port = free_port()
            if port not in ports:
                ports.append(port)
        deadline = time.monotonic() + 90
        for i, port in enumerate(ports):  # both start at once, as two services would
            log = tmp / f"streamlit-{i}.log"
            cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
                   "--server.port", str(port), "--server.address", "127.0.0.1",
                   "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
            proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "ALLIANCE_DB_URL": url},
                                    stdout=log.open("wb"), stderr=subprocess.STDOUT)
            procs.append((f"app {port}", proc, log))
        for port, (label, proc, log) in zip(ports, procs, strict=True):
            _wait_healthy(port, label, proc, log, deadline)

        crt, key = tmp / "site.crt", tmp / "site.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout",
                        str(key), "-out", str(crt), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
                       check=True, capture_output=True)
        https, plain = free_port(), free_port()
        site = CONF.read_text(encoding="utf-8")
        for default, port in zip(("127.0.0.1:8501", "127.0.0.1:8502"), ports, strict=True):
            assert f"server {default};" in site
            site = site.replace(f"server {default};", f"server 127.0.0.1:{port};")
        site = (site.replace("/etc/ssl/certs/alliance-monitor.crt", str(crt))
                .replace("/etc/ssl/private/alliance-monitor.key", str(key)))
        site = re.sub(r"listen 443\b", f"listen 127.0.0.1:{https}", site)
        site = re.sub(r"listen 80\b", f"listen 127.0.0.1:{plain}", site)
        # The test's copy only: which app process answered.
        marker = "    add_header Set-Cookie $alliance_route_cookie always;\n"
        assert marker in site
        site = site.replace(marker, marker + "    add_header X-Upstream $upstream_addr always;\n")
        (tmp / "site.conf").write_text(site, encoding="utf-8")
        temp_dirs = "\n".join(f"    {d}_temp_path {tmp / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
        (tmp / "nginx.conf").write_text(
            ("user root;\n" if os.geteuid() == 0 else "")
            + f"worker_processes 2;\ndaemon off;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
            f"events {{ worker_connections 64; }}\n"
            f"http {{\n    access_log {tmp / 'access.log'};\n{temp_dirs}\n    include {tmp / 'site.conf'};\n}}\n",
            encoding="utf-8")
        check = subprocess.run([NGINX, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        nginx_log = tmp / "nginx.out"
        nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=nginx_log.open("wb"))
        procs.append(("nginx", nginx, nginx_log))
        _wait_for_port(https, procs, time.monotonic() + 20)
        yield {"https": https, "crt": crt, "upstreams": {f"127.0.0.1:{p}" for p in ports},
               "apps": {f"127.0.0.1:{p}": proc for p, (_, proc, _) in zip(ports, procs[:2], strict=True)}}
    finally:
        for _, proc, _ in reversed(procs):  # nginx first, then the app processes
            _stop(proc)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _request(cluster: dict, path: str, *, cookie: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    ctx = ssl.create_default_context(cafile=str(cluster["crt"]))
    sock = socket.create_connection(("127.0.0.1", cluster["https"]), timeout=15)
    conn = http.client.HTTPConnection(HOST, timeout=15)
    conn.sock = ctx.wrap_socket(sock, server_hostname=HOST)
    extra = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    conn.request("GET", path, headers={"Host": HOST, **extra, **(headers or {})})
    response = conn.getresponse()
    body = b"" if response.status == 101 else response.read()
    conn.close()
    return response, body


def _route_cookie(response: http.client.HTTPResponse) -> str | None:
    for header in response.headers.get_all("Set-Cookie") or []:
        if header.startswith(f"{COOKIE}="):
            return header
    return None


def test_both_app_processes_answer_through_nginx(cluster: dict) -> None:
    seen: set[str] = set()
    for i in range(64):  # 64 different browsers: both processes get some (all on one: p = 2**-63)
        response, body = _request(cluster, "/_stcore/health", cookie=f"browser-{i}")
        assert response.status == 200 and body == b"ok"
        seen.add(response.getheader("X-Upstream", ""))
        if seen == cluster["upstreams"]:
            break
    assert seen == cluster["upstreams"]


def test_a_browser_keeps_its_app_process(cluster: dict) -> None:
    for _ in range(6):  # six new browsers, each with no cookie at first
        first, body = _request(cluster, "/")
        assert first.status == 200 and b'action="/session/login"' in body  # logged out: the login page
        upstream = first.getheader("X-Upstream")
        assert upstream in cluster["upstreams"]
        set_cookie = _route_cookie(first)
        assert set_cookie is not None
        attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
        assert {"path=/", "secure", "httponly", "samesite=lax"} <= attributes
        cookie = set_cookie.split(";")[0].split("=", 1)[1]
        for path in ["/", "/_stcore/health", "/_stcore/host-config", "/patient?patient=P00001"] * 3:
            response, _ = _request(cluster, path, cookie=cookie)
            assert response.status == 200, path
            assert response.getheader("X-Upstream") == upstream, path
            assert _route_cookie(response) is None  # set once
        key = base64.b64encode(os.urandom(16)).decode()
        ws, _ = _request(cluster, "/_stcore/stream", cookie=cookie, headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13", "Sec-WebSocket-Protocol": "streamlit", "Origin": f"https://{HOST}"})
        assert ws.status == 101 and ws.getheader("Upgrade", "").lower() == "websocket"
        assert ws.getheader("X-Upstream") == upstream


def test_the_app_page_is_served_with_the_security_headers(cluster: dict) -> None:
    response, body = _request(cluster, "/", cookie="browser-x")
    assert response.status == 200
    assert b'action="/session/login"' in body  # logged out, the app's server answers with the login page
    h = {k.lower(): v for k, v in response.getheaders() if k.lower() != "set-cookie"}
    assert h["strict-transport-security"].startswith("max-age=63072000")
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h.get("server", "") == "nginx"


def test_the_browsers_of_a_stopped_process_reach_the_other(cluster: dict) -> None:
    """Last in this file: it stops one of the module's app processes."""
    stopped, kept = sorted(cluster["upstreams"])
    _stop(cluster["apps"][stopped])
    for i in range(16):
        response, body = _request(cluster, "/_stcore/health", cookie=f"browser-{i}")
        assert response.status == 200 and body == b"ok"
        assert response.getheader("X-Upstream", "").split(", ")[-1] == kept
