# lme4 oracles for pooling with a response family (run once with lme4 1.1-31, from the repository root):
#   Rscript tests/reference/glmer/pooling/make_pooling_cases.R
# For each model: glmer's fixed effects, conditional modes and conditional variances
# (ranef(fit, condVar = TRUE), the Laplace approximation's), and each level's no-pooling
# estimate: R's glm() on the level's own rows of its varying columns, with the fixed part
# and the other (non-nested) factors' conditional modes as the offset, on the link scale
# (for the negative binomial with glmer.nb's theta held fixed). "crossed_counts.csv" is
# simulated here (seed below) and written beside this script.
suppressMessages({library(lme4); library(jsonlite); library(MASS)})
here <- "tests/reference"
out_dir <- file.path(here, "glmer", "pooling")

set.seed(20240611)
G <- 20; H <- 8
g <- rep(sprintf("g%02d", 1:G), each = H); h <- rep(sprintf("h%d", 1:H), times = G)
x <- rnorm(G * H)
u <- rnorm(G, 0, 0.5); v <- rnorm(H, 0, 0.3); s <- rnorm(G, 0, 0.25)
gi <- rep(1:G, each = H); hi <- rep(1:H, times = G)
y <- rpois(G * H, exp(0.5 + 0.4 * x + u[gi] + v[hi] + s[gi] * x))
write.csv(data.frame(y = y, x = round(x, 6), g = g, h = h), file.path(out_dir, "crossed_counts.csv"), row.names = FALSE)

read <- function(path) {
  d <- read.csv(path, stringsAsFactors = TRUE)
  for (f in intersect(c("g", "h", "herd", "period"), names(d))) d[[f]] <- factor(d[[f]])
  d
}

# per factor: levels, conditional modes, conditional (co)variances
condvar <- function(m) {
  re <- ranef(m, condVar = TRUE)
  lapply(setNames(names(re), names(re)), function(f) {
    r <- re[[f]]
    pv <- attr(r, "postVar")
    if (is.list(pv)) {  # uncorrelated terms (||): lme4 gives each term's own block only; the
      # conditional covariances between the terms are not reported, so they are null here
      k <- ncol(r); arr <- array(NA_real_, c(k, k, nrow(r))); j <- 0
      for (p in pv) { d <- dim(p)[1]; arr[j + 1:d, j + 1:d, ] <- p; j <- j + d }
      pv <- arr
    }
    list(levels = rownames(r), columns = colnames(r), modes = unname(as.matrix(r)),
         condvar = lapply(seq_len(nrow(r)), function(i) unname(pv[, , i, drop = TRUE])))
  })
}

# no pooling of `factor`: glm of the level's own rows on its varying columns, offset held
no_pooling <- function(m, d, factor, rhs, family, other = character(0)) {
  fe <- fixef(m)
  X <- getME(m, "X")
  off <- as.vector(X %*% fe)
  if (!is.null(d$off_)) off <- off + d$off_
  for (o in other) off <- off + ranef(m)[[o]][as.character(d[[o]]), 1]
  fits <- lapply(split(seq_len(nrow(d)), d[[factor]]), function(i) {
    di <- d[i, ]; di$.off <- off[i]
    resp <- if (identical(family$family, "binomial")) "cbind(s_, f_)" else "y_"
    fit <- suppressWarnings(glm(as.formula(paste(resp, "~", rhs)), family = family, data = di, offset = .off,
                                control = glm.control(epsilon = 1e-12, maxit = 100)))
    list(coef = unname(coef(fit)), converged = fit$converged)
  })
  list(factor = factor, levels = names(fits), coef = lapply(fits, `[[`, "coef"),
       converged = vapply(fits, `[[`, logical(1), "converged"), fixef = as.list(fe))
}

write_case <- function(id, formula, m, d, pooling, extra = list()) {
  out <- c(list(id = id, formula = formula, family = family(m)$family, link = family(m)$link,
                fixef = as.list(fixef(m)), sigma = sigma(m), ranef = condvar(m), no_pooling = pooling,
                lme4_version = as.character(packageVersion("lme4"))), extra)
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
             file.path(out_dir, paste0(id, ".json")))
}

# binomial, cloglog link (cbpp)
cbpp <- read(file.path(here, "data", "cbpp.csv"))
cbpp$s_ <- cbpp$incidence; cbpp$f_ <- cbpp$size - cbpp$incidence
m <- glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, family = binomial(link = "cloglog"))
write_case("cbpp_cloglog", "cbind(incidence, size - incidence) ~ period + (1 | herd)", m, cbpp,
           list(no_pooling(m, cbpp, "herd", "1", binomial(link = "cloglog"))))

# Gamma, log link
gam <- read(file.path(here, "data", "gamma_positive.csv")); gam$y_ <- gam$y
m <- glmer(y ~ x + (1 | g), gam, family = Gamma(link = "log"))
write_case("gamma_log", "y ~ x + (1 | g)", m, gam, list(no_pooling(m, gam, "g", "1", Gamma(link = "log"))))

# negative binomial (glmer.nb), theta held at its estimate for no pooling
nb <- read(file.path(here, "data", "nb_counts.csv")); nb$y_ <- nb$y
m <- glmer.nb(y ~ x + (1 | g), data = nb)
theta <- getME(m, "glmer.nb.theta")
write_case("nb_counts", "y ~ x + (1 | g)", m, nb, list(no_pooling(m, nb, "g", "1", negative.binomial(theta))),
           list(phi = theta))

# Poisson, crossed factors: each factor's no pooling holds the other's modes in the offset
cc <- read(file.path(out_dir, "crossed_counts.csv")); cc$y_ <- cc$y
m <- glmer(y ~ x + (1 | g) + (1 | h), cc, family = poisson)
write_case("crossed_poisson", "y ~ x + (1 | g) + (1 | h)", m, cc,
           list(no_pooling(m, cc, "g", "1", poisson(), other = "h"), no_pooling(m, cc, "h", "1", poisson(), other = "g")))

# Poisson, uncorrelated intercept and slope (||)
m <- glmer(y ~ x + (x || g), cc, family = poisson)
write_case("uncorrelated_poisson", "y ~ x + (x || g)", m, cc, list(no_pooling(m, cc, "g", "x", poisson())))
