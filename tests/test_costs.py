"""Decisions that count cost: running cost estimates, do-no-harm (idle with probes), refits that
pay, and a Bayesian ridge whose refit does not redo a full fit.  Real calculators (EMT, LAMMPS
through SNAP); each test reaches a defect of the version before cost accounting."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from ase.md.verlet import VelocityVerlet
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase import units
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import BayesianRidge

from ase_proxima import ProximaCalculator
from ase_proxima.costs import CostMeter, ideal_speedup, property_key
from ase_proxima.economy import Economy
from ase_proxima.surrogates import SOAPBayesianRidge
from ase_proxima.surrogates.evidence import EvidenceRidge, LowRankCovariance, add_outer, variance
from conftest import fixed_sequence


def _labelled(frames):
    """EMT's energies and forces of each structure, as a surrogate's training results."""
    out = []
    for a in frames:
        a.calc = EMT()
        out.append({"energy": a.get_potential_energy(), "forces": a.get_forces()})
    return out


# ------------------------------------------------------------------ Bayesian ridge
@settings(max_examples=25, deadline=None)
@given(n=st.integers(8, 120), p=st.integers(1, 30), noise=st.floats(1e-4, 1.0), seed=st.integers(0, 10_000))
def test_evidence_maximum_equals_a_full_bayesian_ridge_fit(n, p, noise, seed):
    """From X^T X, X^T y, y.y and n alone, the posterior is scikit-learn's on the full design.

    Both fits stop when the coefficients settle; the noise precision may still be creeping along
    a flat ridge of the evidence then (nearly noise-free data, few spare rows), so the
    hyperparameters agree to a per cent, not to rounding (0.7% at worst in a sweep of 3000
    designs); the posterior at our hyperparameters is exact.  With fewer rows than columns the
    evidence can have several maxima and the two starting points may climb different ones, so
    the designs here keep at least five spare rows."""
    n = max(n, p + 5)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, size=p)
    y = X @ rng.normal(size=p) + noise * rng.normal(size=n)
    ref = BayesianRidge(fit_intercept=False, tol=1e-12, max_iter=5000).fit(X, y)
    ours = EvidenceRidge(tol=1e-12, max_iter=5000)
    coef, sigma = ours.optimise(X.T @ X, X.T @ y, float(y @ y), n)
    scale = np.abs(ref.coef_).max() + 1e-12
    assert np.allclose(coef, ref.coef_, rtol=1e-5, atol=1e-6 * scale)
    assert ours.alpha_ == pytest.approx(ref.alpha_, rel=2e-2)
    assert ours.lambda_ == pytest.approx(ref.lambda_, rel=2e-2)
    assert np.allclose(sigma, ref.sigma_, rtol=2e-2, atol=2e-2 * np.abs(ref.sigma_).max())
    exact = np.linalg.inv(ours.alpha_ * X.T @ X + ours.lambda_ * np.eye(p))
    assert np.allclose(sigma, exact, rtol=1e-6, atol=1e-9 * np.abs(exact).max())


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), extra=st.integers(1, 200), noise=st.floats(1e-4, 1.0), seed=st.integers(0, 10_000),
       rank=st.sampled_from([None, 1, 3]))
def test_the_evidence_maximum_from_fewer_rows_than_columns_is_the_full_eigenbasis_one(n, extra, noise, seed, rank):
    """Given the rows themselves, a design with fewer rows than columns is decomposed through
    its small ``X X^T`` (the columns' eigendecomposition is cubic in their number): the same
    hyperparameters, weights and covariance as from ``X^T X`` alone, rank-deficient rows too."""
    p = n + extra
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) * rng.uniform(0.1, 10, size=p)
    if rank is not None and rank < n:  # rows that repeat a few patterns
        X = rng.normal(size=(n, rank)) @ X[:rank]
    y = X @ rng.normal(size=p) + noise * rng.normal(size=n)
    full, dual = EvidenceRidge(), EvidenceRidge()  # the surrogate's settings
    c1, s1 = full.optimise(X.T @ X, X.T @ y, float(y @ y), n)
    c2, _ = dual.optimise(X.T @ X, X.T @ y, float(y @ y), n, rows=X)
    s2 = dual.sigma_  # (kept low-rank where the rows are few enough: as a square array here)
    # with fewer rows than columns the data can be fitted exactly: the residual behind the noise
    # precision is a difference of near-equal sums and the evidence is flat along it, so both
    # routes stop a rounding apart (3e-4 at worst over 1500 random designs), not bit for bit
    assert dual.alpha_ == pytest.approx(full.alpha_, rel=2e-3)
    assert dual.lambda_ == pytest.approx(full.lambda_, rel=2e-3)
    assert np.allclose(c2, c1, rtol=2e-3, atol=2e-3 * np.abs(c1).max())
    assert np.allclose(s2, s1, rtol=2e-3, atol=2e-3 * np.abs(s1).max())


def test_a_soap_surrogate_refits_from_its_rows_while_they_are_fewer_than_its_features():
    """Energies only (a Monte Carlo run's training set): the surrogate keeps its design rows while
    they are fewer than its SOAP features, and forgets them once they are not; the posterior is
    the one the Gram matrix alone gives."""
    rng = np.random.default_rng(4)
    base = molecule("CH3CH2OH")
    frames = []
    for _ in range(40):
        a = base.copy()
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        frames.append(a)
    labelled = [{"energy": r["energy"]} for r in _labelled(frames)]
    fast = SOAPBayesianRidge().fit(frames[:30], labelled[:30])
    assert fast._design is not None and len(fast._design) == 30 < len(fast.coef_)
    fast.fit(frames, labelled)  # appended: the rows grow with the data
    slow = SOAPBayesianRidge().fit(frames[:30], labelled[:30])
    slow._gram = slow._full_gram()  # as a store written before the rows were kept: the Gram matrix alone
    slow._design = slow._design_y = None
    slow.fit(frames, labelled)
    assert fast._ridge.optimisations == slow._ridge.optimisations == 2
    assert np.allclose(fast.coef_, slow.coef_, rtol=1e-6, atol=1e-9 * np.abs(slow.coef_).max())
    assert np.allclose(fast.sigma_, slow.sigma_, rtol=1e-6, atol=1e-9 * np.abs(slow.sigma_).max())
    test = frames[-1]
    assert fast.predict(test).results["energy"] == pytest.approx(slow.predict(test).results["energy"], abs=1e-9)
    small = SOAPBayesianRidge(n_max=1, l_max=0).fit(frames[:10], labelled[:10])  # 19 columns
    assert small._design is not None and len(small._design) == 10
    small.fit(frames, labelled)  # 40 rows: more than the columns, the Gram matrix alone from here on
    assert small._design is None


def test_a_noise_free_collinear_design_stays_finite():
    """Data a linear model fits exactly, with duplicated columns (zero eigenvalues): the residual
    computed from the statistics cancels to rounding, which once drove the evidence updates to
    overflow (seen on the forces of a Pt13 Vibrations run)."""
    for seed in (0, 3, 9, 37):
        rng = np.random.default_rng(seed)
        n, p = int(rng.integers(20, 400)), int(rng.integers(5, 60))
        X = rng.normal(size=(n, p)) * 10.0 ** rng.uniform(-8, 3, size=p)  # columns of wildly different scale
        if seed % 2:
            X = np.hstack([X, X[:, :3] * (1 + 1e-9)])  # nearly collinear columns
        y = X @ rng.normal(size=X.shape[1]) * 10.0 ** rng.uniform(-3, 3)
        coef, sigma = EvidenceRidge().optimise(X.T @ X, X.T @ y, float(y @ y), n)
        assert np.all(np.isfinite(coef)) and np.all(np.isfinite(sigma)), seed
        assert np.abs(X @ coef - y).max() < 1e-3 * np.abs(y).max(), seed


def test_update_between_optimisations_is_the_posterior_at_those_hyperparameters():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 12))
    y = X @ rng.normal(size=12) + 0.1 * rng.normal(size=200)
    ridge = EvidenceRidge(regrow=10.0, every=100)
    ridge.solve(X[:100].T @ X[:100], X[:100].T @ y[:100], float(y[:100] @ y[:100]), 100)
    alpha, lam = ridge.alpha_, ridge.lambda_
    coef, sigma = ridge.solve(X.T @ X, X.T @ y, float(y @ y), 200)  # not due: a Cholesky update
    assert ridge.optimisations == 1 and ridge.updates_since == 1
    exact_sigma = np.linalg.inv(alpha * X.T @ X + lam * np.eye(12))
    assert np.allclose(sigma, exact_sigma, rtol=1e-8)
    assert np.allclose(coef, alpha * exact_sigma @ X.T @ y, rtol=1e-8)
    # and re-optimising on schedule lands on the full fit's evidence maximum
    ridge.every = 1
    coef, _ = ridge.solve(X.T @ X, X.T @ y, float(y @ y), 200)
    ref = BayesianRidge(fit_intercept=False, tol=1e-12, max_iter=5000).fit(X, y)
    assert np.allclose(coef, ref.coef_, rtol=1e-3, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(blocks=st.lists(st.integers(0, 5), min_size=1, max_size=12), seed=st.integers(0, 2**16))
def test_low_rank_updates_are_the_posterior_at_those_hyperparameters(blocks, seed):
    """Rows folded in a few at a time (a Woodbury correction of the covariance, no
    factorisation) give the posterior a factorisation of all of them gives."""
    rng = np.random.default_rng(seed)
    d = 24
    X = rng.normal(size=(60 + sum(blocks), d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=len(X))
    ridge = EvidenceRidge(regrow=1e9, every=10**6)
    n = 60
    ridge.solve(X[:n].T @ X[:n], X[:n].T @ y[:n], float(y[:n] @ y[:n]), n)
    alpha, lam = ridge.alpha_, ridge.lambda_
    for k in blocks:
        rows = X[n:n + k]
        n += k
        coef, sigma = ridge.solve(X[:n].T @ X[:n], X[:n].T @ y[:n], float(y[:n] @ y[:n]), n, new_rows=rows)
    exact_sigma = np.linalg.inv(alpha * X[:n].T @ X[:n] + lam * np.eye(d))
    assert ridge.optimisations == 1
    np.testing.assert_allclose(sigma, exact_sigma, rtol=1e-7, atol=1e-12 * np.abs(exact_sigma).max())
    np.testing.assert_allclose(coef, alpha * exact_sigma @ X[:n].T @ y[:n], rtol=1e-7, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(2, 40), k=st.integers(1, 6), scale=st.floats(-3.0, 3.0), order=st.sampled_from("CFS"),
       seed=st.integers(0, 2**16))
def test_add_outer_adds_a_low_rank_term_in_place_where_it_can(d, k, scale, order, seed):
    """``matrix + scale * a a^T``, written into ``matrix`` itself when it is a contiguous float
    array of either order; a strided view is left alone and a new array returned."""
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    m = m + m.T
    a = rng.normal(size=(d, k))
    expected = m + scale * (a @ a.T)
    if order == "S":  # every other row and column of a larger array: not contiguous
        big = np.zeros((2 * d, 2 * d))
        big[::2, ::2] = m
        view = big[::2, ::2]
        out = add_outer(view, a, scale)
        assert not np.shares_memory(out, big)
        np.testing.assert_array_equal(big[::2, ::2], m)
    else:
        arr = np.array(m, order=order)
        out = add_outer(arr, a, scale)
        assert out is arr
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12 * (1.0 + np.abs(expected).max()))


def test_a_read_only_matrix_is_not_written():
    m = np.eye(3)
    m.flags.writeable = False
    out = add_outer(m, np.ones((3, 1)))
    np.testing.assert_array_equal(m, np.eye(3))
    np.testing.assert_array_equal(out, np.eye(3) + 1.0)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), extra=st.integers(0, 120), blocks=st.lists(st.integers(0, 6), max_size=10),
       rank=st.sampled_from([None, 1, 4]), seed=st.integers(0, 2**16))
def test_a_posterior_from_fewer_rows_than_columns_is_kept_low_rank_and_exact(n, extra, blocks, rank, seed):
    """From fewer rows than columns the covariance is the prior's plus a term of the rank of the
    rows, never a square array, and rows folded in later extend that term: the posterior (its
    mean, covariance and any row's variance) is the one the square-array route gives, and the
    inverse of the precision at those hyperparameters; past half the columns' rank it becomes a
    square array."""
    rng = np.random.default_rng(seed)
    d = 2 * n + extra + 1
    X = rng.normal(size=(n + sum(blocks), d)) * rng.uniform(0.1, 10, size=d)
    if rank is not None and rank < n:  # rows that repeat a few patterns
        X[:n] = rng.normal(size=(n, rank)) @ X[:rank]
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=len(X))
    ridges = {}
    for max_rank in (0.5, 0.0):  # low-rank where it can be, and always a square array
        ridge = ridges[max_rank] = EvidenceRidge(regrow=1e9, every=10**6, max_rank=max_rank)
        _, cov = ridge.solve(None, X[:n].T @ y[:n], float(y[:n] @ y[:n]), n, rows=X[:n])
        assert isinstance(cov, LowRankCovariance) == (max_rank > 0) and (max_rank == 0 or cov.rank <= n)
        m = n
        for k in blocks:
            m += k
            _, cov = ridge.solve(None, X[:m].T @ y[:m], float(y[:m] @ y[:m]), m, new_rows=X[m - k:m], rows=X[:m])
            assert not isinstance(cov, LowRankCovariance) or cov.rank <= 0.5 * d
        assert ridge.optimisations == 1
    low, square = ridges[0.5], ridges[0.0]
    assert (low.alpha_, low.lambda_) == (square.alpha_, square.lambda_)
    precision = low.alpha_ * X[:m].T @ X[:m] + low.lambda_ * np.eye(d)
    tol = max(1e-13 * np.linalg.cond(precision), 1e-10)  # what rounding allows of any inverse
    scale = np.abs(square.sigma_).max()
    np.testing.assert_allclose(low.sigma_, square.sigma_, rtol=tol, atol=tol * scale)
    np.testing.assert_allclose(low.coef_, square.coef_, rtol=tol, atol=tol * np.abs(square.coef_).max())
    # an update starts from the covariance before it: the worst-conditioned precision along the
    # way (often an early one, short of rows) sets what rounding allows of the inverse at the end
    worst = max(np.linalg.cond(low.alpha_ * X[:k].T @ X[:k] + low.lambda_ * np.eye(d))
                for k in np.cumsum([n, *blocks]))
    np.testing.assert_allclose(precision @ low.sigma_, np.eye(d), atol=max(1e-13 * worst, tol))
    probe = rng.normal(size=(3, d))
    np.testing.assert_allclose(variance(low.covariance_, probe), np.einsum("ij,jk,ik->i", probe, square.sigma_, probe),
                               rtol=tol, atol=tol * scale * d)
    assert variance(low.covariance_, probe[0]) == pytest.approx(float(probe[0] @ square.sigma_ @ probe[0]),
                                                                rel=tol, abs=tol * scale * d)


def test_a_low_rank_soap_model_predicts_as_its_square_covariance_does_and_refits_without_one(methane):
    """A SOAP model fitted on fewer rows than features keeps no square array (no Gram matrix, no
    covariance) through its refits; its energies, forces and their spreads are those of the same
    posterior held as a square array, and its saved state restores the low-rank form: the
    restored model refits exactly as the one that never stopped."""
    frames = fixed_sequence(methane, 14, amplitude=0.02, seed=7)
    results = _labelled(frames)
    model = SOAPBayesianRidge().fit(frames[:5], results[:5])  # 5 x 16 rows against 289 features
    model._ridge.regrow, model._ridge.every = 1e9, 10**6  # updates only from here on
    for n in (6, 7):
        model.fit(frames[:n], results[:n])
        cov = model._ridge.covariance_
        assert model._gram is None and isinstance(cov, LowRankCovariance) and cov.rank <= 16 * n
    assert model._ridge.optimisations == 1 and model._ridge.updates_since == 2
    square = SOAPBayesianRidge()
    square.restore_fitted_state(model.fitted_state())
    square._ridge.covariance_ = model.sigma_  # the same posterior as a square array
    for atoms in frames[10:]:
        low, full = model.predict(atoms), square.predict(atoms)
        assert low.results["energy"] == pytest.approx(full.results["energy"], abs=1e-10)
        assert low.spread["energy"] == pytest.approx(full.spread["energy"], rel=1e-6)  # (a root of a difference)
        np.testing.assert_allclose(low.results["forces"], full.results["forces"], atol=1e-10)
        np.testing.assert_allclose(low.spread["forces"], full.spread["forces"], rtol=1e-6, atol=1e-12)
    state = model.fitted_state()
    assert "sigma" not in state.arrays and "sigma_basis" in state.arrays and "design_y" in state.arrays
    assert "gram" not in state.arrays  # (the rows give it)
    again = SOAPBayesianRidge()
    again.restore_fitted_state(state)
    assert isinstance(again._ridge.covariance_, LowRankCovariance) and again._gram is None
    again._ridge.regrow, again._ridge.every = 1e9, 10**6
    for n in (8, 9):  # appended to the same five-structure basis
        model.fit(frames[:n], results[:n])
        again.fit(frames[:n], results[:n])
        np.testing.assert_array_equal(again.coef_, model.coef_)
    assert again._ridge.updates_since == model._ridge.updates_since == 4
    assert again.predict(frames[-1]).spread["energy"] == model.predict(frames[-1]).spread["energy"]


@pytest.mark.parametrize("forces", [False, True])
def test_a_refit_reuses_the_features_of_a_structure_the_model_just_predicted(methane, forces):
    """The structure an audit hands to the target was predicted a moment before: the refit that
    folds it in takes the features computed then (force derivatives too, where the fit learns
    forces) instead of describing it again, and fits what a model that described it would."""
    frames = fixed_sequence(methane, 20, amplitude=0.02, seed=11)
    results = _labelled(frames)
    if not forces:
        results = [{"energy": r["energy"]} for r in results]
    reused, fresh = SOAPBayesianRidge().fit(frames[:10], results[:10]), SOAPBayesianRidge().fit(frames[:10], results[:10])
    described = []
    inner = reused._features
    reused._features = lambda atoms, d: described.append(d) or inner(atoms, d)
    for n in range(10, 14):
        reused.predict(frames[n], ["energy", "forces"] if forces else ["energy"])
        described.clear()
        reused.fit(frames[:n + 1], results[:n + 1])
        fresh.fit(frames[:n + 1], results[:n + 1])
        assert described == []
        np.testing.assert_array_equal(reused.coef_, fresh.coef_)
    reused.predict(frames[14], ["energy"])  # no derivatives predicted: a fit on forces computes them
    described.clear()
    reused.fit(frames[:15], results[:15])
    assert described == ([True] if forces else [])
    for k in range(40):  # the kept features stay a few
        reused.predict(fixed_sequence(methane, 1, amplitude=0.02, seed=100 + k)[0])
    assert 0 < len(reused._predicted) <= SOAPBayesianRidge.PREDICTIONS_KEPT
    described.clear()  # the predictions' features folded in are kept with the training set's:
    reused.fit(frames, results)  # a rebuild at twice the first fit's size describes the new ones only
    assert len(described) == 5


def test_low_rank_refits_keep_the_covariance_array_and_stay_symmetric(methane):
    """A refit that folds in a structure or two rewrites the surrogate's covariance where it is
    (a new square array per refit costs more than the update's arithmetic) and keeps it
    symmetric to rounding; an optimisation on schedule gives it a new one."""
    frames = fixed_sequence(methane, 30, amplitude=0.02, seed=5)
    results = _labelled(frames)
    model = SOAPBayesianRidge().fit(frames[:20], results[:20])  # with forces: more rows than features
    assert model._gram is not None and isinstance(model._ridge.covariance_, np.ndarray)
    model._ridge.regrow, model._ridge.every = 1e9, 10**6  # updates only from here on
    sigma, gram = model.sigma_, model._gram
    for n in (21, 23, 26):
        model.fit(frames[:n], results[:n])
        assert model.sigma_ is sigma and model._gram is gram
        assert np.abs(sigma - sigma.T).max() <= 1e-12 * np.abs(sigma).max()
    assert model._ridge.optimisations == 1 and model._ridge.updates_since == 3


def test_incremental_soap_refit_matches_a_fit_from_scratch(methane):
    """Structures folded in one at a time give the posterior of one fit on all of them."""
    frames = fixed_sequence(methane, 40, amplitude=0.02, seed=3)
    results = _labelled(frames)
    grown = SOAPBayesianRidge()
    for n in range(10, 41, 3):
        grown.fit(frames[:n], results[:n])
    grown.fit(frames, results)
    once = SOAPBayesianRidge().fit(frames[:10], results[:10])  # same frozen basis as the grown one
    once._ridge.regrow = 0.0  # always optimise
    once.fit(frames, results)
    probe = fixed_sequence(methane, 3, amplitude=0.03, seed=9)
    for a in probe:
        p1, p2 = grown.predict(a), once.predict(a)
        assert p1.results["energy"] == pytest.approx(p2.results["energy"], abs=2e-3)
        assert np.allclose(p1.results["forces"], p2.results["forces"], atol=5e-3)


def test_a_refit_does_not_touch_every_stored_structure(methane):
    """Folding one structure into a large set hashes and describes only that one (the old refit
    hashed every structure and rebuilt a set each time: its cost grew with the data)."""
    frames = fixed_sequence(methane, 300, amplitude=0.02, seed=4)
    results = _labelled(frames)
    model = SOAPBayesianRidge().fit(frames[:299], results[:299])
    described = []
    original = model._as_described
    model._as_described = lambda a: described.append(a) or original(a)
    model.fit(frames, results)
    assert len(described) == 1


# ------------------------------------------------------------------ cost meter
def test_cost_meter_medians_keys_and_limit():
    meter = CostMeter(memory=5)
    for t in (0.010, 0.011, 5.0, 0.009, 0.010):  # one first call that set a program up
        meter.add("target", t, "energy+forces")
    meter.add("surrogate", 0.002, "energy+forces")
    assert meter.cost("target", "energy+forces") == pytest.approx(0.010)
    assert meter.cost("target", "energy") == pytest.approx(0.010)  # pooled when a key has none
    assert math.isnan(meter.cost("refit"))
    assert meter.ratio("energy+forces") == pytest.approx(0.2)
    assert math.isnan(meter.known_ratio("energy+forces"))  # too few surrogate samples
    s = meter.summary(0.9)
    assert s["cost_limit"] == pytest.approx(ideal_speedup(0.010, 0.002, 0.9))
    assert ideal_speedup(1.0, 0.0, 1.0) == math.inf
    assert property_key(["forces", "free_energy"]) == "energy+forces"
    with pytest.raises(ValueError):
        meter.add("lunch", 1.0)
    again = CostMeter(memory=5)
    again.load_state(meter.state())
    assert again.summary(0.9) == s


@settings(max_examples=50, deadline=None)
@given(c_t=st.floats(1e-4, 10), ratio=st.floats(0, 2), s=st.floats(0, 1))
def test_ideal_speedup_is_one_without_serving_and_grows_with_the_share(c_t, ratio, s):
    assert ideal_speedup(c_t, ratio * c_t, 0.0) == pytest.approx(1.0)
    limit = ideal_speedup(c_t, ratio * c_t, s)
    assert (limit >= 1.0 - 1e-9) if ratio <= 1 else (limit <= 1.0 + 1e-9)


# ------------------------------------------------------------------ economy
def test_economy_idles_when_serving_cannot_pay_and_probes_ever_more_rarely():
    eco = Economy(patience=5, max_cost_ratio=0.6, probe_share=0.05)
    eco.record(True, "target", seconds=0.0020, baseline=0.0010, fitted=True, cost_ratio=0.9)
    assert eco.idle and "costs 90%" in eco.reason
    probes = []
    for step in range(5000):
        consulted = eco.consult()
        if consulted:
            probes.append(step)
        # a probe costs a prediction and a refit (ten target calls' worth); idle calls cost the target
        eco.record(consulted, "target", 0.011 if consulted else 0.001, 0.001, True, 0.9)
    gaps = np.diff(probes)
    assert len(probes) >= 5 and np.all(gaps[1:] >= gaps[:-1])  # geometric back-off
    assert eco.summary()["overhead_share"] < 0.06  # tends to the target alone plus the probe share
    eco.record(True, "surrogate", 0.0001, 0.001, True, 0.1)  # a probe that serves cheaply
    assert not eco.idle


def test_economy_floor_and_spending():
    eco = Economy(patience=4)
    for _ in range(4):
        eco.record(True, "target", 0.002, 0.001, True, math.nan)
    assert eco.idle and "nothing served" in eco.reason
    eco.wake()
    for _ in range(4):  # serves, but each call costs more than the target would
        eco.record(True, "surrogate", 0.002, 0.001, True, 0.5)
    assert eco.idle and "cost more than the target alone" in eco.reason
    # beside a costly target (quantum chemistry), consulting a model still learning costs a few per
    # cent: nothing served for a while is no reason to stop consulting, spending more would be
    cheap = Economy(patience=4, probe_share=0.05)
    for _ in range(40):
        cheap.record(True, "target", 0.0510, 0.050, True, 0.02)
    assert not cheap.idle
    for _ in range(4):
        cheap.record(True, "target", 0.060, 0.050, True, 0.02)  # refits: consulting costs 20% more
    assert cheap.idle and "nothing served" in cheap.reason


def test_a_spell_of_audits_that_serving_has_paid_for_does_not_stop_a_run():
    """A served error near the bound has every servable call audited for a while, each costing a
    target call and a prediction: the last ``patience`` calls then cost more than the target alone,
    but a run whose serving paid for them over its last ``memory`` calls keeps consulting, and turns
    idle once the spell has outlasted what the serving saved."""
    eco = Economy(patience=50, probe_share=0.05)
    for _ in range(150):  # serving: a fifth of a millisecond against a 15 ms target call
        eco.record(True, "surrogate", 0.0002, 0.015, True, 0.02)
    spell = 0
    while not eco.idle:  # audits: the target's call plus a prediction and a baseline, 10% more
        eco.record(True, "audit", 0.0165, 0.015, True, 0.02)
        spell += 1
        assert spell < 1000
    assert spell > 100 and "cost more than the target alone" in eco.reason  # not at 50 calls
    # served calls between audits: the spell never outweighs what serving saves
    mixed = Economy(patience=50, probe_share=0.05)
    for i in range(2000):
        mixed.record(True, "audit" if i % 3 else "surrogate", 0.0165 if i % 3 else 0.0002, 0.015, True, 0.02)
    assert not mixed.idle
    # and a longer memory than the window is kept across a save and a load
    again = Economy(patience=50, probe_share=0.05)
    again.load_state(eco.state())
    assert again.state() == eco.state()
    with pytest.raises(ValueError, match="memory"):
        Economy(patience=50, memory=10)


def test_a_run_still_certifying_a_promising_error_is_not_stopped_for_its_start_up_audits():
    """At a run's start every servable call is audited until the certificate is under the bound:
    each costs a target call and more.  With the audited error under the bound by a standard
    error (promising) spending is judged over the whole memory, not the first ``patience`` calls;
    an audited error over the bound stops the run at ``patience`` as before."""
    def spell(promising):
        eco = Economy(patience=50, probe_share=0.05)
        calls = 0
        while not eco.idle and calls < 1000:
            eco.record(True, "audit", 0.0165, 0.015, True, 0.02, promising=promising)
            calls += 1
        return calls

    assert spell(False) == 50
    assert spell(True) == 200  # the memory: four times the patience
    # a promising run whose certificate comes under the bound serves, and pays back what it spent
    eco = Economy(patience=50, probe_share=0.05)
    for i in range(400):
        audit = i < 120 or i % 10 == 0
        eco.record(True, "audit" if audit else "surrogate", 0.0165 if audit else 0.0002, 0.015, True, 0.02,
                   promising=True)
    assert not eco.idle and eco.debt < 0


def test_methane_at_a_tight_bound_keeps_consulting_through_its_certifying_audits():
    """Methane HF/6-31G* Monte Carlo at 300 K, 0.02 A moves, 1 meV: the audited error at the start
    is about half the bound, and every servable call is audited until the certificate is under it.
    The run used to turn idle there ('the last 50 calls cost more than the target alone') and
    served 5-70% of calls depending on when a probe woke it; now it keeps consulting and serves."""
    from ase_proxima.targets import make_target
    from ase_proxima.workflows.mc import MonteCarlo

    atoms = molecule("CH4")
    calc = atoms.calc = ProximaCalculator(target=make_target("pyscf:hf/6-31g*"), error_bound=0.001, seed=0)
    MonteCarlo(atoms, temperature_K=300.0, step_size=0.02, rng=1).run(250)
    s = calc.stats
    assert s["audits"] >= 20 and s["idle_calls"] == 0 and s["idle_spells"] == 0
    assert s["surrogate_calls"] > 50


# ------------------------------------------------------------------ the calculator
def _cu13_md(calc, steps, seed=0):
    atoms = Icosahedron("Cu", 2)
    atoms.rattle(0.05, seed=seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=np.random.default_rng(seed))
    atoms.calc = calc
    VelocityVerlet(atoms, 2 * units.fs).run(steps)
    return atoms


def test_a_bound_below_the_floor_stops_predicting_and_refitting():
    """Cu13 MD with forces_max 0.02 eV/A: nothing can be served.  The old calculator predicted on
    every call and refitted every window: several times the target's own cost."""
    calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0)
    _cu13_md(calc, 400)
    s = calc.stats
    assert s["economy"] == "idle" and s["idle_calls"] > 300
    assert s["surrogate_calls"] == 0
    assert s["fits"] <= 6
    assert s["cost_target"] > 0 and s["cost_limit"] == pytest.approx(1.0)
    assert any(r["reason"].startswith("idle:") for r in calc.log if r["reason"])
    # the same run with the cost rule off consults on every call (what the old version did)
    off = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0, cost_aware=False)
    _cu13_md(off, 400)
    assert off.stats["fits"] > s["fits"] and off.stats["idle_calls"] == 0


def test_loosening_the_bound_wakes_an_idle_run():
    calc = ProximaCalculator(target=EMT(), error_bound=1e-6, seed=0)
    frames = fixed_sequence(molecule("CH4"), 200, amplitude=0.004, seed=0)
    for a in frames[:120]:
        a.calc = calc
        a.get_potential_energy()
    assert calc.economy.idle
    calc.set(error_bound=0.05)
    assert not calc.economy.idle


def test_cost_estimates_are_in_stats_and_survive_a_reopened_store(tmp_path):
    calc = ProximaCalculator(target=EMT(), error_bound=0.01, seed=0, store=tmp_path / "run")
    for a in fixed_sequence(molecule("CH4"), 40, amplitude=0.004, seed=0):
        a.calc = calc
        a.get_potential_energy()
    s = calc.stats
    for k in ("cost_target", "cost_surrogate", "cost_refit", "cost_store", "cost_limit", "economy", "probes"):
        assert k in s
    assert s["cost_per_call"]["energy"]["target"] > 0
    before = calc.costs.state(), calc.economy.state()
    calc.close()
    again = ProximaCalculator(target=EMT(), error_bound=0.01, seed=0, store=tmp_path / "run")
    assert (again.costs.state(), again.economy.state()) == before
    again.close()


def test_refits_stay_within_their_share_of_the_target_time(methane):
    """With ``refit_share`` the time spent refitting stays within that share of the target's time
    while the model's error is under the bound, but for the refits made because the data doubled
    since the last fit (one per doubling: a few, each at most the largest) or because the walk
    moved where the model's uncertainty is twice what it was after its fit (counted in ``stats``);
    the old schedule refitted every window whatever it cost."""
    def run(share):
        calc = ProximaCalculator(target=EMT(), error_bound=0.1, seed=0, cost_aware=False, refit_share=share)
        for a in fixed_sequence(methane, 300, amplitude=0.003, seed=1):
            a.calc = calc
            a.get_potential_energy()
        return calc

    calc, free = run(0.2), run(None)
    assert calc.controller.controlled_error < 0.1
    largest = max(calc.costs.state()["seen"][[p for p, _, _ in calc.costs.state()["seen"]].index("refit")][2])
    doublings = math.floor(math.log2(calc.training.total / calc.parameters["min_training"])) + 1
    forced = doublings + calc.stats["refits_on_risen_uncertainty"]
    assert calc.stats["refits_on_risen_uncertainty"] <= calc.stats["calls"] // (2 * calc.staleness.newest)
    assert calc.costs.totals["refit"] <= 0.2 * calc.costs.totals["target"] + forced * largest
    assert free.stats["fits"] > calc.stats["fits"] >= 1


def test_a_model_that_has_seen_under_half_the_data_is_refitted_whatever_it_costs():
    """Found on the melting-point scans: a cheap target (asap3 standing in for a costly one) made
    every refit unaffordable under ``refit_share``, and one SNAP model fitted on the first 10 of
    3825 target results served a whole scan (its pressure off by about 1 GPa).  The data doubling
    since the last fit is evidence enough that the model is stale: refits then happen at about
    10, 20, 40, ... points, a total cost within a few times the last refit's.  (A 32-atom cell
    for 800 steps here: without the rule its model stopped at 45 of 110 points, two fits.)"""
    from ase.build import bulk
    from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen

    from ase_proxima.targets import make_target

    atoms = bulk("Al", "fcc", a=3.994, cubic=True).repeat((2, 2, 2))
    calc = ProximaCalculator(target=make_target("asap3"), error_bound=0.06, error_metric="forces_mean", seed=0,
                             cost_aware=False)
    atoms.calc = calc
    MaxwellBoltzmannDistribution(atoms, temperature_K=900, rng=np.random.default_rng(0))
    md = Inhomogeneous_NPTBerendsen(atoms, timestep=4 * units.fs, temperature_K=900, pressure_au=0.0,
                                    taut=100 * units.fs, taup=1000 * units.fs, compressibility_au=1 / (76 * units.GPa))
    md.run(800)
    s = calc.stats
    assert s["surrogate_calls"] > 0 and s["training_total"] >= 40
    assert calc.training.n_fitted * 2 > calc.training.total  # never fitted on under half of what it has
    assert s["fits"] >= 3  # 10, then about 20, 40, 80


# ------------------------------------------------------------------ a bound that buys speed
def test_audits_are_priced_by_the_margin_to_the_bound():
    from ase_proxima.audits import AuditPolicy

    policy = AuditPolicy(0.05, first_audits=0)  # the first certain audits: see test_certificate.py
    assert policy.rate(1.0, math.nan, 0, math.nan) == 0.05  # nothing known yet: the full rate
    assert policy.rate(1.0, math.nan, 0, 0.9) == pytest.approx(0.05 * 2.8)  # the controller's estimate before audits
    assert policy.rate(1.0, 0.01, 9, 0.005) == 0.05  # a few small audited errors show little
    assert policy.rate(1.0, 0.01, 20, 0.005) == pytest.approx(0.01)  # far below: the floor
    assert policy.rate(1.0, 0.7, 20, 0.1) == pytest.approx(0.035)  # the run's estimate, over a lower window
    assert policy.rate(1.0, 0.875, 20, 0.1) == pytest.approx(0.05 * 2.5)  # nearing the bound: rising
    assert policy.rate(1.0, 1.0, 20, 0.1) == pytest.approx(0.2)  # at it: surge times the fraction
    assert policy.rate(1.0, 1.01, 20, 0.1) == 1.0  # over it: every servable call is checked
    assert policy.rate(1.0, 0.3, 5, 1.2) == 1.0  # few audits: the window's comparisons count as evidence too
    assert policy.rate(1.0, 0.3, 12, 1.2) == pytest.approx(0.2)  # enough audits: the run's record decides
    assert policy.rate(1.0, 0.01, 20, 0.875) == pytest.approx(0.05 * 2.5)  # the window rising first
    assert policy.rate(1.0, 0.01, 20, 3.0) == pytest.approx(0.2)  # ... raises audits to the surge, no further
    assert policy.rate(1.0, 0.7, 20, 0.1, certified=0.4) == pytest.approx(0.01)  # proven with room: floor
    assert policy.rate(1.0, 0.7, 20, 0.1, certified=0.6) == pytest.approx(0.035)
    assert AuditPolicy(0.0).rate(1.0, 2.0, 20, 0.5) == 0.0
    # a call more uncertain than any compared one: checked more often, up to the surge
    assert policy.rate(1.0, 0.01, 20, 0.005, surprise=3.0) == pytest.approx(0.15)
    assert policy.rate(1.0, 0.01, 20, 0.005, surprise=50.0) == pytest.approx(0.2)
    assert policy.rate(1.0, 0.01, 20, 0.005, surprise=0.5) == pytest.approx(0.01)
    assert AuditPolicy(0.0).rate(1.0, 0.01, 20, 0.5, surprise=50.0) == 0.0
    with pytest.raises(ValueError):
        AuditPolicy(0.05, surge=0.5)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_weighted_audit_mean_is_unbiased_when_the_rate_changes(seed):
    """Errors that grow during a run, audited ever more rarely: weighting each audit by 1/p keeps
    the estimate of the served mean error unbiased; the plain mean of the audits is not."""
    from ase_proxima.runstate import AuditTally

    rng = np.random.default_rng(seed)
    n = 20000
    errors = np.linspace(0.1, 1.0, n) * rng.exponential(1.0, n)
    rates = np.linspace(0.2, 0.01, n)
    drawn = rng.random(n) < rates
    weighted, plain = AuditTally(), AuditTally()
    for e, p in zip(errors[drawn], rates[drawn]):
        weighted.add(float(e), 1.0 / p)
        plain.add(float(e))
    truth = errors.mean()
    # the weights follow the errors here: the linearised standard error is calibrated (z has a
    # standard deviation of 1.06 over 400 seeds), an effective-sample-size one was not
    assert abs(weighted.estimate - truth) < 4.5 * weighted.standard_error
    assert plain.estimate < truth - 4 * plain.standard_error  # the early, small errors dominate it
    same = AuditTally()
    for e in errors[:50]:
        same.add(float(e), 3.0)
    ref = np.array(errors[:50])
    assert same.estimate == pytest.approx(ref.mean())
    assert same.standard_error == pytest.approx(ref.std(ddof=1) / np.sqrt(50))


def test_a_plainly_good_surrogate_starts_serving_before_a_full_window():
    from ase_proxima.control import ThresholdController

    good = ThresholdController(1.0, window=10)
    for i in range(5):
        good.observe(0.01 * (i + 1), 0.01 * (i + 1))
        good.update()
    assert good.ready  # five comparisons far below the bound are evidence enough
    close = ThresholdController(1.0, window=10)
    for i in range(9):
        close.observe(0.1 * (i + 1), 0.3 + 0.01 * i)
        close.update()
    assert not close.ready  # near the bound: wait for the whole window


def test_a_large_margin_lets_the_threshold_above_the_uncertainties_seen():
    from ase_proxima.control import ThresholdController

    c = ThresholdController(1.0, window=4, threshold=0.1, max_step=10.0)
    for _ in range(40):
        c.note_uncertainty(0.1)
        c.observe(0.1, 0.01)  # errors a hundredth of the bound
        c.update()
    assert 1.1 * 0.1 < c.threshold <= 4 * 1.1 * 0.1 + 1e-12
    tight = ThresholdController(1.0, window=4, threshold=0.1, max_step=10.0)
    for _ in range(40):
        tight.note_uncertainty(0.1)
        tight.observe(0.1, 0.9)
        tight.update()
    assert tight.threshold <= 1.1 * 0.1 * math.sqrt(1 / 0.9) + 1e-12


def test_a_surrogate_that_cannot_pay_is_never_fitted():
    """BFGS of a rattled Cu38 against EMT: the SOAP force descriptors alone may cost more than an
    EMT call.  A sample of one atomic environment says so on the first call; timing the whole
    would cost several EMT calls, more than a twenty-step relaxation can spare, so the run turns
    idle before any whole timing or fit, and the optimiser makes exactly the target calls it
    makes alone."""
    from ase.cluster import Octahedron
    from ase.optimize import BFGS

    start = Octahedron("Cu", 4, cutoff=1)
    start.rattle(0.1, seed=0)
    alone = start.copy()
    alone.calc = EMT()
    opt = BFGS(alone, logfile=None)
    opt.run(fmax=0.05, steps=300)
    atoms = start.copy()
    atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0)
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
    s = atoms.calc.stats
    assert s["fits"] == 0 and s["economy"] == "idle" and "cost" in s["idle_reason"]
    assert s["target_calls"] == opt.nsteps + 1


def test_descriptors_timed_before_the_fit_are_the_fit_s(methane):
    """What describe computes is what the fit uses: no structure is described twice."""
    frames = fixed_sequence(methane, 12, amplitude=0.02, seed=5)
    results = _labelled(frames)
    model = SOAPBayesianRidge()
    for a in frames[:3]:
        assert model.describe(a, ["energy", "forces"])
    computed = []
    original = model._features
    model._features = lambda a, d: computed.append(1) or original(a, d)
    model.fit(frames, results)
    assert len(computed) == len(frames) - 3


def test_the_target_is_told_what_changed_and_answers_as_alone(monkeypatch):
    """An idle run hands the target the changes ASE already found for the calculator, instead of
    a second comparison of every atom; the answers are the target's own at every step, and a
    target someone else used in between compares again."""
    import ase.calculators.calculator as ase_calc

    import ase_proxima.calculator as proxima_calc

    compared, own = [], []  # the target's comparisons (ASE's), the calculator's own
    original, faster = ase_calc.compare_atoms, proxima_calc.system_changes
    monkeypatch.setattr(ase_calc, "compare_atoms", lambda *a, **k: compared.append(1) or original(*a, **k))
    monkeypatch.setattr(proxima_calc, "system_changes", lambda *a, **k: own.append(1) or faster(*a, **k))
    calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0)
    atoms = _cu13_md(calc, 60)
    assert calc.economy.idle
    reference = EMT()
    for step in range(40):
        atoms.positions += np.random.default_rng(step).normal(0, 0.01, atoms.positions.shape)
        if step == 20:  # someone asks the target directly: it must not be told stale changes
            other = atoms.copy()
            other.positions[0] += 0.3
            calc.target.get_forces(other)
        before, before_own = len(compared), len(own)
        forces = atoms.get_forces()
        # the calculator's own comparison only (and the target's own, once it was used elsewhere)
        assert len(own) - before_own == 1
        assert len(compared) - before == (1 if step == 20 else 0)
        np.testing.assert_allclose(forces, reference.get_forces(atoms), atol=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(atoms), atol=1e-12)


