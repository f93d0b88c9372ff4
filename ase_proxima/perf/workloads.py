"""The workloads we profile, each built at a given size and timed on this CPU.

Each workload runs the project's own code path (the lj_nn pair kernel, the SNAP ensemble's
force contraction, the SOAP surrogate's posterior, dscribe's SOAP, the deepmd ensemble's inference) on synthetic inputs of the
stated size, and pairs the measured time with the cost model's FLOPs and bytes.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any, Callable

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import costs
from .costs import Cost


@dataclass
class Case:
    """One workload at one size: the call to time and its cost."""

    workload: str
    params: dict[str, Any]
    cost: Cost
    call: Callable[[], Any]


def time_call(call: Callable[[], Any], min_time: float = 0.05, min_repeats: int = 5) -> float:
    """Median seconds per call over at least ``min_repeats`` calls and ``min_time`` seconds,
    after one warm-up call."""
    call()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(case: Case, threads: int = 1, **kw: Any) -> float:
    """Time ``case`` with BLAS and numba limited to ``threads`` threads."""
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            return time_call(case.call, **kw)
    finally:
        numba.set_num_threads(old)


# ------------------------------------------------------------------ builders
def stream_case(n: int) -> Case:
    from .devices import _triad

    a, b, c = np.zeros(n), np.ones(n), np.full(n, 2.0)
    return Case("stream_triad", {"n": n}, costs.stream_triad(n), lambda: _triad(a, b, c, 3.0))


def matmul_case(n: int, precision: str = "fp64") -> Case:
    x = np.random.default_rng(n).standard_normal((n, n)).astype(np.float64 if precision == "fp64" else np.float32)
    return Case(f"matmul_{precision}", {"n": n}, costs.matmul(n, precision), lambda: x @ x)


def lj_nn_case(cells: int, hidden: int = 3, seed: int = 0) -> Case:
    """The lj_nn 1xHx1 pair kernel on a warm in.melt-density liquid of ``4 cells^3`` atoms."""
    from ase.build import bulk

    from lj_nn import LennardJonesNN

    a = (4.0 / 0.8442) ** (1.0 / 3.0)
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat(cells)
    atoms.rattle(0.08, seed=seed)
    calc = LennardJonesNN(epsilon=1.0, sigma=1.0, rc=2.5, topology=f"1x{hidden}x1")
    i, j, off = calc.neighbours.pairs(atoms)
    pos = np.ascontiguousarray(atoms.positions)
    cut = calc.neighbours.count_within_cutoff(pos)
    return Case("lj_nn_pairs", {"atoms": len(atoms), "list_pairs": len(i), "cut_pairs": cut, "hidden": hidden},
                costs.lj_nn_pairs(len(atoms), len(i), cut, hidden), lambda: calc.pair_terms(pos, i, j, off))


def ensemble_case(n_atoms: int, n_coef: int, members: int) -> Case:
    from ase_proxima.surrogates.snap_ensemble import ensemble_forces

    rng = np.random.default_rng(n_atoms * 7 + n_coef)
    rows = rng.standard_normal((n_atoms, 3, n_coef))
    coef = rng.standard_normal((members + 1, n_coef))
    return Case("ensemble_forces", {"atoms": n_atoms, "coef": n_coef, "members": members},
                costs.ensemble_forces(n_atoms, n_coef, members), lambda: ensemble_forces(rows, coef))


def posterior_case(n_features: int) -> Case:
    from ase_proxima.surrogates.soap_ridge import posterior

    rng = np.random.default_rng(n_features)
    low_rank = rng.standard_normal((n_features, 8))  # a positive definite covariance built in O(n^2)
    cov = low_rank @ low_rank.T / 8 + np.eye(n_features)
    row, w = rng.standard_normal(n_features), rng.standard_normal(n_features)
    return Case("bayesian_posterior", {"features": n_features}, costs.bayesian_ridge_predict(n_features),
                lambda: posterior(row, w, cov))


def soap_case(n_atoms: int, n_max: int, l_max: int, r_cut: float = 5.0, seed: int = 0) -> Case:
    """dscribe SOAP (averaged off: per-centre power spectra) of a random-packed copper cluster."""
    from ase.neighborlist import neighbor_list
    from dscribe.descriptors import SOAP

    from ase import Atoms

    rng = np.random.default_rng(seed)
    side = (n_atoms * 11.8) ** (1.0 / 3.0)  # copper's volume per atom
    atoms = Atoms(f"Cu{n_atoms}", positions=rng.uniform(0, side, (n_atoms, 3)))
    soap = SOAP(species=["Cu"], r_cut=r_cut, n_max=n_max, l_max=l_max, sigma=0.5, periodic=False)
    neighbours = len(neighbor_list("i", atoms, r_cut)) / n_atoms
    return Case("soap", {"atoms": n_atoms, "n_max": n_max, "l_max": l_max, "neighbours": neighbours},
                costs.soap_features(n_atoms, neighbours, n_max, l_max, 1), lambda: soap.create(atoms))


@lru_cache(maxsize=1)
def _trained_deepmd(members: int = 2):
    """A small deepmd-kit ensemble trained on EMT aluminium (its accuracy does not matter for
    timing; its architecture is the project's default)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from ase_proxima.surrogates.deepmd import DeePMDEnsemble

    images, results = [], []
    for k in range(6):
        a = bulk("Al", "fcc", a=4.05, cubic=True).repeat(2)
        a.rattle(0.1, seed=k)
        a.calc = EMT()
        images.append(a)
        results.append({"energy": a.get_potential_energy(), "forces": a.get_forces(), "stress": a.get_stress()})
    model = DeePMDEnsemble(members=members, train_steps=30, seed=0)
    model.fit(images, results)
    return model


def deepmd_case(repeat: int) -> Case:
    """Inference of the project's deepmd ensemble (energy, forces, virial) on ``4 repeat^3`` Al atoms."""
    from ase.build import bulk

    model = _trained_deepmd()
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=repeat)
    from .annotate import price

    (part,) = model.call_cost(atoms)
    return Case("deepmd", {"atoms": len(atoms), "sel": model.sel_, "members": model.members}, price(part),
                lambda: model.predict(atoms))


