"""Scientific workflows driven through ASE calculators: Monte Carlo (an ASE driver) and its
replay, exact Monte Carlo with a screen, SLUSCHI coexistence, jobs written to run directories,
sweeps."""

from .exact_mc import ExactMonteCarlo, effective_samples, tune
from .mc import MCResult, MonteCarlo, ReplayResult, radius_of_gyration, replay, walk_summary

__all__ = ["MonteCarlo", "MCResult", "replay", "ReplayResult", "radius_of_gyration", "walk_summary",
           "ExactMonteCarlo", "effective_samples", "tune"]