def test_a_call_copies_the_structure_once_per_calculator(monkeypatch):
    """ASE's get_property copies the structure for the calculator and the target's calculate
    copies it for itself: an idle call makes no copy beyond those two, and the copies stay
    private (moving the user's atoms afterwards changes neither the calculator's nor the
    target's, so both see the next step as a change)."""
    from ase import Atoms

    calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0)
    atoms = _cu13_md(calc, 60)
    assert calc.economy.idle
    copies = []
    original = Atoms.copy
    monkeypatch.setattr(Atoms, "copy", lambda self: copies.append(1) or original(self))
    reference = EMT()
    for step in range(10):
        atoms.positions += np.random.default_rng(step).normal(0, 0.01, atoms.positions.shape)
        before = len(copies)
        forces = atoms.get_forces()
        assert len(copies) - before == 2
        assert calc.atoms is not atoms and calc.target.atoms is not atoms and calc.target.atoms is not calc.atoms
        np.testing.assert_allclose(forces, reference.get_forces(atoms), atol=1e-12)
    # calculate called directly (not through get_property) still keeps its own copy
    atoms.positions[0] += 0.05
    calc.calculate(atoms, ["energy", "forces"], ["positions"])
    atoms.positions[0] += 0.05
    assert calc.check_state(atoms) == ["positions"]
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(atoms), atol=1e-12)


