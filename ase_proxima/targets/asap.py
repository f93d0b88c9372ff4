"""ASAP's EMT as an ASE ``Calculator``: about 70x faster than ASE's EMT on 512 Al atoms.

asap3's potentials are C++ objects that keep neighbour lists on the atoms they are
attached to and do not follow ASE's ``Calculator`` protocol (no
``implemented_properties``, no ``calculate``).  This adapter keeps a private copy of
the structure attached to one asap3 potential, updates its positions and cell on
every call (so the neighbour list is reused across MD steps), and fills ASE's
``results``.  ASAP's EMT parameters differ from ASE's (7.7 meV per 512 atoms):
never mix the two in one dataset or comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

__all__ = ["AsapEMT"]


class AsapEMT(Calculator):
    """asap3's EMT behind ASE's calculator interface (energy, forces, stress, per-atom energies)."""

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]
    name = "asap3_emt"

    def __init__(self, **kwargs: Any) -> None:
        try:
            import asap3
        except ImportError as err:
            raise ImportError("AsapEMT needs asap3: pip install 'ase-proxima[asap]'") from err
        super().__init__(**kwargs)
        self._asap3 = asap3
        self._inner: Atoms | None = None

    def _attach(self, atoms: Atoms) -> Atoms:
        inner = self._inner
        if (inner is None or len(inner) != len(atoms) or np.any(inner.numbers != atoms.numbers)
                or np.any(inner.pbc != atoms.pbc)):
            inner = atoms.copy()
            inner.set_constraint()
            inner.calc = self._asap3.EMT()
            self._inner = inner
        else:
            inner.set_cell(atoms.cell, scale_atoms=False)
            inner.set_positions(atoms.get_positions(), apply_constraint=False)
        return inner

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | tuple[str, ...] = ("energy",),
                  system_changes: list[str] = all_changes) -> None:
        super().calculate(atoms, properties, system_changes)
        inner = self._attach(self.atoms)
        energy = float(inner.get_potential_energy())
        self.results = {"energy": energy, "free_energy": energy, "forces": np.array(inner.get_forces())}
        if "energies" in properties:
            self.results["energies"] = np.array(inner.get_potential_energies())
        if "stress" in properties:
            if not self.atoms.pbc.all():
                raise PropertyNotImplementedError("stress needs a cell periodic in all directions")
            self.results["stress"] = np.array(inner.get_stress())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_inner"] = None  # the C++ potential is rebuilt on the next call
        state["_asap3"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        import asap3

        self._asap3 = asap3
