"""A certified served error: an upper bound on the mean error of the answers a run served,
valid at every call of the run at once (an anytime-valid confidence sequence).

The audits are the run's own randomisation, and that is all the bound rests on.  Every call
the gate lets through (a *servable* call) has an error ``e_s``, the error the surrogate's answer
would have; before the call's coin is flipped the run fixes its audit probability ``p_s`` and a
scale ``B_s`` that bounds the error, both from the past only.  With probability ``p_s`` the
target answers instead and ``e_s`` is measured (an *audit*); otherwise the surrogate's answer is
served and ``e_s`` is never seen.

What is guaranteed.  If every servable call's error is at most its scale (``0 <= e_s <= B_s``),
then with probability at least ``confidence_level``, at every call ``t`` of the run at the same
time, the mean error of the answers served so far is at most :meth:`ServedErrorBound.upper`.
Nothing is assumed about how the errors arise: they may drift, be correlated, or be chosen by
an adversary who sees every past coin, as long as each is fixed before its own coin.  The audit
probabilities may follow anything in the past (the errors seen, the uncertainty, the margin to
the bound).

Why.  For a servable call let ``xi_s = e_s (1 - A_s / p_s)`` (``A_s`` = 1 for an audit): its mean
given the past is zero, and ``xi_s >= -B_s (1 - p_s) / p_s`` when ``e_s <= B_s``.  With
``lambda_s = c p_s / (B_s (1 - p_s))`` (``c`` < 1) the product ``K_t = prod (1 + lambda_s xi_s)`` is a
non-negative martingale of mean one, so ``K_t`` ever reaching ``1 / alpha`` has probability at
most ``alpha`` (Ville's inequality).  An audited call's factor is ``1 - c e_s / B_s``, known; a
served call's factor is ``1 + lambda_s e_s``, unknown, but at least ``exp(w_s e_s)`` with
``w_s = log(1 + c p_s / (1 - p_s)) / B_s`` (the logarithm lies above its chord on ``[0, B_s]``).
So while ``K_t < 1 / alpha``, the served errors satisfy ``sum w_s e_s < R_t = log(1 / alpha) - sum
over audits of log(1 - c e_s / B_s)``; the largest sum of served errors that allows, each at most
its scale, is the bound's numerator (a linear programme solved greedily: the calls with the
smallest weights, those served at the lowest audit probabilities, take their whole scale first).
Weights are kept in bins 10% wide (a bin taken whole is charged its exact cost, the one taken in
part at its lower edge, which only loosens the bound), so the state stays a few numbers long.
Dividing by the number of served answers gives the bound.

What it costs.  A served error near ``B_s`` on each of about ``log(1 / alpha) / p`` unaudited calls
would go unseen with probability about ``alpha``, so no valid bound can be much tighter than
``B log(1 / alpha) / (p n)`` above the truth after ``n`` served answers; this one is within a
factor ``1 / c`` of that.  The bound is therefore wide early in a run, with rare audits, or with a
loose scale, and tightens as ``1 / n``: audit more, or state a tighter ``error_scale``, to certify
sooner.  As ``p`` tends to zero the bound tends to the trivial ``B``: it never claims more than the
audits show.

Several runs, one claim.  The wealth is a product over calls, so the calls of several runs (one
after another in one process, or side by side in several, as long as each run draws its own
coins) multiply into one martingale over all of them: :meth:`ServedErrorBound.pooled` adds the
runs' states and bounds the mean error over every answer they served, as one run would.

An audited error above its scale shows the assumption failed: the run counts it
(:attr:`ServedErrorBound.exceeded`) and the bound is no longer guaranteed.

:attr:`ServedErrorBound.estimate` is the unbiased (Horvitz-Thompson) estimate of the same mean:
the audited errors weighted ``(1 - p) / p``, the expected number of served calls each stands for,
over the number served; :attr:`ServedErrorBound.standard_error` is its standard error, from the
unbiased variance estimate ``sum over audits of (e / p)^2 (1 - p)``.  An audit made for certain
stands for no served call and enters neither.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["ServedErrorBound"]

_BIN = math.log(1.1)  # weight bins 10% wide


def _lower_edge(item: tuple[str, object]) -> float:
    """The smallest weight of a bin (0 for served calls audited with probability 0)."""
    return 0.0 if item[0] == "zero" else math.exp(int(item[0]) * _BIN)


@dataclass
class ServedErrorBound:
    """Anytime-valid upper confidence bound on the mean served error (see the module doc).

    Parameters
    ----------
    bet:
        The fraction ``c`` (0 < c < 1) of the largest safe bet each call makes: near one, the
        bound is tightest when audited errors are well below their scale.
    """

    bet: float = 0.9
    served: int = 0  # servable calls served without an audit (their errors unseen)
    returned: int = 0  # audited calls whose surrogate answer the user got all the same (blend)
    audits: int = 0
    exceeded: int = 0  # audited errors above their scale: the guarantee is void
    log_penalty: float = 0.0  # - sum over audits of log(1 - c e / B)
    # weight bin -> [calls, sum of their scales B, sum of w B (the cost of taking them all at their scale)]
    weights: dict[str, list[float]] = field(default_factory=dict)
    known_sum: float = 0.0  # errors of the returned audited calls
    estimated_sum: float = 0.0  # Horvitz-Thompson estimate of the unseen served errors' sum
    estimated_var: float = 0.0  # unbiased estimate of that estimate's variance

    def __post_init__(self) -> None:
        if not 0.0 < self.bet < 1.0:
            raise ValueError(f"bet must be in (0, 1), got {self.bet!r}")

    @staticmethod
    def _check(p: float, scale: float) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"audit probability must be in [0, 1], got {p!r}")
        if not (math.isfinite(scale) and scale > 0.0):
            raise ValueError(f"error scale must be finite and > 0, got {scale!r}")

    def serve(self, p: float, scale: float) -> None:
        """A servable call, audited with probability ``p`` and of scale ``scale``, was served."""
        self._check(p, scale)
        if p >= 1.0:
            raise ValueError("a call audited with probability 1 cannot have been served")
        self.served += 1
        w = math.log1p(self.bet * p / (1.0 - p)) / scale
        key = str(math.floor(math.log(w) / _BIN)) if w > 0.0 else "zero"
        cell = self.weights.setdefault(key, [0, 0.0, 0.0])
        cell[0] += 1
        cell[1] += scale
        cell[2] += w * scale

    def audit(self, error: float, p: float, scale: float, returned: bool = False) -> None:
        """A servable call was audited (with probability ``p`` > 0): its surrogate error was ``error``.
        ``returned``: the user got the surrogate's answer all the same (it counts as served)."""
        self._check(p, scale)
        if not (math.isfinite(error) and error >= 0.0):
            raise ValueError(f"an audited error must be finite and >= 0, got {error!r}")
        if p <= 0.0:
            raise ValueError("a call audited with probability 0 cannot have been audited")
        self.audits += 1
        if error > scale:
            self.exceeded += 1
        if p < 1.0:  # a certain audit bets nothing and stands for no served call
            self.log_penalty -= math.log1p(-self.bet * min(error, scale) / scale)
            self.estimated_sum += error * (1.0 - p) / p
            self.estimated_var += (error / p) ** 2 * (1.0 - p)
        if returned:
            self.returned += 1
            self.known_sum += error

    @property
    def answers(self) -> int:
        """Surrogate answers the user got: served, and audited but returned."""
        return self.served + self.returned

    def upper(self, confidence_level: float = 0.95) -> float:
        """The bound on the mean served error now, holding with probability ``confidence_level`` at
        every call at once (NaN before anything was served).  The level must be chosen before the
        run, not after seeing the bound."""
        if not 0.0 < confidence_level < 1.0:
            raise ValueError(f"confidence_level must be in (0, 1), got {confidence_level!r}")
        if self.answers == 0:
            return math.nan
        budget = -math.log1p(-confidence_level) + self.log_penalty
        unseen = 0.0
        for key, (_, scales, cost) in sorted(self.weights.items(), key=_lower_edge):
            if cost <= budget:  # every call of this bin at its scale is still allowed
                unseen += scales
                budget -= cost
            else:
                unseen += budget / _lower_edge((key, None))
                break
        return (self.known_sum + unseen) / self.answers

    def summary(self, confidence_level: float = 0.95) -> dict[str, float | int]:
        """The bound, the unbiased estimate and its standard error, and the counts behind them."""
        return {"served_error_upper": self.upper(confidence_level), "confidence_level": confidence_level,
                "served_error_unbiased": self.estimate, "served_error_unbiased_se": self.standard_error,
                "answers": self.answers, "audits": self.audits, "exceeded": self.exceeded}

    def state(self) -> dict[str, object]:
        """Everything the bound is computed from (plain JSON): :meth:`from_state` rebuilds it."""
        return {"bet": self.bet, "served": self.served, "returned": self.returned, "audits": self.audits,
                "exceeded": self.exceeded, "log_penalty": self.log_penalty,
                "weights": {k: list(v) for k, v in self.weights.items()}, "known_sum": self.known_sum,
                "estimated_sum": self.estimated_sum, "estimated_var": self.estimated_var}

    @classmethod
    def from_state(cls, state: dict) -> ServedErrorBound:
        return cls(**{**state, "weights": {k: list(v) for k, v in state["weights"].items()}})

    @classmethod
    def pooled(cls, parts: Sequence[ServedErrorBound]) -> ServedErrorBound:
        """One certificate over every call of ``parts``, runs whose coins were drawn independently
        of each other (see the module doc): the same bound as one certificate fed all their calls."""
        if not parts:
            raise ValueError("pooling needs at least one certificate")
        out = cls(bet=parts[0].bet)
        for part in parts:
            for name in ("served", "returned", "audits", "exceeded", "log_penalty", "known_sum", "estimated_sum",
                         "estimated_var"):
                setattr(out, name, getattr(out, name) + getattr(part, name))
            for key, (calls, scales, cost) in part.weights.items():
                cell = out.weights.setdefault(key, [0, 0.0, 0.0])
                cell[0] += calls
                cell[1] += scales
                cell[2] += cost
        return out

    @property
    def estimate(self) -> float:
        """Unbiased estimate of the mean served error (NaN before anything was served)."""
        if self.answers == 0:
            return math.nan
        return (self.known_sum + self.estimated_sum) / self.answers

    @property
    def standard_error(self) -> float:
        """Standard error of :attr:`estimate` (the audits' own randomisation; NaN before anything
        was served)."""
        if self.answers == 0:
            return math.nan
        return math.sqrt(self.estimated_var) / self.answers
