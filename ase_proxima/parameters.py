"""The settings of a ProximaCalculator: their defaults, their checks, and which may change.

One source: ``ProximaCalculator.parameters`` (ASE's ``Parameters`` dict), filled from
:data:`DEFAULT_PARAMETERS` and the user's keywords, validated here as a whole (numpy
scalars are welcome; values come back as plain Python types, so ``todict`` is JSON).
Attributes such as ``calc.error_bound`` read it, and assigning one goes through
``calc.set``, which applies the change to every room or refuses it.

* :data:`FIXED_ONCE_STARTED`: settings that define what the run's data mean; they cannot
  change after the first call (a run store also refuses to be reopened with others).
* Every other setting is a *control setting*: it may change at any time, including when
  a store is reopened; the change is logged and takes effect at once.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from ase.calculators.calculator import CalculatorSetupError

from .metrics import METRICS

__all__ = ["DEFAULT_PARAMETERS", "FIXED_ONCE_STARTED", "SettingsError", "check_parameters", "control_settings",
           "setting_property"]


class SettingsError(CalculatorSetupError, ValueError):
    """A setting is invalid, unknown, or may not change now."""


DEFAULT_PARAMETERS: dict[str, Any] = {
    "error_bound": None,
    "error_metric": "energy",
    "window": 10,
    "threshold": None,
    "threshold_bounds": None,
    "max_threshold_step": None,
    "confidence": 1.0,
    "min_training": 10,
    "retrain": "lazy",
    "audit_fraction": 0.05,
    "confidence_level": 0.95,
    "error_scale": None,
    "bound_on": "served",
    "seed": None,
    "max_training": None,
    "train_properties": None,
    "adaptive": True,
    "target_retries": 0,
    "target_timeout": None,
    "log_size": 10_000,
    "checkpoint_every": 20,
    "cache_size": 1000,
    "verify_fmax": "auto",
    "blend": 0.0,
    "cost_aware": True,
    "stop_on_capacity_loss": False,
    "raise_capacity": False,
    "refit_share": 0.2,
    "target_threads": "auto",
}

FIXED_ONCE_STARTED = ("error_metric", "seed")


def control_settings(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a reopened run may change (everything but :data:`FIXED_ONCE_STARTED`)."""
    return {k: v for k, v in parameters.items() if k not in FIXED_ONCE_STARTED}


def setting_property(name: str) -> property:
    """An attribute that reads ``calc.parameters[name]``; assigning it calls ``calc.set(name=...)``."""

    def get(calc: Any) -> Any:
        return calc.parameters[name]

    def put(calc: Any, value: Any) -> None:
        calc.set(**{name: value})

    return property(get, put, doc=f"The ``{name}`` setting; assigning it calls ``set({name}=...)``.")


