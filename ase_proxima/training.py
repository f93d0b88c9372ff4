"""The training set of a run: the target results the surrogate learns from, and its refits.

It owns

* the data: every target result in arrival order, the newest ``max_training`` of them
  kept in memory (all of them are in the store);
* the plausible range of answers, from robust statistics of those data (median and
  median absolute deviation), so one absurd value cannot widen it;
* absurd target answers: one far outside that range (a finite 1e30 eV from a broken
  SCF) is stored with the run, flagged, and kept out of fits and of the range, so a
  single bad answer cannot switch the surrogate off for the rest of the run;
* the refit schedule (``retrain``) and the fit itself: a failed fit, whatever raised
  inside, is a :class:`~ase_proxima.surrogates.FitError`, counted, and leaves the
  surrogate unusable (every call goes to the target) until a later refit succeeds.
* with a baseline (:mod:`.baseline`), what the surrogate learns is the target's answer minus
  the baseline's: the data, their range and the fits are of that correction, while the
  store keeps both answers as they were given.

Points are numbered globally (``total``): ``n_fitted`` is the number of points the
surrogate was last fitted on, whatever has left memory since.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from .surrogates.base import FitError
from .surrogates.defaults import surrogate_family

log = logging.getLogger("ase_proxima")

__all__ = ["TrainingSet", "PlausibleRange"]

#: MADs of a normal distribution per standard deviation
_MAD_SIGMA = 1.4826


def _median(values: np.ndarray) -> float:
    """``np.median`` of a non-empty array of finite numbers, exactly, at a tenth of its cost on
    the small arrays a run's plausible range is recomputed from after every target answer (the
    standard library's, on plain floats, as the cost meter's)."""
    return float(statistics.median(values.tolist()))


def _robust_window(values: np.ndarray, spread: float, floor: float) -> np.ndarray:
    """The values within ``spread`` robust standard deviations (at least ``floor``) of the median."""
    med = _median(values)
    sigma = _MAD_SIGMA * _median(np.abs(values - med))
    return values[np.abs(values - med) <= max(spread * sigma, floor)]


@dataclass(frozen=True)
class PlausibleRange:
    """Per-atom energies and largest per-atom forces the training data span, robustly.

    A prediction is *implausible* beyond the energy range by more than one range width
    (at least 0.1 eV per atom), or with a force over three times the largest trained force
    plus 1 eV/A.  A target answer is *absurd* ten times further out, with floors of
    10 eV per atom and ten times the force limit.
    """

    e_lo: float = math.inf
    e_hi: float = -math.inf
    f_hi: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, energies_per_atom: Sequence[float], largest_forces: Sequence[float]) -> PlausibleRange:
        e = np.fromiter(energies_per_atom, float)
        f = np.fromiter(largest_forces, float)
        e, f = e[np.isfinite(e)], f[np.isfinite(f)]
        e_lo = e_hi = math.nan
        if e.size:
            kept = _robust_window(e, 10.0, 0.05)
            e_lo, e_hi = float(kept.min()), float(kept.max())
        f_hi = float(_robust_window(f, 10.0, 0.5).max()) if f.size else 0.0
        return cls(e_lo if e.size else math.inf, e_hi if e.size else -math.inf, f_hi, int(max(e.size, f.size)))

    def _margin(self) -> float:
        return max(self.e_hi - self.e_lo, 0.1)

    def implausible(self, results: Mapping[str, Any], natoms: int) -> str | None:
        """Why a surrogate answer lies too far outside the trained range, or ``None``."""
        if not natoms:
            return None
        e, fmax = _summary(results, natoms)
        return self._check(e, fmax, self._margin(), 3.0 * self.f_hi + 1.0, "trained")

    def absurd(self, results: Mapping[str, Any], natoms: int,
               summary: tuple[float, float] | None = None) -> str | None:
        """Why a target answer lies so far outside every earlier one that it cannot be physics
        (``summary``: its per-atom energy and largest force, when the caller has them)."""
        if self.count < 5 or not natoms:
            return None
        e, fmax = summary if summary is not None else _summary(results, natoms)
        return self._check(e, fmax, max(10.0 * self._margin(), 10.0), 10.0 * (3.0 * self.f_hi + 1.0),
                           "earlier target")

    def _check(self, e: float, fmax: float, margin: float, force_limit: float, what: str) -> str | None:
        """``e`` per-atom energy and ``fmax`` largest force (nan: not in the answer)."""
        if self.count == 0:
            return None
        if math.isfinite(e) and math.isfinite(self.e_lo) and not self.e_lo - margin <= e <= self.e_hi + margin:
            return f"energy {e:.4g} eV/atom outside the {what} {self.e_lo:.4g} .. {self.e_hi:.4g} (+- {margin:.3g})"
        if math.isfinite(fmax) and self.f_hi > 0 and fmax > force_limit:
            return f"force {fmax:.3g} eV/A above {force_limit:.3g} (from the {what} forces)"
        return None


def largest_force(forces: Any) -> float:
    f = np.asarray(forces, float)
    return math.sqrt(float(np.einsum("ij,ij->i", f, f).max())) if f.size else 0.0


def _summary(results: Mapping[str, Any], natoms: int) -> tuple[float, float]:
    e = float(results["energy"]) / natoms if "energy" in results and natoms else math.nan
    f = largest_force(results["forces"]) if "forces" in results else math.nan
    return e, f


class TrainingSet:
    """The target results a surrogate learns from, their plausible range and the refit schedule.

    Parameters
    ----------
    min_training:
        Points needed before the first fit.
    max_training:
        Fit on (and keep in memory) at most this many newest points; ``None``: all.
    retrain:
        ``'lazy'``: refit just before the surrogate is next used after new data, and
        whenever ``lazy_batch`` new points arrived; an int k: every k new points;
        ``'never'``: fit once.
    lazy_batch:
        See ``retrain='lazy'`` (the calculator passes the controller's window).
    store:
        A :class:`~ase_proxima.store.RunStore` every new point is written to, or ``None``.
    baseline:
        A :class:`~ase_proxima.baseline.Baseline`: the data are target minus baseline; ``None``:
        the target's answers themselves.
    """

    def __init__(self, min_training: int = 10, max_training: int | None = None, retrain: str | int = "lazy",
                 lazy_batch: int = 10, store: Any = None, baseline: Any = None) -> None:
        self.min_training = min_training
        self.max_training = max_training
        self.retrain = retrain
        self.lazy_batch = lazy_batch
        self.store = store
        self.baseline = baseline
        self._atoms: deque[Atoms] = deque()
        self._results: deque[dict[str, Any]] = deque()  # what the surrogate learns
        self._given: deque[tuple[dict[str, Any], dict[str, Any]] | None] = deque()  # (target, baseline)
        self._energies: deque[float] = deque()  # per atom, of each point
        self._forces: deque[float] = deque()  # largest per-atom force of each point
        self.total = 0  # points ever added (the newest ``len(self)`` are in memory)
        self.absurd = 0  # target answers kept out of the data
        self.n_fitted = 0
        self.fits = 0
        self.fit_failures = 0
        self.fit_error: str | None = None
        self.trial_error: str | None = None  # why the last trial fit (a candidate model) failed
        self._range: PlausibleRange | None = None
        self._changes = 0  # points added or forgotten since the range was computed
        self._equations_saved: set[bytes] = set()  # keys whose fit equations the store keeps

    def __len__(self) -> int:
        return len(self._atoms)

    @property
    def range(self) -> PlausibleRange:
        """The plausible range of the data in memory: recomputed when they changed, and once the
        set is large, when an eighth of it is new (robust statistics of thousands of points barely
        move with one more, and recomputing on every call would cost in proportion to the set)."""
        stale = self._changes and (len(self) < 64 or 8 * self._changes >= len(self))
        if self._range is None or stale:
            self._range = PlausibleRange.of(self._energies, self._forces)
            self._changes = 0
        return self._range

    # ------------------------------------------------------------------- data
    def add(self, atoms: Atoms, results: Mapping[str, Any], owned: bool = False,
            base: Mapping[str, Any] | None = None, **keys: Any) -> str | None:
        """Add one target result (and write it to the store, with ``base``, the baseline's answer
        on the same structure when the run has a baseline); returns why it was kept out of the
        data as absurd, or ``None``.  ``owned``: ``atoms`` is a private copy no one changes later
        (the calculator's own, which ASE replaces on the next call), kept without copying again."""
        if (self.baseline is None) != (base is None):
            raise ValueError("a baseline's answer goes with every point of a run with a baseline, and only then")
        learned = dict(results) if base is None else self.baseline.correction(results, base)
        summary = _summary(learned, len(atoms))
        why = self.range.absurd(learned, len(atoms), summary)
        if self.store is not None:
            self.store.add_training(atoms, results, absurd=why is not None, baseline=base, **keys)
        if why is not None:
            self.absurd += 1
            return why
        given = None if base is None else (dict(results), dict(base))
        self._append(atoms if owned else atoms.copy(), learned, given, summary)
        self.total += 1
        self.trim()
        return None

    def _append(self, atoms: Atoms, learned: dict[str, Any], given: tuple[dict, dict] | None = None,
                summary: tuple[float, float] | None = None) -> None:
        self._atoms.append(atoms)
        self._results.append(learned)
        self._given.append(given)
        e, f = summary if summary is not None else _summary(learned, len(atoms))
        self._energies.append(e)
        self._forces.append(f)
        self._changes += 1

    def trim(self) -> None:
        """Forget all but the newest ``max_training`` points (every later fit uses those only)."""
        while self.max_training is not None and len(self._atoms) > self.max_training:
            for d in (self._atoms, self._results, self._given, self._energies, self._forces):
                d.popleft()
            self._changes += 1

    def load(self, rows: Sequence[tuple[Atoms, Mapping[str, Any]]], total: int | None = None) -> None:
        """Replace the data by stored ``rows`` (oldest first; a row's results may carry the
        baseline's answer under ``'baseline'``), the newest ``len(rows)`` of ``total`` points
        (default: ``rows`` are all there ever were).  With a baseline, a row stored without its
        answer (a run without the baseline made it) gets it computed now."""
        for d in (self._atoms, self._results, self._given, self._energies, self._forces):
            d.clear()
        self._range = None
        for atoms, res in rows:
            res = dict(res)
            base = res.pop("baseline", None)
            if self.baseline is None:
                self._append(atoms, res)
                continue
            if base is None:
                base = self.baseline.results(atoms, res)
            self._append(atoms, self.baseline.correction(res, base), (res, dict(base)))
        self.total = max(len(rows), total or 0)

    def _kept(self, n: int | None) -> slice:
        """Where, in memory, the points a fit on the first ``n`` (default all) would use are."""
        n = self.total if n is None else n
        first = self.total - len(self._atoms)
        start = max(n - self.max_training, 0) if self.max_training is not None else 0
        if start < first:
            raise ValueError(f"points {start}..{first} are no longer in memory")
        return slice(start - first, n - first)

    def data(self, n: int | None = None) -> tuple[list[Atoms], list[dict[str, Any]]]:
        """The points a fit on the first ``n`` (default all) would use: the newest ``max_training``."""
        kept = self._kept(n)
        return list(self._atoms)[kept], list(self._results)[kept]

    def baselines(self, n: int | None = None) -> list[dict[str, Any]] | None:
        """The baseline's answers on the points of ``data(n)``, in order (``None`` without a baseline)."""
        if self.baseline is None:
            return None
        return [g[1] for g in list(self._given)[self._kept(n)]]

    def given(self) -> list[tuple[Atoms, dict[str, Any]]]:
        """The points in memory as the store keeps them: each target answer, with the baseline's
        under ``'baseline'`` in a run with a baseline (what a snapshot writes)."""
        return [(a, r if g is None else {**g[0], "baseline": g[1]})
                for a, r, g in zip(self._atoms, self._results, self._given)]

    # ------------------------------------------------------------------ fits
    def needs_refit(self, before_use: bool, surrogate_fitted: bool) -> bool:
        """Is a refit due now (``before_use``: the surrogate is about to answer)?"""
        new = self.total - self.n_fitted
        if self.total < self.min_training or new <= 0:
            return False
        if not surrogate_fitted:
            return self.n_fitted == 0 or self.retrain != "never"
        if self.retrain == "never":
            return False
        if self.retrain == "lazy":
            return before_use or new >= self.lazy_batch
        return (not before_use) and new >= int(self.retrain)

    def fit(self, surrogate: Any, uncertainty: Any, n: int | None = None, trial: bool = False) -> bool:
        """Fit surrogate and uncertainty on the first ``n`` points (default all); ``False`` (and the
        failure counted and kept in ``fit_error``) when the fit failed.  A ``trial`` fit is of a
        candidate model beside the one serving: its failure is counted and returned, but leaves
        ``fit_error`` as it was, since the model before it still stands."""
        n = self.total if n is None else n
        images, results = self.data(n)
        try:
            surrogate.fit(images, results, baselines=self.baselines(n))
            uncertainty.fit(images)
        except FitError as err:
            self.fit_failures += 1
            if trial:
                self.trial_error = str(err)
            else:
                self.fit_error = str(err)
            return False
        self.fit_error = None
        self.n_fitted = n
        self.fits += 1
        return True

    # ------------------------------------------------------------- reporting and persistence
    def configure(self, min_training: int, max_training: int | None, retrain: str | int, lazy_batch: int) -> None:
        """New settings, in effect now (data beyond a smaller ``max_training`` are forgotten)."""
        self.min_training, self.max_training, self.retrain, self.lazy_batch = (min_training, max_training, retrain,
                                                                               lazy_batch)
        self.trim()

    def summary(self) -> dict[str, Any]:
        return {"training_size": len(self), "training_total": self.total, "absurd_target_answers": self.absurd,
                "fits": self.fits, "fit_failures": self.fit_failures, "fit_error": self.fit_error}

    def state(self) -> dict[str, Any]:
        return {"total": self.total, "n_fitted": self.n_fitted, "fits": self.fits, "fit_failures": self.fit_failures,
                "absurd": self.absurd, "fit_error": self.fit_error}

    def restore(self, state: dict[str, Any], rows: Sequence[tuple[Atoms, Mapping[str, Any]]], total: int,
                surrogate: Any, uncertainty: Any, model: tuple[dict[str, Any], Any] | None) -> None:
        """Continue from ``state`` with ``rows`` (the newest of ``total`` points): the surrogate from
        ``model`` (a store's ``read_models``) when it is the one fitted on the state's points, else
        refitted on them."""
        self.load(rows, total=total)
        n_fitted = min(state["n_fitted"], self.total)
        if n_fitted:
            description, fitted = model if model is not None else ({}, None)
            usable = (fitted is not None and description.get("n_fitted") == n_fitted
                      and description.get("family") == surrogate_family(surrogate)
                      and description.get("params") == plain(surrogate.get_params())
                      and description.get("baseline", "none") == self._baseline_description())
            try:
                if usable:
                    surrogate.restore_fitted_state(fitted)
                    uncertainty.fit(self.data(n_fitted)[0])
                    self.n_fitted = n_fitted
            except Exception as err:  # arrays of the wrong shape or kind: refit from the data instead
                log.warning("the stored model does not fit this surrogate (%s): refitting", err)
                usable = False
            if not usable:
                self.fit(surrogate, uncertainty, n=n_fitted)
        self.fits, self.fit_failures, self.absurd = state["fits"], state["fit_failures"], state["absurd"]
        if n_fitted == self.n_fitted:
            self.fit_error = state.get("fit_error")
        self.trim()

    def save_model(self, store: Any, surrogate: Any) -> None:
        """Write the surrogate's fitted state to ``store`` (nothing for a family that refits)."""
        fitted = surrogate.fitted_state() if surrogate is not None and self.n_fitted else None
        if fitted is not None and self.fit_error is None:
            store.write_models(surrogate_family(surrogate), plain(surrogate.get_params()), self.n_fitted, fitted,
                               baseline=self._baseline_description())

    def _equations_tag(self, surrogate: Any) -> str | None:
        """The store's tag for the surrogate's kept equations: its settings and descriptor, and
        what it learns (the target itself, or the target less a baseline)."""
        own = getattr(surrogate, "equations_tag", None)
        tag = own() if own is not None else None
        if tag is None:
            return None
        learns = json.dumps(self._baseline_description(), sort_keys=True, default=str)
        return f"{tag}-{hashlib.sha1(learns.encode()).hexdigest()[:8]}"

    def save_equations(self, store: Any, surrogate: Any) -> None:
        """Append to ``store`` the per-structure equations the surrogate's fits computed since
        the last call (a family that keeps none: nothing)."""
        tag = self._equations_tag(surrogate)
        if tag is None:
            return
        new = surrogate.equations(exclude=self._equations_saved)
        if new:
            store.append_equations(tag, new)
            self._equations_saved.update(new)

    def adopt_equations(self, store: Any, surrogate: Any, own: bool) -> int:
        """Hand the surrogate the equations ``store`` keeps for the points in memory, so its next
        fit describes only new structures; ``own``: the run's own store (they count as saved)."""
        tag = self._equations_tag(surrogate)
        if tag is None or not len(self):
            return 0
        packed = store.read_equations(tag)
        taken = surrogate.adopt_equations(packed, list(zip(reversed(self._atoms), reversed(self._results))))
        if taken and own:
            self._equations_saved.update(packed)
        elif packed and not taken:
            log.warning("%s: the kept fit equations are not used (none is of a point in memory, or they are "
                        "not this model's): the next fit describes every structure again", store.path)
        return taken

    def _baseline_description(self) -> Any:
        """What the fitted model corrects, as a stored model records it."""
        return "none" if self.baseline is None else plain(self.baseline.describe())


def plain(d: Mapping[str, Any]) -> dict[str, Any]:
    """``d`` as JSON would give it back (numpy scalars and tuples become numbers and lists)."""
    return json.loads(json.dumps(dict(d), default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
