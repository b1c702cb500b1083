"""pip-audit over the locked packages, for .ci/run (README "Upgrading dependencies").

Audits ``requirements-dev.lock`` (every package CI installs, the runtime lock's among them)
against PyPI's vulnerability data, else OSV's. Exit 1 when a locked package has a known
vulnerability that ``.ci/audit-ignore.txt`` does not list with a reason; exit 0, with one
sentence saying so, when neither database answers (a machine without internet).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements-dev.lock"
IGNORE = ROOT / ".ci" / "audit-ignore.txt"
SERVICES = {"pypi": "PyPI's JSON API", "osv": "OSV (osv.dev)"}


def read_ignored(text: str) -> dict[str, str]:
    """The ignore file's vulnerability ids and their reasons; a line without a reason is refused."""
    ignored = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        vuln_id, _, reason = line.strip().partition(" ")
        if not reason.strip():
            raise ValueError(f"{IGNORE.name} line {number}: {vuln_id} needs a reason after the id.")
        ignored[vuln_id] = reason.strip()
    return ignored


def read_report(stdout: str) -> list[dict] | None:
    """pip-audit's JSON dependencies, or None when its database did not answer.

    pip-audit prints no JSON when the service is unreachable (a traceback instead), and marks every
    package "not found" when PyPI's JSON API answers 404 (a mirror or proxy that serves only the
    simple index).
    """
    try:
        dependencies = json.loads(stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None
    if not dependencies or all("skip_reason" in d for d in dependencies):
        return None
    return dependencies


def run_audit(service: str, ignored: dict[str, str]) -> list[dict] | None:
    """Run pip-audit on the lock file (no resolution: it is pinned and hashed)."""
    command = [sys.executable, "-m", "pip_audit", "--disable-pip", "--require-hashes", "-r", str(LOCK),
               "--vulnerability-service", service, "--format", "json", "--progress-spinner", "off",
               "--timeout", "30"]
    for vuln_id in ignored:
        command += ["--ignore-vuln", vuln_id]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    return read_report(done.stdout)


def findings(dependencies: list[dict]) -> list[str]:
    """One line per known vulnerability: package, version, id, the releases that fix it."""
    return [f"{d['name']} {d['version']}: {v['id']} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release'})"
            for d in dependencies for v in d.get("vulns", [])]


def first_answer(ignored: dict[str, str]) -> tuple[str, list[dict]] | None:
    """(database name, pip-audit's dependencies) from the first database that answers, else None."""
    for service, name in SERVICES.items():
        dependencies = run_audit(service, ignored)
        if dependencies is not None:
            return name, dependencies
    return None


def main() -> int:
    try:
        ignored = read_ignored(IGNORE.read_text(encoding="utf-8"))
    except ValueError as error:
        print(f"pip-audit: {error}")
        return 1
    answer = first_answer(ignored)
    if answer is None:
        print("pip-audit: no vulnerability database could be reached (PyPI's JSON API, OSV), "
              f"so the packages of {LOCK.name} were not audited; CI goes on.")
        return 0
    name, dependencies = answer
    for vuln_id, reason in ignored.items():
        print(f"pip-audit: ignoring {vuln_id} ({IGNORE.name}): {reason}")
    skipped = sorted(d["name"] for d in dependencies if "skip_reason" in d)
    if skipped:
        print(f"pip-audit: {name} knows nothing of {len(skipped)} packages, not audited: {', '.join(skipped)}")
    found = findings(dependencies)
    if found:
        print(f"pip-audit ({name}): {len(found)} known vulnerabilities in {LOCK.name}:")
        print("\n".join(f"  {line}" for line in found))
        print('Upgrade past the fixed version, or list the id with a reason in .ci/audit-ignore.txt '
              '(README "Upgrading dependencies").')
        return 1
    print(f"pip-audit ({name}): no known vulnerabilities in the {len(dependencies) - len(skipped)} "
          f"audited packages of {LOCK.name}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
