"""The least-squares solve shared by the refits (compensate:lsq/scale, refit): normal
equations with a ridge relative to the system's scale, so the same option value means
the same thing for layers of any width or activation size."""

from __future__ import annotations

import numpy as np


def ridge(a: np.ndarray, relative: float) -> float:
    """The ridge added to the diagonal: `relative` times the mean diagonal of `a`."""
    return float(relative) * max(float(np.trace(a)) / max(len(a), 1), 1e-12)


def ridge_solve(a: np.ndarray, b: np.ndarray, relative: float, prior: float | np.ndarray = 0.0) -> np.ndarray:
    """Solve (A + lam I) x = b + lam prior, lam = ridge(a, relative): the normal equations
    of a least-squares fit (A = XᵀX, b = Xᵀy) with the penalty lam ||x - prior||².
    `prior` shrinks the solution towards a value other than 0 (scales towards 1)."""
    lam = ridge(a, relative)
    rhs = b + lam * np.asarray(prior, dtype=np.float64) if np.any(prior) else b
    return np.linalg.solve(a + lam * np.eye(len(a)), rhs)
