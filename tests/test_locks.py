"""The lock files agree with the hand-edited pins and with each other (README "Upgrading dependencies").

A pin changed in requirements.txt or requirements-dev.txt without making the locks again fails
here, before an install would quietly use the old version.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PAIRS = [("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")]


def hand_pins(name: str) -> dict[str, str]:
    """Package -> version of a hand-edited file and the files it includes with -r."""
    pins: dict[str, str] = {}
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins |= hand_pins(line[3:].strip())
        elif line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{name}: {line} is not pinned with =="
            pins[canonicalize_name(requirement.name)] = specifier.version
    return pins


def locked(name: str) -> dict[str, str]:
    """Package -> version of a lock file; each entry must carry at least one --hash."""
    text = (ROOT / name).read_text(encoding="utf-8")
    entries = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._\-\[\],]*)==(\S+)((?: \\\n +--hash=sha256:[0-9a-f]{64})*)",
                         text, flags=re.M)
    assert entries, name
    for package, version, hashes in entries:
        assert hashes, f"{name}: {package}=={version} has no --hash"
    return {canonicalize_name(package.split("[")[0]): version for package, version, _ in entries}


@pytest.mark.parametrize(("pins", "lock"), PAIRS)
def test_every_hand_pin_is_locked_at_its_version(pins: str, lock: str) -> None:
    wanted, got = hand_pins(pins), locked(lock)
    stale = {p: (v, got.get(p)) for p, v in wanted.items() if got.get(p) != v}
    assert not stale, f"{lock} is stale (pin, locked); make the locks again (README): {stale}"


def test_the_dev_lock_keeps_every_runtime_version() -> None:
    runtime, dev = locked("requirements.lock"), locked("requirements-dev.lock")
    differ = {p: (v, dev.get(p)) for p, v in runtime.items() if dev.get(p) != v}
    assert not differ, f"requirements-dev.lock disagrees with requirements.lock: {differ}"


def test_authlib_comes_with_streamlit_auth_not_a_pin_of_its_own() -> None:
    assert "authlib" not in hand_pins("requirements.txt")
    assert "streamlit[auth]==" in (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert "authlib" in locked("requirements.lock")
