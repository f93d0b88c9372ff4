"""Surrogate model families behind one protocol (see :mod:`.base`)."""

from .base import Prediction, Surrogate
from .deepmd import DeePMDEnsemble
from .defaults import default_surrogate
from .snap_ensemble import SNAPEnsemble
from .soap_ridge import SOAPBayesianRidge

__all__ = ["DeePMDEnsemble", "Prediction", "Surrogate", "SNAPEnsemble", "SOAPBayesianRidge", "default_surrogate"]
