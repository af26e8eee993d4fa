"""Sufficient statistics of a linear mixed model.

``X'X, X'y, y'y, Z'Z, Z'X, Z'y`` and ``n`` determine the gaussian likelihood
for every value of the parameters. They are sums over rows, so they are
accumulated over row chunks (and can be reduced partition by partition from a
distributed data frame); everything after them costs nothing in ``n``.

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> X = np.ones((4, 1)); y = np.arange(4.0); Z = sp.csc_matrix(np.eye(4)[:, :2].repeat(1, 0))
>>> s = SufficientStats.from_arrays(X, Z, y, chunk_rows=3)
>>> s.n, float(s.yty), s.Xty.tolist()
(4, 14.0, [6.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["SufficientStats"]


@dataclass(frozen=True)
class SufficientStats:
    """Cross-products of ``[Z X y]``.

    Attributes
    ----------
    n : int
    XtX : ndarray (p, p)
    Xty : ndarray (p,)
    yty : float
    ZtZ : scipy.sparse.csc_matrix (q, q)
    ZtX : ndarray (q, p)
    Zty : ndarray (q,)
    Xsum : ndarray (p,)
        Column sums of X (with ``ysum``, the means and SDs that scale default priors).
    ysum : float
    """

    n: int
    XtX: np.ndarray
    Xty: np.ndarray
    yty: float
    ZtZ: sp.csc_matrix
    ZtX: np.ndarray
    Zty: np.ndarray
    Xsum: np.ndarray
    ysum: float

    def __add__(self, other: "SufficientStats") -> "SufficientStats":
        return SufficientStats(
            self.n + other.n,
            self.XtX + other.XtX,
            self.Xty + other.Xty,
            self.yty + other.yty,
            (self.ZtZ + other.ZtZ).tocsc(),
            self.ZtX + other.ZtX,
            self.Zty + other.Zty,
            self.Xsum + other.Xsum,
            self.ysum + other.ysum,
        )

    @classmethod
    def of_chunk(cls, X: np.ndarray, Z: sp.spmatrix, y: np.ndarray) -> "SufficientStats":
        """Statistics of one block of rows."""
        Zt = sp.csr_matrix(Z).T.tocsr()
        return cls(
            n=len(y),
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            ZtZ=(Zt @ Zt.T).tocsc(),
            ZtX=np.asarray(Zt @ X),
            Zty=np.asarray(Zt @ y).reshape(-1),
            Xsum=X.sum(axis=0),
            ysum=float(y.sum()),
        )

    @classmethod
    def from_arrays(
        cls, X: np.ndarray, Z: sp.spmatrix, y: np.ndarray, chunk_rows: int = 250_000
    ) -> "SufficientStats":
        """Accumulate the statistics over row chunks of in-memory arrays."""
        Z = sp.csr_matrix(Z)
        total = None
        for start in range(0, len(y), chunk_rows):
            stop = min(start + chunk_rows, len(y))
            part = cls.of_chunk(X[start:stop], Z[start:stop], y[start:stop])
            total = part if total is None else total + part
        if total is None:
            raise ValueError("no rows to summarise")
        return total

    def column_moments(self) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mean and SD of y, and of every column of X."""
        mean_y = self.ysum / self.n
        mean_x = self.Xsum / self.n
        sd_y = float(np.sqrt(max(self.yty / self.n - mean_y**2, 0.0)))
        sd_x = np.sqrt(np.maximum(np.diag(self.XtX) / self.n - mean_x**2, 0.0))
        return float(mean_y), sd_y, mean_x, sd_x
