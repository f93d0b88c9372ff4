"""How often a call the surrogate would answer is checked by the target instead (an *audit*).

Audits are what make the served error known without bias, and each one costs a target
call.  Their price should follow their value: when the served error is close to the bound
every audit matters, when it is far below, fewer suffice to show it stays there.
:class:`AuditPolicy` draws each servable call for audit with probability

    p = audit_fraction * clip(estimate / error_bound, floor, 1)

except that the first ``first_audits`` servable calls are all audited (p = 1): no answer is
served before the served error has an estimate and a standard error.  ``estimate`` is an upper
estimate of the served error (the audited mean plus two standard errors once there are
``min_audits`` audits, before that the controller's windowed error).  The probability used is recorded with the audit, and the audited mean is
weighted by 1/p (a Hajek estimator), so a rate that changes over the run biases nothing.
"""
from __future__ import annotations

import math

__all__ = ["AuditPolicy"]


class AuditPolicy:
    """Audit probability for the next servable call (see the module doc).

    Parameters
    ----------
    fraction:
        The highest audit probability (the user's ``audit_fraction``); 0 turns audits off.
    floor:
        The lowest probability, as a share of ``fraction``.
    min_audits:
        Audits before the audited estimate is trusted over the controller's.
    first_audits:
        Servable calls audited for certain before the first is served (audits on).
    """

    def __init__(self, fraction: float, floor: float = 0.2, min_audits: int = 5, first_audits: int = 2) -> None:
        if not 0.0 <= fraction <= 1.0 or not 0.0 < floor <= 1.0:
            raise ValueError("0 <= fraction <= 1 and 0 < floor <= 1 are required")
        self.fraction, self.floor, self.min_audits = float(fraction), float(floor), int(min_audits)
        self.first_audits = int(first_audits)

    def rate(self, bound: float, audited_mean: float, audited_se: float, audits: int,
             controlled_error: float) -> float:
        """The probability of auditing the next servable call."""
        if self.fraction == 0.0:
            return 0.0
        if audits < self.first_audits:
            return 1.0
        if audits >= self.min_audits and math.isfinite(audited_mean):
            estimate = audited_mean + 2.0 * (audited_se if math.isfinite(audited_se) else audited_mean)
        else:
            estimate = controlled_error
        if not (math.isfinite(estimate) and bound > 0):
            return self.fraction
        return self.fraction * min(max(estimate / bound, self.floor), 1.0)
