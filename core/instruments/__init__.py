"""The instrument registry: questionnaires as data, not code.

Each instrument is one TOML file in ``core/instruments/definitions/``. A clinic adds an
instrument (or overrides a shipped one, e.g. with licensed item wording or its own SD) by
putting a TOML file of the same shape in a directory named by the environment variable
``ALLIANCE_INSTRUMENTS_DIR``; nothing in the engine changes. Every number in the shipped
definitions comes from ``CLINICAL.md`` (the file says so where a value is a project choice).

Fields of a definition
----------------------
code, name, reference, kind ("alliance" | "symptom"), n_items, item_min, item_max,
total_min, total_max, higher_is_better, and optionally: sd, reliability, reliable_change
(an explicit cut-off that wins over sd/reliability), caseness, low_cutoff, bands,
band_labels, risk_items, subscales (name -> 1-based item numbers), loinc_panel,
loinc_total, item_texts.

Totals are the sum of the item responses (no item is reversed in the shipped instruments).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DEFINITIONS_DIR = Path(__file__).parent / "definitions"
EXTRA_DIR_ENV = "ALLIANCE_INSTRUMENTS_DIR"
KINDS = ("alliance", "symptom")
#: z for a two-sided 95% reliable change (Jacobson & Truax, 1991).
Z_95 = 1.96


def item_columns(n: int) -> list[str]:
    """Column names ``item_1 … item_n`` of the core frame contract."""
    return [f"item_{i}" for i in range(1, n + 1)]


def reliable_change_cutoff(sd: float, reliability: float, *, z: float = Z_95) -> float:
    """Smallest change that is reliable at 95% (Jacobson & Truax, 1991).

    ``SE = SD * sqrt(1 - r)``, ``S_diff = sqrt(2) * SE``, cut-off ``= z * S_diff``.

    Checked against CLINICAL.md (WAI-SR, SD 10, r .94 -> 6.8 points) and against the
    `suddengains` R package example (SD 6.396073, r .931 -> SE 1.680111, S_diff 2.376036,
    cut-off 4.65703).

    References
    ----------
    Jacobson, N. S., & Truax, P. (1991). J Consult Clin Psychol, 59(1), 12-19.
    doi:10.1037/0022-006X.59.1.12
    """
    if not (sd > 0) or not (0 <= reliability < 1):
        raise ValueError(
            f"Reliable change needs an SD above 0 and a reliability from 0 up to (not including) 1; "
            f"got SD {sd} and reliability {reliability}. Fix the instrument's definition."
        )
    se = sd * math.sqrt(1.0 - reliability)
    return z * math.sqrt(2.0) * se


@dataclass(frozen=True)
class Instrument:
    """One questionnaire definition (see the module docstring for the fields)."""

    code: str
    name: str
    kind: str
    n_items: int
    item_min: int
    item_max: int
    total_min: float
    total_max: float
    higher_is_better: bool
    reference: str = ""
    sd: float | None = None
    reliability: float | None = None
    reliable_change: float | None = None
    caseness: float | None = None
    low_cutoff: float | None = None
    bands: tuple[float, ...] = ()
    band_labels: tuple[str, ...] = ()
    risk_items: tuple[int, ...] = ()
    subscales: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    loinc_panel: str | None = None
    loinc_total: str | None = None
    item_texts: tuple[str, ...] = ()
    #: Typical mean total by treatment week 1, 2, ... (an alliance instrument's expected course,
    #: the literature default of ``FlagConfig.alliance_course``); after the last week it stays flat.
    week_means: tuple[float, ...] = ()
    week_means_source: str = ""

    @property
    def items(self) -> list[str]:
        """This instrument's item columns, ``item_1 … item_n``."""
        return item_columns(self.n_items)

    @property
    def others_max(self) -> float:
        """The most the other items can add up to beside one item: ``(n_items - 1) * item_max``.
        A total above it implies that item was answered at least ``total - others_max``."""
        return float((self.n_items - 1) * self.item_max)

    def item_label(self, number: int) -> str:
        """Text of item ``number`` when the clinic supplied it, else ``"Item N"``."""
        if 1 <= number <= len(self.item_texts):
            return self.item_texts[number - 1]
        return f"Item {number}"

    def rc_cutoff(self, *, baseline_sd: float | None = None) -> float | None:
        """The reliable-change cut-off in points.

        An explicit ``reliable_change`` wins; else it is computed from ``sd`` and
        ``reliability``; when the definition has no SD, ``baseline_sd`` (the SD of the
        clinic's own first-week scores) is used. ``None`` when neither is known.
        """
        if self.reliable_change is not None:
            return float(self.reliable_change)
        sd = self.sd if self.sd is not None else baseline_sd
        if sd is None or self.reliability is None or not np.isfinite(sd) or sd <= 0:
            return None
        return reliable_change_cutoff(sd, self.reliability)

    def band(self, total: float) -> str | None:
        """Severity band label of a total (``None`` without bands)."""
        if not self.band_labels or total is None or not np.isfinite(total):
            return None
        return self.band_labels[int(np.searchsorted(self.bands, total, side="right"))]


