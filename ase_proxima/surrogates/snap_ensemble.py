"""Bootstrap ensemble of linear SNAP models: energies, forces and stress with a spread.

Each member is a ridge fit of the SNAP weights (:mod:`.snap_descriptors`) on a
bootstrap resample of the training *structures*.  A structure contributes its
normal equations ``A^T A`` and ``A^T y`` (energy per atom, 3N force rows and,
for periodic cells, 6 virial-per-atom rows), so resampling only re-weights
small p x p matrices: a refit of all members takes milliseconds whatever the
training set size, which is what on-the-fly retraining needs.  The served
answer is the fit on all data; the members' standard deviation is the spread
the gate compares with the threshold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers

from .base import FittedState, Prediction, Surrogate, WorkloadSize, check_training_set, structure_key
from .snap_descriptors import DesignMatrix, SNAPDescriptor

__all__ = ["SNAPEnsemble", "default_cutoff", "ensemble_forces", "nearest_neighbour_distance"]


def ensemble_forces(rows: np.ndarray, coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forces of the all-data fit and the members' spread: descriptor derivatives ``rows``
    (N, 3, p) times coefficients ``coef`` (1 + members, p), the all-data fit first."""
    f = np.einsum("nkp,mp->mnk", rows, coef)
    return f[0], np.std(f[1:], axis=0)


def nearest_neighbour_distance(atoms: Atoms) -> float:
    """Median over atoms of the distance to the nearest other atom (periodic images included)."""
    from ase.neighborlist import neighbor_list

    if len(atoms) < 2 and not atoms.pbc.any():
        raise ValueError("a nearest-neighbour distance needs at least two atoms")
    i, d = neighbor_list("id", atoms, 8.0)
    if i.size == 0:
        raise ValueError("no two atoms within 8 A: set SNAPEnsemble(cutoff=...) explicitly")
    nearest = np.full(len(atoms), np.inf)
    np.minimum.at(nearest, i, d)
    return float(np.median(nearest[np.isfinite(nearest)]))


#: a periodic cell with more volume per atom than this (A^3) is mostly vacuum: a molecule in a box
SPARSE_VOLUME_PER_ATOM = 40.0


def default_cutoff(atoms: Atoms, neighbours: int = 24) -> float:
    """Cutoff (A, rounded to 0.1) of the sphere that holds ``neighbours`` atoms at the structure's density.

    24 reaches past the second shell of a close-packed metal (12 + 6) whether
    the structure is a crystal or a hot liquid.  A rule on the nearest-neighbour
    distance does not: thermal disorder shortens the median nearest distance, and
    1.5x of it gave 3.8 A on 930 K aluminium, inside the second shell.

    * A condensed periodic cell: its density (atoms over volume).
    * A slab, a wire or a molecule in a box (a cell with vacuum): the density inside the
      material, from the neighbour counts within 6 A of its most surrounded atoms (the
      90th percentile), capped at 6 A (a small molecule is then seen whole).
    * A free cluster or molecule (no cell): 1.6x the median nearest-neighbour distance,
      the same radius for an fcc crystal.
    """
    from ase.neighborlist import neighbor_list

    if atoms.pbc.all() and 0 < atoms.cell.volume <= SPARSE_VOLUME_PER_ATOM * len(atoms):
        r = (3.0 * neighbours * atoms.cell.volume / len(atoms) / (4.0 * np.pi)) ** (1.0 / 3.0)
    elif not atoms.pbc.any():
        r = 1.6 * nearest_neighbour_distance(atoms)
    else:
        reach = 6.0
        counts = np.bincount(neighbor_list("i", atoms, reach), minlength=len(atoms))
        density = max(float(np.percentile(counts, 90)), 1.0) / (4.0 / 3.0 * np.pi * reach ** 3)
        r = min((3.0 * neighbours / (4.0 * np.pi * density)) ** (1.0 / 3.0), reach)
    return round(float(r), 1)  # rounded, so structures of one phase give one cutoff whatever their noise


