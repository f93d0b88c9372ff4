"""Saving and continuing a run: one path for a reopened store and for a snapshot.

A run's state is a :class:`~ase_proxima.runstate.RunState` (counters, controller, random
state, training bookkeeping, settings in effect), its training data the store's rows, its
model the store's arrays (or a refit on the same points).  :func:`open_store` resumes a
store that holds a state, warm-starts from one that holds only data, and otherwise starts
fresh; :func:`save_snapshot` writes a store of its own and :func:`load_snapshot` continues
from it through the same :func:`resume`.  The functions read and set the calculator's rooms;
the calculator calls them and keeps none of this logic.
"""
from __future__ import annotations

import logging
import os
import weakref
from dataclasses import asdict
from typing import Any

from .calllog import CallLog
from .control import ControllerState
from .parameters import control_settings
from .runstate import RunState
from .store import RunStore, run_fingerprint
from .surrogates import default_surrogate
from .training import plain
from .uncertainty import EnsembleUncertainty

__all__ = ["run_state", "open_store", "resume", "checkpoint", "save_snapshot", "load_snapshot", "flush_at_exit"]

log = logging.getLogger("ase_proxima")


def _fingerprint(calc: Any) -> dict[str, Any]:
    return run_fingerprint(calc.target, calc.parameters["error_metric"], calc.surrogate,
                           None if calc.baseline is None else calc.baseline.calc)


def run_state(calc: Any) -> RunState:
    """Everything needed to continue ``calc``'s run identically (plain JSON)."""
    return RunState(step=calc.tally.calls, tally=asdict(calc.tally), controller=asdict(calc.controller.state()),
                    rng=calc.rng.bit_generator.state, training=calc.training.state(),
                    target={"calls": calc._target.calls, "failures": calc._target.failures},
                    parameters=plain(calc.parameters), costs=calc.costs.state(), economy=calc.economy.state(),
                    threads=calc.threads.state(), capacity=calc.capacity.state(), staleness=calc.staleness.state(),
                    growth=calc.growth.state(),
                    baseline=calc.baseline.state() if calc.baseline is not None else {})


def open_store(calc: Any, store: RunStore) -> None:
    """Claim ``store`` for ``calc``'s run (its data must mean the same), record the settings
    (a change is logged), and resume its run or warm-start from its data."""
    store.claim(_fingerprint(calc))
    calc._new_to_store = store.has_data()
    state = store.read_state()
    store.record_settings(control_settings(calc.parameters), state.step if state else 0)
    if state is not None:
        resume(calc, store, state)
        return
    rows = store.training()
    calc.training.load(rows)
    calc.training.trim()
    _remember(calc, rows)
    if rows:
        log.warning("%s: warm-starting from %d stored target results (%s of run %s)", store.path, len(rows),
                    "every run's rows" if store.shared else "rows", store.run)


def resume(calc: Any, store: RunStore, state: RunState) -> None:
    """Continue ``calc`` from ``state`` with the store's training points, model and log."""
    calc._resuming = True
    calc.tally = state.restore_tally()
    calc.controller.load_state(ControllerState.from_dict(state.controller))
    calc.rng.bit_generator.state = state.rng
    calc.costs.load_state(state.costs)
    calc.economy.load_state(state.economy)
    calc.capacity.load_state(state.capacity)
    calc.staleness.load_state(state.staleness)
    calc.growth.load_state(state.growth)
    if calc.baseline is not None:
        calc.baseline.load_state(state.baseline)
    calc.threads.load_state(state.threads)
    calc._target.calls, calc._target.failures = state.target["calls"], state.target["failures"]
    total = max(store.point_count(), state.training["total"])
    max_training, n_fitted = calc.parameters["max_training"], state.training["n_fitted"]
    rows = store.training(newest=None if max_training is None else total - max(n_fitted - max_training, 0))
    if rows:
        calc.surrogate = calc.surrogate or default_surrogate(rows[0][0])
        calc.uncertainty = calc.uncertainty or EnsembleUncertainty(calc.parameters["error_metric"])
        calc.growth.rebuild(calc.surrogate)  # the rungs the run climbed: the stored model is of that size
    calc.training.restore(state.training, rows, total, calc.surrogate, calc.uncertainty, store.read_models())
    calc.training.adopt_equations(store, calc.surrogate, own=store is calc.store)
    _remember(calc, rows)
    calc._models_saved = calc.training.n_fitted
    calc.log = CallLog([r for r in store.read_log() if r["step"] < state.step], maxlen=calc.parameters["log_size"])


def _remember(calc: Any, rows: list) -> None:
    """The target answers read back are answers the target never has to give again."""
    for atoms, results in rows[-calc.cache.maxsize:] if calc.cache.maxsize else []:
        calc.cache.remember(atoms, {k: v for k, v in results.items() if k != "baseline"})


def checkpoint(calc: Any, store: RunStore) -> None:
    """Write the model (when refitted since it was last written there) and the run state."""
    own = store is calc.store
    if not own or calc.training.n_fitted != calc._models_saved:
        calc.training.save_model(store, calc.surrogate)
        if own:  # a fit's new equations come with it: only a refit adds any
            calc.training.save_equations(store, calc.surrogate)
            calc._models_saved = calc.training.n_fitted
    store.write_state(run_state(calc))


def save_snapshot(calc: Any, path: str | os.PathLike) -> None:
    """A store of ``calc``'s run at ``path`` (replaced whole): training data in memory, log, model, state."""
    with RunStore.snapshot(path) as snap:
        snap.claim(_fingerprint(calc))
        for atoms, res in calc.training.given():
            res = dict(res)
            snap.add_training(atoms, res, baseline=res.pop("baseline", None))
        for rec in calc.log:
            snap.append_log(rec)
        snap.record_settings(control_settings(calc.parameters), calc.tally.calls)
        checkpoint(calc, snap)


def load_snapshot(calc: Any, path: str | os.PathLike) -> None:
    """Continue ``calc`` from a snapshot (only read; it must be of the same kind of run)."""
    snap = RunStore(path, readonly=True)
    snap.check_fingerprint(_fingerprint(calc))
    state = snap.read_state()
    if state is None:
        raise ValueError(f"{path} holds no run state")
    resume(calc, snap, state)


def flush_at_exit(ref: weakref.ref) -> None:
    """Write a still-open run's state when the interpreter ends (a store removed meanwhile is
    said in one line, not a traceback)."""
    calc = ref()
    if calc is None:
        return
    try:
        calc.flush()
    except OSError as err:
        log.warning("could not write the final state of the run in %s: %s", calc.store.path, err)
