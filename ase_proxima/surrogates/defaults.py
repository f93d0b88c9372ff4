"""Which surrogate a ProximaCalculator uses when the user names none."""

from __future__ import annotations

from ase import Atoms

from .base import Surrogate
from .snap_ensemble import SNAPEnsemble
from .soap_ridge import SOAPBayesianRidge

__all__ = ["default_surrogate"]


def default_surrogate(atoms: Atoms) -> Surrogate:
    """SNAP force ensemble for bulk cells, SOAP + BayesianRidge for molecules and clusters.

    Bulk MD needs forces and stress on hundreds of atoms every step: SNAP gives
    them analytically from LAMMPS in milliseconds, where dscribe's periodic SOAP
    derivatives are numerical and take seconds.  For a molecule the energy is
    what Monte Carlo asks for, and averaged SOAP with a Bayesian posterior
    gives a closely calibrated spread from a few dozen target calls.
    """
    if atoms.pbc.all():
        return SNAPEnsemble()
    return SOAPBayesianRidge()
