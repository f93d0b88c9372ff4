"""``ProximaCalculator``: an ASE calculator that answers from a learned surrogate when it may.

Glue over rooms that own their state.  On every call the gate (:mod:`.gate`) says whether
the surrogate may answer: a usable model, a structure in its domain, a believable
prediction, an uncertainty below the controller's threshold.  If so the surrogate answers,
or, with a probability of at most ``audit_fraction`` that falls while the served error is
far below the bound (:mod:`.audits`), the target answers as a random check (an
*audit*).  Otherwise the target answers (:mod:`.target_call`: retries, timeout, no
non-finite number).  Target answers join the training set (:mod:`.training`: the data,
their plausible range, refits, store writes); the surrogate's error on them and on audits
feeds the controller (:mod:`.control`: the whole law), which moves the threshold so that
the mean error of served answers stays at ``error_bound``.  Counters and timers live in
:mod:`.runstate`, the call log in :mod:`.calllog`, the settings and their checks in
:mod:`.parameters`; saving and resuming is :mod:`.resume` over a :mod:`.store`.  Every part's
cost is measured (:mod:`.costs`), the surrogate is consulted only while serving can pay
(:mod:`.economy`: otherwise calls go straight to the target, with probes), refits stay within
a share of the target's time, and thread pools are set per part (:mod:`.threads`).
"""

from __future__ import annotations

import atexit
import copy
import math
import os
import statistics
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes

from . import gate, optimizers, resume
from .audits import AuditPolicy
from .baseline import Baseline, BaselineError
from .calllog import CallLog
from .capacity import CapacityWatch
from .growth import CapacityGrowth
from .certificate import ServedErrorBound
from .control import ThresholdController, clearly_below
from .costs import CostMeter, property_key
from .economy import Economy
from .identity import IdentityCache, identity, refresh_copy, system_changes
from .metrics import UNITS, compute_error, free_atoms, metric_properties
from .notices import Notices
from .parameters import DEFAULT_PARAMETERS, FIXED_ONCE_STARTED, SettingsError, check_parameters, setting_property
from .runstate import RunState, RunTally, Stopwatch
from .staleness import UncertaintyRise
from .store import RunStore, run_fingerprint
from .surrogates import Prediction, Surrogate, default_surrogate, surrogate_family
from .target_call import TargetCall
from .threads import ThreadPlan
from .training import TrainingSet, plain
from .uncertainty import EnsembleUncertainty, Uncertainty

__all__ = ["ProximaCalculator"]


_POOLS_AS_THEY_ARE = nullcontext()


def _also(reason: str | None, more: str) -> str:
    """A log reason with one more clause."""
    return f"{reason}; {more}" if reason else more


@lru_cache(maxsize=8)
def _one_sided_z(level: float) -> float:
    """Standard normal quantile at ``level`` (asked on every call: kept)."""
    return statistics.NormalDist().inv_cdf(level)