def _drive_plan(plan, calls, times):
    """``calls`` target calls through ``plan``; ``times(arm)`` the seconds of a call on that setting
    ('default' or 'one'); returns the settings the calls ran on."""
    ran = []
    for _ in range(calls):
        with plan.target():
            arm = plan._pending or "default"
        ran.append(arm)
        plan.timed(times(arm))
    return ran


def test_thread_plan_keeps_one_thread_only_for_a_clear_gain(monkeypatch):
    from threadpoolctl import threadpool_info

    from ase_proxima.threads import USER_THREAD_VARIABLES, ThreadPlan

    for var in USER_THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)

    def decide(default_s, one_s):
        """Trials until decided; ``default_s`` a time, or an iterator of the default's times."""
        plan = ThreadPlan()
        while plan.summary()["target_threads"] == "deciding":
            with plan.target():
                pending = plan._pending
            if pending is None:  # the calls that set programs up: not trials
                plan.timed(1.0)
                continue
            plan.timed(one_s if pending == "one" else default_s if isinstance(default_s, float) else next(default_s))
        return plan

    clear = decide(0.010, 0.004)  # a small SCF: one thread 2.5x faster
    assert clear.summary()["target_threads"] == 1
    with clear.target():
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert decide(0.010, 0.0095).summary()["target_threads"] == "default"  # noise: left alone
    # all cores quick at the median but one call in three several times slower (their threads waiting
    # for a core another program holds): the run pays the mean, and one steady thread wins it
    plan = decide(iter([0.008, 0.009, 0.060]), 0.012)
    assert plan.summary()["target_threads"] == 1
    assert plan.summary()["thread_trials"]["default"] == pytest.approx((0.008 + 0.009 + 0.060) / 3)
    # a warm-up that slows the first trials is shared by both settings (mirrored order), not
    # charged to the default alone
    slow_start = iter([0.030, 0.025, 0.020, 0.015] + [0.010] * 20)
    plan = ThreadPlan()
    ran = _drive_plan(plan, 12, lambda arm: next(slow_start) * (1.1 if arm == "one" else 1.0))
    assert ran[2:6] == ["default", "one", "one", "default"]
    assert plan.summary()["target_threads"] == "default"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert ThreadPlan().summary()["target_threads"] == "default"  # the user chose
    assert ThreadPlan(None).summary()["target_threads"] == "untouched"


