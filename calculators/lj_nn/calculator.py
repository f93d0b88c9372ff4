"""LennardJonesNN: an ASE calculator whose Lennard-Jones pair term is a small neural network."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from nnapprox import MLPWeights, parse_topology

from .kernel import analytic_pairs, network_pairs_deep, network_pairs_one_hidden
from .neighbours import VerletList
from .reference import lj_pair_energy, sample_pair_distances

WEIGHTS_DIR = Path(__file__).parent / "weights"


def pretrained_path(topology: str | Sequence[int]) -> Path:
    """Where the shipped reduced-unit weights for ``topology`` live (``weights/1x3x1.json``)."""
    return WEIGHTS_DIR / ("x".join(map(str, parse_topology(topology))) + ".json")


def available_topologies() -> list[str]:
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


class LennardJonesNN(Calculator):
    """Lennard-Jones pair potential with the pair energy from a tiny network (1x3x1 by default).

    The network maps the reduced inverse distance ``sigma / r`` to the pair energy in units of
    ``epsilon``.  LJ is scale-free, so the shipped reduced-unit weights serve any ``epsilon``
    (eV), ``sigma`` (Angstrom) and cut-off ``rc`` (Angstrom, default ``3 sigma`` as in ASE's
    ``LennardJones``) inside the distance range they were trained on (stored with the weights).
    Forces and stress are the exact derivatives of the network's energy.

    ``shift=True`` (ASE's convention) makes each pair energy zero at ``rc``; ``shift=False`` is
    LAMMPS ``lj/cut``'s.  ``pair="analytic"`` evaluates the exact 12-6 term in the same compiled
    loop: the reference for accuracy, energy drift and speed.  ``skin`` (Angstrom, default
    ``0.3 sigma``) is the Verlet-list margin: the list is rebuilt only when an atom has moved
    more than half of it, or the cell, periodicity or atom count changed.
    """

    implemented_properties = ["energy", "energies", "free_energy", "forces", "stress"]
    default_parameters = {"epsilon": 1.0, "sigma": 1.0, "rc": None, "topology": (1, 3, 1), "weights": None,
                          "shift": True, "pair": "network", "skin": None}
    nolabel = True

    def __init__(self, epsilon: float = 1.0, sigma: float = 1.0, rc: float | None = None,
                 topology: str | Sequence[int] = (1, 3, 1), weights: str | os.PathLike | MLPWeights | None = None,
                 shift: bool = True, pair: str = "network", skin: float | None = None, **kwargs) -> None:
        if not epsilon > 0 or not sigma > 0:
            raise ValueError(f"epsilon and sigma must be positive, got {epsilon}, {sigma}")
        rc = 3.0 * sigma if rc is None else float(rc)
        if not rc > 0:
            raise ValueError(f"rc must be positive, got {rc}")
        if pair not in ("network", "analytic"):
            raise ValueError(f"pair must be 'network' or 'analytic', got {pair!r}")
        skin = 0.3 * sigma if skin is None else float(skin)
        if skin < 0:
            raise ValueError(f"skin must be >= 0, got {skin}")
        topology = parse_topology(topology)
        Calculator.__init__(self, epsilon=float(epsilon), sigma=float(sigma), rc=rc, topology=topology,
                            weights=None if weights is None or isinstance(weights, MLPWeights) else str(weights),
                            shift=bool(shift), pair=pair, skin=skin, **kwargs)
        self.net: MLPWeights | None = None
        if pair == "network":
            self.net = self._load_weights(weights, topology)
            lo, hi = self.net.meta.get("r_range", (0.0, np.inf))
            if rc / sigma > hi + 1e-9:
                raise ValueError(f"rc = {rc / sigma:.3g} sigma is beyond the network's training range "
                                 f"({lo:.3g}-{hi:.3g} sigma); train one for it with LennardJonesNN.train")
            self._flat = _flatten(self.net)
            e_rc = float(self.net(np.array([sigma / rc]))[0])
        else:
            e_rc = float(lj_pair_energy(rc / sigma))
        # the pair energy at rc in units of epsilon, subtracted from every pair inside rc when shifting
        self._e_ref = e_rc if shift else 0.0
        self.neighbours = VerletList(rc, skin)

    @staticmethod
    def _load_weights(weights, topology) -> MLPWeights:
        if isinstance(weights, MLPWeights):
            net = weights
        else:
            path = Path(weights) if weights is not None else pretrained_path(topology)
            if not path.exists():
                raise FileNotFoundError(f"no weights at {path}; shipped topologies: {available_topologies()}")
            net = MLPWeights.load(path)
        if net.topology[0] != 1 or net.activation != "tanh":
            raise ValueError("lj_nn needs a one-input tanh network (sigma / r -> pair energy / epsilon)")
        return net

    # ------------------------------------------------------------------ ASE
    def check_state(self, atoms, tol: float = 1e-15) -> list[str]:
        """ASE's comparison, after an exact-equality fast path (ASE's costs ~2 ms per call at 4000 atoms)."""
        old = self.atoms
        if (old is not None and len(old) == len(atoms) and np.array_equal(old.positions, atoms.positions)
                and np.array_equal(old.cell.array, atoms.cell.array) and np.array_equal(old.pbc, atoms.pbc)
                and np.array_equal(old.numbers, atoms.numbers)
                and np.array_equal(old.get_initial_magnetic_moments(), atoms.get_initial_magnetic_moments())
                and np.array_equal(old.get_initial_charges(), atoms.get_initial_charges())):
            return []
        return super().check_state(atoms, tol)

    def calculate(self, atoms=None, properties=None, system_changes=all_changes) -> None:
        if properties is None:
            properties = self.implemented_properties
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        i, j, offsets = self.neighbours.pairs(atoms)
        pos = np.ascontiguousarray(atoms.positions, dtype=float)
        energy, energies, forces, virial = self.pair_terms(pos, i, j, offsets)
        if not np.isfinite(forces).all():
            raise ValueError("non-finite forces: two atoms sit on top of each other")
        self.results["energy"] = self.results["free_energy"] = float(energy)
        self.results["energies"] = energies
        self.results["forces"] = forces
        if atoms.cell.rank == 3 and atoms.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(-virial / atoms.get_volume())
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a periodic cell with three lattice vectors")

    def pair_terms(self, pos: np.ndarray, i: np.ndarray, j: np.ndarray, offsets: np.ndarray
                   ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """Energy, per-atom energies, forces and the 3x3 virial from one compiled pass over a half
        list (``d = pos[j] - pos[i] + offsets``): the work of a force call without ASE's
        bookkeeping (what ``ase_proxima.perf`` times)."""
        p = self.parameters
        rc2 = p.rc * p.rc
        if p.pair == "analytic":
            return analytic_pairs(pos, i, j, offsets, rc2, p.sigma, p.epsilon, p.epsilon * self._e_ref)
        w, b, widths = self._flat
        scales = (float(self.net.x_shift[0]), float(self.net.x_scale[0]), float(self.net.y_shift),
                  float(self.net.y_scale), self._e_ref)
        if len(widths) == 3:
            return network_pairs_one_hidden(pos, i, j, offsets, rc2, p.sigma, p.epsilon, w, b, int(widths[1]),
                                            *scales)
        return network_pairs_deep(pos, i, j, offsets, rc2, p.sigma, p.epsilon, w, b, widths, *scales)

    def todict(self) -> dict:
        d = super().todict()
        d["topology"] = list(self.parameters.topology)
        return d

    # ------------------------------------------------------------- training
    @staticmethod
    def train(topology: str | Sequence[int], r_range: tuple[float, float] = (0.85, 3.0), n_samples: int = 20_000,
              steps: int = 10_000, learning_rate: float = 0.005, refine_steps: int = 2_000, restarts: int = 3,
              seed: int = 0, path: str | os.PathLike | None = None) -> MLPWeights:
        """Train reduced-unit weights for another topology (or range); optionally save them as JSON.

        Pair distances are drawn uniformly in volume between ``r_range`` (in sigma), the density
        of pairs in a homogeneous fluid; the target is the unshifted 12-6 pair energy / epsilon.
        """
        from nnapprox import train_mlp

        r = sample_pair_distances(np.random.default_rng(seed), n_samples, *r_range)
        net, info = train_mlp(1.0 / r, lj_pair_energy(r), topology, steps=steps, learning_rate=learning_rate,
                              refine_steps=refine_steps, restarts=restarts, seed=seed)
        net.meta.update({"input": "sigma / r", "output": "pair energy / epsilon (unshifted 12-6)",
                         "r_range": list(r_range), "sampling": "uniform in volume", "n_samples": n_samples,
                         "steps": info.steps, "learning_rate": info.learning_rate,
                         "refine_steps": refine_steps, "train_time_s": info.train_time_s,
                         "l2_loss": info.l2_loss, "seed": seed})
        if path is not None:
            net.save(path)
        return net


def _flatten(net: MLPWeights) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layers as one weight array (row-major ``(n_in, n_out)`` blocks), one bias array and the widths."""
    w = np.concatenate([lw.ravel() for lw, _ in net.layers])
    b = np.concatenate([lb.ravel() for _, lb in net.layers])
    return w, b, np.array(net.topology, dtype=np.int64)
