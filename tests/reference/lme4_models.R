# Reference numbers for core.models from R's lme4 (REML) and lm, independent of Python.
#
# Run (from the repository root; needs r-base-core, r-cran-lme4 and r-cran-lmertest):
#
#     Rscript tests/reference/lme4_models.R [SCORES_CSV] [OUT_JSON]
#
# Defaults: tests/reference/reference_scores.csv -> tests/reference/lme4_models.json (beside
# this script). tests/core/test_models_lme4.py compares core.models with the saved JSON (no R
# needed) and, where Rscript is installed, re-runs this script and checks that it reproduces
# the saved numbers.
#
# Everything is built here in base R, not from core's pairs:
#   * pairs: the week's SPIN and WAI-SR merged with SPIN at exactly week + 1 (a missing week
#     breaks the pair); person means over all of a patient's stored weeks of each instrument;
#   * detrended alliance: residuals of lm(score ~ week) fitted to each patient's own stored
#     WAI-SR weeks (patients with at least 3 of them; fewer gives NA);
#   * total, within and detrended: lme4::lmer(..., REML = TRUE) with a random intercept per
#     patient; SEs from vcov() (the model-based (X'V^-1 X)^-1 of REML); Wald z p values and
#     estimate +/- qnorm(0.975) * SE, as core.models reports them; Satterthwaite df and p
#     from lmerTest are stored beside them for comparison;
#   * between: lm(person-mean SPIN ~ person-mean WAI-SR), t with n - 2 df.
#
# Models (S symptom, A alliance, bar = person mean, t = treatment week):
#   total:     S[t+1]          ~ S[t] + A[t]                              + (1 | patient)
#   within:    S[t+1] - Sbar   ~ (S[t] - Sbar) + (A[t] - Abar) + Abar     + (1 | patient)
#   detrended: S[t+1] - Sbar   ~ (S[t] - Sbar) + Adetrended[t] + t        + (1 | patient)
#   between:   Sbar            ~ Abar                                  (one row per patient)

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})

args <- commandArgs(trailingOnly = TRUE)
script_arg <- grep("^--file=", commandArgs(FALSE), value = TRUE)
here <- if (length(script_arg)) dirname(normalizePath(sub("^--file=", "", script_arg[1]))) else "."
scores_csv <- if (length(args) >= 1) args[1] else file.path(here, "reference_scores.csv")
out_json <- if (length(args) >= 2) args[2] else file.path(here, "lme4_models.json")
SYMPTOM <- "SPIN"
ALLIANCE <- "WAI-SR"
MIN_DETREND_WEEKS <- 3

scores <- read.csv(scores_csv, stringsAsFactors = FALSE)
scores <- scores[!is.na(scores$score), ]

# ------------------------------------------------------------------ pairs, in base R
sym <- scores[scores$instrument == SYMPTOM, c("patient_id", "week", "score")]
all <- scores[scores$instrument == ALLIANCE, c("patient_id", "week", "score")]
names(sym)[3] <- "symptom_t"
names(all)[3] <- "alliance_t"
sym$symptom_between <- ave(sym$symptom_t, sym$patient_id, FUN = mean)
all$alliance_between <- ave(all$alliance_t, all$patient_id, FUN = mean)

# each patient's own straight-line alliance course, removed by lm() per patient
all$alliance_detrended_t <- NA_real_
for (pid in unique(all$patient_id)) {
  rows <- which(all$patient_id == pid)
  if (length(rows) >= MIN_DETREND_WEEKS) {
    fit <- lm(alliance_t ~ week, data = all[rows, ])
    all$alliance_detrended_t[rows] <- residuals(fit)
  }
}

nxt <- sym[, c("patient_id", "week", "symptom_t")]
nxt$week <- nxt$week - 1L
names(nxt)[3] <- "symptom_next"
pairs <- merge(sym, all, by = c("patient_id", "week"))           # both scores this week
pairs <- merge(pairs, nxt, by = c("patient_id", "week"))         # and SPIN at exactly week + 1
pairs$symptom_within_t <- pairs$symptom_t - pairs$symptom_between
pairs$alliance_within_t <- pairs$alliance_t - pairs$alliance_between
pairs$symptom_within_next <- pairs$symptom_next - pairs$symptom_between
pairs <- pairs[order(pairs$patient_id, pairs$week), ]
pairs$patient_id <- factor(pairs$patient_id)

