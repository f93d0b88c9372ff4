"""FLOPs and bytes per call of the workloads a run has, as functions of their sizes.

Counts are of the arithmetic the code does (an ``exp`` written as multiplies and adds counts its
multiplies and adds; a square root or a division counts one) and of the bytes it must move from
memory at least once (arrays streamed once; data that fit in cache are not counted twice).
They are what a roofline needs; how close real code comes to that roofline is measured
(:func:`ase_proxima.perf.calibrate.fit_efficiency`), not assumed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

F64 = 8


@dataclass(frozen=True)
class Cost:
    """Work of one call: floating-point operations, bytes to and from memory, kernel launches it
    would take on a GPU, its precision, and whether it is matrix-multiply shaped (``dense``)."""

    flops: float
    bytes: float
    kernels: int = 1
    precision: str = "fp64"
    dense: bool = False

    def __post_init__(self) -> None:
        if self.flops < 0 or self.bytes < 0 or self.kernels < 0:
            raise ValueError(f"costs must be >= 0, got {self}")
        if self.precision not in ("fp64", "fp32"):
            raise ValueError(f"precision must be 'fp64' or 'fp32', got {self.precision!r}")

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOPs per byte."""
        return self.flops / self.bytes if self.bytes else float("inf")


# ---------------------------------------------------------------- reference kernels
def stream_triad(n: int) -> Cost:
    """``a = b + s * c`` over ``n`` doubles: 2 FLOPs and 24 bytes per element."""
    return Cost(2.0 * n, 3.0 * F64 * n)


def matmul(n: int, precision: str = "fp64") -> Cost:
    """Square ``n x n`` matrix product: 2 n^3 FLOPs, three matrices moved once."""
    size = F64 if precision == "fp64" else 4
    return Cost(2.0 * n ** 3, 3.0 * size * n * n, precision=precision, dense=True)


# ---------------------------------------------------------------- lj_nn
# per list entry: three coordinate differences, three offset adds, the squared length
_LIST_FLOPS, _LIST_BYTES = 11, 40  # two int64 indices and three offset doubles per entry
# per pair inside the cut-off: 1/r (sqrt, divide), per hidden unit a*s+c, the vectorisable exp
# (1 multiply, a 10-term Horner polynomial, 8 squarings), tanh (add, divide, subtract) and the
# output and derivative sums; per pair the energy and force factor, then the force, per-atom
# energy and virial updates
_PAIR_FLOPS, _HIDDEN_FLOPS = 2 + 8 + 25, 2 + 29 + 3 + 6
_ATOM_BYTES = 3 * F64 + 6 * F64 + 2 * F64  # positions read; forces zeroed and updated; energies


def lj_nn_pairs(n_atoms: int, list_pairs: int, cut_pairs: int, hidden: int = 3) -> Cost:
    """One force call of ``lj_nn``'s 1xHx1 network over a half Verlet list."""
    if cut_pairs > list_pairs:
        raise ValueError("cut_pairs cannot exceed list_pairs")
    flops = list_pairs * _LIST_FLOPS + cut_pairs * (_PAIR_FLOPS + _HIDDEN_FLOPS * hidden)
    return Cost(float(flops), float(list_pairs * _LIST_BYTES + n_atoms * _ATOM_BYTES), kernels=1)


# ---------------------------------------------------------------- surrogates
def ensemble_forces(n_atoms: int, n_coef: int, members: int) -> Cost:
    """SNAP force ensemble prediction: the (3N x p) descriptor-derivative block times the
    (p x members+1) coefficients, and the members' spread per component."""
    rows = 3 * n_atoms
    cols = members + 1
    flops = 2.0 * rows * n_coef * cols + 3.0 * rows * members
    moved = F64 * (rows * n_coef + n_coef * cols + 2 * rows * cols)
    return Cost(flops, float(moved), kernels=2, dense=True)


