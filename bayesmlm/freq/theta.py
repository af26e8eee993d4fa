"""The covariance parameter vector theta and the relative covariance factor.

As in lme4, each grouping factor's random effects have covariance
``sigma^2 * T T'`` with ``T`` a lower-triangular template; theta holds the
free entries of all templates (column-major within a template, blocks in model
order). Diagonal entries are bounded below by zero; a zero diagonal is a
singular (boundary) fit.

Examples
--------
>>> import bayesmlm as bm
>>> from bayesmlm.design import build_design
>>> layout = ThetaLayout.from_design(build_design("Reaction ~ Days + (Days | Subject)", bm.datasets.load("sleepstudy")))
>>> layout.size, layout.initial().tolist(), layout.lower.tolist()
(3, [1.0, 0.0, 1.0], [0.0, -inf, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..design import Design

__all__ = ["ThetaLayout"]


@dataclass(frozen=True)
class ThetaLayout:
    """Where each block's template entries live in theta.

    Attributes
    ----------
    sizes : tuple of int
        Template dimension of each block.
    free : tuple of tuple of (int, int)
        Free (row, col) template positions of each block, column-major.
    """

    sizes: tuple[int, ...]
    free: tuple[tuple[tuple[int, int], ...], ...]

    @classmethod
    def from_design(cls, design: Design) -> "ThetaLayout":
        free = tuple(tuple(sorted(b.free, key=lambda ij: (ij[1], ij[0]))) for b in design.blocks)
        return cls(tuple(b.n_cols for b in design.blocks), free)

    @property
    def size(self) -> int:
        return sum(len(f) for f in self.free)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([len(f) for f in self.free])]).astype(int)

    @property
    def is_diagonal(self) -> np.ndarray:
        return np.array([i == j for f in self.free for (i, j) in f], dtype=bool)

    @property
    def lower(self) -> np.ndarray:
        """Lower bounds: 0 on template diagonals, -inf elsewhere."""
        return np.where(self.is_diagonal, 0.0, -np.inf)

    def initial(self) -> np.ndarray:
        """lme4's starting point: identity templates."""
        return self.is_diagonal.astype(float)

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Lower-triangular template of every block for a theta vector."""
        out = []
        offsets = self.offsets
        for k, (size, free) in enumerate(zip(self.sizes, self.free)):
            T = np.zeros((size, size))
            rows, cols = zip(*free)
            T[list(rows), list(cols)] = theta[offsets[k] : offsets[k + 1]]
            out.append(T)
        return out

    def from_templates(self, templates: list[np.ndarray]) -> np.ndarray:
        """Inverse of :meth:`templates`."""
        return np.concatenate([T[tuple(zip(*free))] for T, free in zip(templates, self.free)])

    def lambda_positions(self, levels: list[int], blocks: list[int] | None = None):
        """Where each free template entry sits in the block-diagonal Lambda.

        Parameters
        ----------
        levels : list of int
            Number of levels of every block.
        blocks : list of int, optional
            The blocks laid out, in order, from row 0 (all by default).

        Returns
        -------
        rows, cols : ndarray
            Positions in Lambda, block after block, level-major within a block.
        entry : list of ndarray
            Per laid-out block, which of its ``free`` entries fills each position.
        """
        rows, cols, entry = [], [], []
        offset = 0
        for k in range(len(self.sizes)) if blocks is None else blocks:
            size, n_levels = self.sizes[k], levels[k]
            starts = offset + size * np.arange(n_levels)
            rows += [starts + i for i, _ in self.free[k]]
            cols += [starts + j for _, j in self.free[k]]
            entry.append(np.repeat(np.arange(len(self.free[k])), n_levels))
            offset += size * n_levels
        return np.concatenate(rows), np.concatenate(cols), entry
