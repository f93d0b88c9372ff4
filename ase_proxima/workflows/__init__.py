"""Scientific workflows driven through ASE calculators: Monte Carlo (an ASE driver) and its
replay, exact Monte Carlo with a screen, SLUSCHI coexistence and the melting-point scan, jobs
written to run directories, sweeps."""

from .exact_mc import ExactMonteCarlo, effective_samples, tune
from .melt import MeltingPoint, ScanConfig
from .mc import MCResult, MonteCarlo, ReplayResult, radius_of_gyration, replay, walk_summary

__all__ = ["MonteCarlo", "MCResult", "replay", "ReplayResult", "radius_of_gyration", "walk_summary",
           "ExactMonteCarlo", "effective_samples", "tune", "MeltingPoint", "ScanConfig"]