def test_thread_plan_follows_a_host_whose_load_changes_and_checks_a_right_choice_ever_less(monkeypatch):
    """Trials that favoured one thread (another program held the cores) are checked as the run
    goes on: once all cores are the faster, the target goes back to them; a choice that stays
    right is checked on ever fewer calls."""
    from ase_proxima.threads import USER_THREAD_VARIABLES, ThreadPlan

    for var in USER_THREAD_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    busy = {"default": 0.030, "one": 0.012}
    quiet = {"default": 0.008, "one": 0.012}
    plan = ThreadPlan()
    _drive_plan(plan, 40, busy.get)
    assert plan.summary()["target_threads"] == 1
    resumed = ThreadPlan()
    resumed.load_state(json.loads(json.dumps(plan.state())))
    ran = _drive_plan(resumed, 300, quiet.get)
    assert resumed.summary()["target_threads"] == "default" and resumed.switches == 1
    assert ran[:20].count("one") >= 19 and ran[150:].count("one") <= 3  # a few checks, then all cores again
    # right from the start: checks of one thread come ever more rarely
    plan = ThreadPlan()
    ran = _drive_plan(plan, 2000, quiet.get)
    checks = [i for i, arm in enumerate(ran[20:]) if arm == "one"]
    assert plan.summary()["target_threads"] == "default" and plan.switches == 0
    assert 3 <= len(checks) <= 8  # about log2(2000 / 25) checks: 0.4% of calls
    # but never rarer than every max_interval calls: a long run still notices a host that changed
    ran = _drive_plan(plan, 5000, quiet.get)
    checks = [i for i, arm in enumerate(ran) if arm == "one"]
    assert plan._interval == plan.max_interval == 1600 and 2 <= len(checks) <= 4
    ran = _drive_plan(plan, 6000, {"default": 0.030, "one": 0.012}.get)  # the host turned busy
    assert plan.summary()["target_threads"] == 1 and ran[-1] == "one" and ran.index("one") <= 1600