# ------------------------------------------------------------------ fits
control <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhobeg = 0.2, rhoend = 1e-12, maxfun = 1e5),
                       check.conv.singular = "ignore")

mixed <- function(formula, data, terms) {
  fit <- lmer(formula, data = data, REML = TRUE, control = control)
  co <- summary(fit)$coefficients                     # lmerTest: Estimate, SE, df, t, Pr(>|t|)
  est <- fixef(fit)[terms]
  se <- sqrt(diag(as.matrix(vcov(fit))))[terms]
  z <- est / se
  vc <- as.data.frame(VarCorr(fit))
  out_terms <- list()
  for (k in terms) {
    out_terms[[k]] <- list(
      estimate = unname(est[k]), se = unname(se[k]),
      ci_low = unname(est[k] - qnorm(0.975) * se[k]), ci_high = unname(est[k] + qnorm(0.975) * se[k]),
      p = unname(2 * pnorm(-abs(z[k]))),
      satterthwaite_df = unname(co[k, "df"]), satterthwaite_p = unname(co[k, "Pr(>|t|)"])
    )
  }
  list(
    n_obs = nobs(fit), n_patients = length(unique(data$patient_id)),
    random_intercept_var = vc$vcov[vc$grp == "patient_id"], residual_var = sigma(fit)^2,
    singular = isSingular(fit), reml_criterion = unname(REMLcrit(fit)), terms = out_terms
  )
}

total <- mixed(symptom_next ~ symptom_t + alliance_t + (1 | patient_id), pairs, c("symptom_t", "alliance_t"))
within <- mixed(symptom_within_next ~ symptom_within_t + alliance_within_t + alliance_between + (1 | patient_id),
                pairs, c("symptom_within_t", "alliance_within_t", "alliance_between"))
dpairs <- pairs[!is.na(pairs$alliance_detrended_t), ]
dpairs$patient_id <- droplevels(dpairs$patient_id)
detrended <- mixed(symptom_within_next ~ symptom_within_t + alliance_detrended_t + week + (1 | patient_id),
                   dpairs, c("symptom_within_t", "alliance_detrended_t", "week"))

# between: one row per patient of the pairs frame that has both person means (all of them)
people <- unique(merge(unique(sym[, c("patient_id", "symptom_between")]),
                       unique(all[, c("patient_id", "alliance_between")]), by = "patient_id"))
bfit <- lm(symptom_between ~ alliance_between, data = people)
bco <- summary(bfit)$coefficients
bci <- confint(bfit, level = 0.95)
between <- list(
  n_patients = nrow(people), residual_var = summary(bfit)$sigma^2,
  terms = list(alliance_between = list(
    estimate = bco["alliance_between", "Estimate"], se = bco["alliance_between", "Std. Error"],
    ci_low = bci["alliance_between", 1], ci_high = bci["alliance_between", 2],
    p = bco["alliance_between", "Pr(>|t|)"]
  ))
)

# ------------------------------------------------------------------ JSON (base R, no jsonlite)
to_json <- function(x, indent = 0) {
  pad <- strrep(" ", indent + 1)
  if (is.list(x)) {
    keys <- names(x)
    items <- vapply(seq_along(x), function(i) {
      paste0(pad, "\"", keys[i], "\": ", to_json(x[[i]], indent + 1))
    }, "")
    return(paste0("{\n", paste(items, collapse = ",\n"), "\n", strrep(" ", indent), "}"))
  }
  if (is.character(x)) return(paste0("\"", gsub("\"", "\\\\\"", x), "\""))
  if (is.logical(x)) return(if (x) "true" else "false")
  if (is.numeric(x) && x == round(x) && abs(x) < 1e9 && is.integer(x)) return(sprintf("%d", x))
  if (!is.finite(x)) return("null")
  sprintf("%.17g", x)
}

result <- list(
  generated_by = "tests/reference/lme4_models.R",
  data = basename(scores_csv),
  r_version = R.version.string,
  lme4_version = as.character(packageVersion("lme4")),
  lmerTest_version = as.character(packageVersion("lmerTest")),
  symptom = SYMPTOM,
  alliance = ALLIANCE,
  n_patients = length(unique(c(sym$patient_id, all$patient_id))),
  models = list(total = total, within = within, between = between),
  sensitivity = list(detrended = detrended)
)
writeLines(to_json(result), out_json)
cat("wrote", out_json, "\n")