def bayesian_ridge_predict(n_features: int, n_samples: int = 1) -> Cost:
    """scikit-learn ``BayesianRidge.predict(X, return_std=True)``: the mean ``X w`` and the
    posterior variance ``diag(X Sigma X^T)`` (the d x d covariance dominates)."""
    d, s = n_features, n_samples
    flops = s * (2.0 * d + 2.0 * d * d + 2.0 * d)
    moved = F64 * (d * d + 3 * s * d + d)
    return Cost(flops, float(moved), kernels=3, dense=True)


def soap_features(n_centres: int, n_neighbours: float, n_max: int, l_max: int, n_species: int) -> Cost:
    """dscribe SOAP power spectrum: per centre-neighbour pair the GTO radial functions, the
    spherical harmonics and their products into the expansion coefficients; per centre the
    power spectrum (products of coefficients over species, radial pairs and l)."""
    nl = (l_max + 1) ** 2
    per_neighbour = 20.0 * n_max * (l_max + 1) + 10.0 * nl + 2.0 * n_max * nl
    n_coef = n_species * n_max
    per_centre = 2.0 * n_coef * (n_coef + 1) / 2 * (l_max + 1) * (2 * l_max + 1)
    n_features = n_coef * (n_coef + 1) // 2 * (l_max + 1)
    flops = n_centres * (n_neighbours * per_neighbour + per_centre)
    moved = F64 * n_centres * (n_neighbours * 4 + n_coef * nl + n_features)
    return Cost(flops, float(moved), kernels=4)


def extended_atoms(n_atoms: int, cell: Sequence[Sequence[float]] | None, cutoff: float) -> float:
    """Atoms plus the periodic copies deepmd-kit's PyTorch backend builds its neighbour list over:
    it replicates the whole cell ``ceil(rc / w)`` times on each side along each lattice direction
    (``w`` the face-to-face widths of ``cell``), so ``N * prod(2 ceil(rc / w) + 1)``; ``N`` for a
    free cluster (``cell`` None)."""
    if cell is None:
        return float(n_atoms)
    widths = 1.0 / np.linalg.norm(np.linalg.inv(np.asarray(cell, float)), axis=0)
    f = 1.0
    for w in widths:
        f *= 2 * math.ceil(cutoff / w) + 1
    return n_atoms * f


def deepmd_se_e2_a(n_atoms: int, sel: int, neuron: Sequence[int] = (8, 16, 32), axis_neuron: int = 4,
                   fitting: Sequence[int] = (32, 32), n_extended: float | None = None,
                   precision: str = "fp64", members: int = 1) -> Cost:
    """deepmd-kit se_e2_a energy and forces for an ensemble of ``members`` models: the neighbour
    list (deepmd-kit's PyTorch backend forms the full distance matrix between the atoms and their
    extended copies), the embedding net on every neighbour slot, the descriptor contraction per
    atom, the fitting net, and a backward pass for forces (counted as twice the forward work)."""
    n_ext = float(n_atoms if n_extended is None else n_extended)
    widths = [1, *neuron]
    emb = sum(2.0 * a * b for a, b in zip(widths[:-1], widths[1:]))
    m1 = neuron[-1]
    contract = 2.0 * sel * m1 * 4 + 2.0 * m1 * 4 * axis_neuron
    fit_widths = [m1 * axis_neuron, *fitting, 1]
    fit = sum(2.0 * a * b for a, b in zip(fit_widths[:-1], fit_widths[1:]))
    forward = n_atoms * (sel * emb + contract + fit)
    size = F64 if precision == "fp64" else 4
    moved = size * n_atoms * (sel * (4 + 2 * sum(neuron)) + m1 * axis_neuron + sum(fitting))
    # distance matrix between local and extended atoms: per entry the difference vector (3 values
    # written, read by the norm), the distance (written, read by top-k): 8 FLOPs, 9 values moved
    nlist_flops = 8.0 * n_atoms * n_ext
    nlist_bytes = 9.0 * size * n_atoms * n_ext
    return Cost(members * (3.0 * forward + nlist_flops), float(members * (2 * moved + nlist_bytes)),
                kernels=40 * members, precision=precision, dense=True)
