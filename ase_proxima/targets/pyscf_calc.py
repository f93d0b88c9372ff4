"""PySCF as an ASE calculator: Hartree-Fock or Kohn-Sham energies and analytic forces.

ASE ships no PySCF calculator; this is the expensive, pip-installable target
of the Monte Carlo study (HF methane: ~0.3 s per energy+gradient in 6-31G*).
Molecules only (free boundaries).  The converged density of the previous call
seeds the next SCF when the atoms' species and basis are unchanged, which
roughly halves the cost along a Monte Carlo or MD trajectory.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, SCFError, all_changes
from ase.units import Bohr, Hartree

__all__ = ["PySCF"]

_METHODS = ("hf", "dft")


class PySCF(Calculator):
    """Molecular SCF with PySCF.

    Parameters
    ----------
    method:
        ``'hf'`` (restricted for closed shells, unrestricted otherwise) or
        ``'dft'`` (Kohn-Sham with functional ``xc``).
    basis:
        Any PySCF basis name, e.g. ``'sto-3g'``, ``'6-31g*'``, ``'cc-pvdz'``.
    charge, spin:
        Total charge and 2S (number of unpaired electrons).
    conv_tol:
        SCF energy convergence in Hartree.
    reuse_density:
        Start each SCF from the previous converged density when possible.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    name = "pyscf"
    default_parameters: dict[str, Any] = {
        "method": "hf",
        "basis": "6-31g*",
        "xc": None,
        "charge": 0,
        "spin": 0,
        "conv_tol": 1e-10,
        "max_cycle": 100,
        "reuse_density": True,
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        p = self.parameters
        if p["method"] not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {p['method']!r}")
        if p["method"] == "dft" and not p["xc"]:
            raise ValueError("method='dft' needs an exchange-correlation functional, e.g. xc='pbe'")
        if int(p["spin"]) < 0:
            raise ValueError("spin (2S) must be >= 0")
        self._dm = None
        self._mf = None
        self._dm_key: tuple | None = None
        self.scf_cycles: list[int] = []

    def _mole(self, atoms: Atoms):
        from pyscf import gto

        p = self.parameters
        return gto.M(
            atom=[(s, tuple(x)) for s, x in zip(atoms.get_chemical_symbols(), atoms.positions)],
            unit="Angstrom",
            basis=p["basis"],
            charge=int(p["charge"]),
            spin=int(p["spin"]),
            verbose=0,
        )

    def _scf(self, mol):
        from pyscf import dft, scf

        p = self.parameters
        open_shell = int(p["spin"]) != 0
        if p["method"] == "hf":
            mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
        else:
            mf = dft.UKS(mol) if open_shell else dft.RKS(mol)
            mf.xc = p["xc"]
        mf.conv_tol = float(p["conv_tol"])
        mf.max_cycle = int(p["max_cycle"])
        # PySCF writes a checkpoint file (HDF5, in its temporary directory) on every SCF cycle by
        # default: nothing here reads it back, and at small bases it costs a third of the call
        mf.chkfile = None
        return mf

    def calculate(self, atoms: Atoms | None = None, properties=("energy",), system_changes=all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        if not system_changes and self._mf is not None and "energy" in self.results:
            # same structure, converged SCF at hand: only the gradient is missing
            self._add_forces(properties)
            return
        if atoms.pbc.any():
            raise ValueError("the PySCF target handles molecules only (set atoms.pbc = False)")
        mol = self._mole(atoms)
        mf = self._scf(mol)
        key = (tuple(atoms.numbers), self.parameters["basis"], self.parameters["method"], self.parameters["spin"])
        dm0 = self._dm if (self.parameters["reuse_density"] and self._dm_key == key) else None
        cycles: list[int] = []
        mf.callback = lambda env: cycles.append(env.get("cycle", 0))
        energy = mf.kernel(dm0=dm0)
        if not mf.converged:
            self._dm, self._dm_key, self._mf = None, None, None
            raise SCFError(
                f"PySCF {self.parameters['method']}/{self.parameters['basis']} SCF did not converge "
                f"in {self.parameters['max_cycle']} cycles"
            )
        self.scf_cycles.append(len(cycles))
        self._dm, self._dm_key, self._mf = mf.make_rdm1(), key, mf
        self.results = {"energy": float(energy) * Hartree, "free_energy": float(energy) * Hartree}
        self._add_forces(properties)

    def _add_forces(self, properties) -> None:
        if "forces" in properties and "forces" not in self.results:
            grad = self._mf.nuc_grad_method().kernel()
            self.results["forces"] = -np.asarray(grad) * Hartree / Bohr
