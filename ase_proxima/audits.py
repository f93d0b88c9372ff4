"""How often a call the surrogate would answer is checked by the target instead (an *audit*).

Audits are what make the served error known without bias, and each one costs a target call.
Their price should follow their value.  When the run's served error may be near the bound,
every audit decides whether serving may go on, and a rise in error must be seen within a
window, not a hundred calls later; when the error is far below the bound, fewer suffice to show
it stays there.  :class:`AuditPolicy` draws each servable call for audit with probability

    p = audit_fraction * clip(r, floor, 1)                              for r <= 3/4
    p = audit_fraction * (1 + (surge - 1) * (r - 3/4) / (1/4))          for 3/4 < r <= 1
    p = 1                                                               for r > 1

where ``r`` is an upper estimate of the served error over the bound (the run's audited mean plus
standard errors at its confidence level; before two audits, the controller's windowed error;
where the window's error is higher, as when errors rise through a run, that, but only up to the
surge: the window holds the target's comparisons too, more uncertain than the calls served),
except that until ``min_audits`` audits were made ``p`` stays at ``audit_fraction`` or above and
``r`` is at least the window's (with the target's comparisons): a few small audited errors cannot
show that a run's errors are small.  So ``p`` falls to ``floor * audit_fraction`` far below the
bound, rises to ``surge * audit_fraction`` as the estimate nears it, and while the estimate is
over the bound every servable call is audited: nothing is served until the audits bring it back
under (the run's own record, not only the latest window, decides).  Once the certified bound (:mod:`.certificate`) is under half the user's bound, the
floor applies: the run's claim is already proven with room to spare.

The first ``first_audits`` servable calls are all audited (p = 1): no answer is served before
the served error has an estimate.  The probability used is fixed before the call's coin is
flipped and recorded with the audit; the audited mean weighs each audit 1/p (a Hajek
estimator), and the certificate uses p as it is, so a rate that changes over the run biases
nothing.
"""
from __future__ import annotations

import math

__all__ = ["AuditPolicy"]


class AuditPolicy:
    """Audit probability for the next servable call (see the module doc).

    Parameters
    ----------
    fraction:
        The user's ``audit_fraction``: the probability near the bound; 0 turns audits off.
    floor:
        The lowest probability, as a share of ``fraction``.
    min_audits:
        Audits before the rate may fall below ``fraction``.
    first_audits:
        Servable calls audited for certain before the first is served (audits on).
    surge:
        The highest probability, as a multiple of ``fraction`` (capped at one).
    """

    def __init__(self, fraction: float, floor: float = 0.2, min_audits: int = 10, first_audits: int = 2,
                 surge: float = 4.0) -> None:
        if not 0.0 <= fraction <= 1.0 or not 0.0 < floor <= 1.0 or surge < 1.0:
            raise ValueError("0 <= fraction <= 1, 0 < floor <= 1 and surge >= 1 are required")
        self.fraction, self.floor, self.min_audits = float(fraction), float(floor), int(min_audits)
        self.first_audits, self.surge = int(first_audits), float(surge)

    def rate(self, bound: float, run_upper: float, audits: int, controlled_error: float,
             certified: float = math.nan, surprise: float = math.nan) -> float:
        """The probability of auditing the next servable call: ``run_upper`` is the run's upper
        estimate of its served error, ``certified`` its certified bound (NaN: none yet),
        ``surprise`` the call's uncertainty over the largest one compared (NaN: unknown)."""
        p = self._rate(bound, run_upper, audits, controlled_error, certified)
        if surprise > 1.0:  # False for NaN
            p = max(p, min(self.fraction * min(surprise, self.surge), 1.0))
        return p

    def holds(self, bound: float, run_upper: float, audits: int, controlled_error: float) -> str | None:
        """Why every servable call is audited now, past the first ones: ``'run'`` (the run's upper
        estimate is over the bound), ``'window'`` (with too few audits, the window's error is), or
        ``None`` (it is not)."""
        if self.fraction == 0.0 or audits < self.first_audits:
            return None
        estimate, source = self._estimate(run_upper, audits, controlled_error)
        return source if bound > 0 and estimate > bound else None

    def _estimate(self, run_upper: float, audits: int, controlled_error: float) -> tuple[float, str]:
        """The error the rate answers to, and whose it is: the run's upper estimate, or the
        window's before two audits and, until ``min_audits``, where it is higher (the target's
        comparisons count too until the audits can say)."""
        if math.isfinite(run_upper) and not (audits < self.min_audits and controlled_error > run_upper):
            return run_upper, "run"
        return controlled_error, "window"

    def _rate(self, bound: float, run_upper: float, audits: int, controlled_error: float,
              certified: float) -> float:
        if self.fraction == 0.0:
            return 0.0
        if audits < self.first_audits:
            return 1.0
        estimate, _ = self._estimate(run_upper, audits, controlled_error)
        if not (math.isfinite(estimate) and bound > 0):
            return self.fraction
        r = estimate / bound
        if r > 1.0:
            return 1.0
        if controlled_error > estimate:  # the latest window rising: audits up to the surge, not certain
            r = min(controlled_error / bound, 1.0)
        if r > 0.75:
            return min(self.fraction * (1.0 + (self.surge - 1.0) * (r - 0.75) / 0.25), 1.0)
        if audits < self.min_audits:  # a few audits cannot show that the error is small
            return self.fraction
        if certified <= 0.5 * bound:  # False for NaN
            return self.fraction * self.floor
        return self.fraction * min(max(r, self.floor), 1.0)
