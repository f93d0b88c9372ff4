"""Targets ASE lacks, and a parser for target specifications such as ``pyscf:hf/6-31g*``."""

from __future__ import annotations

from ase.calculators.calculator import Calculator

__all__ = ["make_target"]


def make_target(spec: str) -> Calculator:
    """Build a target calculator from a short specification.

    ``emt``                      ASE's EMT
    ``asap3``                    ASAP's EMT (about 100x faster; its numbers differ from ASE's)
    ``pyscf:hf/6-31g*``          PySCF Hartree-Fock in a basis
    ``pyscf:dft/pbe/def2-svp``   PySCF Kohn-Sham with a functional and a basis
    ``psi4:hf/6-31g``            Psi4 (in process where it imports, else the worker bridge)
    ``lammps-lj:Ar/0.0104/3.4/8.5``  LAMMPS lj/cut: element, epsilon (eV), sigma and rc (A; rc optional)
    """
    name, _, rest = spec.partition(":")
    name = name.strip().lower()
    if name == "emt":
        from ase.calculators.emt import EMT

        return EMT()
    if name == "asap3":
        from .asap import AsapEMT

        try:
            return AsapEMT()
        except ImportError as err:
            raise ValueError(str(err)) from err
    if name == "pyscf":
        from .pyscf_calc import PySCF

        parts = [p for p in rest.split("/") if p]
        if len(parts) == 2 and parts[0].lower() == "hf":
            return PySCF(method="hf", basis=parts[1])
        if len(parts) == 3 and parts[0].lower() == "dft":
            return PySCF(method="dft", xc=parts[1], basis=parts[2])
        raise ValueError(f"pyscf target spec must be 'pyscf:hf/BASIS' or 'pyscf:dft/XC/BASIS', got {spec!r}")
    if name == "psi4":
        from .psi4_bridge import psi4_calculator

        parts = [p for p in rest.split("/") if p]
        if len(parts) != 2:
            raise ValueError(f"psi4 target spec must be 'psi4:METHOD/BASIS', got {spec!r}")
        return psi4_calculator(method=parts[0], basis=parts[1])
    if name == "lammps-lj":
        from .lammps_lj import LammpsLJ

        parts = [p for p in rest.split("/") if p]
        if len(parts) not in (3, 4):
            raise ValueError(f"lammps-lj target spec must be 'lammps-lj:EL/EPS/SIGMA[/RC]', got {spec!r}")
        return LammpsLJ(parts[0], *(float(v) for v in parts[1:]))
    raise ValueError(
        f"unknown target {spec!r}; known: emt, asap3, pyscf:hf/BASIS, pyscf:dft/XC/BASIS, psi4:METHOD/BASIS, "
        "lammps-lj:EL/EPS/SIGMA[/RC]"
    )
