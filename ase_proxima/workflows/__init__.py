"""Scientific workflows driven through ASE calculators: Monte Carlo (an ASE driver) and its
replay, SLUSCHI coexistence, jobs written to run directories, sweeps."""

from .mc import MCResult, MonteCarlo, ReplayResult, radius_of_gyration, replay, walk_summary

__all__ = ["MonteCarlo", "MCResult", "replay", "ReplayResult", "radius_of_gyration", "walk_summary"]
