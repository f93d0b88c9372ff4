"""What a run has done so far, and the one record a resumed run continues from.

:class:`RunTally` counts calls and answers, sums the time each part of a call took
(``target``, ``surrogate``, ``uncertainty``, ``training``, ``controller``, ``store``,
``total``) and keeps the audited errors as a running mean and variance, so its size
does not grow with the run.

:class:`RunState` is everything a run needs to continue exactly where it stopped
(counters, controller, random state, training bookkeeping, the settings in effect):
``ProximaCalculator.save_state`` writes it, and so does a run store.  It is plain
JSON; older stores' state (version 1) is read and converted.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .certificate import ServedErrorBound

__all__ = ["AuditTally", "RunTally", "RunState", "TIMERS", "STATE_VERSION"]

STATE_VERSION = 2
TIMERS = ("target", "surrogate", "uncertainty", "baseline", "training", "controller", "store", "total")


@dataclass
class AuditTally:
    """Weighted running mean and variance of the audited errors (West's update of Welford's):
    an audit drawn with probability p weighs 1/p, so the mean stays unbiased when the audit
    rate changes during the run."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0
    wsum: float = 0.0
    w2sum: float = 0.0
    w2e: float = 0.0  # sum of weight^2 * error
    w2e2: float = 0.0  # sum of weight^2 * error^2

    def __post_init__(self) -> None:
        if self.n and not self.wsum:  # a tally written before audits were weighted: all weigh one
            self.wsum = self.w2sum = float(self.n)

    def add(self, error: float, weight: float = 1.0) -> None:
        self.n += 1
        self.wsum += weight
        self.w2sum += weight * weight
        self.w2e += weight * weight * error
        self.w2e2 += weight * weight * error * error
        delta = error - self.mean
        self.mean += delta * weight / self.wsum
        self.m2 += weight * delta * (error - self.mean)

    @property
    def estimate(self) -> float:
        return self.mean if self.n else math.nan

    @property
    def variance(self) -> float:
        """The weighted spread of the audited errors about their mean (0 before two audits)."""
        return self.m2 / self.wsum if self.n >= 2 and self.wsum > 0 else 0.0

    @property
    def standard_error(self) -> float:
        """The weighted mean's standard error by linearisation, ``sqrt(sum w^2 (e - mean)^2) / sum w``
        with a small-sample factor n/(n-1): it holds when the weights follow the errors (audits
        grown rarer while errors grew), where an effective-sample-size formula understates it.
        Equal weights give the usual sample standard error."""
        if self.n < 2:
            return math.nan
        if self.w2e2 == 0.0 and self.m2 > 0.0:  # a tally written before these sums were kept
            n_eff = self.wsum ** 2 / self.w2sum
            return math.sqrt(self.m2 / self.wsum / (n_eff - 1.0)) if n_eff > 1.0 else math.nan
        spread = max(self.w2e2 - 2.0 * self.mean * self.w2e + self.mean ** 2 * self.w2sum, 0.0)
        return math.sqrt(spread * self.n / (self.n - 1.0)) / self.wsum


@dataclass
class RunTally:
    """Counters and timers of a run."""

    calls: int = 0
    surrogate_calls: int = 0
    audits: int = 0
    refusals: int = 0
    cached: int = 0
    last_served: int = -1
    validated: dict[str, int] = field(default_factory=dict)  # errors measured per composition
    validated_sums: dict[str, list[float]] = field(default_factory=dict)  # their count, sum, sum of squares
    times: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TIMERS, 0.0))
    audited: AuditTally = field(default_factory=AuditTally)
    certificate: ServedErrorBound = field(default_factory=ServedErrorBound)

    def summary(self) -> dict[str, Any]:
        """Counts, the served fraction, the audited served error, and the time per part."""
        frac = self.surrogate_calls / self.calls if self.calls else 0.0
        out: dict[str, Any] = {"calls": self.calls, "surrogate_calls": self.surrogate_calls, "audits": self.audits,
                               "refusals": self.refusals, "cache_hits": self.cached, "served_fraction": frac,
                               "audit_share": self.audits / self.calls if self.calls else 0.0,
                               "served_error": self.audited.estimate, "served_error_se": self.audited.standard_error,
                               "returned_error": frac * self.audited.estimate,
                               "certificate_exceeded": self.certificate.exceeded}
        out.update({f"time_{k}": v for k, v in self.times.items()})
        out["store_seconds_per_call"] = self.times["store"] / self.calls if self.calls else 0.0
        return out

    def add_times(self, per_call: Mapping[str, float]) -> None:
        for k, v in per_call.items():
            self.times[k] = self.times.get(k, 0.0) + v


class Stopwatch:
    """Per-call timers: ``with watch("target"): ...`` adds the elapsed seconds to that part."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.parts = dict.fromkeys(TIMERS, 0.0)

    def __call__(self, part: str) -> _Lap:
        return _Lap(self.parts, part)

    def stop(self) -> dict[str, float]:
        self.parts["total"] = time.perf_counter() - self.start
        return self.parts


class _Lap:
    """One timed part of a call (a plain context manager: a generator-based one costs several
    microseconds, paid several times on every call)."""

    __slots__ = ("parts", "part", "t")

    def __init__(self, parts: dict[str, float], part: str) -> None:
        self.parts, self.part = parts, part

    def __enter__(self) -> None:
        self.t = time.perf_counter()

    def __exit__(self, *exc: Any) -> None:
        self.parts[self.part] += time.perf_counter() - self.t


@dataclass
class RunState:
    """Everything needed to continue a run identically (plain JSON)."""

    step: int = 0
    tally: dict[str, Any] = field(default_factory=dict)
    controller: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    target: dict[str, int] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    costs: dict[str, Any] = field(default_factory=dict)
    economy: dict[str, Any] = field(default_factory=dict)
    threads: dict[str, Any] = field(default_factory=dict)
    capacity: dict[str, Any] = field(default_factory=dict)
    staleness: dict[str, Any] = field(default_factory=dict)
    growth: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    version: int = STATE_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> RunState:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunState:
        version = d.get("version")
        if version == 1:
            return cls._from_version_1(d)
        if version != STATE_VERSION:
            raise ValueError(f"unsupported run state version {version!r} (this ase-proxima writes {STATE_VERSION})")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def _from_version_1(cls, d: Mapping[str, Any]) -> RunState:
        """A state written before the rooms existed: audit errors as a list (the recent answer
        kinds beside the controller are no longer needed)."""
        audited = AuditTally()
        for e in d.get("audit_errors", []):
            audited.add(float(e))
        counts = d["counts"]
        tally = {"calls": d["step"], "surrogate_calls": counts.get("surrogate_calls", 0),
                 "audits": counts.get("audits", 0), "refusals": counts.get("refusals", 0),
                 "times": dict(d.get("times", {})), "audited": asdict(audited)}
        controller = dict(d["controller"])
        training = {"total": d["n_training"], "n_fitted": d["n_fitted"], "fits": d["fits"],
                    "fit_failures": d["fit_failures"], "absurd": 0}
        target = {"calls": counts.get("target_calls", 0), "failures": counts.get("target_failures", 0)}
        return cls(step=d["step"], tally=tally, controller=controller, rng=d["rng"], training=training,
                   target=target)

    def restore_tally(self) -> RunTally:
        t = dict(self.tally)
        audited = AuditTally(**t.pop("audited", {}))
        certificate = ServedErrorBound(**t.pop("certificate", {}))  # a state written before: nothing certified
        times = {**dict.fromkeys(TIMERS, 0.0), **t.pop("times", {})}
        return RunTally(**t, times=times, audited=audited, certificate=certificate)
