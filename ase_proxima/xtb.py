"""GFN-xTB as a baseline: tblite's library interface behind a lean ASE calculator.

A baseline runs on every call of a run, served ones included, so its own overhead is paid
as often as the surrogate's.  tblite's ASE calculator rebuilds nothing between geometries,
but on a small molecule it spends about as long again as the tight-binding calculation
itself in Python around it (reading every result it offers: partial charges, dipole, bond
orders, the post-processing tables, each through a wrapped library call).  :class:`XTB`
keeps one tblite calculator per composition, moves its atoms, restarts the SCF from the last
converged result, and reads only the energy, the gradient and (for a cell) the virial.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, InputError, all_changes
from ase.units import Bohr, Hartree, kB

from .identity import system_changes

__all__ = ["XTB", "METHODS"]

#: the tight-binding methods by their short names
METHODS = {"gfn2": "GFN2-xTB", "gfn1": "GFN1-xTB"}

#: what makes tblite's structure object unusable: it holds species, periodicity and the charge
_REBUILD = {"numbers", "pbc", "initial_charges", "initial_magmoms"}


class XTB(Calculator):
    """Energies, forces and (for periodic cells) stress from GFN2-xTB or GFN1-xTB (tblite).

    Parameters
    ----------
    method:
        ``'GFN2-xTB'`` or ``'GFN1-xTB'``.
    accuracy:
        tblite's numerical accuracy (smaller is tighter).
    electronic_temperature:
        Fermi smearing temperature (K).
    max_iterations:
        SCF iterations before the calculation fails.

    The total charge is the sum of the atoms' initial charges and the number of unpaired
    electrons the sum of their initial magnetic moments, both rounded, as tblite's own ASE
    calculator reads them.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters: dict[str, Any] = {"method": "GFN2-xTB", "accuracy": 1.0, "electronic_temperature": 300.0,
                                          "max_iterations": 250}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.parameters["method"] not in METHODS.values():
            raise ValueError(f"method must be one of {sorted(METHODS.values())}, got {self.parameters['method']!r}")
        self._xtb: Any = None  # tblite's calculator for the current composition
        self._result: Any = None  # its last converged result: the next SCF's start

    def set(self, **kwargs: Any) -> dict[str, Any]:
        changed = super().set(**kwargs)
        if changed:
            self._xtb = self._result = None
        return changed

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's answer to what changed since the last calculation, without its general-purpose
        comparisons (they cost a third of a small molecule's tight-binding time, twice a call)."""
        return system_changes(self.atoms, atoms, tol)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | None = None,
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        atoms = self.atoms
        lattice = np.asarray(atoms.cell, float) / Bohr if atoms.pbc.any() else None
        if self._xtb is None or _REBUILD.intersection(system_changes):
            self._xtb, self._result = self._new(atoms, lattice), None
        else:
            self._xtb.update(atoms.positions / Bohr, lattice)
        try:
            self._result = self._xtb.singlepoint(self._result)
        except RuntimeError as err:  # an SCF that did not converge, a structure it cannot do
            self._result = None  # a failed SCF is no start for the next one
            raise CalculationFailed(str(err)) from err
        energy = float(self._result.get("energy")) * Hartree
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": -np.asarray(self._result.get("gradient")) * (Hartree / Bohr)}
        if lattice is not None:
            virial = np.asarray(self._result.get("virial")) * (Hartree / atoms.get_volume())
            self.results["stress"] = virial.flat[[0, 4, 8, 5, 2, 1]]

    def _new(self, atoms: Atoms, lattice: np.ndarray | None) -> Any:
        from tblite.interface import Calculator as TBLiteCalculator

        p = self.parameters
        try:
            xtb = TBLiteCalculator(p["method"], atoms.numbers, atoms.positions / Bohr,
                                   int(round(atoms.get_initial_charges().sum())),
                                   int(round(atoms.get_initial_magnetic_moments().sum())),
                                   lattice, np.asarray(atoms.pbc) if lattice is not None else None)
            xtb.set("accuracy", float(p["accuracy"]))
            xtb.set("temperature", float(p["electronic_temperature"]) * kB / Hartree)
            xtb.set("max-iter", int(p["max_iterations"]))
            xtb.set("verbosity", 0)
        except RuntimeError as err:  # tblite's errors for elements and inputs it cannot take
            raise InputError(str(err)) from err
        return xtb
