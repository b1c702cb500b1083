"""Every rule of core.flags.RULES has its own section in docs/flags.md (and no stale ones)."""

from __future__ import annotations

import re
from pathlib import Path

from core.flags import DEFAULT_CONFIG, KINDS, RULES, RULES_0_3

DOC = Path(__file__).resolve().parents[2] / "docs" / "flags.md"


def _sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^## ", text, flags=re.M)[1:]
    out = {}
    for part in parts:
        heading, _, body = part.partition("\n")
        for name in re.findall(r"`([a-z_]+)`", heading):
            out[name] = body
    return out


def test_every_rule_is_documented():
    sections = _sections()
    missing = [r for r in RULES if r not in sections]
    assert not missing, f"docs/flags.md has no '## ... (`rule`)' section for {missing}"


def test_no_section_for_an_unknown_rule():
    unknown = [name for name in _sections() if name not in RULES]
    assert not unknown, f"docs/flags.md documents rules the engine does not have: {unknown}"


def test_each_section_gives_defaults_and_a_reference():
    sections = _sections()
    for rule in RULES:
        body = sections[rule]
        assert "Default" in body, f"section {rule} does not state its defaults"
        assert "Reference" in body, f"section {rule} does not give a reference"


def test_documented_defaults_match_the_code():
    body = _sections()
    cfg = DEFAULT_CONFIG
    e = cfg.below_expected
    for text in (f"`k_sd = {e.k_sd}`", f"`min_points = {e.min_points}`", f"`min_prior_weeks = {e.min_prior_weeks}`",
                 f"`high_rc_multiple = {e.high_rc_multiple}`", f"`k_sd_without_items = {e.k_sd_without_items}`"):
        assert text in body["below_expected"], text
    for text in (f"`subscale_k_sd = {e.subscale_k_sd}`", f"`subscale_min_points = {e.subscale_min_points}`"):
        assert text in body["below_expected_subscale"], text
    assert f"`two_week_k_sd = {e.two_week_k_sd}`" in body["below_expected_two_weeks"]
    assert cfg.reliable_drop is None and cfg.below_own_level is None
    assert "Off" in body["reliable_drop"] and "Off" in body["below_own_level"]
    old = RULES_0_3
    assert f"`rc_multiple = {old.reliable_drop.rc_multiple}`" in body["reliable_drop"]
    b = old.below_own_level
    for text in (f"`k_sd = {b.k_sd}`", f"`min_prior_weeks = {b.min_prior_weeks}`", f"`sd_floor = {b.sd_floor}`",
                 f"`rc_multiple = {b.rc_multiple}`"):
        assert text in body["below_own_level"], text
    assert f"`weeks = {cfg.repair.weeks}`" in body["repair"]
    n = cfg.not_on_track
    for text in (f"`z = {n.z}`", f"`min_week = {n.min_week}`", f"`high_rc_multiple = {n.high_rc_multiple}`"):
        assert text in body["not_on_track"], text
    assert f"`weeks = {cfg.missed.weeks}`" in body["missed"]


def test_every_kind_is_mentioned():
    text = DOC.read_text(encoding="utf-8")
    assert all(f"`{k}`" in text for k in KINDS)
