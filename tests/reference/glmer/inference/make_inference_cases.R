# lme4 references for GLMM inference (run from the repository root with lme4 installed):
#   Rscript tests/reference/glmer/inference/make_inference_cases.R
# cbpp_lrt.json: anova(null, full) of two binomial glmer fits (Laplace), lme4's likelihood-ratio table.
# grouseticks_nakagawa.json: Nakagawa et al. (2017) variance components of the Poisson GLMM, computed
#   by hand as insight/performance's r2_nakagawa() does (lognormal approximation): fixed = var(X beta);
#   random = the random-intercept variances, observation-level factors (one level per row) left out;
#   dispersion = the observation-level variance; distribution = log1p(1 / lambda),
#   lambda = exp(beta0_null + tau2_null / 2) from the null model (intercept-only fixed effects, the same
#   random effects; tau2_null its non-observation-level intercept variances). lme4 warns that this null
#   fit did not converge (max|grad| 0.08): its likelihood is flat along the intercept, so the null
#   intercept (and with it the distribution variance) is known to about 1% only; "null_loglik" is kept.
suppressMessages({library(lme4); library(jsonlite)})
here <- "tests/reference"
out_dir <- file.path(here, "glmer", "inference")

cbpp <- read.csv(file.path(here, "data", "cbpp.csv"), colClasses = c(herd = "factor", period = "factor"))
full <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)
null <- glmer(cbind(incidence, size - incidence) ~ 1 + (1 | herd), data = cbpp, family = binomial)
a <- anova(null, full)
lrt <- list(
  data = "cbpp", family = "binomial", nAGQ = 1L,
  formulas = list(null = "cbind(incidence, size - incidence) ~ 1 + (1 | herd)",
                  full = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  npar = as.list(setNames(a$npar, c("null", "full"))),
  loglik = as.list(setNames(a$logLik, c("null", "full"))),
  chisq = a$Chisq[2], df = a[["Df"]][2], p = a[["Pr(>Chisq)"]][2],
  lme4_version = as.character(packageVersion("lme4")))
writeLines(toJSON(lrt, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "cbpp_lrt.json"))

ticks <- read.csv(file.path(here, "data", "grouseticks.csv"),
                  colClasses = c(INDEX = "factor", BROOD = "factor", YEAR = "factor", LOCATION = "factor"))
f_full <- TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)
m <- glmer(f_full, data = ticks, family = poisson)
m0 <- glmer(TICKS ~ 1 + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION), data = ticks, family = poisson)
n <- nobs(m)
intercept_var <- function(fit, obs_level) {
  vc <- VarCorr(fit)
  keep <- names(vc)[vapply(names(vc), function(g) (nlevels(getME(fit, "flist")[[g]]) == n) == obs_level, TRUE)]
  sum(vapply(keep, function(g) vc[[g]]["(Intercept)", "(Intercept)"], 0))
}
var_fixed <- var(as.vector(getME(m, "X") %*% fixef(m)))
var_random <- intercept_var(m, FALSE)
var_dispersion <- intercept_var(m, TRUE)
lambda <- exp(unname(fixef(m0)[1]) + 0.5 * intercept_var(m0, FALSE))
var_distribution <- log1p(1 / lambda)
residual <- var_distribution + var_dispersion
total <- var_fixed + var_random + residual
nak <- list(
  data = "grouseticks", family = "poisson", formula = "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
  fixed = var_fixed, random = var_random, dispersion = var_dispersion, distribution = var_distribution,
  lambda = lambda, null_intercept = unname(fixef(m0)[1]), null_loglik = as.numeric(logLik(m0)),
  icc_adjusted = var_random / (var_random + residual), icc_conditional = var_random / total,
  r2_marginal = var_fixed / total, r2_conditional = (var_fixed + var_random) / total,
  lme4_version = as.character(packageVersion("lme4")))
writeLines(toJSON(nak, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(out_dir, "grouseticks_nakagawa.json"))