def _integer(name: str, v: Any, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise SettingsError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _real(name: str, v: Any, low: float = 0.0, high: float = math.inf, open_low: bool = False) -> float:
    ok = not isinstance(v, bool) and isinstance(v, numbers.Real) and math.isfinite(float(v))
    ok = ok and (float(v) > low if open_low else float(v) >= low) and float(v) <= high
    if not ok:
        span = f"{'>' if open_low else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
        raise SettingsError(f"{name} must be a finite number {span}, got {v!r}")
    return float(v)


def _flag(name: str, v: Any) -> bool:
    if not isinstance(v, (bool, numbers.Integral)):
        raise SettingsError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def check_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting checked (alone and together) and normalised; raises :class:`SettingsError`."""
    unknown = sorted(set(params) - set(DEFAULT_PARAMETERS))
    if unknown:
        raise SettingsError(f"unknown setting(s) {unknown}; known: {sorted(DEFAULT_PARAMETERS)}")
    p = {**DEFAULT_PARAMETERS, **params}
    out: dict[str, Any] = {}
    if p["error_bound"] is None:
        raise SettingsError("error_bound is required: the error to hold, in the units of error_metric")
    out["error_bound"] = _real("error_bound", p["error_bound"], open_low=True)
    if p["error_metric"] not in METRICS:
        raise SettingsError(f"unknown error_metric {p['error_metric']!r}; choose one of {sorted(METRICS)}")
    out["error_metric"] = str(p["error_metric"])
    out["window"] = _integer("window", p["window"], 2)
    out["threshold"] = None if p["threshold"] is None else _real("threshold", p["threshold"])
    bounds = p["threshold_bounds"]
    if bounds is not None:
        try:
            t_min, t_max = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise SettingsError(f"threshold_bounds must be two numbers (T_min, T_max), got {bounds!r}") from None
        if math.isnan(t_min) or math.isnan(t_max) or t_min < 0 or t_max <= t_min:
            raise SettingsError(f"threshold_bounds must satisfy 0 <= T_min < T_max, got {bounds!r}")
        bounds = (t_min, t_max)
    out["threshold_bounds"] = bounds
    step = p["max_threshold_step"]
    out["max_threshold_step"] = None if step is None else _real("max_threshold_step", step, open_low=True)
    out["confidence"] = _real("confidence", p["confidence"])
    out["min_training"] = _integer("min_training", p["min_training"], 1)
    retrain = p["retrain"]
    if retrain not in ("lazy", "never"):
        try:
            retrain = _integer("retrain", retrain, 1)
        except SettingsError:
            raise SettingsError(f"retrain must be 'lazy', 'never' or an integer >= 1, got {retrain!r}") from None
    out["retrain"] = retrain
    out["audit_fraction"] = _real("audit_fraction", p["audit_fraction"], 0.0, 1.0)
    level = _real("confidence_level", p["confidence_level"], 0.0, 1.0)
    if not 0.0 < level < 1.0:
        raise SettingsError(f"confidence_level must be strictly between 0 and 1, got {level!r}")
    out["confidence_level"] = level
    scale = p["error_scale"]
    out["error_scale"] = None if scale is None else _real("error_scale", scale, open_low=True)
    if p["bound_on"] not in ("served", "all"):
        raise SettingsError(f"bound_on must be 'served' or 'all', got {p['bound_on']!r}")
    out["bound_on"] = p["bound_on"]
    out["seed"] = None if p["seed"] is None else _integer("seed", p["seed"], 0)
    out["max_training"] = None if p["max_training"] is None else _integer("max_training", p["max_training"], 1)
    if out["max_training"] is not None and out["max_training"] < out["min_training"]:
        raise SettingsError(f"max_training ({out['max_training']}) must be >= min_training ({out['min_training']})")
    train = p["train_properties"]
    if train is not None:
        if isinstance(train, str) or not all(isinstance(x, str) for x in train):
            raise SettingsError(f"train_properties must be a list of property names, got {train!r}")
        train = tuple(train)
    out["train_properties"] = train
    out["adaptive"] = _flag("adaptive", p["adaptive"])
    if not out["adaptive"] and out["threshold"] is None:
        raise SettingsError("adaptive=False needs a threshold to hold fixed")
    out["target_retries"] = _integer("target_retries", p["target_retries"], 0)
    timeout = p["target_timeout"]
    out["target_timeout"] = None if timeout is None else _real("target_timeout", timeout, open_low=True)
    out["log_size"] = _integer("log_size", p["log_size"], 1)
    out["checkpoint_every"] = _integer("checkpoint_every", p["checkpoint_every"], 1)
    out["cache_size"] = _integer("cache_size", p["cache_size"], 0)
    verify = p["verify_fmax"]
    out["verify_fmax"] = verify if verify in ("auto", None) else _real("verify_fmax", verify, open_low=True)
    out["blend"] = _real("blend", p["blend"])
    out["cost_aware"] = _flag("cost_aware", p["cost_aware"])
    out["stop_on_capacity_loss"] = _flag("stop_on_capacity_loss", p["stop_on_capacity_loss"])
    out["raise_capacity"] = _flag("raise_capacity", p["raise_capacity"])
    share = p["refit_share"]
    out["refit_share"] = None if share is None else _real("refit_share", share, open_low=True)
    threads = p["target_threads"]
    if threads not in ("auto", None):
        try:
            threads = _integer("target_threads", threads, 1)
        except SettingsError:
            raise SettingsError(f"target_threads must be 'auto', None or an integer >= 1, got {threads!r}") from None
    out["target_threads"] = threads
    return out