class ProximaCalculator(Calculator):
    """Wrap an ASE calculator (the *target*) with an error-bounded on-the-fly surrogate.

    Parameters
    ----------
    target:
        Any ASE calculator (an instance); it answers whenever the surrogate may not.
    error_bound:
        The mean error of served results to hold, in the units of ``error_metric``.
    surrogate:
        A :class:`~ase_proxima.surrogates.Surrogate`; default chosen on the first structure:
        the SNAP force ensemble for cells periodic in all directions, SOAP + Bayesian ridge
        for molecules and clusters.
    uncertainty:
        An :class:`~ase_proxima.uncertainty.Uncertainty`; default the surrogate's own spread.
    baseline:
        A cheap ASE calculator under the surrogate (a tight-binding method under a quantum-chemistry
        target, :func:`~ase_proxima.baseline.make_baseline`): the surrogate learns the target minus
        the baseline and a served answer is the baseline plus the learned correction; the baseline
        runs on every structure the surrogate answers or learns from, and its cost counts as the
        surrogate's.  ``None``: the surrogate learns the target itself.
    store:
        A run directory or :class:`~ase_proxima.store.RunStore` (every target result, the log,
        the state, the fitted model).  One with a state resumes that run; one with training data
        only warm-starts from them.  It must hold data of the same target, metric, surrogate
        family and species; control settings may differ (the change is logged).
    **settings:
        See ``ProximaCalculator.default_parameters`` and the README's table: ``error_metric``,
        ``window``, ``threshold``, ``threshold_bounds``, ``max_threshold_step``, ``confidence``,
        ``min_training``, ``max_training``, ``retrain``, ``audit_fraction``, ``bound_on``,
        ``seed``, ``train_properties``, ``adaptive``, ``target_retries``, ``target_timeout``,
        ``log_size``, ``checkpoint_every``, ``cache_size``, ``verify_fmax`` ('auto': the fmax of an
        ASE optimiser asking; a number; None), ``blend``, ``stop_on_capacity_loss`` (stop serving,
        not only warn, where the surrogate's uncertainty no longer picks answers under the bound,
        see :mod:`.capacity`), ``raise_capacity`` (fit a larger model of the surrogate's family
        there instead, see :mod:`.growth`), ``cost_aware`` (consult the surrogate only
        while serving can pay, see :mod:`.economy`), ``refit_share`` (refits within this share of
        the target's time; None: every scheduled refit), ``target_threads`` ('auto', a number, None;
        see :mod:`.threads`).  ``calc.set(...)`` or ``calc.error_bound = ...``
        changes a setting everywhere at once.
    """

    name = "proxima"
    implemented_properties = ["energy", "forces"]
    default_parameters = DEFAULT_PARAMETERS

    def __init__(self, target: Calculator, error_bound: float | None = None, surrogate: Surrogate | None = None,
                 uncertainty: Uncertainty | None = None, store: str | os.PathLike | RunStore | None = None,
                 baseline: Calculator | None = None, **settings: Any) -> None:
        if isinstance(target, type):
            raise TypeError(f"target must be a calculator instance, not the class {target.__name__}: "
                            f"pass {target.__name__}()")
        if target is None or not hasattr(target, "get_property"):
            raise TypeError(f"target must be an ASE calculator, got {target!r}")
        if surrogate is not None and not isinstance(surrogate, Surrogate):
            raise TypeError("surrogate must be an ase_proxima.surrogates.Surrogate")
        if uncertainty is not None and not isinstance(uncertainty, Uncertainty):
            raise TypeError("uncertainty must be an ase_proxima.uncertainty.Uncertainty")
        self.target, self.surrogate, self.uncertainty = target, surrogate, uncertainty
        self.baseline = None if baseline is None else Baseline(baseline)
        super().__init__()
        p = check_parameters({"error_bound": error_bound, **settings})
        Calculator.set(self, **p)
        self.implemented_properties = list(getattr(target, "implemented_properties", []))
        self._check_metric()
        self.controller = ThresholdController(p["error_bound"], window=p["window"], threshold=p["threshold"],
                                              threshold_bounds=p["threshold_bounds"],
                                              max_step=p["max_threshold_step"], confidence=p["confidence"],
                                              bound_on=p["bound_on"])
        self.training = TrainingSet(p["min_training"], p["max_training"], p["retrain"], lazy_batch=p["window"],
                                    baseline=self.baseline)
        self.costs = CostMeter()
        self.economy = Economy(patience=max(50, 5 * p["window"]))
        self.capacity = CapacityWatch()
        self.staleness = UncertaintyRise()
        self.growth = CapacityGrowth()
        self.threads = ThreadPlan(p["target_threads"])
        self.audits = AuditPolicy(p["audit_fraction"])
        self._target = TargetCall(target, p["target_retries"], p["target_timeout"])
        self.cache = IdentityCache(p["cache_size"])
        self.notices = Notices()
        self.tally = RunTally()
        self._segments: list[ServedErrorBound] = []  # certificates of parts of the run: see certified()
        self.log = CallLog(maxlen=p["log_size"])
        self.rng = np.random.default_rng(p["seed"])
        self.store: RunStore | None = None
        self._resuming = False  # continuing a saved run: the settings that define its data are fixed
        self._new_to_store = False  # a store with data: the first structure must be of its species
        self._models_saved = -1  # points of the model last written to the store
        self._previous: bytes | None = None  # identity of the structure of the previous call
        self._target_last: bytes | None = None  # identity of the structure the target last computed
        self._copied_by_ase = False  # inside ASE's get_property, which has just copied the structure
        # the copy of the last structure that nothing but this calculator holds (the target and the
        # training set keep theirs): the next call refreshes it in place instead of copying anew
        self._private_copy: Atoms | None = None
        self.answer: str | None = None  # who answered the last call: target, surrogate, audit, cached
        self._training_extras: tuple[str, ...] | None = None
        self._cost_bounds: dict[str, tuple[float, float] | None] = {}  # per property set: see _time_descriptors
        self._cost_pending = False  # this call left open whether the surrogate can pay: no fit
        self._formulas: dict[bytes, str] = {}
        if store is not None:
            self.store = store if isinstance(store, RunStore) else RunStore(store)
            self.training.store = self.store
            try:
                resume.open_store(self, self.store)
            except BaseException:  # a store refused (another run's data): released at once, not at collection
                if not isinstance(store, RunStore):
                    self.store.close()
                self.store = None
                raise
            self._at_exit = atexit.register(resume.flush_at_exit, weakref.ref(self))

    # -------------------------------------------------------------- settings
    def set(self, **kwargs: Any) -> dict[str, Any]:
        """Change settings; every room follows at once.  Returns what changed (ASE's convention);
        raises :class:`~ase_proxima.parameters.SettingsError`, changing nothing, if refused."""
        if not kwargs or not hasattr(self, "controller"):
            return {}
        new = check_parameters({**self.parameters, **kwargs})
        frozen = [k for k in FIXED_ONCE_STARTED if new[k] != self.parameters[k]]
        if frozen and (self.tally.calls or self._resuming or self.store is not None):
            raise SettingsError(f"{frozen[0]} cannot change once the run has started (its data and comparisons "
                                f"depend on it); start a new calculator and store")
        if "error_metric" in frozen:
            self._check_metric(new["error_metric"])
        changed = Calculator.set(self, **new)
        self._training_extras = None
        p = self.parameters
        self.controller.reconfigure(error_bound=p["error_bound"], window=p["window"],
                                    threshold_bounds=p["threshold_bounds"], max_step=p["max_threshold_step"],
                                    confidence=p["confidence"], bound_on=p["bound_on"])
        if "threshold" in changed and p["threshold"] is not None:
            self.controller.set_threshold(p["threshold"])
        if changed:  # what the surrogate can do here may have changed: let it show that again
            self.economy.wake()
        self.audits = AuditPolicy(p["audit_fraction"])
        if "target_threads" in changed:
            self.threads = ThreadPlan(p["target_threads"])
        self.training.configure(p["min_training"], p["max_training"], p["retrain"], p["window"])
        self._target.retries, self._target.timeout = p["target_retries"], p["target_timeout"]
        if "log_size" in changed:
            self.log = CallLog(self.log.records, maxlen=p["log_size"])
        self.cache.maxsize = p["cache_size"]
        return changed

    def _check_metric(self, metric: str | None = None) -> None:
        metric = metric or self.parameters["error_metric"]
        missing = [q for q in metric_properties(metric) if q not in self.implemented_properties]
        if missing:
            raise SettingsError(f"error_metric {metric!r} needs {missing}, which the target does not implement")

    def todict(self, skip_default: bool = True) -> dict[str, Any]:
        d = plain(super().todict(skip_default))
        fingerprint = run_fingerprint(self.target, self.parameters["error_metric"])
        d["target"], d["target_parameters"] = fingerprint["target"]["name"], fingerprint["target"]["parameters"]
        d["answer"] = self.answer  # the last call's provenance: an ase.db row keeps it here
        if self.baseline is not None:
            d["baseline"] = self.baseline.describe()
        if self.store is not None:
            d["store"] = str(self.store.path)
        return d

    @property
    def training_extras(self) -> tuple[str, ...]:
        """Properties asked of the target on every target call beyond the call's own: what the
        error metric compares and the user's ``train_properties``, where the target has them."""
        if self._training_extras is None:  # asked on every target call: kept until a setting changes
            wanted = dict.fromkeys([*metric_properties(self.parameters["error_metric"]),
                                    *(self.parameters["train_properties"] or ())])
            self._training_extras = tuple(p for p in wanted if p in self.implemented_properties)
        return self._training_extras

    # ------------------------------------------------------------- ASE entry
    def get_property(self, name: str, atoms: Atoms | None = None, allow_calculation: bool = True) -> Any:
        # ASE's get_property copies the structure into self.atoms just before it calls calculate:
        # calculate then keeps that copy instead of making a second one
        self._copied_by_ase = self.use_cache
        try:
            return super().get_property(name, atoms, allow_calculation)
        finally:
            self._copied_by_ase = False

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's check (what changed since the last call), computed faster (see
        :func:`~ase_proxima.identity.system_changes`): it runs on every call, cached ones included."""
        return system_changes(self.atoms, atoms, tol, excluded=self.ignored_changes)

    def calculate(self, atoms: Atoms | None = None, properties: list[str] | tuple[str, ...] = ("energy",),
                  system_changes: list[str] = all_changes) -> None:
        properties = list(properties) if properties else ["energy"]
        bad = [p for p in properties if p not in self.implemented_properties]
        if bad:
            raise PropertyNotImplementedError(f"{bad} not implemented by the target {self.target.name}")
        kept = dict(self.results) if not system_changes else {}
        if atoms is not None and not (self._copied_by_ase and self.atoms is not None):
            own = self._private_copy
            if own is None or not refresh_copy(own, atoms):
                own = self._private_copy = atoms.copy()
            self.atoms = own
        try:
            self._answer(self.atoms, properties, system_changes)
        except BaseException:
            # a failed extra property of the same structure (the stress of a cluster) keeps what
            # was computed; otherwise forget the half-done call, so ASE never pairs these atoms
            # with the previous call's results.  Stored data are untouched either way.
            if kept:
                self.results = kept
            else:
                self.reset()
            raise
        if atoms is not None:  # who answered travels with the structure (.traj, .extxyz keep info)
            atoms.info["proxima_answer"] = self.answer

    def _answer(self, atoms: Atoms, properties: list[str], system_changes: list[str] = all_changes) -> None:
        watch = Stopwatch()
        key = property_key(properties)
        rec: dict[str, Any] = {"step": self.tally.calls, "error": math.nan}
        ident = identity(atoms)
        previous, self._previous = self._previous, ident
        known = self.cache.lookup(atoms, properties, key=ident)
        if known is not None:  # the target answered this very structure before
            self.results = known
            self.tally.calls += 1
            self.tally.cached += 1
            self.answer = "cached"
            self.controller.note_call(math.nan, passed=False)
            rec.update(kind="cached", reason="the target answered this structure before", uncertainty=math.nan,
                       threshold=math.nan, alpha=math.nan, n_fitted=self.training.n_fitted)
            self.economy.charge(self._record(rec, watch), self.costs.cost("target", key))
            return
        self._ensure_models(atoms)
        self._cost_pending = False
        consult = not self.parameters["cost_aware"] or self.economy.consult(self._probe_cost(key))
        # idle because a surrogate answer costs too much: a probe only measures that cost again
        recost = consult and self.economy.idle and self.economy.cause == "cost"
        consult = consult and not recost
        if consult:
            prediction, u, reason = self._decide(atoms, properties, watch, key)
        else:
            prediction, u, reason = None, math.nan, f"idle: {self.economy.reason}"
        c = self.controller
        rec.update(uncertainty=u, threshold=math.nan if c.threshold is None else c.threshold,
                   alpha=math.nan if c.alpha is None else c.alpha, n_fitted=self.training.n_fitted)
        audit_p, checked = 0.0, None  # checked: why a servable call is audited for certain
        if reason is None:
            upper, bound = self._run_upper(bounded=True, u=u), self.parameters["error_bound"]
            n, window = self.tally.audited.n, self.controller.controlled_error * self._bounded_share()
            audit_p = self.audits.rate(bound, upper, n, window,
                                       self.tally.certificate.upper(self.parameters["confidence_level"]),
                                       self._surprise(u))
            if self.audits.holds(bound, upper, n, window):
                checked = self._held_for_audit(upper, window, bound)
        rec["audit_p"] = audit_p
        kind = "target" if reason is not None else "audit" if audit_p and self.rng.random() < audit_p else "surrogate"
        compared = False
        scale = self._error_scale()  # fixed, as audit_p, before the coin above was looked at
        if kind == "surrogate":
            for cert in (self.tally.certificate, *self._segments):
                cert.serve(audit_p, scale)
            self.results = {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in prediction.results.items()}
            if "free_energy" in self.implemented_properties and "energy" in self.results:
                self.results["free_energy"] = self.results["energy"]
            self.tally.surrogate_calls += 1
        else:
            if atoms is self._private_copy:  # the target and the training set may keep it
                self._private_copy = None
            with watch("target"), self.threads.target():
                # the structure before this one was the target's last: it is told what changed
                changes = system_changes if previous is not None and previous == self._target_last else None
                exact = self._target(atoms, properties, self._extras(atoms, properties, consult), changes,
                                     snapshot=atoms is self.atoms)
            self._target_last = ident
            self.threads.timed(watch.parts["target"])
            self.costs.add("target", watch.parts["target"], key)
            self.tally.audits += kind == "audit"
            base, unusable = self._base_for_training(atoms, exact, ident, watch)
            absurd = None
            with watch("store" if self.store is not None else "training"):
                if unusable is None and not self.cache.holds(ident):
                    absurd = self.training.add(atoms, exact, owned=atoms is self.atoms, base=base, step=rec["step"],
                                               kind=kind)
            self.cache.remember(atoms, exact, key=ident, private=True)  # the target call copied them
            if recost or consult and self.parameters["cost_aware"] and not self.surrogate.is_fitted:
                self._time_descriptors(atoms, properties, watch, key, again=recost)
            if absurd is not None or unusable is not None:
                reason = _also(reason, unusable or f"absurd target answer kept out of training: {absurd}")
            elif consult and (kind == "audit" or self._comparable(atoms)):
                if prediction is None:
                    try:
                        prediction, u = self._score(atoms, properties, watch, key)
                    except BaselineError as err:
                        prediction, u = None, math.nan
                        reason = _also(reason, self._baseline_failed(err))
                    rec["uncertainty"] = u
                if prediction is not None and gate.is_finite(prediction) and math.isfinite(u):
                    with watch("controller"):
                        err = compute_error(self.parameters["error_metric"], prediction.results, exact, len(atoms),
                                            free_atoms(atoms))
                        self.controller.observe(u, err)
                        self.capacity.observe(u, err, self._capacity_bound())
                    rec["error"], compared = err, True
                    formula = self._formula(atoms)
                    self.tally.validated[formula] = self.tally.validated.get(formula, 0) + 1
                    sums = self.tally.validated_sums.setdefault(formula, [0.0, 0.0, 0.0])
                    sums[0] += 1.0
                    sums[1] += err
                    sums[2] += err * err
                    if kind == "audit":
                        self.tally.audited.add(err, 1.0 / audit_p)
                        self._certify_audit(err, audit_p, scale)
                        if err > scale:
                            self.notices.scale_exceeded(err, scale, UNITS[self.parameters["error_metric"]])
            if kind == "audit" and not compared:  # its error unmeasured: counted as the worst it may be
                self._certify_audit(scale, audit_p, scale)
            answer = self._blended(kind, reason, prediction, u, exact)
            if consult and self.capacity.lost and self.parameters["raise_capacity"]:
                self._raise_capacity(watch)
            # an audited call was one the surrogate could serve, as the next most likely is: the
            # refit it would get before use is done now, so that call predicts once, not twice
            if consult and (self._refit_due(False) or kind == "audit" and self._refit_due(True)):
                self._fit(watch)
            self.results = answer
        if reason is None:
            audited = rec["error"] if compared else scale if kind == "audit" else math.nan
            self.controller.note_call(u, True, audit_p, audited, returned=self._returns_audited())
        else:
            self.controller.note_call(u, False)
        if compared and self.parameters["adaptive"]:
            with watch("controller"):
                self.controller.note_run(*self._run_error())
                self.controller.update()
        self.tally.calls += 1
        rec["kind"], rec["reason"] = kind, reason if reason is not None else checked
        self.answer = kind
        if kind == "surrogate":
            self.tally.last_served = rec["step"]
        seconds = self._record(rec, watch)
        if self.parameters["cost_aware"]:
            baseline = watch.parts["target"] if kind in ("target", "audit") else self.costs.cost("target", key)
            audited = self.tally.audited
            self.economy.record(consult or recost, kind, seconds, baseline, self.surrogate.is_fitted,
                                self._cost_ratio(key) if consult or recost else math.nan,
                                promising=audited.n >= 2 and
                                audited.estimate + audited.standard_error < self.parameters["error_bound"])
            if self._cost_pending:
                self.economy.defer(f"a surrogate answer may cost up to {self._cost_bounds[key][1] / baseline:.0%} "
                                   "of a target call: it is timed once the run can afford that")
        self.notices.after_call(rec["step"], kind, properties, self.parameters["error_metric"],
                                self.tally.last_served, self.log, self.controller,
                                UNITS[self.parameters["error_metric"]])

    # --------------------------------------------------------------- pieces
    def _ensure_models(self, atoms: Atoms) -> None:
        """Pick the default surrogate and uncertainty on the first structure seen."""
        if self.surrogate is None:
            self.surrogate = default_surrogate(atoms)
            if self.store is not None:
                self.store.claim({"surrogate": surrogate_family(self.surrogate)})
        if self.uncertainty is None:
            self.uncertainty = EnsembleUncertainty(self.parameters["error_metric"])
        if self.store is not None:
            self.store.check_species(atoms.get_chemical_symbols(), resuming=self._new_to_store)
            self._new_to_store = False

    def _decide(self, atoms: Atoms, properties: list[str], watch: Stopwatch,
                key: str) -> tuple[Prediction | None, float, str | None]:
        """The prediction (if one was made), its uncertainty, and why the surrogate may not answer."""
        reason = self._why_not(atoms, properties)
        if reason is not None:
            return None, math.nan, reason
        try:
            prediction, u = self._score(atoms, properties, watch, key)
            self.controller.note_uncertainty(u)
            self.staleness.note(u)
            if self.controller.allows(u) and self._refit_due(True):
                self._fit(watch)
                reason = self._why_not(atoms, properties)
                if reason is not None:
                    return prediction, u, reason
                prediction, u = self._score(atoms, properties, watch, key)
        except BaselineError as err:
            return None, math.nan, self._baseline_failed(err)
        if not self.controller.ready:
            return prediction, u, "startup"
        reason = gate.why_refused(prediction, u, len(atoms), self.training.range)
        if reason is not None:
            self.tally.refusals += 1
            return prediction, u, reason
        reason = self.capacity.why_not(UNITS[self.parameters["error_metric"]])
        if reason is not None:
            stop = self.parameters["stop_on_capacity_loss"]
            self.notices.capacity_lost(self.capacity.episodes, reason, stop, self.parameters["raise_capacity"])
            if stop:
                return prediction, u, reason
        formula = self._formula(atoms)
        reason = gate.why_unvalidated(formula, self.tally.validated.get(formula, 0), self.controller.window_size,
                                      self._clearly_validated(formula))
        return prediction, u, (reason or gate.why_uncertain(self.controller, u)
                               or self._why_unconfirmed(atoms, prediction))

    def _clearly_validated(self, formula: str) -> bool:
        """Are the errors measured on this composition plainly under the bound, by the rule that
        lets the controller start before a whole window (a run resumed from a state saved before
        the sums were kept counts only the errors measured since)?"""
        n, total, squares = self.tally.validated_sums.get(formula, (0.0, 0.0, 0.0))
        if n < 2:
            return False
        mean = total / n
        var = max(squares / n - mean * mean, 0.0) * n / (n - 1)
        c = self.controller
        return clearly_below(n, mean, math.sqrt(var / n), c.early, c.error_bound)

    def _held_for_audit(self, upper: float, window: float, bound: float) -> str:
        """The log's reason for a servable call audited because an estimate is over the bound."""
        unit = UNITS[self.parameters["error_metric"]]
        over = (f"the run's upper estimate of its error ({upper:.3g} {unit})" if upper > bound else
                f"the surrogate's recent error ({window:.3g} {unit}), with too few audits yet to say otherwise,")
        return (f"over the bound: {over} is over the bound ({bound:.3g} {unit}), so every call the gate "
                "passes is checked by the target until the audits bring it under")

    def _surprise(self, u: float) -> float:
        """The call's uncertainty over the largest one whose error was measured (NaN: none yet)."""
        known = self.controller.validated_uncertainty
        return u / known if known > 0.0 else math.nan

    def _run_upper(self, bounded: bool = False, u: float = math.nan) -> float:
        """An upper estimate of the mean error of the run's served answers: the audited mean plus
        standard errors at the confidence level (``bounded`` with ``bound_on='all'``: the same of
        the controller's estimate of the mean over every answer).  Two sources of doubt: the audited
        mean's own (at least the mean over the root of the audit count: a few audits can look
        steadier than the errors are), and which answers happen to be served, a sample of the
        errors whose mean spreads as their spread over the root of its size, counting the answer
        about to be served (a run may end after a handful: their mean is what the user got).
        Given the uncertainty ``u`` of the call about to be served, the spread is that of the
        errors measured at uncertainties no larger (where at least a window of them was kept):
        a run whose errors scatter as widely as their mean, as a molecule's energies do, may
        then serve its most certain calls first, instead of holding every answer to the spread
        of its least certain ones.  NaN before two audits."""
        a = self.tally.audited
        if a.n < 2:
            return math.nan
        if bounded and self.parameters["bound_on"] == "all":
            c = self.controller
            return c.all_error + _one_sided_z(self.parameters["confidence_level"]) * c.all_error_se
        se = max(a.standard_error, a.estimate / math.sqrt(a.n))
        served = self.tally.surrogate_calls + 1  # with the answer about to be served
        variance = self.controller.spread_up_to(u, self.controller.window_size)
        spread = math.sqrt(se * se + (a.variance if math.isnan(variance) else variance) / served)
        return a.estimate + _one_sided_z(self.parameters["confidence_level"]) * spread

    def _capacity_bound(self) -> float:
        """What the most certain calls' error is held to for the capacity watch: the bound on served
        answers (with ``bound_on='all'`` a served answer may err more: the watch only measures)."""
        return self.parameters["error_bound"] if self.parameters["bound_on"] == "served" else math.inf

    def _bounded_share(self) -> float:
        """What a served error counts for in the bound: 1, or with ``bound_on='all'`` the run's
        served share, counting the call about to be served."""
        if self.parameters["bound_on"] != "all":
            return 1.0
        return (self.tally.surrogate_calls + 1) / (self.tally.calls + 1)

    def _run_error(self) -> tuple[float, float]:
        """What the controller holds of the run (:meth:`ThresholdController.note_run`): its upper
        estimate and the share of a doubled horizon its served answers hold; the horizon grows
        while nothing is served, so a run cannot lock itself out."""
        t = self.tally
        served = t.surrogate_calls
        if not served:
            return math.nan, 0.0
        return self._run_upper(), served / (served + max(served, t.calls - t.last_served))

    def _error_scale(self) -> float:
        """The largest error a served answer is assumed to have (the certificate's assumption)."""
        p = self.parameters
        return p["error_scale"] if p["error_scale"] is not None else 10.0 * p["error_bound"]

    def _returns_audited(self) -> bool:
        """Does an audited call return the surrogate answer it checked (``blend``)?"""
        return bool(self.parameters["blend"])

    def _certify_audit(self, error: float, p: float, scale: float) -> None:
        for cert in (self.tally.certificate, *self._segments):
            cert.audit(error, p, scale, returned=self._returns_audited())

    @contextmanager
    def certified(self) -> Iterator[ServedErrorBound]:
        """A certificate of its own for the calls made inside the block, such as one run of a scan
        that shares this calculator (and its learning) with the other runs::

            with calc.certified() as cert:
                dyn.run(1000)
            cert.summary(calc.parameters["confidence_level"])

        It carries the run-wide guarantee of ``stats['served_error_upper']`` over these calls
        only: the block starts at a time the past decides, so the audits inside it certify the
        answers served inside it, at any moment of the block.  Each block's bound holds at the
        stated level on its own; a statement about all blocks of a scan at once needs a smaller
        level per block (a union bound), or the run-wide certificate.  Kept in memory only: a
        block cut short by a crash has no certificate, and a workflow redoes it under a new one."""
        cert = ServedErrorBound(bet=self.tally.certificate.bet)
        self._segments.append(cert)
        try:
            yield cert
        finally:
            self._segments.remove(cert)

    def _formula(self, atoms: Atoms) -> str:
        """The chemical formula (asked on every call: kept per atom numbering, which decides it)."""
        numbers = atoms.numbers.tobytes()
        formula = self._formulas.get(numbers)
        if formula is None:
            if len(self._formulas) > 64:
                self._formulas.clear()
            formula = self._formulas[numbers] = atoms.get_chemical_formula()
        return formula

    def _blended(self, kind: str, reason: str | None, prediction: Prediction | None, u: float,
                 exact: dict[str, Any]) -> dict[str, Any]:
        """The answer of a target call, with ``blend`` > 0: an audit returns the served (surrogate)
        answer it checked, and a call just over the threshold a cosine mix of surrogate and target,
        so dynamics see no jump where the answer changes hands."""
        width = self.parameters["blend"]
        threshold = self.controller.threshold
        if not width or prediction is None or threshold is None or not gate.is_finite(prediction):
            return exact
        if kind == "audit":
            s = 0.0
        elif reason == "uncertain" and threshold > 0 and u < threshold * (1.0 + width):
            s = 0.5 * (1.0 - math.cos(math.pi * (u - threshold) / (width * threshold)))
        else:
            return exact
        mixed = dict(exact)
        for k, v in prediction.results.items():
            if k in exact:
                mixed[k] = s * np.asarray(exact[k], float) + (1.0 - s) * np.asarray(v, float)
                mixed[k] = float(mixed[k]) if np.ndim(mixed[k]) == 0 else mixed[k]
        if "free_energy" in mixed and "energy" in prediction.results:
            mixed["free_energy"] = mixed["energy"]
        return mixed

    def _why_unconfirmed(self, atoms: Atoms, prediction: Prediction) -> str | None:
        """Served forces an optimiser could stop on must be the target's (see :mod:`.optimizers`)."""
        p = self.parameters
        if "forces" not in prediction.results or p["verify_fmax"] is None:
            return None
        criterion = optimizers.enclosing_fmax() if p["verify_fmax"] == "auto" else p["verify_fmax"]
        if criterion is None:
            return None
        margin = optimizers.force_margin(p["error_metric"], p["error_bound"], criterion)
        return optimizers.why_unconfirmed(prediction.results["forces"], free_atoms(atoms), criterion, margin)

    def _why_not(self, atoms: Atoms, properties: list[str]) -> str | None:
        t = self.training
        return (gate.why_not_ready(t.fit_error, t.total, t.min_training, self.surrogate.is_fitted)
                or gate.why_outside(self.surrogate, self.uncertainty, atoms, properties,
                                    self.parameters["error_metric"])
                or self._why_not_baseline(properties))

    def _why_not_baseline(self, properties: list[str]) -> str | None:
        """A property the baseline does not give cannot be served as baseline plus correction."""
        if self.baseline is None:
            return None
        for p in properties:
            if ("energy" if p == "free_energy" else p) not in self.baseline.properties:
                return f"property {p} not given by the baseline {self.baseline.name}"
        return None

    def _baseline(self, atoms: Atoms, properties: Any, watch: Stopwatch) -> dict[str, Any]:
        """The baseline's answer on ``atoms`` (timed; on the surrogate's threads: it is as small)."""
        with watch("baseline"), self.threads.surrogate():
            return self.baseline.results(atoms, properties)

    def _baseline_failed(self, err: BaselineError) -> str:
        """Why a call goes without the baseline; a baseline that never answered in this run cannot
        do this system at all, and the user hears it at once."""
        if not self.baseline.answered:
            raise err
        return str(err)

    def _base_for_training(self, atoms: Atoms, exact: dict[str, Any], ident: bytes,
                           watch: Stopwatch) -> tuple[dict[str, Any] | None, str | None]:
        """The baseline's answer on a structure the target answered (what its correction is
        measured from), and why the point stays out of training when there is none."""
        if self.baseline is None or self.cache.holds(ident):
            return None, None
        try:
            return self._baseline(atoms, exact, watch), None
        except BaselineError as err:
            return None, f"kept out of training: {self._baseline_failed(err)}"

    def _comparable(self, atoms: Atoms) -> bool:
        """Can the surrogate's error on this target call be measured?"""
        return (self.training.fit_error is None and self.surrogate.is_fitted
                and self.surrogate.accepts(atoms) is None and self.uncertainty.accepts(atoms) is None
                and all(p in self.surrogate.properties_for(atoms)
                        for p in metric_properties(self.parameters["error_metric"])))

    def _score(self, atoms: Atoms, properties: list[str], watch: Stopwatch,
               key: str) -> tuple[Prediction, float]:
        """Predict what the call and the error metric need (an energy-only Monte Carlo step
        skips the force derivatives), then the uncertainty; its cost is measured per property set."""
        parts = ("surrogate", "uncertainty", "baseline")
        before = sum(watch.parts[k] for k in parts)
        wanted = self._predicted(properties)
        # the model predicts a correction, and one that reads the baseline's answer needs it first
        base = None if self.baseline is None else self._baseline(atoms, wanted, watch)
        limited = self.surrogate.predicts_on_one_thread or self.uncertainty.scores_on_one_thread
        with self.threads.surrogate() if limited else _POOLS_AS_THEY_ARE:
            with watch("surrogate"):
                prediction = self.surrogate.predict_on(atoms, wanted, base)
            with watch("uncertainty"):
                u = float(self.uncertainty.score(atoms, prediction))
        if base is not None:  # the answer is the baseline plus the model's correction
            prediction = Prediction(self.baseline.total(prediction.results, base), prediction.spread,
                                    learned=prediction.results)
        self.costs.add("surrogate", sum(watch.parts[k] for k in parts) - before, key)
        return prediction, u

    def _predicted(self, properties: list[str]) -> list[str]:
        """What a prediction for a call of ``properties`` computes: the call's own and what the
        error metric compares."""
        wanted = {"energy" if p == "free_energy" else p for p in properties}
        return sorted(wanted | set(metric_properties(self.parameters["error_metric"])))

    def _probe_cost(self, key: str) -> float:
        """The seconds a probe would add to an idle run's next call: a surrogate answer (and the
        refit it would need first, when it consults)."""
        if not self.economy.idle:
            return 0.0
        extra = self._surrogate_cost(key)
        if self.economy.cause != "cost" and self.training.needs_refit(True, self.surrogate.is_fitted):
            refit = self.costs.cost("refit")
            extra += 0.0 if math.isnan(refit) else refit
        return extra

    def _surrogate_cost(self, key: str) -> float:
        """Seconds a surrogate answer is expected to cost: measured, else the most its sample
        allows (:meth:`_time_descriptors`), else 0."""
        if self.costs.samples("surrogate", key):
            return self.costs.cost("surrogate", key)
        bounds = self._cost_bounds.get(key)
        return bounds[1] if bounds is not None else 0.0

    def _cost_ratio(self, key: str) -> float:
        """c_S / c_T as the economy should judge it: measured three times each (nan until then);
        before any fit, where the surrogate's sample bounds it (:meth:`_time_descriptors`), the
        lower bound when that alone shows it cannot pay, else from the first whole timing on; and
        without a sample, the first whole timing when it is ten times what could pay (more than a
        slow first call explains: a SNAP prediction against a classical potential)."""
        ratio = self.costs.known_ratio(key)
        if not math.isnan(ratio) or self.surrogate.is_fitted:
            return ratio
        limit, first = self.economy.max_cost_ratio, self.costs.known_ratio(key, min_samples=1)
        bounds = self._cost_bounds.get(key)
        if bounds is not None:
            low = bounds[0] / self.costs.cost("target", key)
            return low if low >= limit else first
        return first if first >= 10.0 * limit else math.nan

    def _time_descriptors(self, atoms: Atoms, properties: list[str], watch: Stopwatch, key: str,
                          again: bool = False) -> None:
        """Before the first fit (``again``: on a probe of an idle run): the surrogate's descriptors
        of this structure (kept for the fit), timed, as estimates of what a prediction costs; a
        surrogate that could never pay against this target is then never fitted (the economy
        turns idle).

        Timing the whole can cost several calls of a cheap target, more than a short run (an
        optimisation of twenty steps) has to spare.  So the family's sample of one atomic
        environment comes first: when even that costs too much, the economy turns idle at
        once; when the whole might cost too much, the economy idles until the run's target time
        so far can afford to time it (a probe), and the first whole timing decides."""
        if self.costs.samples("surrogate", key) >= 3 and not again:
            return
        predicted = self._predicted(properties)
        if key not in self._cost_bounds:
            try:
                with self.threads.surrogate(), watch("surrogate"):
                    self._cost_bounds[key] = self.surrogate.cost_bounds(atoms, predicted)
            except Exception:  # a structure the family cannot describe: no estimate, the fit will say
                self._cost_bounds[key] = None
        bounds, e = self._cost_bounds[key], self.economy
        if bounds is not None and not again:
            limit = e.max_cost_ratio * self.costs.cost("target", key)
            if bounds[0] >= limit:
                return  # cannot pay (see _cost_ratio)
            undecided = bounds[1] > limit and self.costs.samples("surrogate", key) == 0
            if undecided and e.debt + bounds[1] > e.probe_share * e.baseline:
                self._cost_pending = True  # neither timed nor fitted until the run can afford it
                return
        before = watch.parts["surrogate"]
        try:
            with self.threads.surrogate(), watch("surrogate"):
                described = self.surrogate.describe(atoms, predicted)
        except Exception:  # a structure the family cannot describe: no estimate, the fit will say
            return
        if described:  # with a baseline, what it just took on this structure is part of an answer's cost
            self.costs.add("surrogate", watch.parts["surrogate"] - before + watch.parts["baseline"], key)

    def _refit_due(self, before_use: bool) -> bool:
        """A refit by the schedule, and affordable: training so far plus one more refit within
        ``refit_share`` of the target's time.  Refitted anyway: a model never fitted, one whose
        error is over the bound, one fitted on under half the data there is now (refits at doubling
        sizes cost a few times the last one in all, so a cheap target cannot leave the start-up's
        model serving a whole run), and one consulted at a risen uncertainty (the run moved away
        from where it was fitted, see :mod:`.staleness`)."""
        if self._cost_pending or not self.training.needs_refit(before_use, self.surrogate.is_fitted):
            return False
        share = self.parameters["refit_share"]
        if share is None or not self.surrogate.is_fitted:
            return True
        c_refit = self.costs.cost("refit")
        affordable = (not math.isfinite(c_refit)
                      or self.costs.totals["refit"] + c_refit <= share * self.costs.totals["target"])
        stale = self.training.total >= 2 * self.training.n_fitted
        return (affordable or stale or self.controller.controlled_error > self.controller.error_bound
                or self.staleness.risen)

    def _extras(self, atoms: Atoms, properties: list[str], consult: bool = True) -> list[str]:
        """Training extras asked of the target, and, while the surrogate is consulted, the stress
        after a force call on a bulk cell whose surrogate learns it (a barostat asks for it next;
        an idle run does not pay for it on every call)."""
        extras = list(self.training_extras)
        if (consult and "forces" in properties and "stress" in self.implemented_properties and atoms.pbc.all()
                and "stress" in self.surrogate.properties_for(atoms)):
            extras.append("stress")
        return extras

    def _fit(self, watch: Stopwatch | None = None) -> None:
        before = watch.parts["training"] if watch is not None else 0.0
        with watch("training") if watch is not None else nullcontext(), self.threads.surrogate():
            self.training.fit(self.surrogate, self.uncertainty)
        self.staleness.refitted()
        if watch is not None:
            self.costs.add("refit", watch.parts["training"] - before)

    def _raise_capacity(self, watch: Stopwatch) -> None:
        """A larger model of the surrogate's family, fitted on every kept point, in place of one
        that lost capacity (see :mod:`.growth`); the model before it goes on if there is none or
        its fit fails."""
        candidate = self.growth.candidate(self.surrogate)
        if candidate is None:
            return
        model, rung = candidate
        before = watch.parts["training"]
        with watch("training"), self.threads.surrogate():
            fitted = self.training.fit(model, self.uncertainty, trial=True)
        self.costs.add("refit", watch.parts["training"] - before)
        if not fitted:
            self.growth.refused(self.training.trial_error or "the larger model's fit failed")
            return
        self.surrogate = model
        self._models_saved = -1  # a model of other settings on the same points: written at the next checkpoint
        self.growth.adopted(rung)
        self.capacity.rebase()
        self.staleness.refitted()
        self.notices.capacity_raised(rung, self.training.n_fitted)

    def _record(self, rec: dict[str, Any], watch: Stopwatch) -> float:
        """Log the call and add its times to the tally; returns its whole cost in seconds."""
        times = watch.stop()
        self.tally.add_times(times)
        rec.update({f"t_{k}": v for k, v in times.items()})
        self.log.append(rec)
        seconds = times["total"]
        if self.store is not None:
            writing = Stopwatch()
            with writing("store"):
                self.store.append_log(rec)
                if self.tally.calls % self.parameters["checkpoint_every"] == 0:
                    resume.checkpoint(self, self.store)
            self.tally.add_times({"store": writing.parts["store"], "total": writing.parts["store"]})
            self.costs.add("store", times["store"] + writing.parts["store"])
            seconds += writing.parts["store"]
        return seconds

    @property
    def stats(self) -> dict[str, Any]:
        """Run statistics: counts, served fraction, audited served error, controller, training, timers."""
        p, t = self.parameters, self.tally
        upper = t.certificate.upper(p["confidence_level"])
        return {**t.summary(), "target_calls": self._target.calls,
                "target_failures": self._target.failures, **self.controller.summary(), **self.training.summary(),
                **self.costs.summary(t.surrogate_calls / t.calls if t.calls else 0.0), **self.economy.summary(),
                **self.capacity.summary(), **self.growth.summary(), **self.staleness.summary(),
                **self.threads.summary(),
                **(self.baseline.summary() if self.baseline is not None else {"baseline": None}),
                "served_error_upper": upper,
                # the same certificate on the mean over every answer returned, target answers exact
                "returned_error_upper": upper * t.certificate.answers / max(t.calls, 1),
                "served_error_unbiased": t.certificate.estimate,
                "served_error_unbiased_se": t.certificate.standard_error,
                "confidence_level": p["confidence_level"], "error_scale": self._error_scale(),
                "error_bound": p["error_bound"], "error_metric": p["error_metric"], "bound_on": p["bound_on"],
                "not_serving": self.notices.not_serving(t.calls, t.last_served, self.log, self.controller,
                                                        UNITS[p["error_metric"]])}

    # ----------------------------------------------------------- persistence
    def state(self) -> RunState:
        """Everything needed to continue this run identically (plain JSON)."""
        return resume.run_state(self)

    def flush(self) -> None:
        """Write the run state to the store now (it is written every ``checkpoint_every`` calls)."""
        if self.store is not None and not self.store.closed:
            resume.checkpoint(self, self.store)

    def close(self) -> None:
        """Write the state and release the store (another process may open it then)."""
        if self.store is not None:
            self.flush()
            self.store.close()
            atexit.unregister(self._at_exit)

    def __getstate__(self) -> dict[str, Any]:
        """A copy (pickle, ``deepcopy``) carries the run but not its store: only one process ever
        writes a store."""
        state = dict(self.__dict__)
        state["store"] = None
        state.pop("_at_exit", None)
        # the structure this calculator refreshes in place is its alone: a copy gets its own
        state["atoms"] = None if self.atoms is None else self.atoms.copy()
        state["_private_copy"] = None
        state["training"] = copy.copy(self.training)
        state["training"].store = None
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # an interpreter shutting down may have torn down what close needs
            pass

    def save_state(self, path: str | os.PathLike) -> None:
        """Write a snapshot of this run into the directory ``path`` (replaced whole): a run store
        with the training data in memory, the log, the model and the state.  :meth:`load_state`
        continues the run identically.  Nothing in it is pickled."""
        resume.save_snapshot(self, path)

    def load_state(self, path: str | os.PathLike) -> None:
        """Continue from a :meth:`save_state` snapshot: same T, alpha, window, training data, model
        and audit draws (the snapshot is only read)."""
        resume.load_snapshot(self, path)


for _name in DEFAULT_PARAMETERS:
    setattr(ProximaCalculator, _name, setting_property(_name))
