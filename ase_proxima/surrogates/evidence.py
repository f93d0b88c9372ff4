"""Bayesian ridge regression on sufficient statistics, refitted without touching old rows.

The model is scikit-learn's ``BayesianRidge`` (no intercept): weights with prior precision
``lambda``, noise precision ``alpha``, both chosen by maximising the evidence with MacKay's
fixed-point updates.  Everything the posterior needs of a design ``X`` (n rows) and targets
``y`` is ``G = X^T X``, ``h = X^T y``, ``y.y`` and ``n``; a run's surrogate keeps them as a
triangular factor that grows with each new block of rows, so a refit costs the same whatever
the number of structures behind it.

Two kinds of solve:

* :meth:`EvidenceRidge.optimise`: the evidence maximum, in the eigenbasis of ``G`` (one
  symmetric eigendecomposition, then cheap iterations), as ``BayesianRidge.fit`` on the full
  design gives it.  While the design has fewer rows than columns (a run's first hundreds of
  energies against a SOAP spectrum of hundreds or thousands of features), ``G`` has no more
  nonzero eigenvalues than rows, and they come from the small matrix ``X X^T`` of the rows
  themselves, given: the columns' own decomposition, cubic in their number, is never needed;
* :meth:`EvidenceRidge.update`: the posterior for new statistics at the hyperparameters in
  hand, used between optimisations: given the rows added since the last solve, a low-rank
  (Woodbury) update of the covariance, written into the array it updates, whose cost does not
  grow with the rows behind it and is a small fraction of a factorisation when a few rows were
  added; else one Cholesky factorisation.

:meth:`EvidenceRidge.solve` picks: it re-optimises when the rows have grown by ``regrow``
since the last optimisation, or after ``every`` updates, and otherwise updates.

While the rows are fewer than the columns the covariance is never a square array: it is the
prior's ``I / lambda`` plus a term of the rank of the rows (:class:`LowRankCovariance`), which
an update extends by the rank of the rows it adds.  A prediction's variance and an update then
cost the columns times that rank, not the square of the columns (a SOAP spectrum's hundreds or
a thousand), and the Gram matrix is not needed at all: the rows give what it would.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_factor, cho_solve, eigh, solve_triangular
from scipy.linalg.blas import dgemm

__all__ = ["EvidenceRidge", "LowRankCovariance", "add_outer", "variance"]

_EPS = np.finfo(float).eps


def add_outer(matrix: np.ndarray, a: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``matrix += scale * a @ a.T``, in place where ``matrix`` is a contiguous float array.

    A new square matrix of a few hundred columns is fresh memory from the system, whose first
    touch costs several times the arithmetic of a low-rank update: refits write into the arrays
    they already hold.  ``a @ a.T`` is symmetric, so a C-ordered ``matrix`` is handed to BLAS as
    its (Fortran-ordered) transpose.  Returns the updated array (``matrix`` itself, or a new one
    where it could not be written in place)."""
    a = np.asarray(a, float)
    if matrix.dtype == np.float64 and matrix.flags.writeable and (matrix.flags.c_contiguous
                                                                  or matrix.flags.f_contiguous):
        c_order = matrix.flags.c_contiguous
        out = dgemm(scale, a, a, beta=1.0, c=matrix.T if c_order else matrix, trans_b=True, overwrite_c=True)
        return matrix if np.shares_memory(out, matrix) else out.T if c_order else out
    return matrix + scale * (a @ a.T)


