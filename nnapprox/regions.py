"""Code regions from the paper's study, written as vectorised originals with stated input distributions.

Newton-Raphson on quadratics ``a x^2 + b x + c``: coefficients ``a ~ U[0.5, 2]``,
``b ~ U[-4, 4]``, ``c ~ U[-4, 0]`` (so both roots are real and the larger is >= 0), each
solve started at ``x0 = 10`` (right of every root in that range, so it converges to the larger
root).  Iteration stops at ``|x_{n+1} - x_n| < tol`` or after ``max_iter`` steps, as in the
paper's Algorithm 1.
"""
from __future__ import annotations

import numpy as np

NR_START = 10.0


def sample_quadratics(rng: np.random.Generator, n: int) -> np.ndarray:
    """Coefficients ``(a, b, c)`` of ``n`` quadratics from the stated distribution, shape ``(n, 3)``."""
    return np.column_stack([rng.uniform(0.5, 2.0, n), rng.uniform(-4.0, 4.0, n), rng.uniform(-4.0, 0.0, n)])


def newton_raphson_quadratic(coeffs: np.ndarray, x0: float = NR_START, tol: float = 1e-10,
                             max_iter: int = 100) -> np.ndarray:
    """Newton-Raphson roots of many quadratics at once; each stops when its own step is below ``tol``."""
    coeffs = np.asarray(coeffs, float)
    a, b, c = coeffs[:, 0], coeffs[:, 1], coeffs[:, 2]
    x = np.full(len(coeffs), float(x0))
    active = np.ones(len(coeffs), bool)
    for _ in range(max_iter):
        if not active.any():
            break
        xa = x[active]
        step = (a[active] * xa * xa + b[active] * xa + c[active]) / (2.0 * a[active] * xa + b[active])
        x[active] = xa - step
        active[np.flatnonzero(active)[np.abs(step) < tol]] = False
    return x


def root_scores(coeffs: np.ndarray, true: np.ndarray, pred: np.ndarray, rel_tol: float = 0.05) -> dict[str, float]:
    """Accuracy of predicted roots: the share within ``rel_tol`` of the true root (floor 1 in the
    denominator, since roots near zero occur), and ``1 - mean relative error`` on the same scale."""
    scale = np.maximum(np.abs(true), 1.0)
    rel = np.abs(pred - true) / scale
    return {"accuracy": float(np.mean(rel <= rel_tol)), "one_minus_mean_rel_error": float(1.0 - rel.mean())}
