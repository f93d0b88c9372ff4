"""lj_nn: a Lennard-Jones ASE calculator whose pair term is a tiny neural network.

Registered with ASE under the name ``lj_nn``.
"""
from ase.calculators.calculator import register_calculator_class

from .calculator import LennardJonesNN, available_topologies, pretrained_path

register_calculator_class("lj_nn", LennardJonesNN)

__all__ = ["LennardJonesNN", "available_topologies", "pretrained_path"]
