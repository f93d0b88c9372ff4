"""Surrogate model families behind one contract (see :mod:`.base`)."""

from .base import FitError, FittedState, Prediction, Surrogate, WorkloadSize
from .deepmd import DeePMDEnsemble
from .defaults import FAMILIES, default_surrogate, surrogate_family
from .snap_ensemble import SNAPEnsemble
from .soap_ridge import SOAPBayesianRidge

__all__ = ["DeePMDEnsemble", "FAMILIES", "FitError", "FittedState", "Prediction", "Surrogate", "SNAPEnsemble",
           "SOAPBayesianRidge", "WorkloadSize", "default_surrogate", "surrogate_family"]
