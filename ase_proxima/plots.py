"""Pictures of a run: threshold and uncertainty, error against the bound, surrogate usage.

matplotlib is optional (extra ``plots``); everything here imports it lazily.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .calllog import CallLog

__all__ = ["plot_run"]

_COLOURS = {"target": "tab:red", "surrogate": "tab:green", "audit": "tab:blue", "cached": "tab:gray"}
_TIME_PARTS = ("target", "surrogate", "uncertainty", "training", "controller", "store")


def plot_run(log: CallLog, error_bound: float, path: str | os.PathLike, title: str = "",
             stats: Mapping[str, Any] | None = None) -> None:
    """Stacked panels over the call index, written as a PNG.

    1. uncertainty of every call (coloured by who answered), the threshold T and, on a second
       axis, the plant slope alpha;
    2. surrogate-vs-target error of every comparison, its running mean, and the bound;
    3. cumulative fraction of calls the surrogate answered;
    4. with ``stats`` (``calc.stats``): where the time went (target, surrogate, uncertainty,
       training, controller).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = log.column("step")
    kind = log.column("kind")
    u = log.column("uncertainty")
    thr = log.column("threshold")
    err = log.column("error")

    timing = stats is not None and any(stats.get(f"time_{k}", 0) for k in _TIME_PARTS)
    if timing:
        fig = plt.figure(figsize=(9, 10.5), constrained_layout=True)
        grid = fig.add_gridspec(4, 1, height_ratios=[1, 1, 0.7, 0.6])
        axes = [fig.add_subplot(grid[0])]
        axes += [fig.add_subplot(grid[k], sharex=axes[0]) for k in (1, 2)]
        axes.append(fig.add_subplot(grid[3]))
    else:
        fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True, constrained_layout=True)
    ax = axes[0]
    for k, c in _COLOURS.items():
        m = (kind == k) & np.isfinite(u)
        ax.scatter(step[m], u[m], s=6, color=c, label=f"u ({k})")
    ax.plot(step, thr, color="k", lw=1.2, label="threshold T")
    positive = u[np.isfinite(u) & (u > 0)]
    if positive.size and positive.max() / max(positive.min(), 1e-300) > 50:
        ax.set_yscale("log")
    ax.set_ylabel("uncertainty")
    ax.legend(loc="upper left", fontsize=8, ncol=2)
    alpha = log.column("alpha")
    if np.isfinite(alpha).any():
        ax2 = ax.twinx()
        ax2.plot(step, alpha, color="tab:orange", lw=1.0, ls="--", label="alpha (error per unit u)")
        ax2.set_ylabel("alpha", color="tab:orange")
        ax2.legend(loc="upper right", fontsize=8)

    ax = axes[1]
    m = np.isfinite(err)
    for k in ("target", "audit"):
        mk = m & (kind == k)
        ax.scatter(step[mk], err[mk], s=6, color=_COLOURS[k], label=f"error ({k} call)")
    if m.any():
        running = np.cumsum(err[m]) / np.arange(1, m.sum() + 1)
        ax.plot(step[m], running, color="tab:purple", lw=1.2, label="running mean of comparisons")
        audits = m & (kind == "audit")
        if audits.any():
            a_run = np.cumsum(err[audits]) / np.arange(1, audits.sum() + 1)
            ax.plot(step[audits], a_run, color="tab:blue", lw=1.5, ls="--", label="served error (audit mean)")
    ax.axhline(error_bound, color="k", ls=":", label="bound")
    ax.set_ylabel("error")
    ax.legend(loc="upper right", fontsize=8)

    ax = axes[2]
    served = np.cumsum(kind == "surrogate") / np.arange(1, len(kind) + 1)
    ax.plot(step, served, color="tab:green")
    ax.set_ylim(0, 1)
    ax.set_ylabel("surrogate fraction")
    ax.set_xlabel("call")
    if timing:
        ax = axes[3]
        values = [float(stats.get(f"time_{k}", 0.0)) for k in _TIME_PARTS]
        ax.barh(list(_TIME_PARTS), values, color=["tab:red", "tab:green", "tab:gray", "tab:purple", "tab:brown",
                                                  "tab:olive"])
        total = float(stats.get("time_total", 0.0)) or sum(values)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3g} s ({v / total:.0%})" if total else f" {v:.3g} s", va="center", fontsize=8)
        ax.set_xlabel(f"seconds (total in the calculator {total:.3g} s)")
        ax.set_xlim(0, max(values) * 1.35 if max(values) > 0 else 1)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
