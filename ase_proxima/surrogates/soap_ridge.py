"""SOAP + Bayesian ridge: the default energy (and force) surrogate for molecules.

Model.  The energy is a sum of atomic contributions that are linear in each
atom's SOAP power spectrum, with one weight vector per element of the central
atom::

    E = sum_s n_s e_s  +  c  +  w . X,     X = concat_s ( sum_{i in s} p_i )

``e_s`` are per-element reference energies (least squares on the element
counts), so the learned part is small whatever the target's zero of energy
(Hartree-Fock methane is about -1100 eV).  Because ``X`` is linear in the
per-atom spectra, forces come out analytically, ``F = -w . dX/dr``, from
dscribe's analytical SOAP derivatives, and force labels enter the same linear
fit as extra rows: one target call on an N-atom molecule gives 1 + 3N
equations, which is why this model learns from few calls.

Why this and not a kernel on per-atom SOAP vectors (the thesis's choice): a
linear model in summed spectra is the kernel model with a linear (dot product)
kernel written in primal form; it refits in milliseconds, gives exact force
derivatives, and scikit-learn's ``BayesianRidge`` supplies a posterior
covariance, whose predictive std tracks the actual error closely enough to
serve as the gate signal (DESIGN section 4, probes).  The std reported here is
the epistemic part only (``x Sigma x``): it shrinks to zero near the data, as
a distance would.

Under a baseline (``ProximaCalculator(baseline=...)``) the model learns the
correction, target minus baseline, and by default (``baseline_feature``) with one
more feature: the baseline's own energy, relative to per-element references::

    dE = beta * (E_b - sum_s n_s b_s)  +  c  +  w . X

whose force rows are ``beta`` times the baseline's forces.  A target and a cheap
baseline of the same chemistry differ much of the time by stiffness (Hartree-Fock
bonds are stiffer than GFN2-xTB's): a correction that grows with the baseline's
strain energy is one weight here, where the SOAP terms alone would have to learn
it anew in every region the run visits.

Periodic systems: dscribe's SOAP derivatives are numerical only under periodic
boundaries (seconds for a few hundred atoms), so for periodic structures the
model serves energies and leaves forces to the target.  A molecule in a box whose
atoms see no periodic image within ``r_cut`` (the usual set-up of a DFT code) is
described as the free molecule it is, with analytic forces.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from dscribe.descriptors import SOAP

from .base import (FittedState, Prediction, Surrogate, WorkloadSize, check_training_set, isolated_copy,
                   mean_neighbours, structure_key)
from .evidence import EvidenceRidge, LowRankCovariance, add_outer, variance

__all__ = ["SOAPBayesianRidge", "posterior"]


def posterior(row: np.ndarray, w: np.ndarray, cov: np.ndarray | LowRankCovariance) -> tuple[float, float]:
    """Posterior mean ``row . w`` and standard deviation ``sqrt(row Sigma row)`` of a Bayesian
    linear model at one feature row (``cov`` a square array or kept low-rank)."""
    return float(row @ w), float(np.sqrt(max(variance(cov, row), 0.0)))


#: SOAP resolutions a run whose model lost capacity may move up to, in order
CAPACITY_RUNGS = ((6, 4), (8, 6))


class SOAPBayesianRidge(Surrogate):
    """Energy/force surrogate: element-resolved summed SOAP + ``BayesianRidge``.

    Parameters
    ----------
    r_cut, n_max, l_max, sigma:
        SOAP settings (Angstrom for lengths).
    fit_forces:
        Use target forces, where present, as training rows (non-periodic only).
    energy_weight:
        Weight of an energy row relative to one force row; default
        ``sqrt(3N)``, so a structure's energy counts as much as all its forces.
    baseline_feature:
        Fitted under a baseline, also learn a multiple of the baseline's own
        energy (see the module notes); ``False``: SOAP terms only.
    """

    implemented_properties = ("energy", "forces")
    # a prediction is the SOAP features (single-threaded C++) and products with the posterior
    # mean and covariance: measured beside threaded quantum-chemistry targets, with and without
    # forces, leaving the pools as they are slowed neither the target nor the prediction
    predicts_on_one_thread = False

    PREDICTIONS_KEPT = 32  # features of this many newest predictions are kept for a refit
    PREDICTED_BYTES = 8 << 20  # and of these bytes of force derivatives at most

    def __init__(
        self,
        r_cut: float = 5.0,
        n_max: int = 4,
        l_max: int = 3,
        sigma: float = 0.5,
        fit_forces: bool = True,
        energy_weight: float | None = None,
        baseline_feature: bool = True,
    ) -> None:
        if r_cut <= 0 or n_max < 1 or l_max < 0 or sigma <= 0:
            raise ValueError("SOAP settings must be positive (r_cut, sigma > 0; n_max >= 1; l_max >= 0)")
        self.r_cut, self.n_max, self.l_max, self.sigma = r_cut, n_max, l_max, sigma
        self.fit_forces = fit_forces
        self.energy_weight = energy_weight
        self.baseline_feature = baseline_feature
        self.with_baseline_ = False  # fitted with the baseline's energy as a feature
        self.species_: tuple[str, ...] = ()
        self.periodic_: bool | None = None
        self.coef_: np.ndarray | None = None  # posterior mean of the weights (features + intercept)
        self._soap: SOAP | None = None
        self._cache: dict[bytes, tuple[np.ndarray, np.ndarray | None]] = {}
        # features of the newest predictions: a structure the target is asked next (an audit, a
        # call the gate refused) joins the training set, whose refit then need not describe it again
        self._predicted: dict[bytes, tuple[np.ndarray, np.ndarray | None]] = {}
        self._layouts: dict[tuple[bytes, tuple[str, ...]], tuple[frozenset[str], list[np.ndarray], np.ndarray]] = {}
        self._gram: np.ndarray | None = None  # [A b]^T [A b] of every design row, once they outnumber A's columns
        self._design: np.ndarray | None = None  # A itself, while it has fewer rows than columns
        self._design_y: np.ndarray | None = None  # and b
        self._acc_keys: list[bytes] = []
        self._n_rows = 0
        self._basis_size = 0
        self._ridge = EvidenceRidge()

    # ----------------------------------------------------------- descriptors
    def _make_soap(self, species: Sequence[str], periodic: bool) -> SOAP:
        return SOAP(
            species=list(species),
            r_cut=float(self.r_cut),
            n_max=int(self.n_max),
            l_max=int(self.l_max),
            sigma=float(self.sigma),
            periodic=periodic,
            sparse=False,
        )

    def _features(self, atoms: Atoms, with_derivatives: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Element-resolved summed spectrum X (n_feat,) and, optionally, dX/dr (N, 3, n_feat)."""
        assert self._soap is not None
        masks = self._layout(atoms)[1]
        if with_derivatives:
            # attach: each centre moves with its atom (dscribe's default keeps centres fixed in space,
            # whose derivative leaves out the centre's own motion: forces that are not -dE/dr)
            d, p = self._soap.derivatives(atoms, method="analytical", return_descriptor=True, attach=True)
        else:
            # one structure: dscribe's per-structure call, without create()'s batching around it
            p, d = self._soap.create_single(atoms), None
        p = np.atleast_2d(p)
        blocks, dblocks = [], []
        for mask in masks:
            blocks.append(p[mask].sum(axis=0))
            if d is not None:
                dblocks.append(d[mask].sum(axis=0))  # (N, 3, F)
        x = np.concatenate(blocks)
        dx = np.concatenate(dblocks, axis=-1) if d is not None else None
        return x, dx

    def _counts(self, atoms: Atoms) -> np.ndarray:
        return self._layout(atoms)[2]

    def _layout(self, atoms: Atoms) -> tuple[frozenset[str], list[np.ndarray], np.ndarray]:
        """The species in ``atoms``, a mask of the atoms of each fitted species and their counts:
        asked several times on every call, so kept per atom numbering (ASE's symbols are slow)."""
        key = (atoms.numbers.tobytes(), self.species_)
        layout = self._layouts.get(key)
        if layout is None:
            symbols = atoms.get_chemical_symbols()
            masks = [np.array([x == s for x in symbols], bool) for s in self.species_]
            layout = (frozenset(symbols), masks, np.array([m.sum() for m in masks], float))
            if len(self._layouts) >= 64:
                self._layouts.clear()
            self._layouts[key] = layout
        return layout

    def __getstate__(self) -> dict[str, Any]:
        """Copies carry the fitted state, not the descriptor cache or dscribe's object (rebuilt)."""
        state = dict(self.__dict__)
        state["_soap"] = None
        state["_cache"] = {}
        state["_predicted"] = {}
        state["_layouts"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_layouts", {})
        self.__dict__.setdefault("baseline_feature", False)
        self.__dict__.setdefault("with_baseline_", False)
        self.__dict__.setdefault("_design_y", None)
        self.__dict__.setdefault("_predicted", {})
        if self.species_:
            self._soap = self._make_soap(self.species_, bool(self.periodic_))

    # ----------------------------------------------------------------- model
    @property
    def is_fitted(self) -> bool:
        return self.coef_ is not None

    @property
    def sigma_(self) -> np.ndarray | None:
        """Posterior covariance of the weights, as a square array (the model keeps it low-rank
        while its rows are fewer than its features, and forms this only when asked)."""
        return self._ridge.sigma_ if self.coef_ is not None else None

    @property
    def uses_baseline(self) -> bool:  # type: ignore[override]
        return bool(self.baseline_feature)

    def _as_described(self, atoms: Atoms) -> Atoms:
        """``atoms``, or the free molecule a molecule in a box is within ``r_cut``."""
        free = isolated_copy(atoms, float(self.r_cut))
        return atoms if free is None else free

    def accepts(self, atoms: Atoms) -> str | None:
        if not self.is_fitted:
            return "surrogate not trained"
        unseen = sorted(self._layout(atoms)[0] - set(self.species_))
        if unseen:
            return f"species {unseen} not in the training data"
        if bool(self._as_described(atoms).pbc.any()) != self.periodic_:
            return "periodicity differs from the training data"
        return None

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        return ("energy",) if self._as_described(atoms).pbc.any() else ("energy", "forces")

    def more_capacity(self) -> dict[str, Any] | None:
        """More radial and angular channels: ``(n_max, l_max)`` to the next of (6, 4) and (8, 6).
        Each rung costs several times the descriptor and fit time of the one before."""
        for n_max, l_max in CAPACITY_RUNGS:
            if (self.n_max, self.l_max) < (n_max, l_max):
                return {"n_max": max(n_max, self.n_max), "l_max": max(l_max, self.l_max)}
        return None

    def cost_bounds(self, atoms: Atoms, properties: Sequence[str] | None = None) -> tuple[float, float] | None:
        """The SOAP features (and derivatives) of one atom's environment, timed: the whole costs at
        least that, and about one such time per atom at most (the fixed part counted every time; the
        sampled atom's neighbourhood stands for every atom's)."""
        atoms = self._as_described(atoms)
        periodic = bool(atoms.pbc.any())
        soap = self._soap_for(atoms)
        if soap is None:
            return None
        start = time.perf_counter()
        if self.fit_forces and not periodic and (properties is None or "forces" in properties):
            soap.derivatives(atoms, centers=[0], method="analytical", return_descriptor=True, attach=True)
        else:
            soap.create(atoms, centers=[0])
        one = time.perf_counter() - start
        return one, one * len(atoms)

    def _soap_for(self, atoms: Atoms) -> SOAP | None:
        """The descriptor before any fit: made for the species and periodicity of the first
        structure described (so timing a sample and describing it build one, not two), and
        ``None`` for a structure it cannot describe."""
        species = tuple(sorted(set(atoms.get_chemical_symbols())))
        periodic = bool(atoms.pbc.any())
        if self._soap is None:
            self.species_, self.periodic_ = species, periodic
            self._soap = self._make_soap(species, periodic)
        elif not set(species) <= set(self.species_) or periodic != self.periodic_:
            return None
        return self._soap

    def describe(self, atoms: Atoms, properties: Sequence[str] | None = None) -> bool:
        """The SOAP features (and, for forces, their derivatives) of ``atoms``, kept for the fit."""
        atoms = self._as_described(atoms)
        if self._soap_for(atoms) is None:
            return False
        periodic = bool(atoms.pbc.any())
        want_d = self.fit_forces and not periodic and (properties is None or "forces" in properties)
        key = structure_key(atoms)
        if key not in self._cache or (want_d and self._cache[key][1] is None):
            self._cache[key] = self._features(atoms, want_d)
        return True

    def _fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]],
             baselines: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Fit on all structures; cost independent of the training-set size when data were appended.

        The least-squares problem enters only through ``A^T A``, ``A^T b``,
        ``|b|^2`` and the row count: new structures add their rows' products to
        that Gram matrix of ``[A b]`` (features are standardised, so squaring
        the condition number costs no accuracy the prior does not already
        remove), and the Bayesian ridge is solved from it
        (:class:`~.evidence.EvidenceRidge`: the evidence maximum on a schedule,
        a Cholesky solve at fixed hyperparameters in between), which gives the
        posterior of the full design matrix at O(p^3) cost; while the rows are
        fewer than the features they are kept instead of the Gram matrix, the
        evidence maximum comes from their own small product, at O(m^2 p), and
        the covariance stays the prior's plus a term of rank m (a refit and a
        prediction's variance cost O(m p), not O(p^2)).  Feature scaling and
        reference energies are frozen between rebuilds; a rebuild from scratch
        happens when species or periodicity change, when the data were not
        appended, whenever the set has doubled, up to 256 structures, and when the
        baseline's answers come or go.
        """
        with_base = baselines is not None and bool(self.baseline_feature)
        bases = list(baselines) if with_base else None
        n_old = len(self._acc_keys)
        # the folded structures are still the first ones: compare the ends (hashing or describing
        # them all would make a refit's cost grow with the training set)
        appended = (0 < n_old <= len(images) and self._soap is not None
                    and structure_key(images[0]) == self._acc_keys[0]
                    and structure_key(images[n_old - 1]) == self._acc_keys[-1]
                    and (len(images) < 2 * self._basis_size or self._basis_size >= 256)
                    and with_base == self.with_baseline_)
        first = n_old if appended else 0
        check_training_set(images, results, start=first)
        described = [self._as_described(a) for a in images[first:]]
        periodic = {bool(a.pbc.any()) for a in described}
        if len(periodic) > 1:
            raise ValueError("training set mixes periodic and non-periodic structures")
        species = {s for a in described for s in a.get_chemical_symbols()}
        periodic_flag = periodic.pop() if periodic else self.periodic_
        if appended and (not species <= set(self.species_) or periodic_flag != self.periodic_):
            appended, first = False, 0  # new species or periodicity: describe everything afresh
            described = [self._as_described(a) for a in images]
            species = {s for a in described for s in a.get_chemical_symbols()}
            periodic = {bool(a.pbc.any()) for a in described}
            if len(periodic) != 1:
                raise ValueError("training set mixes periodic and non-periodic structures")
            periodic_flag = periodic.pop()
        if not appended:
            species_t = tuple(sorted(species))
            if species_t != self.species_ or periodic_flag != self.periodic_ or self._soap is None:
                self.species_, self.periodic_ = species_t, periodic_flag
                self._soap = self._make_soap(species_t, periodic_flag)
                self._cache.clear()
                self._predicted.clear()
        keys = self._acc_keys[:n_old] if appended else []
        keys += [structure_key(a) for a in images[first:]]
        if not appended:
            wanted = {structure_key(a) for a in described}  # forget features of structures gone
            self._cache = {k: v for k, v in self._cache.items() if k in wanted}
            self._ridge = EvidenceRidge()
            self.with_baseline_ = with_base
            self._set_basis(described, results, bases)
            self._gram, self._design, self._design_y, self._n_rows = None, None, None, 0
            self._basis_size = len(images)
        if not described:  # nothing new to fold in
            self.coef_ = self._solve(np.empty((0, len(self.coef_))))
            return
        A, b = self._rows(described, results[first:], None if bases is None else bases[first:])
        self._fold(A, b)
        self._n_rows += len(A)
        self._acc_keys = keys
        self.coef_ = self._solve(A)

    def _fold(self, A: np.ndarray, b: np.ndarray) -> None:
        """Add rows to the statistics: to the kept design while the rows are fewer than the
        columns (the evidence maximum then comes cheap from them, and no Gram matrix is kept: it
        would cost the columns squared on every refit), else to the Gram matrix of ``[A b]``."""
        if self._gram is None and (self._n_rows == 0 or self._design is not None):
            rows = A if self._n_rows == 0 else np.vstack([self._design, A])
            ys = b if self._n_rows == 0 else np.concatenate([self._design_y, b])
            if len(rows) < A.shape[1]:
                self._design, self._design_y = rows, ys
                return
            A, b = rows, ys  # as many rows as columns now: the Gram matrix of them all from here on
        block = np.column_stack([A, b])
        self._gram = block.T @ block if self._gram is None else add_outer(self._gram, block.T)
        self._design = self._design_y = None

    def _full_gram(self) -> np.ndarray:
        """``[A b]^T [A b]`` of every row (formed from the kept design where there is no Gram)."""
        if self._gram is not None:
            return self._gram
        block = np.column_stack([self._design, self._design_y])
        return block.T @ block

    def _cached_features(self, atoms: Atoms, res: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        want_d = self.fit_forces and not self.periodic_ and "forces" in res
        key = structure_key(atoms)
        cached = self._cache.get(key)
        if cached is None:  # a structure just predicted: its features join the training set's
            cached = self._predicted.get(key)
        if cached is None or (want_d and cached[1] is None):
            cached = self._features(atoms, want_d)
        self._cache[key] = cached
        return cached[0], (cached[1] if want_d else None)

    def _remember_prediction(self, atoms: Atoms, x: np.ndarray, dx: np.ndarray | None) -> None:
        """Keep the features of the newest predictions (a few, and a few megabytes at most)."""
        if len(self._predicted) >= self.PREDICTIONS_KEPT or (
                dx is not None and dx.nbytes * len(self._predicted) > self.PREDICTED_BYTES):
            self._predicted.clear()
        if dx is None or dx.nbytes <= self.PREDICTED_BYTES:
            self._predicted[structure_key(atoms)] = (x, dx)

    def _set_basis(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]],
                   bases: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Reference energies, energy offset and feature scaling from the whole set (and the
        baseline feature's references, offset and scale)."""
        X = np.array([self._cached_features(a, r)[0] for a, r in zip(images, results)])
        C = np.array([self._counts(a) for a in images])
        E = np.array([float(r["energy"]) for r in results])
        self._e_ref = np.linalg.lstsq(C, E, rcond=None)[0]
        self._y_mean = float((E - C @ self._e_ref).mean())
        self._mu = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-12 * max(float(np.abs(X).max()), 1.0)] = 1.0
        self._scale = scale
        if bases is not None:
            B = np.array([float(b["energy"]) for b in bases])
            self._base_ref = np.linalg.lstsq(C, B, rcond=None)[0]
            z = B - C @ self._base_ref
            self._base_mu = float(z.mean())
            spread = float(z.std())
            self._base_scale = spread if spread > 1e-12 * max(float(np.abs(B).max()), 1.0) else 1.0

    def _base_feature(self, atoms: Atoms, base: Mapping[str, Any] | None,
                      forces: bool) -> tuple[float, np.ndarray | None]:
        """The baseline feature of ``atoms`` (scaled) and, for force rows, minus its derivative:
        the baseline's forces, scaled alike."""
        if base is None or "energy" not in base:
            raise ValueError("this model learns from the baseline's answers: its energy is needed (baseline=)")
        z = (float(base["energy"]) - self._counts(atoms) @ self._base_ref - self._base_mu) / self._base_scale
        if not forces:
            return float(z), None
        if "forces" not in base:
            raise ValueError("a force row of this model needs the baseline's forces")
        return float(z), np.asarray(base["forces"], float).ravel() / self._base_scale

    def _rows(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]],
              bases: Sequence[Mapping[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Design rows (scaled features, the baseline feature when fitted with one, intercept
        column) and targets, energy and force rows: one block per structure (no Python object per
        row, so a refit on a long training set neither crawls nor fragments the heap)."""
        blocks, targets = [], []
        for k, (atoms, res) in enumerate(zip(images, results)):
            x, dx = self._cached_features(atoms, res)
            n = len(atoms)
            k_e = self.energy_weight if self.energy_weight is not None else np.sqrt(3 * n)
            y = float(res["energy"]) - self._counts(atoms) @ self._e_ref - self._y_mean
            z, dz = self._base_feature(atoms, bases[k], dx is not None) if bases is not None else (None, None)
            row, g = self._structure_rows(x, dx, z, dz)
            blocks.append(k_e * row[None, :])
            targets.append(np.array([k_e * y]))
            if g is not None:
                block = np.zeros((len(g), len(row)))  # the intercept does not move with the atoms
                block[:, :-1] = g
                blocks.append(block)
                targets.append(np.asarray(res["forces"], float).ravel())
        return np.vstack(blocks), np.concatenate(targets)

    def _structure_rows(self, x: np.ndarray, dx: np.ndarray | None, z: float | None,
                        dz: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """One structure's design, as fits and predictions both read it: its energy row (scaled
        features, the baseline feature when fitted with one, the intercept) and, given the
        features' derivatives, its force rows without the intercept column (minus the scaled
        derivatives, and the baseline's scaled forces)."""
        row = np.append((x - self._mu) / self._scale, (1.0,) if z is None else (z, 1.0))
        if dx is None:
            return row, None
        g = -dx.reshape(-1, dx.shape[-1]) / self._scale
        return row, g if dz is None else np.column_stack([g, dz])

    def _solve(self, new_rows: np.ndarray | None = None) -> np.ndarray:
        """The Bayesian ridge posterior mean of the weights (the covariance stays the ridge's:
        its next low-rank update rewrites it in place) from the statistics of ``[A b]``: ``A^T A``
        (or ``A`` itself), ``A^T b`` and ``|b|^2`` with the true row count (``new_rows``: the rows
        of ``A`` added since the last solve)."""
        g = self._gram
        if g is None:
            A, b = self._design, self._design_y
            coef, _ = self._ridge.solve(None, A.T @ b, float(b @ b), self._n_rows, new_rows, rows=A)
        else:
            coef, _ = self._ridge.solve(g[:-1, :-1], g[:-1, -1], float(g[-1, -1]), self._n_rows, new_rows)
        return coef

    def predict(self, atoms: Atoms, properties: Sequence[str] | None = None,
                baseline: Mapping[str, Any] | None = None) -> Prediction:
        """Energy (and forces) with their posterior std; ``baseline``: the baseline's answer on
        ``atoms``, needed by a model fitted with the baseline feature (ignored otherwise)."""
        reason = self.accepts(atoms)
        if reason is not None:
            raise ValueError(f"surrogate cannot predict this structure: {reason}")
        want_f = "forces" in self.properties_for(atoms) and (properties is None or "forces" in properties)
        atoms = self._as_described(atoms)
        z, dz = self._base_feature(atoms, baseline, want_f) if self.with_baseline_ else (None, None)
        x, dx = self._features(atoms, want_f)
        self._remember_prediction(atoms, x, dx)
        w, cov = self.coef_, self._ridge.covariance_
        row, g = self._structure_rows(x, dx, z, dz)
        mean, std = posterior(row, w, cov)
        results: dict[str, Any] = {"energy": float(self._counts(atoms) @ self._e_ref + self._y_mean + mean)}
        spread: dict[str, Any] = {"energy": std}
        if g is not None:
            n = len(atoms)
            results["forces"] = (g @ w[:-1]).reshape(n, 3)
            var = variance(cov, np.column_stack([g, np.zeros(len(g))]))  # no intercept in a force row
            spread["forces"] = np.sqrt(np.clip(var, 0.0, None)).reshape(n, 3)
        return Prediction(results=results, spread=spread)

    # ------------------------------------------------------------ persistence
    def fitted_state(self) -> FittedState | None:
        """Everything a refit continues from: the triangular factor, the frozen basis and the
        posterior, so a reopened run predicts and refits exactly as the original would have."""
        if not self.is_fitted:
            return None
        cov = self._ridge.covariance_
        # a low-rank covariance is written as its parts: a resumed run goes on from the same form
        parts = ({"sigma_basis": cov.basis, "sigma_weights": cov.weights} if isinstance(cov, LowRankCovariance)
                 else {"sigma": cov})
        # the statistics as the model keeps them: its rows while fewer than its features, else
        # the Gram matrix of [A b]
        stats = ({"gram": self._gram} if self._gram is not None else
                 {"design": self._design, "design_y": self._design_y})
        arrays = {"coef": self.coef_, **parts, **stats, "e_ref": self._e_ref, "mu": self._mu, "scale": self._scale,
                  "keys": np.frombuffer(b"".join(self._acc_keys), np.uint8).reshape(len(self._acc_keys), -1)}
        meta = {"species": list(self.species_), "periodic": bool(self.periodic_), "y_mean": self._y_mean,
                "n_rows": self._n_rows, "basis_size": self._basis_size, "evidence": self._ridge.state(),
                "with_baseline": bool(self.with_baseline_)}
        if isinstance(cov, LowRankCovariance):
            meta["sigma_scale"] = cov.scale
        if self.with_baseline_:
            arrays["base_ref"] = self._base_ref
            meta.update(base_mu=self._base_mu, base_scale=self._base_scale)
        return FittedState(arrays, meta)

    def restore_fitted_state(self, state: FittedState) -> None:
        a, m = state.arrays, state.meta
        self.species_, self.periodic_ = tuple(m["species"]), bool(m["periodic"])
        self._soap = self._make_soap(self.species_, self.periodic_)
        self.coef_ = np.array(a["coef"], float)
        sigma = (np.array(a["sigma"], float) if "sigma" in a else
                 LowRankCovariance(float(m["sigma_scale"]), np.array(a["sigma_basis"], float),
                                   np.array(a["sigma_weights"], float)))
        self._gram = self._design = self._design_y = None
        if "design" in a and "design_y" in a:
            self._design, self._design_y = np.array(a["design"], float), np.array(a["design_y"], float)
        elif "gram" in a:
            # without the rows and their targets (a store written before they were kept) the next
            # optimisation works from the Gram matrix alone: the same posterior, at a larger cost
            self._gram = np.array(a["gram"], float)
        else:  # a store written when the factor was kept triangular: R^T R is the same statistic
            R = np.array(a["acc"], float)
            self._gram = R.T @ R
        self._e_ref = np.array(a["e_ref"], float)
        self._mu, self._scale = np.array(a["mu"], float), np.array(a["scale"], float)
        self._acc_keys = [bytes(row) for row in np.asarray(a["keys"], np.uint8)]
        self._y_mean, self._n_rows, self._basis_size = float(m["y_mean"]), int(m["n_rows"]), int(m["basis_size"])
        self.with_baseline_ = bool(m.get("with_baseline", False))
        if self.with_baseline_:
            self._base_ref = np.array(a["base_ref"], float)
            self._base_mu, self._base_scale = float(m["base_mu"]), float(m["base_scale"])
        self._ridge = EvidenceRidge()
        self._ridge.load_state(m.get("evidence", {}))
        # the covariance the next low-rank update starts from: without it the resumed run's next
        # refit would solve afresh and round differently from the uninterrupted one
        self._ridge.coef_, self._ridge.covariance_ = self.coef_.copy(), sigma
        self._cache = {}

    def call_cost(self, atoms: Atoms) -> list[WorkloadSize]:
        if not self.is_fitted:
            return []
        # dscribe's SOAP derivatives (for force predictions) are not in the cost model: say so
        label = ("SOAP features (derivatives not modelled)" if "forces" in self.properties_for(atoms)
                 else "SOAP features")
        soap = {"n_centres": len(atoms), "n_neighbours": mean_neighbours(atoms, float(self.r_cut)),
                "n_max": int(self.n_max), "l_max": int(self.l_max),
                "n_species": len(set(atoms.get_chemical_symbols()))}
        return [WorkloadSize(label, "soap", soap),
                WorkloadSize("Bayesian posterior", "bayesian_posterior", {"n_features": int(self.coef_.shape[0])})]