def default_cases(quick: bool = False) -> list[Callable[[], Case]]:
    """Builders of the size grid the collector sweeps (``quick``: a few sizes per workload, for
    tests).  Builders, not cases, so that only one case's arrays are alive at a time."""
    P = partial
    if quick:
        return ([P(stream_case, 1 << k) for k in (16, 20)] + [P(matmul_case, n) for n in (64, 256)]
                + [P(lj_nn_case, c) for c in (4, 6)] + [P(ensemble_case, n, 55, 8) for n in (64, 512)]
                + [P(posterior_case, d) for d in (64, 512)] + [P(soap_case, n, 4, 3) for n in (8, 32)])
    cases = [P(stream_case, int(n)) for n in np.unique(np.geomspace(1 << 12, 1 << 24, 40).astype(int))]
    cases += [P(matmul_case, int(n), p) for p in ("fp64", "fp32") for n in np.geomspace(24, 1536, 30).astype(int)]
    cases += [P(lj_nn_case, c, h, s) for h in (3, 5, 8) for c in (3, 4, 5, 6, 7, 8, 9, 10) for s in (0, 1)]
    cases += [P(ensemble_case, int(n), p, m) for n in np.geomspace(16, 2048, 12).astype(int)
              for p in (30, 55, 120, 204) for m in (4, 8, 16)]
    cases += [P(posterior_case, int(d)) for d in np.unique(np.geomspace(16, 3000, 48).astype(int))]
    cases += [P(soap_case, n, nm, lm) for n in (5, 9, 13, 20, 30, 45, 60) for nm, lm in ((3, 2), (4, 3), (6, 4), (8, 6))]
    from ase_proxima.surrogates.deepmd import deepmd_available

    if deepmd_available() is None:
        cases += [P(deepmd_case, r) for r in (1, 2, 3, 4, 5, 6, 7)]
    return cases