# ------------------------------------------------------------------ cheap bookkeeping
_CHANGES = ("none", "positions", "tiny", "cell", "pbc", "numbers", "magmoms", "charges", "drop_magmoms")


@settings(max_examples=80, deadline=None)
@given(change=st.sampled_from(_CHANGES), size=st.floats(1e-17, 0.5), seed=st.integers(0, 2**16),
       excluded=st.sets(st.sampled_from(["positions", "cell", "numbers", "initial_magmoms"]), max_size=2))
def test_the_calculator_s_change_check_is_ase_s(change, size, seed, excluded):
    """``system_changes`` answers as ASE's ``compare_atoms`` (same names, same tolerance) for
    every kind of change, tiny ones below the tolerance included."""
    from ase.calculators.calculator import compare_atoms

    from ase_proxima.identity import system_changes

    rng = np.random.default_rng(seed)
    old = molecule("CH3CH2OH", vacuum=4.0)
    old.set_initial_magnetic_moments(rng.normal(size=len(old)))
    new = old.copy()
    if change in ("positions", "tiny"):
        new.positions[rng.integers(len(new))] += (size if change == "positions" else size * 1e-15) * rng.normal(size=3)
    elif change == "cell":
        new.cell[0, 0] += size
    elif change == "pbc":
        new.pbc = [True, False, True]
    elif change == "numbers":
        new.numbers[0] = 14
    elif change == "magmoms":
        new.arrays["initial_magmoms"][1] += size
    elif change == "charges":
        new.set_initial_charges(rng.normal(size=len(new)))
    elif change == "drop_magmoms":
        del new.arrays["initial_magmoms"]
    assert sorted(system_changes(old, new, excluded=excluded)) == sorted(
        compare_atoms(old, new, excluded_properties=excluded))
    assert sorted(system_changes(None, new)) == sorted(compare_atoms(None, new))


