"""What a user should hear once, not find out later: forces served under an energy bound, and a
run that has stopped serving.

* An energy metric bounds energies only.  MD asks for forces, and the surrogate's forces
  are then served unchecked: :class:`Notices` warns the first time that happens.
* A run can go hundreds of calls without a surrogate answer: its bound is below what the
  surrogate reaches, its structures are outside the surrogate's domain, or serving cannot pay
  and the run is idle (:mod:`.economy`).  After
  ``quiet_calls`` such calls it warns once (again after the next quiet spell), naming the most
  frequent reason and, when the threshold is what stops it, the surrogate's recent error
  against the bound (when the run's audited error is over the bound, that estimate);
  ``stats['not_serving']`` carries the same sentence while it lasts.
* The certified served error assumes no served answer errs by more than ``error_scale``
  (:mod:`.certificate`); the first audit that shows otherwise is reported at once.
* A surrogate that ran out of capacity for the bound (:mod:`.capacity`): said once each time it
  happens, with whether serving stopped.
"""
from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase
import numpy as np

__all__ = ["Notices", "ProximaWarning"]


class ProximaWarning(UserWarning):
    """Something about a run the user should know."""


_LIBRARIES = (str(Path(ase.__file__).parent), str(Path(__file__).parent))


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the user's line: the first frame outside ASE
    and this package (an MD driver, an optimiser and the calculator layers in between vary)."""
    level, frame = 1, sys._getframe(1)  # stacklevel 1: the function that calls warn
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARIES):
        frame, level = frame.f_back, level + 1
    return level


class Notices:
    """Once-only warnings about a run (see the module doc)."""

    def __init__(self, quiet_calls: int = 200) -> None:
        self.quiet_calls = quiet_calls
        self._warned_forces = False
        self._warned_quiet = False
        self._warned_scale = False
        self._warned_capacity = 0  # the capacity episode last warned about

    def after_call(self, step: int, kind: str, properties: Sequence[str], metric: str, last_served: int, log: Any,
                   controller: Any, unit: str) -> None:
        """Warn, once, about what call ``step`` (answered by ``kind``) shows."""
        if kind == "surrogate":
            self._warned_quiet = False
            if "forces" in properties and metric.startswith("energy") and not self._warned_forces:
                self._warned_forces = True
                warnings.warn(f"error_metric {metric!r} bounds energies only: the forces the surrogate serves are "
                              "not checked. For dynamics or relaxations use 'forces_mean' or 'forces_max'.",
                              ProximaWarning, stacklevel=_user_stacklevel())
        elif not self._warned_quiet:
            note = self.not_serving(step + 1, last_served, log, controller, unit)
            if note is not None:
                self._warned_quiet = True
                warnings.warn(note, ProximaWarning, stacklevel=_user_stacklevel())

    def scale_exceeded(self, error: float, scale: float, unit: str) -> None:
        """An audited error above the certificate's scale: warned the first time."""
        if not self._warned_scale:
            self._warned_scale = True
            warnings.warn(f"an audited surrogate error of {error:.3g} {unit} exceeds error_scale ({scale:.3g} {unit}): "
                          "stats['served_error_upper'] is no longer guaranteed; set a larger error_scale",
                          ProximaWarning, stacklevel=_user_stacklevel())

    def capacity_lost(self, episode: int, reason: str, stopped: bool, raising: bool = False) -> None:
        """The surrogate lost capacity for the bound (:mod:`.capacity`): warned once per episode,
        saying whether serving stopped (``stop_on_capacity_loss``); with ``raise_capacity`` it is
        said only once no larger model is left or its fit failed."""
        if episode > self._warned_capacity:
            self._warned_capacity = episode
            then = ("serving stopped: every call goes to the target until the most certain calls err clearly "
                    "under the bound again" if stopped else
                    "the threshold no longer picks the accurate calls; the audits and the controller still hold "
                    "the bound (stop_on_capacity_loss=True stops serving here instead)")
            better = ("No larger model of this family is left to fit (or its fit failed): a looser bound would "
                      "serve better here" if raising else
                      "A more capable surrogate (raise_capacity=True fits a larger one) or a looser bound would serve "
                      "better here")
            warnings.warn(f"{reason}. So {then}. {better}.", ProximaWarning, stacklevel=_user_stacklevel())

    def capacity_raised(self, settings: dict[str, Any], points: int) -> None:
        """A larger model took over from one that lost capacity (:mod:`.growth`)."""
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        warnings.warn(f"the surrogate lost capacity for the bound: a larger model ({shown}), fitted on {points} "
                      "target results, serves from now on; it costs more per call and per refit",
                      ProximaWarning, stacklevel=_user_stacklevel())

    def not_serving(self, calls: int, last_served: int, log: Any, controller: Any, unit: str) -> str | None:
        """Why the calls since ``last_served`` (``quiet_calls`` or more) got no surrogate answer, or ``None``."""
        quiet = calls - 1 - last_served
        if quiet < self.quiet_calls or len(log) == 0:
            return None
        recent = [log[i] for i in range(max(-len(log), -self.quiet_calls), 0)]
        reasons = Counter(_first_clause(r.get("reason")) for r in recent if r.get("kind") != "cached")
        if not reasons:
            return None
        reason, count = reasons.most_common(1)[0]
        note = f"no surrogate answer in the last {quiet} calls; most often ({count} of {len(recent)}): {reason}"
        errors = [e for _, e in controller.state().window]
        if reason == "idle":
            latest = next(r["reason"] for r in reversed(recent) if _first_clause(r.get("reason")) == "idle")
            note += (f" ({latest.split(':', 1)[1].strip()}): calls go straight to the target, and the surrogate is "
                     "tried again now and then, ever more rarely; a looser bound or a costlier target would let "
                     "it serve")
        elif reason in ("over the bound", "capacity"):
            latest = next(r["reason"] for r in reversed(recent) if _first_clause(r.get("reason")) == reason)
            note += f" ({latest.split(':', 1)[1].strip()})"
        elif reason == "uncertain" and errors:
            floor = float(np.median(errors))
            note += (f". The surrogate's recent errors (median {floor:.3g} {unit}) are "
                     f"{'above' if floor > controller.error_bound else 'near'} the bound "
                     f"{controller.error_bound:.3g} {unit}: this bound is below what it reaches here, so every "
                     "call goes to the target (a looser bound would let it serve)")
        return note


def _first_clause(reason: Any) -> str:
    """A reason without its particulars, so that like reasons count together."""
    if not isinstance(reason, str) or not reason:
        return "no reason recorded"
    return reason.split(":")[0].split(" (")[0].strip()
