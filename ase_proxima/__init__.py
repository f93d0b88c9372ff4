"""ase-proxima: error-bounded on-the-fly surrogates for ASE calculators.

``atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.005)`` and every
energy/force request is answered by the target or by a surrogate trained on the
target's results while the simulation runs, with a feedback controller holding
the surrogate's error at the bound.  Importing the package registers the
calculator with ASE as ``'proxima'``.
"""

from ase.calculators.calculator import register_calculator_class

from .calculator import ProximaCalculator
from .control import ThresholdController
from .store import CallLog, RunStore
from .surrogates import Prediction, SOAPBayesianRidge, Surrogate
from .uncertainty import DistanceUncertainty, EnsembleUncertainty, Uncertainty

__version__ = "0.1.0"

__all__ = [
    "ProximaCalculator",
    "ThresholdController",
    "CallLog",
    "RunStore",
    "Prediction",
    "Surrogate",
    "SOAPBayesianRidge",
    "Uncertainty",
    "DistanceUncertainty",
    "EnsembleUncertainty",
]

register_calculator_class("proxima", ProximaCalculator)