def _same_structure(a, b):
    """Everything ``Atoms.copy`` carries over, compared exactly."""
    assert type(a) is type(b) and a.arrays.keys() == b.arrays.keys()
    for name in a.arrays:
        assert a.arrays[name].dtype == b.arrays[name].dtype
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name])
    np.testing.assert_array_equal(a.cell.array, b.cell.array)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    np.testing.assert_array_equal(a.get_celldisp(), b.get_celldisp())
    assert a.info == b.info and len(a.constraints) == len(b.constraints)


_REFRESH = ("positions", "cell", "pbc", "celldisp", "info", "momenta", "tags", "masses", "new_array",
            "more_atoms", "numbers_dtype", "constraint", "subclass")


@settings(max_examples=80, deadline=None)
@given(change=st.sampled_from(_REFRESH), seed=st.integers(0, 2**16), name=st.sampled_from(["H2O", "CH3CH2OH"]))
def test_refresh_copy_gives_what_a_copy_gives_or_leaves_the_old_copy_alone(change, seed, name):
    """A kept copy refreshed in place equals ``atoms.copy()`` in everything a copy carries, and no
    array of it is one of the structure's own; where that cannot be exact (other arrays or
    shapes, constraints, a subclass of Atoms) it says so and is left as it was."""
    from ase import Atoms
    from ase.constraints import FixAtoms

    from ase_proxima.identity import refresh_copy

    rng = np.random.default_rng(seed)
    old = molecule(name, vacuum=3.0)
    old.info["step"] = 1
    kept, before = old.copy(), old.copy()
    new = old.copy()
    exact = True
    if change == "positions":
        new.positions += rng.normal(0.0, 0.1, new.positions.shape)
    elif change == "cell":
        new.cell[1, 1] += rng.uniform(0.1, 1.0)
    elif change == "pbc":
        new.pbc = [True, False, True]
    elif change == "celldisp":
        new.set_celldisp(rng.normal(size=3))
    elif change == "info":
        new.info = {"step": 2, "tag": "x"}
    elif change == "momenta":  # an array the old copy lacks
        new.set_momenta(rng.normal(size=(len(new), 3)))
        exact = False
    elif change in ("tags", "masses", "new_array"):  # the same names on both sides: refreshed
        for a in (old, kept, before, new):
            a.set_tags(np.arange(len(a))) if change == "tags" else a.set_masses() if change == "masses" else \
                a.new_array("charge_x", np.zeros(len(a)))
        new.arrays[{"tags": "tags", "masses": "masses", "new_array": "charge_x"}[change]][0] = 7
        kept, before = old.copy(), old.copy()
    elif change == "more_atoms":
        new += Atoms("H", positions=[[0.0, 0.0, 2.5]])
        exact = False
    elif change == "numbers_dtype":
        new.arrays["numbers"] = new.arrays["numbers"].astype(np.int32)
        exact = False
    elif change == "constraint":
        new.set_constraint(FixAtoms(indices=[0]))
        exact = False
    elif change == "subclass":
        class Tagged(Atoms):
            pass

        new = Tagged(new)
        exact = False
    assert refresh_copy(kept, new) is exact
    if exact:
        _same_structure(kept, new.copy())
        assert all(not np.shares_memory(kept.arrays[k], new.arrays[k]) for k in new.arrays)
        assert kept.info is not new.info
    else:
        _same_structure(kept, before)


