"""What an idle app server costs, with and without a secrets file (Streamlit's secrets polling).

Streamlit polls ``.streamlit/secrets.toml`` every 0.2 s once the secrets are first read (a
``stat`` per poll; the file is re-read only when its time stamp moves), whatever
``server.fileWatcherType`` says. Issue 19 saw that thread in 10% of a loaded server's samples.
This starts the app server twice on the demo clinic, once without a secrets file and once with
one (an ``[auth]`` section, as single sign-on has), opens the login page (which reads the
secrets), then reads the process's CPU time (``/proc/<pid>/stat``, user + system) over an idle
minute.

    python bench/idle.py [--seconds 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.conftest import start_server  # noqa: E402

SECRETS = """[auth]
redirect_uri = "http://127.0.0.1/oauth2callback"
cookie_secret = "bench-cookie-secret-not-for-production-0123456789"
client_id = "bench"
client_secret = "bench"
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cost(url: str, secrets: Path | None, seconds: float) -> tuple[float, float]:
    extra = {"STREAMLIT_SECRETS_FILES": str(secrets)} if secrets else {"STREAMLIT_SECRETS_FILES": "/nonexistent.toml"}
    proc, base = start_server(url, Path(tempfile.mkdtemp()) / "streamlit.log", env_extra=extra)
    try:
        with urllib.request.urlopen(f"{base}/", timeout=30) as answer:  # the login page reads the secrets
            answer.read()
        time.sleep(5)
        before, began = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - began
        threads = len(os.listdir(f"/proc/{proc.pid}/task"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return used / elapsed, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    url = f"sqlite:///{folder / 'demo.db'}"
    subprocess.run([sys.executable, "manage.py", "seed-demo", "--db", url], cwd=ROOT, check=True, capture_output=True)
    secrets = folder / "secrets.toml"
    secrets.write_text(SECRETS)
    for label, path in (("no secrets file", None), ("secrets.toml with [auth] (polled)", secrets)):
        share, threads = idle_cost(url, path, args.seconds)
        print(f"idle server, {label}: {share * 1000:.1f} ms of CPU per second ({share:.2%} of one core), "
              f"{threads} threads", flush=True)


if __name__ == "__main__":
    main()