def _from_mapping(raw: Mapping, source: str) -> Instrument:
    required = ("code", "name", "kind", "n_items", "item_min", "item_max",
                "total_min", "total_max", "higher_is_better")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ValueError(f"The instrument definition {source} lacks {', '.join(missing)}; add them.")
    known = set(Instrument.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"The instrument definition {source} has unknown fields {', '.join(unknown)}; "
                         f"check their spelling against core/instruments/__init__.py.")
    data = dict(raw)
    for key in ("bands", "band_labels", "risk_items", "item_texts", "week_means"):
        if key in data:
            data[key] = tuple(data[key])
    data["subscales"] = {k: tuple(int(i) for i in v) for k, v in data.get("subscales", {}).items()}
    inst = Instrument(**data)
    _check(inst, source)
    return inst


def _check(inst: Instrument, source: str) -> None:
    where = f"The instrument definition {source} ({inst.code})"
    if inst.kind not in KINDS:
        raise ValueError(f"{where} has kind {inst.kind!r}; use one of {', '.join(KINDS)}.")
    if inst.n_items < 1 or inst.item_min >= inst.item_max:
        raise ValueError(f"{where} needs at least one item and item_min below item_max.")
    if (inst.total_min, inst.total_max) != (inst.n_items * inst.item_min, inst.n_items * inst.item_max):
        raise ValueError(f"{where}: the total range {inst.total_min}-{inst.total_max} is not the sum of "
                         f"{inst.n_items} items of {inst.item_min}-{inst.item_max}.")
    for name, numbers in inst.subscales.items():
        bad = [i for i in numbers if not 1 <= i <= inst.n_items]
        if bad:
            raise ValueError(f"{where}: subscale {name} names items {bad} outside 1-{inst.n_items}.")
    bad_risk = [i for i in inst.risk_items if not 1 <= i <= inst.n_items]
    if bad_risk:
        raise ValueError(f"{where}: risk items {bad_risk} lie outside 1-{inst.n_items}.")
    if inst.bands and len(inst.band_labels) != len(inst.bands) + 1:
        raise ValueError(f"{where}: give one more band label than band cut-offs.")
    if inst.week_means and not all(inst.total_min <= float(m) <= inst.total_max for m in inst.week_means):
        raise ValueError(f"{where}: week_means must lie within the total range {inst.total_min}-{inst.total_max}.")
    if inst.item_texts and len(inst.item_texts) != inst.n_items:
        raise ValueError(f"{where}: give a text for each of the {inst.n_items} items, or none.")


def load_definitions(directories: Iterable[Path]) -> dict[str, Instrument]:
    """Read every ``*.toml`` in ``directories``; a later directory overrides an earlier one."""
    registry: dict[str, Instrument] = {}
    for directory in directories:
        for path in sorted(Path(directory).glob("*.toml")):
            try:
                raw = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ValueError(f"The instrument definition {path} is not valid TOML ({exc}); fix it.") from exc
            inst = _from_mapping(raw, str(path))
            registry[inst.code] = inst
    return registry


_REGISTRY: dict[str, Instrument] | None = None


def registry() -> dict[str, Instrument]:
    """All instruments: the shipped ones plus those in ``$ALLIANCE_INSTRUMENTS_DIR``."""
    global _REGISTRY
    if _REGISTRY is None:
        dirs = [DEFINITIONS_DIR]
        extra = os.environ.get(EXTRA_DIR_ENV)
        if extra:
            dirs.append(Path(extra))
        _REGISTRY = load_definitions(dirs)
    return _REGISTRY


def get(code: str) -> Instrument:
    """The instrument with this code; a ``ValueError`` naming the known codes otherwise."""
    reg = registry()
    if code not in reg:
        raise ValueError(f"Unknown instrument {code!r}; known instruments are {', '.join(sorted(reg))}.")
    return reg[code]


def alliance_codes() -> list[str]:
    """Codes of the alliance instruments (each is its own series)."""
    return sorted(c for c, i in registry().items() if i.kind == "alliance")


def symptom_codes() -> list[str]:
    """Codes of the symptom instruments."""
    return sorted(c for c, i in registry().items() if i.kind == "symptom")


def max_items() -> int:
    """The largest item count in the registry (width of the item columns)."""
    return max(i.n_items for i in registry().values())


def score_totals(frame: pd.DataFrame) -> pd.Series:
    """Total score of each row from its item columns (sum of the instrument's items).

    ``frame`` has an ``instrument`` column and ``item_1 … item_N``. A row whose instrument's
    items are not all present gets ``NaN`` (a partial questionnaire has no total). Vectorised
    per instrument; the input is not changed.
    """
    out = pd.Series(np.nan, index=frame.index, dtype="float64")
    for code, idx in frame.groupby("instrument", sort=False).groups.items():
        inst = get(str(code))
        cols = [c for c in inst.items if c in frame.columns]
        if len(cols) < inst.n_items:
            continue
        block = frame.loc[idx, cols].astype("float64")
        out.loc[idx] = block.sum(axis=1, min_count=inst.n_items)
    return out


def subscale_scores(frame: pd.DataFrame, *, instrument: str) -> pd.DataFrame:
    """Subscale totals (one column per subscale) for rows of one instrument.

    A subscale is the sum of its items; ``NaN`` when any of its items is missing.
    """
    inst = get(instrument)
    result = {}
    for name, numbers in inst.subscales.items():
        cols = [f"item_{i}" for i in numbers]
        if all(c in frame.columns for c in cols):
            result[name] = frame[cols].astype("float64").sum(axis=1, min_count=len(cols))
        else:
            result[name] = pd.Series(np.nan, index=frame.index)
    return pd.DataFrame(result, index=frame.index)
