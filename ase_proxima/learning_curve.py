"""Held-out error against training size: what a surrogate (and a baseline under it) needs.

Before a long run a user can see on a sample of structures how many target answers the
surrogate needs to reach an accuracy, and what a baseline buys: the same structures, the same
held-out set and the same nested training subsets, learned once as the target itself and once
as target minus baseline.  :func:`learning_curve` computes one curve; :func:`plot_learning_curves`
draws several; ``ase-proxima learn-curve`` runs both from a trajectory file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from sklearn.base import clone
from tqdm.auto import tqdm

from .baseline import Baseline, plain_value
from .surrogates import FitError, Surrogate, default_surrogate

__all__ = ["LearningCurve", "learning_curve", "label", "plot_learning_curves"]


@dataclass
class LearningCurve:
    """Held-out mean absolute errors (energy in eV per structure, forces in eV/A per component)
    against the number of training structures."""

    sizes: list[int]
    energy_mae: list[float]
    forces_mae: list[float] = field(default_factory=list)
    baseline: str | None = None
    held_out: int = 0
    fit_failures: int = 0

    def structures_needed(self, energy_mae: float) -> int | None:
        """The fewest training structures whose held-out energy error is at most ``energy_mae``
        (``None``: no size reached it)."""
        for n, e in zip(self.sizes, self.energy_mae):
            if e <= energy_mae:
                return n
        return None

    def todict(self) -> dict[str, Any]:
        return asdict(self)


def label(calc: Any, images: Sequence[Atoms], properties: Sequence[str] = ("energy",),
          progress: bool = False) -> list[dict[str, Any]]:
    """``calc``'s answers (``properties``) on every structure, each computed on a copy."""
    out = []
    for atoms in tqdm(images, desc=f"labelling with {getattr(calc, 'name', calc)}", disable=not progress):
        a = atoms.copy()
        a.calc = calc
        out.append({p: plain_value(p, a.calc.get_property(p, a)) for p in properties})
    return out


def learning_curve(images: Sequence[Atoms], target_results: Sequence[dict[str, Any]], sizes: Sequence[int],
                   held_out: int, surrogate: Surrogate | None = None, baseline: Any = None,
                   baseline_results: Sequence[dict[str, Any]] | None = None, seed: int = 0,
                   progress: bool = False) -> LearningCurve:
    """Fit ``surrogate`` (default: the family the calculator would pick) on nested random subsets
    of ``sizes`` structures and measure its mean absolute error on ``held_out`` others.

    ``target_results`` are the target's answers on ``images`` (:func:`label`; with forces, forces
    are learned and scored too).  With ``baseline`` (an ASE calculator) the surrogate learns target
    minus baseline and is scored as baseline plus its correction; ``baseline_results`` (the
    baseline's answers on ``images``) are computed when not given."""
    n = len(images)
    if len(target_results) != n:
        raise ValueError(f"{n} structures but {len(target_results)} target answers")
    sizes = sorted(int(s) for s in sizes)
    if not sizes or sizes[0] < 1:
        raise ValueError("sizes must be positive training-set sizes")
    if held_out < 1 or sizes[-1] + held_out > n:
        raise ValueError(f"{n} structures cannot hold {sizes[-1]} training and {held_out} held-out ones")
    order = np.random.default_rng(seed).permutation(n)
    test, pool = order[:held_out], order[held_out:]
    learned, base = list(target_results), None
    if baseline is not None:
        room = Baseline(baseline)
        base = (list(baseline_results) if baseline_results is not None else  # what the target gave, each
                [room.results(a, r) for a, r in tqdm(zip(images, target_results), total=n, desc="baseline",
                                                      disable=not progress)])
        learned = [room.correction(t, b) for t, b in zip(target_results, base)]
    model = surrogate if surrogate is not None else default_surrogate(images[0])
    with_forces = all("forces" in learned[i] for i in range(n))
    curve = LearningCurve(sizes=[], energy_mae=[], baseline=None if baseline is None else
                          str(getattr(baseline, "name", type(baseline).__name__)), held_out=held_out)
    for size in tqdm(sizes, desc="fits", disable=not progress):
        train = pool[:size]
        fitted = clone(model)
        try:
            fitted.fit([images[i] for i in train], [learned[i] for i in train],
                       baselines=None if base is None else [base[i] for i in train])
        except FitError:  # too few structures for this family: no point on the curve
            curve.fit_failures += 1
            continue
        e_err, f_err = [], []
        for i in test:
            wanted = ["energy", "forces"] if with_forces else ["energy"]
            pred = fitted.predict_on(images[i], wanted, None if base is None else base[i]).results
            e_err.append(abs(pred["energy"] - learned[i]["energy"]))
            if with_forces and "forces" in pred:
                f_err.append(float(np.mean(np.abs(np.asarray(pred["forces"]) - learned[i]["forces"]))))
        curve.sizes.append(size)
        curve.energy_mae.append(float(np.mean(e_err)))
        if f_err:
            curve.forces_mae.append(float(np.mean(f_err)))
    return curve


def plot_learning_curves(curves: dict[str, LearningCurve], path: str | Path, title: str = "",
                         target_mae: float | None = None) -> None:
    """Held-out energy (and force) error against training size, one line per curve, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forces = any(c.forces_mae for c in curves.values())
    fig, axes = plt.subplots(1, 2 if forces else 1, figsize=(11 if forces else 6, 4.2), squeeze=False)
    for name, c in curves.items():
        axes[0, 0].loglog(c.sizes, np.array(c.energy_mae) * 1000, "o-", label=name)
        if forces and c.forces_mae:
            axes[0, 1].loglog(c.sizes[:len(c.forces_mae)], c.forces_mae, "o-", label=name)
    if target_mae is not None:
        axes[0, 0].axhline(target_mae * 1000, color="k", lw=0.8, ls="--", label=f"{target_mae * 1000:g} meV")
    axes[0, 0].set_ylabel("held-out energy MAE (meV)")
    if forces:
        axes[0, 1].set_ylabel("held-out force MAE (eV/A)")
    for ax in axes[0]:
        ax.set_xlabel("training structures")
        ax.legend(fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

