"""Scientific workflows driven through ASE calculators (Monte Carlo; more to come)."""

from .mc import MCResult, MonteCarlo, ReplayResult, radius_of_gyration, replay

__all__ = ["MonteCarlo", "MCResult", "replay", "ReplayResult", "radius_of_gyration"]
