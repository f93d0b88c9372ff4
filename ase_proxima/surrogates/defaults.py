"""Which surrogate a ProximaCalculator uses when the user names none, and the families by name."""

from __future__ import annotations

from ase import Atoms

from .base import Surrogate, isolated_copy
from .deepmd import DeePMDEnsemble
from .snap_ensemble import SNAPEnsemble
from .soap_ridge import SOAPBayesianRidge

__all__ = ["default_surrogate", "surrogate_family", "FAMILIES"]

#: the families a stored model may name (a store never makes a class from any other name)
FAMILIES: dict[str, type[Surrogate]] = {c.__name__: c for c in (SOAPBayesianRidge, SNAPEnsemble, DeePMDEnsemble)}


def surrogate_family(surrogate: Surrogate) -> str:
    """The family a surrogate belongs to, as stores record it: the nearest class among
    :data:`FAMILIES` (a user's subclass counts as its parent family), else its own class name."""
    for cls in type(surrogate).__mro__:
        if FAMILIES.get(cls.__name__) is cls:
            return cls.__name__
    return type(surrogate).__name__


def default_surrogate(atoms: Atoms) -> Surrogate:
    """The SNAP force ensemble for anything with a periodic direction (bulk, alloys, slabs,
    liquids), SOAP + BayesianRidge for free molecules and clusters, and for a molecule in a box
    that sees no periodic image of itself within SOAP's range (described as the free molecule).

    A periodic cell needs forces (and a bulk cell the stress) on hundreds of atoms every MD
    step: SNAP gives them analytically from LAMMPS in milliseconds, for any number of
    elements and for cells open in some directions, where dscribe's periodic SOAP derivatives
    are numerical and take seconds.  For a free molecule the energy is what Monte Carlo asks
    for, and averaged SOAP with a Bayesian posterior gives a closely calibrated spread from a
    few dozen target calls.
    """
    soap = SOAPBayesianRidge()
    if not atoms.pbc.any() or isolated_copy(atoms, float(soap.r_cut)) is not None:
        return soap
    return SNAPEnsemble()
