"""graphprune/lstsq.py: the ridge is relative to the system's scale; with a tiny ridge the
solve is the least-squares solution, and a prior pulls an underdetermined solution to it."""

from __future__ import annotations

import numpy as np

from graphprune.lstsq import ridge, ridge_solve


def test_exact_least_squares_with_a_tiny_ridge():
    r = np.random.default_rng(0)
    x = r.standard_normal((200, 5))
    coef = r.standard_normal((5, 2))
    y = x @ coef
    np.testing.assert_allclose(ridge_solve(x.T @ x, x.T @ y, 1e-12), coef, atol=1e-8)


def test_ridge_scales_with_the_system_and_the_prior_wins_where_data_is_silent():
    a = np.diag([4.0, 0.0])
    assert ridge(a, 0.5) == 1.0 and ridge(1e3 * a, 0.5) == 1e3
    sol = ridge_solve(a, np.array([4.0, 0.0]), 1e-3, prior=1.0)
    assert abs(sol[0] - 1.0) < 1e-3 and sol[1] == 1.0
    assert ridge_solve(a, np.array([4.0, 0.0]), 1e-3)[1] == 0.0
