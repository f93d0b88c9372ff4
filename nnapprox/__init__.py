"""nnapprox: replace a code region with a small neural network, and measure what it costs and loses.

The code-region study behind ``lj_nn`` (whose Lennard-Jones pair term is such a network) and
the Newton-Raphson benchmark, after Dong, Guo and Li.  It does not depend on ase-proxima:
``import lj_nn`` loads only this package, ASE and numpy.
"""
from .network import ACTIVATIONS, MLPWeights, TrainInfo, parse_topology, train_mlp
from .regions import newton_raphson_quadratic, root_scores, sample_quadratics
from .study import ApproxReport, approximate, time_per_call

__all__ = ["ACTIVATIONS", "MLPWeights", "TrainInfo", "parse_topology", "train_mlp", "ApproxReport", "approximate",
           "time_per_call", "newton_raphson_quadratic", "root_scores", "sample_quadratics"]