def test_served_calls_refresh_the_calculator_s_copy_and_never_one_it_handed_over(monkeypatch):
    """A served call keeps its copy of the structure by refreshing the previous one in place (no
    new Atoms object), while every copy the target or the training set was given stays as it
    was; ASE's change check still sees each step, and a copy of the calculator gets a structure of
    its own."""
    import copy

    from ase import Atoms

    from ase_proxima.workflows.mc import MonteCarlo

    atoms = molecule("CH4")
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.05, seed=0, cost_aware=False)
    mc = MonteCarlo(atoms, temperature_K=300, step_size=0.01, rng=3)
    mc.run(40)  # the start-up: fitted and serving
    given = [(calc.target.atoms, calc.target.atoms.positions.copy())]
    copies = []
    original = Atoms.copy
    monkeypatch.setattr(Atoms, "copy", lambda self: copies.append(1) or original(self))
    reference, kinds, steps = EMT(), [], mc.irun(150)
    for _ in range(150):
        before = len(copies)
        next(steps)
        kinds.append(calc.answer)
        made = len(copies) - before - 1  # beyond the Monte Carlo step's own trial copy
        if calc.answer == "surrogate" and kinds[-2:-1] == ["surrogate"]:
            assert made == 0
        if calc.answer in ("target", "audit"):
            given.append((calc.target.atoms, calc.target.atoms.positions.copy()))
        assert calc.check_state(mc.trial) == [] and calc.atoms is not mc.trial
        assert calc.check_state(atoms) == [] or not mc.accepted
    assert kinds.count("surrogate") > 100 and kinds.count("audit") >= 1
    for kept, positions in given:  # the target's copies were never refreshed
        np.testing.assert_array_equal(kept.positions, positions)
    for image, result in zip(*calc.training.data(calc.training.total)):  # nor the training set's
        assert reference.get_potential_energy(image) == pytest.approx(result["energy"], abs=1e-9)
    twin = copy.copy(calc)
    assert twin.atoms is not calc.atoms and twin._private_copy is None
    _same_structure(twin.atoms, calc.atoms)