class LowRankCovariance:
    """``scale * I + U diag(weights) U^T``: a covariance kept as the prior's multiple of the
    identity plus a low-rank term, never formed as a square array unless asked (:meth:`dense`).

    A posterior built from fewer rows than columns has this shape: it differs from the prior
    only in the span of the rows.  Products with it cost the columns times the rank."""

    __slots__ = ("scale", "basis", "weights")

    def __init__(self, scale: float, basis: np.ndarray, weights: np.ndarray) -> None:
        self.scale = float(scale)
        self.basis = np.ascontiguousarray(basis, float)
        self.weights = np.asarray(weights, float).ravel()

    @property
    def shape(self) -> tuple[int, int]:
        d = self.basis.shape[0]
        return d, d

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    def dot(self, x: np.ndarray) -> np.ndarray:
        """``Sigma @ x`` for a vector or a matrix of columns."""
        x = np.asarray(x, float)
        projected = self.basis.T @ x
        projected *= self.weights if x.ndim == 1 else self.weights[:, None]
        return self.scale * x + self.basis @ projected

    def quadratic(self, rows: np.ndarray) -> np.ndarray | float:
        """``r Sigma r`` of one row (a float) or of each row of a matrix."""
        rows = np.asarray(rows, float)
        projected = rows @ self.basis
        if rows.ndim == 1:
            return float(self.scale * (rows @ rows) + (projected * projected) @ self.weights)
        return self.scale * np.einsum("ij,ij->i", rows, rows) + (projected * projected) @ self.weights

    def add(self, columns: np.ndarray, sign: float) -> None:
        """``Sigma += sign * Y Y^T``: the columns join the low-rank term."""
        columns = np.asarray(columns, float).reshape(self.basis.shape[0], -1)
        self.basis = np.hstack([self.basis, columns])
        self.weights = np.concatenate([self.weights, np.full(columns.shape[1], float(sign))])

    def dense(self) -> np.ndarray:
        out = (self.basis * self.weights) @ self.basis.T
        out.flat[::len(out) + 1] += self.scale
        return out


def variance(covariance: np.ndarray | LowRankCovariance, rows: np.ndarray) -> np.ndarray | float:
    """``r Sigma r`` of one row (a float) or of each row of a matrix, for either kind of covariance."""
    if isinstance(covariance, LowRankCovariance):
        return covariance.quadratic(rows)
    rows = np.asarray(rows, float)
    if rows.ndim == 1:
        return float(rows @ covariance @ rows)
    return ((rows @ covariance) * rows).sum(axis=1)


