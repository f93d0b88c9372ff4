"""Replace a code region with a small neural network (Dong, Guo & Li's approach, measured honestly).

A *code region* is any function from a fixed number of inputs to one output
(the Lennard-Jones pair term, a Newton-Raphson root solve).  :func:`approximate`
samples its inputs from a stated distribution, evaluates the original, trains
a list of fully connected topologies (:mod:`.network`), and reports for each
the paper's columns: training time, steps, final L2 loss, learning rate,
inference cost per evaluation, and the average absolute and relative error on
held-out samples.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .network import MLPWeights, train_mlp

__all__ = ["ApproxReport", "approximate", "time_per_call"]


def time_per_call(fn: Callable[[], Any], n_items: int, min_time: float = 0.2) -> float:
    """Seconds per item of ``fn()`` (which processes ``n_items``), best of repeated timed loops."""
    fn()
    best = math.inf
    for _ in range(3):
        reps, t0 = 0, time.perf_counter()
        while True:
            fn()
            reps += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = min(best, dt / reps)
    return best / n_items


@dataclass
class ApproxReport:
    """One topology's row: training columns, inference cost and held-out error."""

    topology: str
    activation: str
    train_time_s: float
    steps: int
    l2_loss: float
    learning_rate: float
    network_s_per_eval: float
    original_s_per_eval: float
    mean_abs_error: float
    mean_rel_error: float | None  # None where a true output is zero (the paper's reason for abs error)
    extra: dict[str, float]
    weights: MLPWeights


def approximate(region: Callable[[np.ndarray], np.ndarray], sampler: Callable[[np.random.Generator, int], np.ndarray],
                topologies: Sequence[str | Sequence[int]], n_train: int = 100_000, n_test: int = 10_000,
                activation: str = "tanh", steps: int = 10_000, learning_rate: float = 0.005,
                refine_steps: int = 2_000, restarts: int = 3, seed: int = 0,
                score: Callable[[np.ndarray, np.ndarray, np.ndarray], dict[str, float]] | None = None,
                progress: bool = False) -> list[ApproxReport]:
    """Sample the region's inputs, train each topology, and measure it on held-out samples.

    ``region(x)`` maps inputs ``(n, n_in)`` to outputs ``(n,)`` (vectorised original code);
    ``sampler(rng, n)`` draws inputs from the stated distribution; ``score(x, y_true, y_pred)``
    adds region-specific columns (e.g. the fraction of roots within tolerance).
    """
    rng = np.random.default_rng(seed)
    x_train, x_test = sampler(rng, n_train), sampler(rng, n_test)
    y_train, y_test = region(x_train), region(x_test)
    original = time_per_call(lambda: region(x_test), len(x_test))
    rows = []
    iterator = topologies
    if progress:
        from tqdm import tqdm

        iterator = tqdm(topologies, desc="topologies")
    for spec in iterator:
        weights, info = train_mlp(x_train, y_train, spec, activation=activation, steps=steps,
                                  learning_rate=learning_rate, refine_steps=refine_steps, restarts=restarts,
                                  seed=seed)
        pred = weights(x_test)
        err = np.abs(pred - y_test)
        nonzero = np.abs(y_test) > 0
        rel = float(np.mean(err[nonzero] / np.abs(y_test[nonzero]))) if nonzero.all() else None
        rows.append(ApproxReport(
            topology="x".join(map(str, info.topology)), activation=activation, train_time_s=info.train_time_s,
            steps=info.steps, l2_loss=info.l2_loss, learning_rate=info.learning_rate,
            network_s_per_eval=time_per_call(lambda: weights(x_test), len(x_test)),
            original_s_per_eval=original, mean_abs_error=float(err.mean()), mean_rel_error=rel,
            extra=score(x_test, y_test, pred) if score else {}, weights=weights))
    return rows