def test_an_economy_idle_for_cost_probes_by_measuring_and_wakes_when_that_pays():
    eco = Economy(patience=5, max_cost_ratio=0.6, probe_share=0.05)
    eco.defer("a surrogate answer may cost up to 200% of a target call")
    assert eco.idle and eco.cause == "cost"
    eco.defer("again")  # already idle: nothing changes
    assert "200%" in eco.reason and eco.idle_spells == 1
    for _ in range(30):
        eco.record(False, "target", 0.001, 0.001, False, math.nan)
    assert eco.consult() and not eco.consult(expected=1.0)  # a probe waits until its cost is affordable
    eco.record(True, "target", 0.0015, 0.001, False, 0.9)  # measured: does not pay
    assert eco.idle and "costs 90%" in eco.reason and eco.probes == 1
    while not eco.consult():
        eco.record(False, "target", 0.001, 0.001, False, math.nan)
    eco.record(True, "target", 0.0015, 0.001, False, 0.3)  # pays: no served answer is needed to wake
    assert not eco.idle and eco.cause is None


def test_the_soap_cost_sample_bounds_a_prediction_at_a_fraction_of_its_price():
    atoms = Icosahedron("Cu", 2)
    model = SOAPBayesianRidge()
    low, high = model.cost_bounds(atoms, ["energy", "forces"])
    assert 0 < low and high == pytest.approx(low * len(atoms))
    # a sample: no features kept and nothing fitted, but the descriptor it built (building one
    # costs more than the sample) is the one describing the structure uses next
    soap = model._soap
    assert soap is not None and not model._cache and not model.is_fitted
    assert model.describe(atoms, ["energy", "forces"]) and model._soap is soap and len(model._cache) == 1
    from ase_proxima.surrogates import SNAPEnsemble

    assert SNAPEnsemble().cost_bounds(bulk_cu()) is None  # no sample for this family: timed whole


def bulk_cu():
    from ase.build import bulk

    return bulk("Cu", "fcc", a=3.6, cubic=True)


def test_an_md_run_idle_for_cost_probes_by_timing_only_never_fitting():
    """Cu38 against EMT: idle from the first call (the SOAP sample); its probes time the
    descriptors of one structure each and never fit, and the answers are the target's.  When
    the first probe comes depends on the start-up's measured cost (a process's first thread-pool
    scan weighs tens of EMT calls), so the run goes on, in blocks, until one came."""
    from ase.cluster import Octahedron

    atoms = Octahedron("Cu", 4, cutoff=1)
    atoms.rattle(0.05, seed=0)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", seed=0)
    # what a probe does is the subject here, not when it comes: on a busy host the idle calls' own
    # bookkeeping (a few per cent of an EMT call) can fill the default probe budget for thousands
    # of steps, so the budget is widened
    calc.economy.probe_share = 0.2
    atoms.calc = calc
    md = VelocityVerlet(atoms, 2 * units.fs)
    for _ in range(10):  # at most 3000 steps
        md.run(300)
        if calc.stats["probes"]:
            break
    s = calc.stats
    assert s["economy"] == "idle" and s["fits"] == 0 and s["surrogate_calls"] == 0
    assert s["probes"] >= 1 and math.isfinite(s["cost_surrogate"])  # a probe timed the whole
    assert s["idle_calls"] + s["probes"] == s["calls"] - 1  # all but the first call
    np.testing.assert_allclose(atoms.get_forces(), EMT().get_forces(atoms), atol=1e-12)


def test_a_plainly_good_surrogate_serves_before_a_full_window_of_comparisons_on_a_real_walk():
    """Methane (EMT) Monte Carlo with a bound far above the surrogate's error: the controller's
    early start (five comparisons clearly under the bound) also validates the composition, so the
    first answer is served after fewer than ``min_training + window`` target calls; a composition
    whose comparisons are not clearly under still waits for the whole window."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator
    from ase_proxima.workflows.mc import MonteCarlo

    atoms = molecule("CH4")
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.5, seed=0, cost_aware=False)
    MonteCarlo(atoms, temperature_K=300, step_size=0.003, rng=1).run(60)
    log = list(calc.log)
    kinds = [r["kind"] for r in log]
    first = kinds.index("surrogate")
    assert kinds[:first].count("target") + kinds[:first].count("audit") < 10 + 10
    compared = sum(1 for r in log[:first] if r["error"] == r["error"])
    assert compared < 10 <= first

    from ase_proxima import gate

    assert gate.why_unvalidated("CH4", 5, 10, clearly_below=True) is None
    assert gate.why_unvalidated("CH4", 5, 10) == "composition CH4 not yet validated (5 of 10 comparisons)"


def test_a_soap_prediction_leaves_the_thread_pools_alone_but_its_fits_do_not(monkeypatch):
    """Served SOAP answers run on the pools as they are (no pool resized on the call), refits are
    limited to one thread; a family that asks for it (the default) predicts on one thread."""
    from ase_proxima import threads
    from ase_proxima.workflows.mc import MonteCarlo

    entered = []
    original = threads._limited.__enter__
    monkeypatch.setattr(threads._limited, "__enter__", lambda self: entered.append(self.n) or original(self))

    class OneThreadSOAP(SOAPBayesianRidge):
        predicts_on_one_thread = True

    for surrogate, expect_limited in ((SOAPBayesianRidge(), False), (OneThreadSOAP(), True)):
        atoms = molecule("CH4")
        calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.05, seed=0, cost_aware=False,
                                              surrogate=surrogate, target_threads=1)
        steps = MonteCarlo(atoms, temperature_K=300, step_size=0.01, rng=4).irun(200)
        served = 0
        for _ in range(200):
            fits, before = calc.training.fits, len(entered)
            next(steps)
            if calc.answer == "surrogate" and calc.training.fits == fits:
                served += 1
                assert (len(entered) > before) is expect_limited
            elif calc.training.fits > fits:
                assert len(entered) > before
        assert served > 100


def test_the_call_after_an_audit_predicts_once():
    """An audited call was servable, as the next most likely is: the refit that call would need
    before use is done at the audit, so the next call predicts once instead of predicting,
    refitting and predicting again."""
    from ase_proxima.workflows.mc import MonteCarlo

    atoms = molecule("CH4")
    # refits always affordable (EMT costs less than one: by cost, most would wait)
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.05, seed=0, cost_aware=False,
                                          refit_share=None)
    mc = MonteCarlo(atoms, temperature_K=300, step_size=0.01, rng=2)
    mc.run(30)  # the start-up: the surrogate is fitted and serving
    predictions = []
    original = calc.surrogate.predict

    def counted(*args, **kw):
        predictions[-1] += 1
        return original(*args, **kw)

    calc.surrogate.predict = counted
    after_audit, previous = [], None
    for _ in range(400):
        predictions.append(0)
        fits = calc.training.fits
        mc.run(1)
        if previous == "audit" and calc.answer == "surrogate":
            after_audit.append(predictions[-1])
        if calc.answer == "audit":
            assert calc.training.fits > fits  # the new point is folded in at once
        previous = calc.answer
    assert calc.stats["audits"] >= 3 and after_audit
    assert max(after_audit) == 1
