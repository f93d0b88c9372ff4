"""ase-proxima: error-bounded on-the-fly surrogates for ASE calculators.

``atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.005)`` and every
energy/force request is answered by the target or by a surrogate trained on the
target's results while the simulation runs, with a feedback controller holding
the surrogate's error at the bound.  Importing the package registers the
calculator with ASE as ``'proxima'``.
"""

from ase.calculators.calculator import register_calculator_class

from .calculator import ProximaCalculator
from .calllog import CallLog
from .control import ThresholdController
from .locking import DirectoryInUse
from .parameters import SettingsError
from .store import RunStore, StoreMismatch
from .surrogates import FitError, Prediction, SOAPBayesianRidge, Surrogate
from .target_call import TargetError, TargetTimeout
from .uncertainty import DistanceUncertainty, EnsembleUncertainty, Uncertainty

__version__ = "0.1.0"

__all__ = [
    "ProximaCalculator",
    "ThresholdController",
    "CallLog",
    "RunStore",
    "StoreMismatch",
    "DirectoryInUse",
    "SettingsError",
    "FitError",
    "TargetError",
    "TargetTimeout",
    "Prediction",
    "Surrogate",
    "SOAPBayesianRidge",
    "Uncertainty",
    "DistanceUncertainty",
    "EnsembleUncertainty",
]

register_calculator_class("proxima", ProximaCalculator)
