"""Each patient against their own average: running (prospective) and full-course centering.

Two views of the same course, per patient and instrument (Hamaker & Muthén, 2020):

* **prospective** (for flags): the mean and SD of the weeks *strictly before* week t,
  ``running_mean`` and ``running_sd``; a flag for week t may only use these;
* **full course** (for research views and the models): the person mean over all stored
  weeks, ``person_mean`` (the between-person part), and ``within = score - person_mean``
  (the within-person part). These look ahead and must never raise a flag.

Missing weeks are gaps (absent rows, or rows whose ``score`` is NaN), never zeros: they
count towards nothing.

References
----------
Hamaker, E. L., & Muthén, B. (2020). The fixed versus random effects debate and how it
relates to centering in multilevel modeling. Psychological Methods, 25(3), 365-379.
doi:10.1037/met0000239
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SERIES_KEYS = ("patient_id", "instrument")
REQUIRED = ("patient_id", "instrument", "week", "score")


def check_scores(scores: pd.DataFrame, *, required: tuple[str, ...] = REQUIRED) -> None:
    """Raise ``ValueError`` (in words a data manager understands) when ``scores`` is unusable.

    Checks: a DataFrame with the required columns, whole-number weeks of at least 1, numeric
    scores and no missing patient or instrument codes. (A repeated patient, instrument and
    week is caught by :func:`series_order`.)
    """
    if not isinstance(scores, pd.DataFrame):
        raise ValueError(f"The scores must be a table (pandas DataFrame), not {type(scores).__name__}.")
    missing = [c for c in required if c not in scores.columns]
    if missing:
        raise ValueError(
            f"The scores table lacks the column(s) {', '.join(missing)}; it needs "
            f"{', '.join(required)} (one row per patient, instrument and week)."
        )
    if scores.empty:
        return
    for col in ("patient_id", "instrument"):
        if col in scores.columns and scores[col].isna().any():
            n = int(scores[col].isna().sum())
            raise ValueError(f"{n} row(s) of the scores table have no {col}; every row needs one.")
    week = scores["week"]
    if not pd.api.types.is_numeric_dtype(week) or pd.api.types.is_bool_dtype(week):
        raise ValueError("The week column must hold whole numbers (treatment weeks 1, 2, 3, ...).")
    w = week.to_numpy(dtype="float64", na_value=np.nan)
    bad = ~np.isfinite(w) | (w < 1) | (w != np.floor(w))
    if bad.any():
        first = scores.index[bad][0]
        raise ValueError(
            f"{int(bad.sum())} row(s) have a week that is missing, below 1 or not a whole number "
            f"(first at row {first!r}); weeks are treatment weeks 1, 2, 3, ..."
        )
    if "score" in scores.columns:
        s = scores["score"]
        if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
            raise ValueError("The score column must hold numbers (missing scores may be left empty).")
        sv = s.to_numpy(dtype="float64", na_value=np.nan)
        if np.isinf(sv).any():
            raise ValueError("The score column holds an infinite value; scores must be finite numbers.")


def series_order(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row positions that sort ``scores`` by patient, instrument and week, and the series
    number (0, 1, ...) of each sorted row. Raises ``ValueError`` on a repeated week."""
    pcode, _ = pd.factorize(scores["patient_id"], sort=True)
    icode, _ = pd.factorize(scores["instrument"], sort=True)
    week = scores["week"].to_numpy(dtype="int64")
    order = np.lexsort((week, icode, pcode))
    sp, si, sw = pcode[order], icode[order], week[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (sp[1:] != sp[:-1]) | (si[1:] != si[:-1])
    dup = ~new & np.r_[False, sw[1:] == sw[:-1]] if len(order) else new
    if dup.any():
        row = scores.iloc[order[np.flatnonzero(dup)[0]]]
        raise ValueError(
            f"{int(dup.sum())} row(s) repeat a patient, instrument and week (e.g. patient "
            f"{row['patient_id']}, {row['instrument']}, week {int(row['week'])}); "
            f"keep one score per patient, instrument and week."
        )
    gid = np.cumsum(new) - 1
    return order, gid


def _group_exclusive_cumsum(values: np.ndarray, gid: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over the earlier rows of the same group (rows sorted by group).

    Cumulated per group (not over the whole array), so the result for a row depends only on
    the earlier rows of its own series: bit-for-bit the same whatever later weeks exist.
    """
    return _group_exclusive_cumsums(gid, values)[0]


def _group_exclusive_cumsums(gid: np.ndarray, *columns: np.ndarray) -> list[np.ndarray]:
    """:func:`_group_exclusive_cumsum` of several float arrays in one grouped pass (one
    factorisation of ``gid``, one call of pandas' kernel over the columns): the same bits as one
    call per column, since each column is cumulated on its own."""
    values = np.column_stack([np.asarray(c, dtype="float64") for c in columns])
    inclusive = pd.DataFrame(values).groupby(gid, sort=False).cumsum().to_numpy()
    return [inclusive[:, j] - values[:, j] for j in range(values.shape[1])]


def running_stats(scores: pd.DataFrame) -> pd.DataFrame:
    """Prospective running mean/SD and full-course person mean of each patient's series.

    For the stored weeks ``x_1 … x_{n}`` of one patient and instrument strictly before week t
    (``n = n_prior``)::

        running_mean_t = (1/n) Σ x_i                       (NaN when n = 0)
        running_sd_t   = sqrt( Σ (x_i - running_mean_t)² / (n - 1) )   (NaN when n < 2)
        person_mean    = mean of all stored weeks of the series
        within_t       = x_t - person_mean

    Parameters
    ----------
    scores : DataFrame
        The core scores frame (``patient_id, instrument, week, score`` at least; see
        :mod:`core`). Rows whose ``score`` is NaN are gaps: they get statistics but count
        towards nothing.

    Returns
    -------
    DataFrame
        ``scores`` (same rows, index and order; a copy) plus ``n_prior`` (int64),
        ``running_mean``, ``running_sd``, ``person_mean`` and ``within`` (float64).

    Notes
    -----
    Vectorised: one sort and cumulative sums of ``x - x_first`` and its square per series
    (shifting by the series' first score, which is prospective, keeps the arithmetic exact
    for a constant series). ``running_*`` of week t depend only on weeks < t, so adding
    later weeks never changes them. Checked against ``Series.expanding().mean()/.std()``
    on shifted data in ``tests/core/test_centering.py``.

    References
    ----------
    Hamaker & Muthén (2020), Psychological Methods 25:365. doi:10.1037/met0000239
    """
    check_scores(scores)
    out = scores.copy()
    n = len(out)
    if n == 0:
        for col, dtype in (("n_prior", "int64"), ("running_mean", "float64"), ("running_sd", "float64"),
                           ("person_mean", "float64"), ("within", "float64")):
            out[col] = pd.Series(dtype=dtype, index=out.index)
        return out
    order, gid = series_order(out)
    x = out["score"].to_numpy(dtype="float64", na_value=np.nan)[order]
    cnt, running_mean, running_sd, pmean = running_arrays(gid, x)
    inv = np.empty_like(order)
    inv[order] = np.arange(n)
    out["n_prior"] = cnt[inv]
    out["running_mean"] = running_mean[inv]
    out["running_sd"] = running_sd[inv]
    out["person_mean"] = pmean[inv]
    out["within"] = out["score"].to_numpy(dtype="float64", na_value=np.nan) - out["person_mean"].to_numpy()
    return out


def person_mean_center(scores: pd.DataFrame) -> pd.DataFrame:
    """Full-course split into between (``person_mean``) and within (``within``) parts.

    A thin view of :func:`running_stats` for the research views and the models: the person
    mean uses *all* stored weeks of the series (it looks ahead), so it is never used to
    raise a flag.
    """
    return running_stats(scores)[list(scores.columns) + ["person_mean", "within"]]


def baseline_sds(scores: pd.DataFrame, *, week: int = 1) -> pd.Series:
    """SD (ddof 1) of the clinic's week-``week`` scores, one value per instrument.

    Used as ``baseline_sd`` in :meth:`core.instruments.Instrument.rc_cutoff` for an
    instrument whose definition has no SD (e.g. SPIN). An instrument with fewer than two
    week-1 scores gets NaN (its reliable change is then unknown). Depends only on week-1
    scores, so answering "as of week N" (N >= 1) gives the same value as the full data.

    Returns
    -------
    Series
        float64, indexed by instrument code (sorted).
    """
    check_scores(scores)
    if scores.empty:
        return pd.Series(dtype="float64", name="baseline_sd")
    w = scores["week"].to_numpy(dtype="int64") == week
    sub = scores.loc[w, ["instrument", "score"]]
    inst = sub["instrument"].astype("string")
    res = sub["score"].astype("float64").groupby(inst).std(ddof=1)
    all_codes = pd.Index(sorted(scores["instrument"].astype("string").unique()), dtype="string")
    res = res.reindex(all_codes)
    res.index.name = "instrument"
    return res.rename("baseline_sd")


def running_arrays(gid: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The arithmetic of :func:`running_stats` on arrays sorted by series and week.

    Returns ``n_prior`` (int64), ``running_mean``, ``running_sd`` (ddof 1) and the full-course
    ``person_mean``; NaN in ``x`` is a gap.
    """
    present = ~np.isnan(x)
    # first stored score of each series: a prospective shift that keeps a constant series exact
    first_val = pd.Series(x).groupby(gid, sort=False).transform("first").to_numpy()
    d = np.where(present, x - first_val, 0.0)
    cnt, s1, s2 = _group_exclusive_cumsums(gid, present.astype("float64"), d, d * d)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_d = np.where(cnt > 0, s1 / cnt, np.nan)
        ss = np.maximum(s2 - cnt * mean_d * mean_d, 0.0)
        var = np.where(cnt > 1, ss / (cnt - 1), np.nan)
        tot_n = pd.Series(present.astype("float64")).groupby(gid, sort=False).transform("sum").to_numpy()
        tot_s = pd.Series(d).groupby(gid, sort=False).transform("sum").to_numpy()
        pmean = np.where(tot_n > 0, first_val + tot_s / tot_n, np.nan)
    return cnt.astype("int64"), first_val + mean_d, np.sqrt(var), pmean


class WeekLookup:
    """Score of the same series at another week, by exact week (a gap gives NaN).

    Built once from arrays of series number, week and value; :meth:`at` answers "the value
    of series g at week w + k" for many rows at once (sorted keys + ``searchsorted``).
    """

    def __init__(self, gid: np.ndarray, week: np.ndarray, values: np.ndarray) -> None:
        self._span = int(week.max()) + 1 if len(week) else 1
        keys = gid.astype("int64") * self._span + week.astype("int64")
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._values = np.asarray(values, dtype="float64")[order]

    def at(self, gid: np.ndarray, week: np.ndarray, offset: int = 0) -> np.ndarray:
        """Values at ``week + offset`` of series ``gid`` (NaN where not stored)."""
        target = week.astype("int64") + offset
        valid = (target >= 1) & (target < self._span)
        keys = gid.astype("int64") * self._span + target
        pos = np.searchsorted(self._keys, keys)
        pos = np.minimum(pos, max(len(self._keys) - 1, 0))
        out = np.full(len(keys), np.nan)
        if len(self._keys):
            hit = valid & (self._keys[pos] == keys)
            out[hit] = self._values[pos[hit]]
        return out
