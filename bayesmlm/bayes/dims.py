"""Names of the dimensions of a factor's varying columns in posterior draws (one place for every model).

Examples
--------
>>> col_dim("Subject"), col_dim_b("Subject")
('Subject__col', 'Subject__col_b')
"""

from __future__ import annotations

__all__ = ["col_dim", "col_dim_b"]


def col_dim(factor: str) -> str:
    """Dimension name of a factor's varying columns."""
    return f"{factor}__col"


def col_dim_b(factor: str) -> str:
    """Second column dimension of a factor's correlation matrix."""
    return f"{factor}__col_b"
