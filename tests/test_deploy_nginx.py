"""deploy/nginx.conf for real: Debian's nginx in front of a Streamlit server on loopback, with a
self-signed certificate made by the test (openssl), checked with real requests: TLS, the
websocket upgrade, the security headers, the HTTP→HTTPS redirect and refused host names.

Needs ``nginx`` and ``openssl`` (``apt-get install -y nginx``); skipped without them locally,
failed under CI=true (tests/conftest.py).
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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
HOST = "monitor.clinic.example"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    if not Path(NGINX).exists() or shutil.which("openssl") is None:
        pytest.skip("nginx or openssl is missing; install them with `apt-get install -y nginx openssl`.")
    tmp = tmp_path_factory.mktemp("nginx")
    crt, key = tmp / "site.crt", tmp / "site.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(crt), "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"],
                   check=True, capture_output=True)
    app, base = start_server(f"sqlite:///{tmp / 'empty.db'}", tmp / "streamlit.log")
    upstream = int(base.rsplit(":", 1)[1])
    https, plain = free_port(), free_port()
    site = (ROOT / "deploy" / "nginx.conf").read_text(encoding="utf-8")
    site = (site.replace("127.0.0.1:8501", f"127.0.0.1:{upstream}")
            .replace("/etc/ssl/certs/alliance-monitor.crt", str(crt))
            .replace("/etc/ssl/private/alliance-monitor.key", str(key)))
    site = re.sub(r"listen 443\b", f"listen 127.0.0.1:{https}", site)
    site = re.sub(r"listen 80\b", f"listen 127.0.0.1:{plain}", site)
    (tmp / "site.conf").write_text(site, encoding="utf-8")
    temp_dirs = "\n".join(f"    {d}_temp_path {tmp / d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (tmp / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\ndaemon off;\npid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} info;\n"
        f"events {{ worker_connections 64; }}\n"
        f"http {{\n    access_log {tmp / 'access.log'};\n{temp_dirs}\n    include {tmp / 'site.conf'};\n}}\n",
        encoding="utf-8")
    check = subprocess.run([NGINX, "-t", "-p", str(tmp), "-c", str(tmp / "nginx.conf")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    server = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(tmp / "nginx.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", https), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield {"https": https, "http": plain, "crt": crt}
    finally:
        server.terminate()
        server.wait(timeout=20)
        app.terminate()
        app.wait(timeout=20)


def _request(proxy: dict, path: str, *, sni: str = HOST, host: str = HOST,
             headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    ctx = ssl.create_default_context(cafile=str(proxy["crt"]))
    sock = socket.create_connection(("127.0.0.1", proxy["https"]), timeout=15)
    tls = ctx.wrap_socket(sock, server_hostname=sni)
    conn = http.client.HTTPConnection(host, timeout=15)
    conn.sock = tls
    conn.request("GET", path, headers={"Host": host, **(headers or {})})
    return conn.getresponse()


def test_tls_and_security_headers(proxy: dict) -> None:
    response = _request(proxy, "/")
    body = response.read().decode("utf-8", "replace")
    # logged out, "/" is the login page the app's server answers with (issue 14)
    assert response.status == 200 and 'action="/session/login"' in body
    h = {k.lower(): v for k, v in response.getheaders()}
    assert h["strict-transport-security"].startswith("max-age=63072000")
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    assert h["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in h["content-security-policy"]
    assert h.get("server", "") == "nginx"  # no version number


def test_health_through_the_proxy(proxy: dict) -> None:
    response = _request(proxy, "/_stcore/health")
    assert response.status == 200 and response.read() == b"ok"


def test_websocket_upgrade(proxy: dict) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    response = _request(proxy, "/_stcore/stream", headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "streamlit", "Origin": f"https://{HOST}"})
    assert response.status == 101, (response.status, response.read()[:300])
    assert response.getheader("Upgrade", "").lower() == "websocket"


def test_other_host_names_are_refused(proxy: dict) -> None:
    with pytest.raises(ssl.SSLError):  # an unknown name in the TLS handshake: no certificate at all
        _request(proxy, "/", sni="evil.example", host="evil.example")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):  # a forged Host header
        _request(proxy, "/", host="evil.example").read()


def test_plain_http_redirects_to_https(proxy: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", proxy["http"], timeout=15)
    conn.request("GET", "/patient?patient=P00001", headers={"Host": HOST})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}/patient?patient=P00001"