class SNAPEnsemble(Surrogate):
    """Force-field surrogate for condensed phases: ``members`` bootstrap SNAP ridge fits.

    Parameters
    ----------
    elements:
        Symbols to cover; ``None`` takes those of the first training set (``elements_``).
    cutoff:
        Neighbour cutoff (Angstrom).  ``None`` (default):
        :func:`default_cutoff` of the first training structure, the sphere
        holding 24 neighbours (4.5-4.6 A for aluminium), just past the second
        shell of a close-packed metal; the value used is ``cutoff_``.  Measured on 930 K EMT aluminium
        coexistence frames (trained on 120 frames of two short runs, tested
        on the final cells of solid and of liquid runs, twojmax 8, energy
        weight 300): 3.8 A, inside the second shell, gave force MAE
        0.028 / 0.043 eV/A (solid / liquid) and favoured the liquid by
        5 meV/atom; 4.6 A gave 0.024 / 0.029 and 0.8 meV/atom; 5.0 A
        0.032 / 0.036 and 0.4 meV/atom.
    twojmax:
        Band limit of the bispectrum (8: 55 components per element).
    members:
        Ensemble size (bootstrap resamples of the training structures).
    quadratic:
        Quadratic SNAP (pairwise products of the components as extra columns).
    chemistry:
        With several elements: ``'weighted'`` (default: one neighbour density in which each
        neighbour counts with its element's weight) or ``'explicit'`` (LAMMPS ``chem``: one
        set of components per ordered triple of elements, n^3 times the columns); see
        :class:`~ase_proxima.surrogates.snap_descriptors.SNAPDescriptor`.  Measured on EMT
        alloys and a molecule in a box (``benchmarks/snap_chemistry.py``): explicit chemistry
        resolves chemically unlike neighbours best (Pt-Al) but its columns, and the per-structure
        normal equations the ensemble keeps (their square), grow as n^4: a ternary at 2J=8
        needs about 150 MB per training structure.  Weighted densities with atomic-number
        weights cost what one element costs and are as good or better for like metals.
    element_weights:
        Neighbour weight of each element for ``'weighted'`` chemistry; default its atomic
        number over the largest one present (equal weights cannot tell the species apart).
    ridge:
        Ridge penalty relative to the mean diagonal of the normal equations.
    energy_weight, stress_weight:
        Weights of the per-atom energy row and of the virial-per-atom rows,
        relative to one force row.  One energy row and six stress rows face 3N
        force rows, and both matter more than their count says.  Stress: at
        weight 1 the fit gave up the stress (held-out EMT Al: 1.0 GPa RMSE, a
        1.3 GPa pressure bias that made a Berendsen barostat swell the cell by
        19%); at 10 the stress RMSE is 0.04-0.08 GPa.  Energy: a phase
        boundary moves with the solid-liquid energy balance, which forces do
        not pin down.  On held-out 108-atom EMT frames (cutoff 3.8 A) weight 10
        biased the per-atom energy +4.4 meV (solid) and -5.0 meV (liquid), a
        liquid favoured by ~9 meV per atom, about 90 K of melting point; at
        300 the two biases were 0.0 and -0.6 meV for force RMSE 0.026 / 0.066
        eV/A instead of 0.024 / 0.064.
    """

    implemented_properties = ("energy", "forces", "stress")

    def __init__(self, elements: Sequence[str] | None = None, cutoff: float | None = None, twojmax: int = 8,
                 members: int = 8, ridge: float = 1e-8, energy_weight: float = 300.0, stress_weight: float = 10.0,
                 seed: int = 0, quadratic: bool = False, chemistry: str = "weighted",
                 element_weights: dict[str, float] | None = None) -> None:
        if members < 2:
            raise ValueError("an ensemble needs at least 2 members")
        if ridge < 0 or energy_weight < 0 or stress_weight < 0:
            raise ValueError("ridge and the row weights must be >= 0")
        if cutoff is not None and not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff!r}")
        self.elements = elements
        self.cutoff = cutoff
        self.twojmax = twojmax
        self.members, self.ridge = members, ridge
        self.energy_weight, self.stress_weight = energy_weight, stress_weight
        self.seed = seed
        self.quadratic = quadratic
        if chemistry not in ("explicit", "weighted"):
            raise ValueError(f"chemistry must be 'explicit' or 'weighted', got {chemistry!r}")
        self.chemistry = chemistry
        self.element_weights = element_weights
        self.elements_: list[str] | None = None
        self.cutoff_: float | None = None
        self._descriptor: SNAPDescriptor | None = None
        self._normal: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # per training structure
        # rows of the structure predicted last: a target call's structure is predicted (for the gate)
        # and then trained on, so its LAMMPS pass is not repeated
        self._last_rows: tuple[bytes, DesignMatrix] | None = None
        self.coef_: np.ndarray | None = None  # (p,) fit on all data
        self.member_coef_: np.ndarray | None = None  # (members, p)

    @property
    def is_fitted(self) -> bool:
        return self.coef_ is not None

    def _desc(self, images: Sequence[Atoms]) -> SNAPDescriptor:
        if self._descriptor is None:
            elements = list(self.elements or sorted({s for a in images for s in a.get_chemical_symbols()}))
            cutoff = float(self.cutoff) if self.cutoff is not None else default_cutoff(images[0])
            self._make_descriptor(elements, cutoff)
        return self._descriptor

    def _make_descriptor(self, elements: list[str], cutoff: float) -> None:
        self.elements_, self.cutoff_ = elements, cutoff
        self._descriptor = SNAPDescriptor(elements, cutoff=cutoff, twojmax=int(self.twojmax),
                                          quadratic=bool(self.quadratic), chemistry=self.chemistry,
                                          weights=self._neighbour_weights(elements))

    def _neighbour_weights(self, elements: list[str]) -> list[float]:
        if self.element_weights is not None:
            missing = sorted(set(elements) - set(self.element_weights))
            if missing:
                raise ValueError(f"element_weights gives no weight for {missing}")
            return [float(self.element_weights[e]) for e in elements]
        z = np.array([atomic_numbers[e] for e in elements], float)
        return list(z / z.max())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_last_rows"] = None  # a cache, not state
        return state

    def _rows(self, desc: SNAPDescriptor, atoms: Atoms) -> DesignMatrix:
        key = structure_key(atoms)
        if self._last_rows is not None and self._last_rows[0] == key:
            return self._last_rows[1]
        rows = desc.rows(atoms)
        self._last_rows = (key, rows)
        return rows

    def accepts(self, atoms: Atoms) -> str | None:
        if self._descriptor is None:
            return None
        return self._descriptor.accepts(atoms)

    def describe(self, atoms: Atoms, properties: Sequence[str] | None = None) -> bool:
        """The bispectrum rows of ``atoms`` (one LAMMPS pass), kept for the fit that follows."""
        if self.accepts(atoms) is not None:
            return False
        self._rows(self._desc([atoms]), atoms)
        return True

    def _equations(self, atoms: Atoms, rows: DesignMatrix, res: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        n = len(atoms)
        w_e = float(self.energy_weight)
        blocks = [w_e * rows.energy[None, :] / n]
        targets = [np.array([w_e * float(res["energy"]) / n])]
        if "forces" in res:
            blocks.append(rows.forces.reshape(3 * n, -1))
            targets.append(np.asarray(res["forces"], float).ravel())
        if rows.stress is not None and "stress" in res and self.stress_weight > 0:
            scale = self.stress_weight * atoms.get_volume() / n
            stress = np.asarray(res["stress"], float)
            if stress.shape == (3, 3):
                stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            blocks.append(scale * rows.stress)
            targets.append(scale * stress)
        a, y = np.vstack(blocks), np.concatenate(targets)
        return a.T @ a, a.T @ y

    def _fit(self, images: Sequence[Atoms], results: Sequence[Mapping[str, Any]]) -> None:
        """Fit all members on the given training set.  Each structure's normal equations are
        cached by content, so a refit describes only structures it has not seen, whether the
        set grew or slid (``ProximaCalculator(max_training=...)``)."""
        check_training_set(images, results)
        desc = self._desc(images)
        keys = [self._equation_key(a, r) for a, r in zip(images, results)]
        for key, atoms, res in zip(keys, images, results):
            if key not in self._normal:
                self._normal[key] = self._equations(atoms, self._rows(desc, atoms), res)
        self._normal = {k: self._normal[k] for k in keys}  # forget structures that left the set
        grams = np.array([self._normal[k][0] for k in keys])
        rhs = np.array([self._normal[k][1] for k in keys])
        p = grams.shape[1]
        rng = np.random.default_rng(self.seed + len(images))
        counts = np.vstack([np.ones(len(grams))] + [rng.multinomial(len(grams), np.full(len(grams), 1 / len(grams)))
                                                    for _ in range(int(self.members))])
        coefs = []
        for c in counts:
            g = np.tensordot(c, grams, axes=1)
            reg = self.ridge * max(float(np.trace(g)) / p, 1e-12)
            coefs.append(np.linalg.solve(g + reg * np.eye(p), np.tensordot(c, rhs, axes=1)))
        self.coef_, self.member_coef_ = coefs[0], np.array(coefs[1:])

    def predict(self, atoms: Atoms, properties: Sequence[str] | None = None) -> Prediction:
        if not self.is_fitted:
            raise RuntimeError("SNAPEnsemble.predict before fit")
        # LAMMPS gives energy, force and virial rows in one pass, so a force call returns the
        # stress too (a barostat asks for it next, on the same positions)
        wanted = set(properties or self.implemented_properties)
        if "forces" in wanted:
            wanted.add("stress")
        rows = self._rows(self._descriptor, atoms)
        coef = np.vstack([self.coef_[None, :], self.member_coef_])  # (1 + members, p)
        results: dict[str, Any] = {}
        spread: dict[str, Any] = {}
        e = coef @ rows.energy
        results["energy"], spread["energy"] = float(e[0]), float(np.std(e[1:]))
        if "forces" in wanted:
            results["forces"], spread["forces"] = ensemble_forces(rows.forces, coef)
        if "stress" in wanted and rows.stress is not None:
            s = coef @ rows.stress.T
            results["stress"], spread["stress"] = s[0], np.std(s[1:], axis=0)
        return Prediction(results=results, spread=spread)

    def properties_for(self, atoms: Atoms) -> tuple[str, ...]:
        return self.implemented_properties if atoms.pbc.all() else ("energy", "forces")

    def more_capacity(self) -> dict[str, Any] | None:
        """Quadratic SNAP (products of the bispectrum components), once."""
        return None if self.quadratic else {"quadratic": True}

    # ------------------------------------------------------------ persistence
    def fitted_state(self) -> FittedState | None:
        """Coefficients and the learned descriptor settings.  The per-structure normal equations
        are not kept: the next refit recomputes them from the training data (LAMMPS gives the
        same numbers for the same structure), so a reopened run refits exactly as the original."""
        if not self.is_fitted:
            return None
        return FittedState({"coef": self.coef_, "member_coef": self.member_coef_},
                           {"elements": list(self.elements_), "cutoff": float(self.cutoff_)})

    def restore_fitted_state(self, state: FittedState) -> None:
        self._make_descriptor(list(state.meta["elements"]), float(state.meta["cutoff"]))
        self.coef_ = np.array(state.arrays["coef"], float)
        self.member_coef_ = np.array(state.arrays["member_coef"], float)
        self._normal, self._last_rows = {}, None

    # ------------------------------------------- each structure's normal equations, kept
    # A refit after a reopened run would describe every stored structure again (one LAMMPS pass
    # each: an hour for tens of thousands of 216-atom cells); kept beside the data, they are
    # read back instead.  Exact: the numbers are the ones the original fit used.
    def equations_tag(self) -> str | None:
        """What a structure's equations depend on besides the structure and its results (the
        settings and the learned descriptor), as a short hex digest; ``None`` before the
        descriptor exists."""
        if self._descriptor is None:
            return None
        spec = {"twojmax": int(self.twojmax), "quadratic": bool(self.quadratic), "chemistry": self.chemistry,
                "weights": self._neighbour_weights(self.elements_), "elements": list(self.elements_),
                "cutoff": float(self.cutoff_), "energy_weight": float(self.energy_weight),
                "stress_weight": float(self.stress_weight)}
        return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    @staticmethod
    def _equation_key(atoms: Atoms, results: Mapping[str, Any]) -> bytes:
        """A structure and which of the properties its equations use it has (not the others a
        target gave: a point read back from a store has only the stored ones)."""
        return structure_key(atoms) + ",".join(k for k in ("energy", "forces", "stress") if k in results).encode()

    def equations(self, exclude: set[bytes] | frozenset[bytes] = frozenset()) -> dict[bytes, np.ndarray]:
        """Each training structure's normal equations but those ``exclude`` names, packed as one
        array (the p x p Gram matrix row by row, then the p right-hand sides), by key."""
        return {k: np.concatenate([g.ravel(), b]) for k, (g, b) in self._normal.items() if k not in exclude}

    def adopt_equations(self, packed: Mapping[bytes, np.ndarray],
                        probes: Sequence[tuple[Atoms, Mapping[str, Any]]]) -> int:
        """Take equations computed earlier (:meth:`equations`, read back) for the structures a
        later fit meets, once the first of ``probes`` (training structures and their results)
        among them has been described afresh and matches; returns how many were taken (0 when it
        differs: they are not this model's, and every structure is described again)."""
        if not packed or self._descriptor is None or self.coef_ is None:
            return 0
        p = int(self.coef_.shape[0])
        if any(v.shape != (p * p + p,) for v in packed.values()):
            return 0
        probe = next(((k, a, r) for a, r in probes if (k := self._equation_key(a, r)) in packed), None)
        if probe is None:
            return 0
        key, atoms, results = probe
        gram, rhs = self._equations(atoms, self._rows(self._descriptor, atoms), results)
        theirs = packed[key]
        if not (np.allclose(theirs[:p * p], gram.ravel(), rtol=1e-10, atol=0.0)
                and np.allclose(theirs[p * p:], rhs, rtol=1e-10, atol=0.0)):
            return 0
        for k, v in packed.items():
            self._normal.setdefault(k, (v[:p * p].reshape(p, p).copy(), v[p * p:].copy()))
        self._normal[key] = (gram, rhs)
        return len(packed)

    def call_cost(self, atoms: Atoms) -> list[WorkloadSize]:
        if not self.is_fitted:
            return []
        return [WorkloadSize("SNAP ensemble forces", "ensemble_forces",
                             {"n_atoms": len(atoms), "n_coef": int(self.coef_.shape[0]),
                              "members": int(self.members)})]
