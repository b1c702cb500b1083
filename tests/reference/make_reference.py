"""Independent reference numbers for ``core.models`` (run: ``python tests/reference/make_reference.py``).

Writes, beside this file:

``reference_scores.csv``
    A seeded synthetic data set: 60 patients × 8 weeks of SPIN and WAI-SR in the core column
    contract, with about 8% of the rows missing (so some week-to-week pairs are broken).
``reference_models.json``
    Estimates, standard errors, variance components and counts of the three models of
    CONTRACT.md ``analyze``, computed here WITHOUT ``core`` and WITHOUT statsmodels:

    * pairs and person means by a plain Python loop over rows (dictionaries), not pandas;
    * total and within models: the *unprofiled* restricted log-likelihood of the random-
      intercept model written out with dense per-patient covariance matrices,
      ``V_i = σ²·I + τ²·11ᵀ``::

          −2·ℓ_R(σ², τ²) = Σ_i log|V_i| + log|Σ_i X_iᵀV_i⁻¹X_i| + Σ_i r_iᵀV_i⁻¹r_i  (+ const)

      with ``r_i = y_i − X_i·β̂`` and ``β̂`` the GLS estimate, minimised over
      ``(log σ², t)`` with ``τ² = t²`` (so the boundary τ² = 0 is reachable) by Nelder–Mead
      from several starts; ``Cov(β̂) = (Σ_i X_iᵀV_i⁻¹X_i)⁻¹``; Wald z p values;
    * between model: ``numpy.linalg.lstsq`` with ``SE² = diag(s²·(XᵀX)⁻¹)``,
      ``s² = RSS/(n − 2)``, two-sided t p value with ``n − 2`` df.

``core.models`` uses a different route for each step (vectorised pandas pairing; statsmodels
``MixedLM`` or a profiled REML over per-patient sums in closed form; statsmodels OLS), so an
agreement checks both. The data generator is also independent of ``core.models.simulate_cohort``:
symptoms follow ``S_i,t+1 = c_i + 0.55·S_it − 0.25·(A_it − μA_i) + 0.1·μA_i + e`` with a
patient-specific constant ``c_i`` (so the total model's random-intercept variance is inside
the parameter space) and alliance ``A_it = μA_i + N(0, 4²)``.

Re-running the script reproduces both files exactly (fixed seed; only numpy and scipy).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from scipy import optimize, stats

HERE = Path(__file__).resolve().parent
SCORES_CSV = HERE / "reference_scores.csv"
MODELS_JSON = HERE / "reference_models.json"
SEED = 20250812
N_PATIENTS = 60
N_WEEKS = 8
MISSING = 0.08
SYMPTOM, ALLIANCE = "SPIN", "WAI-SR"


def generate() -> list[dict[str, object]]:
    rng = np.random.default_rng(SEED)
    rows: list[dict[str, object]] = []
    for i in range(N_PATIENTS):
        pid = f"R{i + 1:03d}"
        tid = f"T{i // 12 + 1:02d}"
        mu_a = 42.0 + rng.normal(0.0, 6.0)
        c = 14.0 + rng.normal(0.0, 3.0)
        a = [mu_a + rng.normal(0.0, 4.0) for _ in range(N_WEEKS)]
        s = [40.0 + 0.5 * (mu_a - 42.0) + rng.normal(0.0, 6.0)]
        for t in range(1, N_WEEKS):
            s.append(c + 0.55 * s[t - 1] - 0.25 * (a[t - 1] - mu_a) + 0.1 * mu_a + rng.normal(0.0, 3.0))
        for week in range(1, N_WEEKS + 1):
            for code, value, lo, hi in ((SYMPTOM, s[week - 1], 0, 68), (ALLIANCE, a[week - 1], 12, 60)):
                if rng.random() < MISSING:
                    continue
                score = float(min(max(round(value), lo), hi))
                rows.append({"patient_id": pid, "therapist_id": tid, "instrument": code, "week": week, "score": score})
    return rows


def write_csv(rows: list[dict[str, object]]) -> None:
    with SCORES_CSV.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(
            fh, fieldnames=["patient_id", "therapist_id", "instrument", "week", "score"], lineterminator="\n"
        )
        w.writeheader()
        for r in rows:
            w.writerow({**r, "score": f"{r['score']:.0f}"})


def read_csv() -> list[dict[str, object]]:
    with SCORES_CSV.open(encoding="utf-8") as fh:
        return [{**r, "week": int(r["week"]), "score": float(r["score"])} for r in csv.DictReader(fh)]


def build_pairs(rows: list[dict[str, object]]) -> tuple[list[dict[str, float | str]], dict[str, tuple[float, float]]]:
    """Row-by-row pairing: one record per usable (patient, week)."""
    score: dict[tuple[str, str, int], float] = {}
    per_patient: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        key = (str(r["patient_id"]), str(r["instrument"]), int(r["week"]))
        score[key] = float(r["score"])
        per_patient.setdefault((key[0], key[1]), []).append(float(r["score"]))
    patients = sorted({k[0] for k in score})
    means: dict[str, tuple[float, float]] = {}
    for pid in patients:
        s = per_patient.get((pid, SYMPTOM), [])
        a = per_patient.get((pid, ALLIANCE), [])
        means[pid] = (sum(s) / len(s) if s else math.nan, sum(a) / len(a) if a else math.nan)
    pairs = []
    for pid in patients:
        weeks = sorted({k[2] for k in score if k[0] == pid})
        s_mean, a_mean = means[pid]
        for t in weeks:
            s_t = score.get((pid, SYMPTOM, t))
            a_t = score.get((pid, ALLIANCE, t))
            s_next = score.get((pid, SYMPTOM, t + 1))
            if s_t is None or a_t is None or s_next is None:
                continue
            pairs.append(
                {"patient_id": pid, "s_t": s_t, "a_t": a_t, "s_next": s_next, "s_mean": s_mean, "a_mean": a_mean}
            )
    return pairs, means


def reml_dense(y: np.ndarray, x: np.ndarray, groups: list[str]) -> dict[str, object]:
    """Random-intercept REML by the dense, unprofiled likelihood (module docstring)."""
    blocks = []
    for g in dict.fromkeys(groups):
        idx = [k for k, gg in enumerate(groups) if gg == g]
        blocks.append((y[idx], x[idx]))
    p = x.shape[1]

    def pieces(sigma2: float, tau2: float):
        xtvx = np.zeros((p, p))
        xtvy = np.zeros(p)
        logdet_v = 0.0
        vinvs = []
        for yi, xi in blocks:
            v = sigma2 * np.eye(len(yi)) + tau2 * np.ones((len(yi), len(yi)))
            vinv = np.linalg.inv(v)
            logdet_v += np.linalg.slogdet(v)[1]
            xtvx += xi.T @ vinv @ xi
            xtvy += xi.T @ vinv @ yi
            vinvs.append(vinv)
        beta = np.linalg.solve(xtvx, xtvy)
        quad = sum(
            float((yi - xi @ beta) @ vinv @ (yi - xi @ beta)) for (yi, xi), vinv in zip(blocks, vinvs, strict=True)
        )
        return logdet_v + np.linalg.slogdet(xtvx)[1] + quad, beta, xtvx

    def objective(theta: np.ndarray) -> float:
        return pieces(math.exp(theta[0]), theta[1] ** 2)[0]

    resid = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    v0 = float(np.var(resid))
    best = None
    for share in (0.1, 0.5, 0.9):
        start = np.array([math.log(v0 * (1 - share)), math.sqrt(v0 * share)])
        res = optimize.minimize(
            objective,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-11, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000},
        )
        if best is None or res.fun < best.fun:
            best = res
    assert best is not None
    sigma2, tau2 = math.exp(best.x[0]), best.x[1] ** 2
    obj, beta, xtvx = pieces(sigma2, tau2)
    cov = np.linalg.inv(xtvx)
    se = np.sqrt(np.diag(cov))
    p_values = 2 * stats.norm.sf(np.abs(beta / se))
    return {
        "beta": beta,
        "se": se,
        "p": p_values,
        "sigma2": sigma2,
        "tau2": tau2,
        "neg2_reml": obj,
        "nelder_mead_success": bool(best.success),
    }


def ols(y: np.ndarray, x: np.ndarray) -> dict[str, object]:
    beta, rss, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    n, p = x.shape
    resid = y - x @ beta
    s2 = float(resid @ resid) / (n - p)
    se = np.sqrt(np.diag(s2 * np.linalg.inv(x.T @ x)))
    p_values = 2 * stats.t.sf(np.abs(beta / se), n - p)
    return {"beta": beta, "se": se, "p": p_values, "residual_var": s2}


def term(fit: dict[str, object], k: int) -> dict[str, float]:
    return {"estimate": float(fit["beta"][k]), "se": float(fit["se"][k]), "p": float(fit["p"][k])}


def main() -> None:
    write_csv(generate())
    rows = read_csv()
    pairs, means = build_pairs(rows)
    groups = [str(r["patient_id"]) for r in pairs]
    ones = np.ones(len(pairs))

    y_total = np.array([r["s_next"] for r in pairs])
    x_total = np.column_stack([ones, [r["s_t"] for r in pairs], [r["a_t"] for r in pairs]])
    total = reml_dense(y_total, x_total, groups)

    y_within = np.array([r["s_next"] - r["s_mean"] for r in pairs])
    x_within = np.column_stack(
        [
            ones,
            [r["s_t"] - r["s_mean"] for r in pairs],
            [r["a_t"] - r["a_mean"] for r in pairs],
            [r["a_mean"] for r in pairs],
        ]
    )
    within = reml_dense(y_within, x_within, groups)

    both = [(s, a) for s, a in means.values() if not (math.isnan(s) or math.isnan(a))]
    between = ols(np.array([s for s, _ in both]), np.column_stack([np.ones(len(both)), [a for _, a in both]]))

    out = {
        "generated_by": "tests/reference/make_reference.py",
        "data": SCORES_CSV.name,
        "seed": SEED,
        "symptom": SYMPTOM,
        "alliance": ALLIANCE,
        "n_rows": len(rows),
        "n_patients": len(means),
        "models": {
            "total": {
                "n_obs": len(pairs),
                "n_patients": len(set(groups)),
                "random_intercept_var": total["tau2"],
                "residual_var": total["sigma2"],
                "neg2_reml": total["neg2_reml"],
                "terms": {"symptom_t": term(total, 1), "alliance_t": term(total, 2)},
            },
            "within": {
                "n_obs": len(pairs),
                "n_patients": len(set(groups)),
                "random_intercept_var": within["tau2"],
                "residual_var": within["sigma2"],
                "neg2_reml": within["neg2_reml"],
                "terms": {
                    "symptom_within_t": term(within, 1),
                    "alliance_within_t": term(within, 2),
                    "alliance_between": term(within, 3),
                },
            },
            "between": {
                "n_patients": len(both),
                "residual_var": between["residual_var"],
                "terms": {"alliance_between": term(between, 1)},
            },
        },
    }
    MODELS_JSON.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(out["models"], indent=2))


if __name__ == "__main__":
    main()
