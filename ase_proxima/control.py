"""Feedback control of the surrogate-use threshold.

Pure numerics, no ASE: the controller sees pairs ``(u, e)`` -- the uncertainty
signal of a call and the error the surrogate made on it, known whenever the
target also ran -- and moves the threshold ``T`` below which the surrogate may
answer, so that the windowed mean error sits at the user's bound ``eps*``.

The law (DESIGN section 2, the thesis eq. 3.3 with its safeguards)::

    eps_k   = mean(e over the N newest comparisons) + z * SE(that mean)
    alpha_k = slope of e = alpha*u + beta over a longer recent history (floored > 0)
    T_k+1   = clip(T_k - gain * (eps_k - eps*) / (N * alpha_k), T_k - dT_max, T_k + dT_max)
    T_k+1   = clip(T_k+1, T_min, T_max_eff)

The factor 1/N: the law runs after every new comparison, and each comparison
stays in the window for N updates, so the thesis's full correction
``(eps_k - eps*)/alpha_k`` applied at every update counts the same evidence N
times and overshoots N-fold (it oscillates on the plain linear plant of the
tests).  With 1/N the corrections made while one window refreshes add up to
one full correction: the response settles within about two windows, with a few
per cent of overshoot.

The ``z * SE`` term (``confidence``, default 0: the plain mean) makes the
controller hold an upper confidence bound of the error at ``eps*`` rather than
its mean.  Errors of a surrogate at the edge of its data are heavy-tailed: a
window of ten comparisons can look fine while the served mean is over the
bound.  With ``z = 1`` the margin grows by itself where the errors scatter and
vanishes where they are steady, instead of a fixed safety factor on the bound.

``T_max_eff`` also stops integral wind-up: a threshold above every uncertainty
seen lately serves every call, so raising it further only delays the reaction
when the error comes back.  Its mirror holds a falling threshold at ``min(u) / headroom``
over the recent calls: below every uncertainty seen lately nothing is served, and a
threshold driven far below that (a walk entering a region where the errors run several
times over the bound) would take many windows of good comparisons to climb back, while the
run sends everything to the target.  The cap is ``headroom * max(u)`` over the recent calls,
widened by ``sqrt(eps* / eps_k)`` (at most ``max_headroom`` times) while the measured
error is well below the bound: a new structure a little less certain than any seen so
far is then served, not refused, because the margin to the bound can pay for it.

Start-up: the first threshold is set once ``window`` comparisons exist, or as soon
as ``early`` of them show the error clearly below the bound (their mean plus two
standard errors under a quarter of it): a surrogate that is plainly good enough serves
without waiting for a full window.  The first threshold is capped like any other: a
line fitted to a few small errors at small uncertainties would otherwise put it far
beyond anything seen, and a walk drifting away would be served blind.  An oscillation
detector watches the threshold's swings; sustained alternation with non-shrinking
amplitude halves ``gain`` and counts an oscillation, reported in the run statistics.

The run's own record (:meth:`note_run`).  A window forgets: a run that served above the bound
for a while and then at it ends above it, and a user's bound is on the run's served answers.
The calculator reports an upper estimate of the run's served error so far (its audited mean plus
standard errors at the run's confidence level) and the share ``w`` of a doubled horizon the past
holds; when that estimate is above the window's, the law steers ``eps_k + w * (run - eps_k)``,
the run's error once as many answers again have been served at the window's level.  The past's
excess is paid back by serving the next answers below the bound, and a run stuck with nothing
served lets the weight fall as calls pass, so the window takes over again (no dead lock).
Never weaker than the window alone: the signal is the larger of the two.

What the bound is on (``bound_on``).  ``'served'``: ``eps_k`` as above, the error of
surrogate answers.  ``'all'`` (the thesis's definition): the mean over every returned answer,
target answers counting zero.  That mean moves on every call, not only where a comparison
exists, so the law runs on every call (:meth:`note_call`), in the manner of adaptive conformal
inference: each call contributes an unbiased estimate ``z_t`` of the error it returned,

    z_t = 0                                            the gate refused the call
    z_t = w_t * (g(u_t) + A_t * (e_t - g(u_t)) / p_t)  it passed; audited (A_t = 1) with probability p_t

where ``g(u) = alpha*u + beta`` is the fitted line (a control variate: it carries the served calls'
information, the audits correct its bias) and ``w_t`` the chance the surrogate's answer is
returned (``1 - p_t``, or 1 where audits return it).  Given the past, ``E[z_t]`` is the error the
call returns, whatever the line.  The law moves ``T`` by ``kappa * (eps* - z_t - m_t) / alpha``,
``kappa = gain / (2N)``, where ``m_t`` is the call's share of a margin of ``confidence`` standard
errors of the sum (the root of the audits' unbiased variance estimate, which only grows), a step
at most ``dT_max`` (what a step could not take is kept for the next, except what the anti-wind-up
cap refuses upwards).  So the estimated errors, summed over the run, stay within a fixed amount
(the threshold's range, turned into error by the fitted slope, over ``kappa``) of ``eps*`` times
the number of calls less the margin: the run's mean tends to the bound less ``confidence``
standard errors, and every call counts, served or not.

Settings (bound, window, confidence, bounds, step, ``bound_on``) can change while a
run goes on (:meth:`reconfigure`): the history is kept, trimmed to the new window.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["ThresholdController", "ControllerState", "clearly_below"]


@dataclass
class ControllerState:
    """Everything a controller needs to continue exactly where it stopped."""

    threshold: float | None
    alpha: float | None
    beta: float
    gain: float
    oscillations: int
    updates: int
    window: list[tuple[float, float]]
    history: list[tuple[float, float]]
    recent_u: list[float]
    steps: list[float]
    budget: float = 0.0
    all_error_sum: float = 0.0
    all_calls: int = 0
    all_error_var: float = 0.0
    all_audits: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ControllerState:
        """A state as :func:`dataclasses.asdict` wrote it, also from an older version (fields it
        no longer has are dropped)."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class ThresholdController:
    """Threshold controller with a regression estimate of the plant gain ``alpha``.

    Parameters
    ----------
    error_bound:
        Target mean error ``eps*`` (> 0), in the metric's units.
    window:
        N, the number of newest comparisons averaged into ``eps_k`` (>= 2).
    threshold:
        Initial T.  ``None``: derived from the first alpha estimate, once
        ``window`` comparisons exist, as the u at which the fitted line gives
        ``eps*/2`` (never below 0).
    threshold_bounds:
        ``(T_min, T_max)``; default ``(0, inf)`` with anti-wind-up (see module doc).
    max_step:
        ``dT_max``; default a quarter of the median recent uncertainty, so the
        controller is scale-free in the uncertainty's units.
    alpha:
        A fixed plant gain (the thesis's basic law, eq. 3.2).  ``None`` (default)
        estimates it by regression over ``alpha_history`` comparisons.
    alpha_history:
        Length of the history used by the regression (default ``5 * window``, at least 20).
    confidence:
        z, the number of standard errors of the window mean added to it before
        it is compared with the bound (default 0).  The standard error is the
        sample standard deviation of the window over sqrt(N).
    headroom:
        Anti-wind-up factor: T never exceeds ``headroom * max(u)`` over the
        last ``recent_calls`` calls (default ``max(50, 5 * window)``).
    bound_on:
        ``'served'`` (default) or ``'all'`` (see the module doc).
    """

    def __init__(
        self,
        error_bound: float,
        window: int = 10,
        threshold: float | None = None,
        threshold_bounds: tuple[float, float] | None = None,
        max_step: float | None = None,
        alpha: float | None = None,
        alpha_history: int | None = None,
        headroom: float = 1.1,
        recent_calls: int | None = None,
        confidence: float = 0.0,
        bound_on: str = "served",
        early: int | None = 5,
        max_headroom: float = 4.0,
    ) -> None:
        threshold = _real("threshold", threshold, minimum=0.0, optional=True)
        alpha = _real("alpha", alpha, minimum=0.0, strict=True, optional=True)
        if headroom < 1:
            raise ValueError(f"headroom must be >= 1, got {headroom!r}")
        if alpha_history is not None and not (_is_int(alpha_history) and alpha_history >= 3):
            raise ValueError(f"alpha_history must be an integer >= 3, got {alpha_history!r}")
        self.fixed_alpha = alpha
        self.headroom = float(headroom)
        self.early = early
        self.max_headroom = max(float(max_headroom), 1.0)
        self._alpha_history_arg = alpha_history
        self._recent_calls_arg = recent_calls
        self._window: deque[tuple[float, float]] = deque()
        self._moments: tuple[float, float] | None = None  # mean and standard error of the window
        self._history: deque[tuple[float, float]] = deque()
        self._recent_u: deque[float] = deque()
        self._steps: deque[float] = deque(maxlen=4)
        self._run = (math.nan, 0.0)  # the run's upper error estimate and its weight (note_run)
        self._budget = 0.0  # bound_on='all': the error budget not yet turned into threshold moves
        self._all_sum, self._all_calls = 0.0, 0  # bound_on='all': sum of z_t, and calls
        self._all_var, self._all_audits = 0.0, 0  # bound_on='all': variance estimate of that sum, audits
        self._validated: float | None = None  # validated_uncertainty, kept until the history changes
        self._by_u: tuple[list[float], list[float], list[float]] | None = None  # spread_up_to's sums, likewise
        self.reconfigure(error_bound=error_bound, window=window, threshold_bounds=threshold_bounds,
                         max_step=max_step, confidence=confidence, bound_on=bound_on)

        self.threshold: float | None = None if threshold is None else self._clip_bounds(threshold)
        self.alpha: float | None = alpha
        self.beta = 0.0
        self.gain = 1.0
        self.oscillations = 0
        self.updates = 0

    _UNSET: Any = object()

    def reconfigure(self, error_bound: float = _UNSET, window: int = _UNSET,
                    threshold_bounds: tuple[float, float] | None = _UNSET, max_step: float | None = _UNSET,
                    confidence: float = _UNSET, bound_on: str = _UNSET) -> None:
        """Change settings now (all validated before any is applied).  The comparisons already
        gathered are kept; a smaller window keeps the newest."""
        unset = ThresholdController._UNSET
        new = {
            "error_bound": self.error_bound if error_bound is unset else
            _real("error_bound", error_bound, minimum=0.0, strict=True),
            "window": self.window_size if window is unset else window,
            "confidence": self.confidence if confidence is unset else
            _real("confidence", confidence, minimum=0.0),
            "max_step": self.max_step if max_step is unset else
            _real("max_threshold_step", max_step, minimum=0.0, strict=True, optional=True),
            "bound_on": self.bound_on if bound_on is unset else bound_on,
        }
        if not (_is_int(new["window"]) and new["window"] >= 2):
            raise ValueError(f"window must be an integer >= 2, got {new['window']!r}")
        if new["bound_on"] not in ("served", "all"):
            raise ValueError(f"bound_on must be 'served' or 'all', got {new['bound_on']!r}")
        if threshold_bounds is unset:
            t_min, t_max = self.t_min, self.t_max
        else:
            bounds = (0.0, math.inf) if threshold_bounds is None else tuple(threshold_bounds)
            try:
                t_min, t_max = (float(b) for b in bounds)
            except (TypeError, ValueError):
                raise ValueError(f"threshold_bounds must be two numbers (T_min, T_max), got {threshold_bounds!r}") \
                    from None
            if math.isnan(t_min) or math.isnan(t_max) or t_min < 0 or t_max <= t_min:
                raise ValueError(f"threshold_bounds must satisfy 0 <= T_min < T_max, got {threshold_bounds!r}")

        self.error_bound = new["error_bound"]
        self.window_size = int(new["window"])
        self.confidence = new["confidence"]
        self.max_step = new["max_step"]
        self.bound_on = new["bound_on"]
        self.t_min, self.t_max = t_min, t_max
        n_hist = self._alpha_history_arg if self._alpha_history_arg is not None else max(5 * self.window_size, 20)
        n_recent = self._recent_calls_arg if self._recent_calls_arg is not None else max(50, 5 * self.window_size)
        self._window = deque(self._window, maxlen=self.window_size)
        self._moments = None
        self._history = deque(self._history, maxlen=int(n_hist))
        self._validated = self._by_u = None
        self._recent_u = deque(self._recent_u, maxlen=int(n_recent))
        if getattr(self, "threshold", None) is not None:
            self.threshold = self._clip_bounds(self.threshold)

    # ------------------------------------------------------------------ inputs
    def note_uncertainty(self, u: float) -> None:
        """Record the uncertainty of any call (served or not): feeds anti-wind-up."""
        if math.isfinite(u):
            self._recent_u.append(float(u))

    def set_threshold(self, threshold: float) -> None:
        """Put T at ``threshold`` (clipped to the bounds) now, as a user's ``set(threshold=...)`` asks."""
        self.threshold = self._clip_bounds(_real("threshold", threshold, minimum=0.0))

    def note_call(self, u: float, passed: bool, p: float = 0.0, error: float = math.nan,
                  returned: bool = False) -> None:
        """``bound_on='all'``: one call of the run (see the module doc), the threshold moves.

        ``passed``: the gate let it through; ``p``: its audit probability; ``error``: its
        surrogate's error where it was audited (NaN otherwise); ``returned``: an audit returns
        the surrogate's answer.  Nothing for ``bound_on='served'``."""
        if self.bound_on != "all":
            return
        z, var = 0.0, 0.0
        if passed:
            share = 1.0 if returned else 1.0 - p
            guess = self._expected_error(u)
            z = share * guess
            if p > 0.0 and math.isfinite(error):
                z += share * (abs(error) - guess) / p
                var = (share * (abs(error) - guess)) ** 2 * (1.0 - p) / (p * p)
                self._all_audits += 1
        margin = self.confidence * math.sqrt(self._all_var)
        self._all_sum += z
        self._all_var += var
        self._all_calls += 1
        if self.threshold is not None:
            # the bound less `confidence` standard errors of the sum: the margin grows with its root
            self._budget += self.error_bound - z - (self.confidence * math.sqrt(self._all_var) - margin)
            self._spend_budget()

    def note_run(self, error: float, weight: float) -> None:
        """The run's upper estimate of its served error so far, and the share (0 to 1) of the
        horizon its past holds (see the module doc); NaN forgets it."""
        self._run = (float(error), min(max(float(weight), 0.0), 1.0))

    def observe(self, u: float, error: float) -> None:
        """Add one comparison (uncertainty, error of the surrogate against the target)."""
        if not (math.isfinite(u) and math.isfinite(error)):
            raise ValueError(f"comparison must be finite, got u={u!r}, error={error!r}")
        pair = (float(u), abs(float(error)))
        self._window.append(pair)
        self._history.append(pair)
        self._moments = self._validated = self._by_u = None

    # ----------------------------------------------------------------- outputs
    @property
    def ready(self) -> bool:
        """True once the threshold is set and the gate may serve surrogate answers."""
        return self.threshold is not None

    @property
    def window_error(self) -> float:
        """``eps_k``: mean error over the window (nan while it is empty)."""
        return self._window_moments()[0]

    @property
    def window_error_se(self) -> float:
        """Standard error of :attr:`window_error` (nan with fewer than two comparisons)."""
        return self._window_moments()[1]

    def _window_moments(self) -> tuple[float, float]:
        """Mean and standard error of the window's errors, kept until the window changes (they
        are asked several times on every call)."""
        if self._moments is None:
            n = len(self._window)
            mean = sum(e for _, e in self._window) / n if n else math.nan
            se = math.sqrt(sum((e - mean) ** 2 for _, e in self._window) / (n - 1) / n) if n >= 2 else math.nan
            self._moments = (mean, se)
        return self._moments

    @property
    def controlled_error(self) -> float:
        """``eps_k`` as the law uses it: window mean plus ``confidence`` standard errors."""
        if self.confidence == 0.0 or len(self._window) < 2:
            return self.window_error
        return self.window_error + self.confidence * self.window_error_se

    @property
    def all_error(self) -> float:
        """``bound_on='all'``: the run's mean of ``z_t``, an unbiased estimate of the mean error of
        every answer returned (NaN before any call)."""
        return self._all_sum / self._all_calls if self._all_calls else math.nan

    @property
    def all_error_se(self) -> float:
        """``bound_on='all'``: standard error of :attr:`all_error` from the audits' randomisation
        (unbiased variance estimate; at least the estimate over the root of the audit count: a few
        audits can look steadier than the errors are).  NaN before any call."""
        if not self._all_calls:
            return math.nan
        se = math.sqrt(self._all_var) / self._all_calls
        return max(se, self.all_error / math.sqrt(max(self._all_audits, 1)))

    @property
    def measured_error(self) -> float:
        """``eps_k`` as the law compares it with the bound: :attr:`controlled_error` (and the run's
        record, where higher); with the bound on all returned answers, :attr:`all_error`."""
        if self.bound_on == "all":
            return self.all_error
        eps = self.controlled_error
        run, weight = self._run
        if run > eps:  # False for NaN
            eps += weight * (run - eps)
        return eps

    def spread_up_to(self, u: float, minimum: int = 10) -> float:
        """The variance of the errors of the kept comparisons whose uncertainty is at most ``u``
        (NaN with fewer than ``minimum`` of them, or ``u`` NaN): how widely an answer this certain
        may err."""
        if not u == u:
            return math.nan
        if self._by_u is None:  # asked on every call, changed only by a comparison: sorted once
            pairs = sorted(self._history)
            sums, squares, total, total2 = [0.0], [0.0], 0.0, 0.0
            for _, e in pairs:
                total, total2 = total + e, total2 + e * e
                sums.append(total)
                squares.append(total2)
            self._by_u = ([v for v, _ in pairs], sums, squares)
        us, sums, squares = self._by_u
        k = bisect.bisect_right(us, u)
        if k < max(minimum, 2):
            return math.nan
        return max(squares[k] - sums[k] * sums[k] / k, 0.0) / (k - 1)

    @property
    def validated_uncertainty(self) -> float:
        """The largest uncertainty among the comparisons kept (NaN before any): beyond it the
        error's dependence on the uncertainty is extrapolated."""
        if self._validated is None:
            self._validated = max((u for u, _ in self._history), default=math.nan)
        return self._validated

    @property
    def window_full(self) -> bool:
        return len(self._window) == self.window_size

    def allows(self, u: float) -> bool:
        """The gate: may a call with uncertainty ``u`` be served by the surrogate?"""
        return self.threshold is not None and math.isfinite(u) and u < self.threshold

    # ------------------------------------------------------------------ update
    def update(self, measured_error: float | None = None) -> float | None:
        """One control step; returns the new threshold (``None`` while starting up).

        ``measured_error`` overrides :attr:`measured_error` (for tests of the law alone).
        """
        scale = self._scale()
        self._estimate_alpha(scale)
        if self.threshold is None:
            if not (self.window_full or self._clearly_below()) or self.alpha is None:
                return None
            t0 = (0.5 * self.error_bound - self.beta) / self.alpha
            # the line is extrapolated from a handful of comparisons: no further than a
            # running threshold may reach past the uncertainties seen
            t0 = min(t0, self._windup_cap(self.measured_error))
            # and a line whose intercept is over half the bound starts from the wind-down floor, not 0
            self.threshold = self._clip_bounds(max(t0, self._winddown_floor()))
            return self.threshold

        if self.bound_on == "all" and measured_error is None:  # the threshold moves on every call
            return self.threshold
        eps = self.measured_error if measured_error is None else float(measured_error)
        if not math.isfinite(eps):
            return self.threshold
        alpha = self.alpha if self.alpha is not None else self._alpha_floor(scale)
        # each comparison stays in the window for N updates: 1/N of the thesis's per-step
        # correction adds up to one full correction per window (the literal law overshoots N-fold)
        step = -self.gain * (eps - self.error_bound) / (alpha * self.window_size)
        dmax = self._step_limit(scale)
        step = min(max(step, -dmax), dmax)
        new_t = self._clip_bounds(self.threshold + step)
        new_t = min(new_t, max(self._windup_cap(eps), self.t_min))
        if step < 0:  # no lower than the wind-down floor, unless it is lower already
            new_t = max(new_t, min(self.threshold, self._winddown_floor()))
        applied = new_t - self.threshold
        self.threshold = new_t
        self.updates += 1
        self._watch_oscillation(applied, scale)
        return self.threshold

    # --------------------------------------------------------------- internals
    def _expected_error(self, u: float) -> float:
        """The fitted line's error at ``u`` (never below zero; the window's mean before a line)."""
        if self.alpha is None or not math.isfinite(u):
            mean = self.window_error
            return mean if math.isfinite(mean) else 0.0
        return max(self.alpha * u + self.beta, 0.0)

    def _spend_budget(self) -> None:
        """``bound_on='all'``: turn the error budget into a threshold move, at most ``dT_max`` a
        call; what the anti-wind-up cap refuses upwards is dropped, a debt the floor holds back
        is kept."""
        scale = self._scale()
        alpha = self.alpha if self.alpha is not None else self._alpha_floor(scale)
        kappa = self.gain / (2.0 * self.window_size)
        dmax = self._step_limit(scale)
        target = self.threshold + min(max(kappa * self._budget / alpha, -dmax), dmax)
        # how far past the uncertainties seen it may reach: as for served answers, by the margin of
        # the window's error (the mean over every answer, diluted by the target's, would say more)
        cap = max(self._windup_cap(self.controlled_error), self.t_min)
        new_t = min(self._clip_bounds(target), cap)
        applied = new_t - self.threshold
        self._budget -= applied * alpha / kappa
        if new_t < target:  # held down by the cap or T_max: the credit it could not take is dropped
            self._budget = min(self._budget, 0.0)
        self.threshold = new_t
        self.updates += 1
        self._watch_oscillation(applied, scale)

    def _scale(self) -> float:
        """Typical size of the uncertainty signal (median |u| of recent calls), for scale-free defaults."""
        us = self._recent_u or [u for u, _ in self._history]
        if not us:
            return 1.0
        ordered = sorted(abs(u) for u in us)
        mid = len(ordered) // 2
        med = ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])
        if med > 1e-100:
            return med
        return ordered[-1] if ordered[-1] > 1e-100 else 1.0

    def _alpha_floor(self, scale: float) -> float:
        return 1e-3 * self.error_bound / scale

    def _clearly_below(self) -> bool:
        """The window's comparisons plainly under the bound (:func:`clearly_below`)."""
        return clearly_below(len(self._window), self.window_error, self.window_error_se, self.early,
                             self.error_bound)

    def _windup_cap(self, eps: float) -> float:
        """``T_max_eff`` (module doc): ``headroom * max(u)`` over the recent calls, widened by
        ``sqrt(eps* / eps)`` up to ``max_headroom`` times while the error ``eps`` is below the bound."""
        if not self._recent_u:
            return math.inf
        margin = math.sqrt(self.error_bound / eps) if eps > 0 else math.inf
        return self.headroom * max(self._recent_u) * min(max(margin, 1.0), self.max_headroom)

    def _winddown_floor(self) -> float:
        """The lowest a falling threshold goes: ``min(u) / headroom`` over the recent calls.  Below
        every uncertainty seen lately nothing is served, so lowering it further serves nothing
        less; it only delays serving again once the comparisons show the error back under the
        bound (the mirror of the anti-wind-up cap)."""
        if not self._recent_u:
            return self.t_min
        return max(min(self._recent_u) / self.headroom, self.t_min)

    def _step_limit(self, scale: float) -> float:
        """``dT_max``: the user's, or a quarter of the uncertainty scale."""
        return self.max_step if self.max_step is not None else 0.25 * scale

    def _clip_bounds(self, t: float) -> float:
        return float(min(max(t, self.t_min), self.t_max))

    def _estimate_alpha(self, scale: float) -> None:
        """Least-squares line e = alpha*u + beta over the history (plain Python: n is small)."""
        if self.fixed_alpha is not None:
            self.alpha, self.beta = self.fixed_alpha, 0.0
            return
        n = len(self._history)
        if n < 3:
            return
        mu = sum(u for u, _ in self._history) / n
        me = sum(e for _, e in self._history) / n
        suu = sum((u - mu) ** 2 for u, _ in self._history)
        if not (math.isfinite(suu) and suu > 1e-300):
            return
        slope = sum((u - mu) * (e - me) for u, e in self._history) / suu
        if not math.isfinite(slope):
            return
        floor = self._alpha_floor(scale)
        if slope >= floor:
            self.alpha, self.beta = slope, me - slope * mu
        else:  # error not rising with u here: keep the line through the mean at the floor slope
            self.alpha, self.beta = floor, me - floor * mu

    def _watch_oscillation(self, step: float, scale: float) -> None:
        """Halve the gain when the threshold swings back and forth without the swings shrinking.

        Consecutive steps of one sign are merged into a *swing*; four alternating
        swings, each at least 90 % of the one before and larger than a tenth of
        the uncertainty scale (noise around the set point makes small ones), are
        an oscillation: the gain is halved for the rest of the run (a plant whose
        slope the regression underestimates more than twofold, DESIGN section 2)
        and the event is counted for the user.
        """
        if step == 0.0:
            return
        if self._steps and (self._steps[-1] > 0) == (step > 0):
            self._steps[-1] += step
        else:
            self._steps.append(step)
        swings = [abs(x) for x in self._steps]
        if len(swings) < self._steps.maxlen:
            return
        significant = min(swings) >= 0.1 * scale
        sustained = all(swings[i + 1] >= 0.9 * swings[i] for i in range(len(swings) - 1))
        if significant and sustained:
            self.oscillations += 1
            self.gain = max(self.gain * 0.5, 1.0 / 64)
            self._steps.clear()

    def summary(self) -> dict[str, Any]:
        """What the run statistics show of the controller."""
        nan = math.nan
        return {"window_error": self.window_error, "controlled_error": self.controlled_error,
                "threshold": nan if self.threshold is None else self.threshold,
                "alpha": nan if self.alpha is None else self.alpha, "gain": self.gain,
                "oscillations": self.oscillations}

    # ------------------------------------------------------------ persistence
    def state(self) -> ControllerState:
        return ControllerState(
            threshold=self.threshold,
            alpha=self.alpha,
            beta=self.beta,
            gain=self.gain,
            oscillations=self.oscillations,
            updates=self.updates,
            window=list(self._window),
            history=list(self._history),
            recent_u=list(self._recent_u),
            steps=list(self._steps),
            budget=self._budget,
            all_error_sum=self._all_sum,
            all_calls=self._all_calls,
            all_error_var=self._all_var,
            all_audits=self._all_audits,
        )

    def load_state(self, state: ControllerState | dict[str, Any]) -> None:
        if isinstance(state, dict):
            state = ControllerState.from_dict(state)
        self.threshold = state.threshold
        self.alpha = state.alpha
        self.beta = state.beta
        self.gain = state.gain
        self.oscillations = state.oscillations
        self.updates = state.updates
        self._window = deque((tuple(p) for p in state.window), maxlen=self.window_size)
        self._moments = None
        self._history = deque((tuple(p) for p in state.history), maxlen=self._history.maxlen)
        self._validated = self._by_u = None
        self._recent_u = deque(state.recent_u, maxlen=self._recent_u.maxlen)
        self._steps = deque(state.steps, maxlen=4)
        self._budget = float(state.budget)
        self._all_sum, self._all_calls = float(state.all_error_sum), int(state.all_calls)
        self._all_var, self._all_audits = float(state.all_error_var), int(state.all_audits)


def clearly_below(n: int, mean: float, se: float, early: int | None, bound: float) -> bool:
    """``early`` comparisons or more (at least three) whose mean plus two standard errors is under a
    quarter of the bound: evidence enough to serve before a whole window."""
    if early is None or n < max(early, 3):
        return False
    return mean + 2.0 * se < 0.25 * bound


def _is_int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _real(name: str, value: Any, minimum: float, strict: bool = False, optional: bool = False) -> float | None:
    """``value`` as a finite float >= ``minimum`` (> with ``strict``); numpy scalars welcome."""
    if value is None and optional:
        return None
    relation = ">" if strict else ">="
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        raise ValueError(f"{name} must be a finite number {relation} {minimum:g}, got {value!r}")
    return v
