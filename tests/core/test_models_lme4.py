"""``core.models`` against R's lme4 (REML) and lm: the three ``analyze`` models and the
sensitivity model adjusted for treatment week.

The numbers in ``tests/reference/lme4_models.json`` were produced by
``tests/reference/lme4_models.R`` (lme4 + lmerTest, pairs and per-patient detrending built in
base R) from ``tests/reference/reference_scores.csv``. The saved-numbers tests need no R; the
last test re-runs the R script where ``Rscript`` is installed (the README's test command
installs it, and under ``CI=true`` a skip is a failure) and checks that it reproduces the saved
file.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.models import AnalysisResult, ModelResult, detrend_by_person, fit_within_between, prepare_pairs

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
R_SCRIPT = REFERENCE / "lme4_models.R"
R_JSON = REFERENCE / "lme4_models.json"
#: Tolerances against lme4 (relative): the exact profiled REML agrees to about 5e-8 in
#: estimates and SEs; statsmodels' optimiser stops within about 4e-6.
REL = {"profiled": 1e-6, "statsmodels": 1e-5, "auto": 1e-5}


@pytest.fixture(scope="module")
def lme4() -> dict:
    return json.loads(R_JSON.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def scores() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "reference_scores.csv")


def _r_models(ref: dict) -> dict[str, dict]:
    return {**ref["models"], **ref["sensitivity"]}


def _compare(result: AnalysisResult, ref: dict, rel: float) -> tuple[float, float]:
    """Assert every term of every model equals lme4/lm to ``rel``; return (max abs, max rel) diff."""
    max_abs = max_rel = 0.0
    assert result.n_patients == ref["n_patients"]
    assert set(_r_models(ref)) == set(result.all_models) == {"total", "within", "between", "detrended"}
    for name, want in _r_models(ref).items():
        model: ModelResult = result.all_models[name]
        assert model.converged, (name, model.message)
        if name == "between":
            assert model.n_obs == want["n_patients"]
        else:
            assert (model.n_obs, model.n_patients) == (want["n_obs"], want["n_patients"]), name
            assert model.residual_var == pytest.approx(want["residual_var"], rel=rel), name
            # τ² is flat in the likelihood; the fixed effects are what matters
            assert model.random_intercept_var == pytest.approx(want["random_intercept_var"], rel=1e-3), name
        assert [t.name for t in model.terms] == list(want["terms"]), name
        for term in model.terms:
            w = want["terms"][term.name]
            for key in ("estimate", "se", "ci_low", "ci_high"):
                got, exp = getattr(term, key), w[key]
                assert got == pytest.approx(exp, rel=rel, abs=1e-12), (name, term.name, key)
                max_abs = max(max_abs, abs(got - exp))
                max_rel = max(max_rel, abs(got - exp) / abs(exp))
            assert term.p == pytest.approx(w["p"], rel=1e-3, abs=1e-12), (name, term.name, "p")
    return max_abs, max_rel


@pytest.mark.parametrize("engine", ["auto", "statsmodels", "profiled"])
def test_all_four_models_equal_lme4(scores: pd.DataFrame, lme4: dict, engine: str) -> None:
    result = fit_within_between(scores, engine=engine)
    max_abs, max_rel = _compare(result, lme4, REL[engine])
    assert max_rel < REL[engine] and max_abs < 1e-5


def test_the_reference_data_give_interior_fits(lme4: dict) -> None:
    """The comparison is not a boundary (τ² = 0) case, where every route trivially agrees."""
    for name in ("total", "within", "detrended"):
        model = _r_models(lme4)[name]
        assert model["singular"] is False and model["random_intercept_var"] > 0.1, name


def test_detrending_equals_per_patient_lm_residuals(scores: pd.DataFrame) -> None:
    """``detrend_by_person`` against numpy's least squares, patient by patient (as R's lm)."""
    alliance = scores[scores["instrument"] == "WAI-SR"].reset_index(drop=True)
    got = detrend_by_person(alliance, "score")
    for _, rows in alliance.groupby("patient_id"):
        x = np.column_stack([np.ones(len(rows)), rows["week"].to_numpy(float)])
        coef, *_ = np.linalg.lstsq(x, rows["score"].to_numpy(float), rcond=None)
        resid = rows["score"].to_numpy(float) - x @ coef
        if len(rows) >= 3:
            np.testing.assert_allclose(got[rows.index].to_numpy(), resid, atol=1e-10)
        else:
            assert got[rows.index].isna().all()
    pairs = prepare_pairs(scores)
    present = pairs["alliance_t"].notna()
    assert pairs.loc[present, "alliance_detrended_t"].notna().sum() == got.notna().sum()


def test_wald_and_satterthwaite_p_values_agree_to_the_display(lme4: dict) -> None:
    """core reports Wald z tests (as statsmodels); lmerTest's Satterthwaite t tests differ
    little with hundreds of pairs: below .001 both, or within 0.005 (the person-level
    ``alliance_between`` has about as many df as patients, 50 here)."""
    for name, model in _r_models(lme4).items():
        if name == "between":
            continue
        for term, w in model["terms"].items():
            if w["p"] < 0.001:
                assert w["satterthwaite_p"] < 0.001, (name, term)
            else:
                assert abs(w["p"] - w["satterthwaite_p"]) < 0.005, (name, term)


def test_the_r_script_reproduces_the_saved_numbers(tmp_path: Path, lme4: dict) -> None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        pytest.skip("Rscript is not installed (apt-get install r-base-core r-cran-lme4 r-cran-lmertest)")
    out = tmp_path / "lme4_models.json"
    run = subprocess.run([rscript, str(R_SCRIPT), str(REFERENCE / "reference_scores.csv"), str(out)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    fresh = json.loads(out.read_text(encoding="utf-8"))
    for name, want in _r_models(lme4).items():
        got = _r_models(fresh)[name]
        for term, w in want["terms"].items():
            for key in ("estimate", "se", "p"):
                assert math.isclose(got["terms"][term][key], w[key], rel_tol=1e-7, abs_tol=1e-12), (name, term, key)