class EvidenceRidge:
    """Evidence-maximising Bayesian ridge on sufficient statistics.

    Parameters
    ----------
    alpha_1, alpha_2, lambda_1, lambda_2:
        Gamma hyper-priors of the noise and weight precisions (scikit-learn's defaults).
    tol, max_iter:
        Convergence of the fixed-point iteration: sum of absolute weight changes, iterations.
    regrow, every:
        Re-optimise the hyperparameters once the rows have grown by this factor since the last
        optimisation, or after this many updates without one.
    max_rank:
        Share of the columns up to which the covariance is kept low-rank
        (:class:`LowRankCovariance`); beyond it, a square array.
    """

    def __init__(self, alpha_1: float = 1e-6, alpha_2: float = 1e-6, lambda_1: float = 1e-6,
                 lambda_2: float = 1e-6, tol: float = 1e-3, max_iter: int = 500, regrow: float = 1.25,
                 every: int = 10, max_rank: float = 0.5) -> None:
        self.alpha_1, self.alpha_2, self.lambda_1, self.lambda_2 = alpha_1, alpha_2, lambda_1, lambda_2
        self.tol, self.max_iter, self.regrow, self.every = tol, max_iter, regrow, every
        self.max_rank = max_rank
        self.alpha_: float | None = None
        self.lambda_: float | None = None
        self.coef_: np.ndarray | None = None
        self.covariance_: np.ndarray | LowRankCovariance | None = None  # posterior covariance
        self.optimised_rows = 0  # rows behind the last evidence optimisation
        self.updates_since = 0
        self.optimisations = 0

    @property
    def sigma_(self) -> np.ndarray | None:
        """The posterior covariance as a square array (a new one on each call when kept low-rank)."""
        cov = self.covariance_
        return cov.dense() if isinstance(cov, LowRankCovariance) else cov

    @sigma_.setter
    def sigma_(self, value: np.ndarray | None) -> None:
        self.covariance_ = value

    def solve(self, gram: np.ndarray | None, xty: np.ndarray, yty: float, n: int,
              new_rows: np.ndarray | None = None,
              rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | LowRankCovariance]:
        """Posterior mean and covariance for the statistics, re-optimising on schedule
        (``new_rows``: the design rows added since the last solve, where known; ``rows``: every
        row behind ``gram``, where kept, see :meth:`optimise`; ``gram`` may then be ``None``)."""
        due = (self.alpha_ is None or n >= self.regrow * self.optimised_rows or self.updates_since >= self.every)
        if not due:
            try:
                return self.update(gram, xty, new_rows, rows)
            except np.linalg.LinAlgError:  # lost definiteness: the eigenbasis route is safe
                pass
        return self.optimise(gram, xty, yty, n, rows)

    @staticmethod
    def _gram(gram: np.ndarray | None, rows: np.ndarray | None) -> np.ndarray:
        if gram is not None:
            return gram
        if rows is None:
            raise ValueError("the Gram matrix or the rows behind it are needed")
        return rows.T @ rows

    @staticmethod
    def _eigenpairs(gram: np.ndarray | None, rows: np.ndarray | None, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (clipped at 0) and eigenvectors (columns) of ``gram``; from ``rows`` (the
        design whose ``X^T X`` it is) when they are fewer than the columns: only the pairs of
        nonzero eigenvalue then, those of ``X X^T`` carried over (``V = X^T U / sqrt(w)``), the
        rest being the null space, where the posterior is the prior's."""
        if rows is not None and 0 < len(rows) < d:
            small = rows @ rows.T
            w, U = eigh(0.5 * (small + small.T))
            keep = w > _EPS * len(rows) * max(float(w.max()), 0.0)  # below that: rounding of a zero
            w, U = w[keep], U[:, keep]
            return w, (rows.T @ U) / np.sqrt(w)
        gram = EvidenceRidge._gram(gram, rows)
        ev, V = eigh(0.5 * (gram + gram.T))
        return np.clip(ev, 0.0, None), V

    def optimise(self, gram: np.ndarray | None, xty: np.ndarray, yty: float, n: int,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | LowRankCovariance]:
        """Maximise the evidence over ``alpha`` and ``lambda``; the posterior at the maximum.
        ``rows``: the design ``X`` itself (``gram`` is ``X^T X``, and may be ``None``), which makes
        this cheap while it has fewer rows than columns; the answer is the same."""
        d = len(xty)
        ev, V = self._eigenpairs(gram, rows, d)
        z = V.T @ xty  # X^T y in the eigenbasis
        # first guess (or the last maximum): the fixed point does not depend on it
        alpha = 1.0 / (yty / max(n, 1) + _EPS) if self.alpha_ is None else self.alpha_
        lam = 1.0 if self.lambda_ is None else self.lambda_
        # the residual from the statistics, |y|^2 - 2 w.X^T y + w.X^T X w, cancels: below this
        # share of |y|^2 it is rounding, not a fit better than the data allow
        rmse_floor = 1e-12 * max(yty, _EPS)
        jitter = 1e-12 * max(float(ev.max()) if ev.size else 0.0, _EPS)  # keeps lambda/alpha > 0
        coef_old = None
        for _ in range(self.max_iter):
            zc = z / (ev + max(lam / alpha, jitter))  # weights in the eigenbasis
            rmse = max(yty - 2.0 * zc @ z + (zc * ev) @ zc, rmse_floor)
            gamma = float(np.sum(alpha * ev / (lam + alpha * ev)))
            new_lam = (gamma + 2 * self.lambda_1) / (float(zc @ zc) + 2 * self.lambda_2)
            new_alpha = (n - gamma + 2 * self.alpha_1) / (rmse + 2 * self.alpha_2)
            if not (math.isfinite(new_lam) and math.isfinite(new_alpha) and new_lam > 0 and new_alpha > 0):
                break  # the last finite pair is the answer
            lam, alpha = new_lam, new_alpha
            if coef_old is not None and np.sum(np.abs(V @ (coef_old - zc))) < self.tol:
                break
            coef_old = zc
        self.alpha_, self.lambda_ = float(alpha), float(lam)
        zc = z / (ev + max(lam / alpha, jitter))
        self.coef_ = V @ zc
        if V.shape[1] <= self.max_rank * d:  # the prior's, but in the span of the rows
            self.covariance_ = LowRankCovariance(1.0 / lam, V, 1.0 / (alpha * ev + lam) - 1.0 / lam)
        elif V.shape[1] < d:  # the null space's covariance is the prior's, 1 / lambda
            cov = (V * (1.0 / (alpha * ev + lam) - 1.0 / lam)) @ V.T
            cov.flat[::d + 1] += 1.0 / lam  # (one new square array, not three)
            self.covariance_ = cov
        else:
            self.covariance_ = (V / (alpha * ev + lam)) @ V.T
        self.optimised_rows, self.updates_since = n, 0
        self.optimisations += 1
        return self.coef_, self.covariance_

    def update(self, gram: np.ndarray | None, xty: np.ndarray, new_rows: np.ndarray | None = None,
               rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | LowRankCovariance]:
        """The posterior at the current ``alpha`` and ``lambda`` (raises ``LinAlgError`` when the
        precision matrix is not numerically positive definite).  ``new_rows``: the rows ``gram``
        gained since the last solve, whose covariance then needs only a low-rank correction
        (``rows``: every row, for the Gram matrix where ``gram`` is ``None`` and one is needed)."""
        if self.alpha_ is None or self.lambda_ is None:
            raise ValueError("optimise first: no hyperparameters yet")
        d = len(xty)
        k = 0 if new_rows is None else len(new_rows)
        cov = self.covariance_
        low_rank = isinstance(cov, LowRankCovariance)
        if low_rank and (new_rows is None or cov.rank + k > self.max_rank * d):
            cov = self.covariance_ = cov.dense()  # too many columns for the low-rank form
            low_rank = False
        if new_rows is not None and cov is not None and cov.shape == (d, d) and 4 * k <= d:
            if k:  # (P + a R^T R)^-1 = S - S R^T (I/a + R S R^T)^-1 R S, with S = P^-1
                sr = cov.dot(new_rows.T) if low_rank else cov @ new_rows.T
                inner = np.eye(k) / self.alpha_ + new_rows @ sr
                # with I/a + R S R^T = L L^T the correction is Y Y^T, Y = S R^T L^-T: symmetric
                # by construction, subtracted in place (raises before touching S if not definite)
                y = solve_triangular(np.linalg.cholesky(inner), sr.T, lower=True, check_finite=False).T
                if low_rank:
                    cov.add(y, -1.0)
                else:
                    self.covariance_ = add_outer(cov, y, -1.0)
        else:
            precision = self.alpha_ * self._gram(gram, rows) + self.lambda_ * np.eye(d)
            factor = cho_factor(precision, lower=False, check_finite=False)
            self.covariance_ = cho_solve(factor, np.eye(d), check_finite=False)
        cov = self.covariance_
        self.coef_ = self.alpha_ * (cov.dot(xty) if isinstance(cov, LowRankCovariance) else cov @ xty)
        self.updates_since += 1
        return self.coef_, self.covariance_

    def state(self) -> dict[str, float | int | None]:
        return {"alpha": self.alpha_, "lambda": self.lambda_, "optimised_rows": self.optimised_rows,
                "updates_since": self.updates_since, "optimisations": self.optimisations}

    def load_state(self, state: dict[str, float | int | None]) -> None:
        self.alpha_, self.lambda_ = state.get("alpha"), state.get("lambda")
        self.optimised_rows = int(state.get("optimised_rows", 0) or 0)
        self.updates_since = int(state.get("updates_since", 0) or 0)
        self.optimisations = int(state.get("optimisations", 0) or 0)
        if self.alpha_ is not None and not math.isfinite(self.alpha_):
            self.alpha_ = None
