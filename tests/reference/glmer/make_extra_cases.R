# Reference fits added to the shared lme4 glmer oracles (run with lme4 1.1-31):
#   Rscript tests/reference/glmer/make_extra_cases.R
# negative binomial (glmer.nb), Gamma with log link, and VerbAgg with a correlated varying slope.
# The JSON layout is the shared one; "sigma" is sigma(fit), "phi" glmer.nb's theta, and for the
# Gamma "varcorr" holds lme4 1.1's own output, which multiplies the random-effect
# variances by sigma^2 (newer lme4 does not; bm.glmer reports them unscaled, as "theta" here).
suppressMessages({library(lme4); library(jsonlite)})
here <- "tests/reference"
one <- function(id, data, formula, family, fit_fun, link = NULL) {
  d <- read.csv(file.path(here, "data", paste0(data, ".csv")), stringsAsFactors = TRUE)
  for (f in intersect(c("g", "id", "item"), names(d))) d[[f]] <- factor(d[[f]])
  invisible(fit_fun(d))
  secs <- system.time(m <- fit_fun(d))[["elapsed"]]
  vc <- as.data.frame(VarCorr(m))
  vc <- vc[vc$grp != "Residual", ]
  re <- lapply(ranef(m), function(r) lapply(seq_len(nrow(r)), function(i) c(as.list(r[i, , drop = FALSE]), level = rownames(r)[i])))
  out <- list(id = id, data = data, formula = formula, family = family, nAGQ = 1L, nobs = nobs(m),
              fixef = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
              theta = unname(getME(m, "theta")),
              varcorr = lapply(seq_len(nrow(vc)), function(i) list(grp = vc$grp[i], var1 = vc$var1[i],
                               var2 = if (is.na(vc$var2[i])) NULL else vc$var2[i], vcov = vc$vcov[i], sdcor = vc$sdcor[i])),
              loglik = as.numeric(logLik(m)), deviance = deviance(m), aic = AIC(m), singular = isSingular(m),
              sigma = sigma(m), ranef = re, seconds = secs, lme4_version = as.character(packageVersion("lme4")))
  if (!is.null(getME(m, "glmer.nb.theta"))) out$phi <- getME(m, "glmer.nb.theta")
  if (!is.null(link)) out$link <- link
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
             file.path(here, "glmer", paste0(id, ".json")))
}
one("nb_counts", "nb_counts", "y ~ x + (1 | g)", "negbinomial", function(d) glmer.nb(y ~ x + (1 | g), data = d))
one("gamma_log", "gamma_positive", "y ~ x + (1 | g)", "Gamma",
    function(d) glmer(y ~ x + (1 | g), data = d, family = Gamma(link = "log")), link = "log")
one("verbagg_slopes", "verbagg", "r2 ~ Anger + Gender + btype + situ + (situ | id) + (1 | item)", "binomial",
    function(d) glmer(r2 ~ Anger + Gender + btype + situ + (situ | id) + (1 | item), data = d, family = binomial))
