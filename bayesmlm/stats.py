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

    @classmethod
    def from_columns(
        cls, X: np.ndarray, cols: np.ndarray, vals: np.ndarray, y: np.ndarray, q: int
    ) -> "SufficientStats":
        """The statistics of ``Z`` given row by row: ``Z[i, cols[i, a]] = vals[i, a]``, no column twice in a row.

        The same numbers as :meth:`of_chunk` of that ``Z``, to the bit: each cross-product
        sums the rows in order from 0.0, as SciPy's sparse products do, but without their
        conversions (most of the cost for a small model). ``ZtZ`` is accumulated dense, so
        for ``q`` up to a few hundred.

        Examples
        --------
        >>> X = np.ones((4, 1)); y = np.arange(4.0)
        >>> cols = np.array([[0, 2], [0, 3], [1, 2], [1, 3]]); vals = np.ones((4, 2))
        >>> s = SufficientStats.from_columns(X, cols, vals, y, 4)
        >>> s.ZtZ.toarray().astype(int).tolist(), s.Zty.tolist()
        ([[2, 0, 1, 1], [0, 2, 1, 1], [1, 1, 2, 0], [1, 1, 0, 2]], [1.0, 5.0, 2.0, 4.0])
        """
        n, width = cols.shape
        flat = cols.reshape(-1)
        pair_keys = (cols[:, :, None] * q + cols[:, None, :]).reshape(-1)  # row-major: rows in order
        pair_vals = (vals[:, :, None] * vals[:, None, :]).reshape(-1)
        dense = np.bincount(pair_keys, weights=pair_vals, minlength=q * q).reshape(q, q)
        # SciPy's product keeps the nonzero sums only; ZtZ is symmetric, so its rows are its columns
        rows, within = np.nonzero(dense)
        indptr = np.zeros(q + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=q), out=indptr[1:])
        ZtZ = sp.csc_matrix((dense[rows, within], within, indptr), shape=(q, q))
        ZtX = np.column_stack(
            [np.bincount(flat, weights=(vals * X[:, [c]]).reshape(-1), minlength=q) for c in range(X.shape[1])]
        ) if X.shape[1] else np.zeros((q, 0))
        return cls(
            n=n,
            XtX=X.T @ X,
            Xty=X.T @ y,
            yty=float(y @ y),
            ZtZ=ZtZ,
            ZtX=ZtX,
            Zty=np.bincount(flat, weights=(vals * y[:, None]).reshape(-1), minlength=q),
            Xsum=X.sum(axis=0),
            ysum=float(y.sum()),
        )

    def column_moments(self) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mean and SD of y, and of every column of X."""
        mean_y = self.ysum / self.n
        mean_x = self.Xsum / self.n
        sd_y = float(np.sqrt(max(self.yty / self.n - mean_y**2, 0.0)))
        sd_x = np.sqrt(np.maximum(np.diag(self.XtX) / self.n - mean_x**2, 0.0))
        return float(mean_y), sd_y, mean_x, sd_x
