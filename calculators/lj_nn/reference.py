"""The original code region in reduced units, and the stated distribution of its inputs."""
from __future__ import annotations

import numpy as np


def lj_pair_energy(r: np.ndarray) -> np.ndarray:
    """Unshifted 12-6 pair energy / epsilon at reduced distance ``r = r / sigma``."""
    inv6 = np.asarray(r, float) ** -6
    return 4.0 * inv6 * (inv6 - 1.0)


def lj_pair_energy_cut(r: np.ndarray, rc: float = 2.5) -> np.ndarray:
    """The region with LAMMPS lj/cut's branch: zero at and beyond ``rc`` (the paper's region)."""
    r = np.asarray(r, float)
    return np.where(r < rc, lj_pair_energy(r), 0.0)


def sample_pair_distances(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """Distances uniform in volume between ``lo`` and ``hi``: how pairs fill a neighbour sphere."""
    u = rng.random(n)
    return (lo**3 + u * (hi**3 - lo**3)) ** (1.0 / 3.0)
