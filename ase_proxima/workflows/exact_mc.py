"""Exact Monte Carlo with a cheap screen: delayed acceptance and nested (multi-step) chains.

The bounded-error mode of a :class:`~ase_proxima.ProximaCalculator` serves approximate energies,
so a Metropolis chain driven by it samples a slightly wrong distribution.  The chains here use a
cheap model only to *propose*, and the target to accept, so they sample the target's Boltzmann
distribution exactly:

* **Delayed acceptance** (Christen and Fox, 2005), ``inner_steps=1``: a displacement is first
  accepted or rejected on the screen's energy ``S``; only a survivor is evaluated by the target
  ``E``, and accepted with ``min(1, exp(-[(E(y) - E(x)) - (S(y) - S(x))] / kT))``.  A proposal
  the screen rejects costs no target call.
* **Nested chains** (Iftimie et al. 2000; Gelb 2003), ``inner_steps=k``: ``k`` Metropolis steps
  on ``S`` from the current state make one composite proposal, accepted with the same ratio.
  The inner chain is reversible with respect to ``exp(-S / kT)``, so its ``k``-step kernel is too,
  and the ratio above is the Metropolis-Hastings ratio of the composite move: larger moves per
  target call, the target distribution unchanged.  Delayed acceptance is the case ``k = 1``;
  an inner chain that never moved leaves the state as it was without a target call.

Exactness needs the screen to be one fixed function while the chain samples.  A screen that
learns (:class:`~ase_proxima.screens.LearnedScreen`) therefore learns only during ``burn_in``
steps, from every target energy the chain computes, and is then frozen: "adapt during burn-in,
then freeze".  A kernel that keeps changing with the chain's own past is not a Markov chain, and
the conditions under which diminishing adaptation still converges (containment) cannot be
checked for a model refitted on the fly; after the freeze the chain is an ordinary
time-homogeneous Metropolis-Hastings chain whose stationary distribution is exactly the
target's.  The burn-in steps are not samples: :meth:`ExactMonteCarlo.samples` and the
statistics start after them.  Until the screen can answer (a learned one before its first fit)
every proposal goes to the target: plain Metropolis, exact as well.

Efficiency is measured as target calls per effective sample, the effective sample size from the
integrated autocorrelation time (emcee's estimator, Sokal's automatic window) of the energy and
of the radius of gyration, the smaller of the two counting; :func:`tune` compares settings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
from ase import Atoms

from ..screens import LearnedScreen, Screen, as_screen
from .mc import MonteCarlo, radius_of_gyration

__all__ = ["ExactMonteCarlo", "effective_samples", "tune"]

#: steps a learned screen learns for when the user names no burn-in and it cannot screen yet
DEFAULT_BURN_IN = 300


def effective_samples(series: Iterable[float]) -> float:
    """Effective sample size ``n / tau`` of a chain's series, ``tau`` its integrated
    autocorrelation time (emcee's estimator with Sokal's window, ``c = 5``; no minimum chain
    length is enforced, so a short chain's value is rough).  A constant series has none
    (``nan``)."""
    from emcee.autocorr import integrated_time

    x = np.asarray(list(series), float)
    if x.size < 2 or not np.all(np.isfinite(x)) or np.ptp(x) == 0.0:
        return math.nan
    tau = float(integrated_time(x, c=5, tol=0, quiet=True)[0])
    return x.size / max(tau, 1.0)


class ExactMonteCarlo(MonteCarlo):
    """Metropolis sampling of ``atoms.calc`` (the target) with proposals screened by a cheap model.

    Parameters
    ----------
    atoms:
        The structure to sample; its calculator is the target.
    temperature_K, step_size, rng, logfile, trajectory, append_trajectory, loginterval, skip_failed:
        As :class:`~ase_proxima.workflows.mc.MonteCarlo` (``step_size`` is the half-width of each
        inner step's displacement).
    screen:
        What proposals are screened with: any ASE calculator (fixed), a ProximaCalculator (its
        surrogate family, baseline and training data, see
        :meth:`~ase_proxima.screens.LearnedScreen.from_proxima`), a
        :class:`~ase_proxima.screens.Screen`, or ``None`` for a fresh learned SOAP surrogate.
    inner_steps:
        Screen steps per target evaluation: 1 is delayed acceptance, more a nested chain.
    burn_in:
        Steps during which a learned screen learns from the target's energies; they are not
        samples.  ``None``: none for a screen ready at the start, else 300.
    """

    def __init__(self, atoms: Atoms, temperature_K: float, step_size: float = 0.003, screen: Any = None,
                 inner_steps: int = 1, burn_in: int | None = None, rng: np.random.Generator | int | None = None,
                 logfile: IO | str | None = None, trajectory: str | Path | None = None,
                 append_trajectory: bool = False, loginterval: int = 1, skip_failed: bool = False) -> None:
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, (int, np.integer)) or inner_steps < 1:
            raise ValueError(f"inner_steps must be an integer >= 1, got {inner_steps!r}")
        if burn_in is not None and (isinstance(burn_in, bool) or int(burn_in) != burn_in or burn_in < 0):
            raise ValueError(f"burn_in must be an integer >= 0 or None, got {burn_in!r}")
        super().__init__(atoms, temperature_K, step_size, rng=rng, logfile=logfile, trajectory=trajectory,
                         append_trajectory=append_trajectory, loginterval=loginterval, skip_failed=skip_failed)
        from ..calculator import ProximaCalculator

        if isinstance(atoms.calc, ProximaCalculator):
            raise ValueError("atoms.calc is a ProximaCalculator, whose answers are approximate: set atoms.calc to "
                             "its target and pass the ProximaCalculator as screen= (its surrogate then screens)")
        if screen is atoms.calc:
            raise ValueError("the screen is the target itself: pass a cheaper calculator, or None to learn one")
        self.screen: Screen = as_screen(screen)
        self.inner_steps = int(inner_steps)
        learns = isinstance(self.screen, LearnedScreen) and not self.screen.ready
        self.burn_in = (DEFAULT_BURN_IN if learns else 0) if burn_in is None else int(burn_in)
        self._screen_x: float | None = None  # the screen's energy of the current state
        self._screen_version = -1
        self._probe = atoms.copy()  # the inner chain's moving structure (positions only change)
        self._probe.calc = None
        self.counts = {"target_calls": 0, "target_calls_sampling": 0, "proposals": 0, "moved": 0,
                       "inner_steps": 0, "inner_accepted": 0, "second_stage": 0, "second_stage_accepted": 0}
        self.target_seconds = 0.0

    def todict(self) -> dict[str, Any]:
        return {**super().todict(), "mc-type": "exact", "inner_steps": self.inner_steps, "burn_in": self.burn_in}

    @property
    def sampling(self) -> bool:
        """Is the chain past its burn-in (its steps samples of the target's distribution)?"""
        return self.nsteps >= self.burn_in

    def _evaluate(self, trial: Atoms) -> float:
        energy = super()._evaluate(trial)
        self.counts["target_calls"] += 1
        self.counts["target_calls_sampling"] += self.sampling
        self.target_seconds += self.call_time
        if not self.sampling:
            version = self.screen.version
            self.screen.learn(trial, energy)
            if self.screen.version != version:
                self._screen_x = None  # refitted: the current state's screen energy is stale
        return energy

    def _screen_current(self) -> float:
        if self._screen_x is None or self._screen_version != self.screen.version:
            self._probe.positions = self.atoms.positions
            self._screen_x = self.screen.energy(self._probe)
            self._screen_version = self.screen.version
        return self._screen_x

    def step(self) -> None:
        """One composite proposal: ``inner_steps`` screen steps, then the target's accept test
        (none when the inner chain did not move)."""
        if self.sampling and not getattr(self.screen, "frozen", True):
            self.screen.freeze()
        screening = self.screen.ready
        c = self.counts
        c["proposals"] += 1
        s_x = self._screen_current() if screening else 0.0
        s_y, moved = s_x, False
        y = self.atoms.positions.copy()
        for _ in range(self.inner_steps if screening else 1):
            z = y + self.rng.uniform(-self.step_size, self.step_size, y.shape)
            if not screening:  # nothing to screen with: the target decides alone (plain Metropolis)
                y, moved = z, True
                break
            self._probe.positions = z
            s_z = self.screen.energy(self._probe)
            c["inner_steps"] += 1
            d = s_z - s_y
            if math.isfinite(d) and (d <= 0.0 or self.rng.random() < math.exp(-d / self.kT)):
                y, s_y, moved = z, s_z, True
                c["inner_accepted"] += 1
        trial = self.atoms.copy()
        trial.positions = y
        self.trial = trial
        self.accepted = False
        if not moved:  # the screen kept the state: no target call, nothing to correct
            self.trial_energy, self.call_time = math.nan, 0.0
        else:
            c["moved"] += 1
            c["second_stage"] += 1
            version = self.screen.version
            self.trial_energy = self._evaluate(trial)
            log_ratio = -((self.trial_energy - self.energy) - (s_y - s_x)) / self.kT
            self.accepted = bool(math.isfinite(log_ratio) and (log_ratio >= 0.0
                                                               or self.rng.random() < math.exp(log_ratio)))
            if self.accepted:
                c["second_stage_accepted"] += 1
                self.atoms.positions = y
                self.energy = self.trial_energy
                if screening and self.screen.version == version:
                    self._screen_x = s_y
        h = self._history
        h["energies"].append(self.energy)
        h["trials"].append(self.trial_energy)
        h["accepted"].append(self.accepted)
        self._accepted_count += self.accepted
        if self.accepted or self._rog is None:
            self._rog = radius_of_gyration(self.atoms)
        h["rog"].append(self._rog)
        h["times"].append(self.call_time)

    # ----------------------------------------------------------- results
    def samples(self) -> dict[str, np.ndarray]:
        """The target energy and radius of gyration of the state after each step past the burn-in."""
        h, first = self._history, min(self.burn_in, len(self._history["energies"]))
        return {"energy": np.array(h["energies"][first:], float), "rog": np.array(h["rog"][first:], float)}

    @property
    def stats(self) -> dict[str, Any]:
        """Acceptance at each stage, target calls, the screen's work, time split and efficiency
        (target calls per effective sample, after the burn-in)."""
        c, n = self.counts, len(self._history["accepted"])
        kept = self.samples()
        ess = {k: effective_samples(v) for k, v in kept.items()}
        worst = min((v for v in ess.values() if math.isfinite(v)), default=math.nan)
        calls = c["target_calls_sampling"]
        return {"steps": n, "burn_in": min(self.burn_in, n), "samples": len(kept["energy"]),
                "inner_steps": self.inner_steps, "step_size": self.step_size,
                "target_calls": c["target_calls"], "target_calls_sampling": calls,
                "first_stage_acceptance": c["inner_accepted"] / c["inner_steps"] if c["inner_steps"] else math.nan,
                "moved_share": c["moved"] / c["proposals"] if c["proposals"] else math.nan,
                "second_stage_acceptance": (c["second_stage_accepted"] / c["second_stage"]
                                            if c["second_stage"] else math.nan),
                "acceptance": self.acceptance_ratio,
                "effective_samples_energy": ess["energy"], "effective_samples_rog": ess["rog"],
                "target_calls_per_effective_sample": calls / worst if worst > 0 else math.nan,
                "time_target": self.target_seconds, "time_total": self._wall, **self.screen.summary()}

    @property
    def acceptance_ratio(self) -> float:
        return self._accepted_count / len(self._history["accepted"]) if self._history["accepted"] else math.nan

    def state(self) -> dict[str, Any]:
        """What continues this chain (plain JSON): the walk's state, the counters, and the screen's
        (its training data: a learned screen is refitted on them, see
        :meth:`~ase_proxima.screens.LearnedScreen.restore`)."""
        return {**super().state(), "counts": dict(self.counts), "target_seconds": self.target_seconds,
                "screen": self.screen.state()}

    def restore(self, state: dict[str, Any], trajectory: str | Path | None = None) -> None:
        """Continue from :meth:`state`; with the chain's ``trajectory`` (steps before the saved one),
        its history too, so that its statistics cover the whole chain."""
        super().restore(state)
        self.counts = {k: int(v) for k, v in state["counts"].items()}
        self.target_seconds = float(state["target_seconds"])
        self.screen.restore(state["screen"])
        self._screen_x, self._screen_version = None, -1
        if trajectory is not None:
            self._history, self._accepted_count = _history_from(trajectory, self.nsteps)

def _history_from(trajectory: str | Path, steps: int) -> tuple[dict[str, list], int]:
    """A chain's per-step history rebuilt from its trajectory (one record per step's trial,
    the decision in its info; the start first), for its first ``steps`` steps."""
    from ase.io.trajectory import Trajectory

    h: dict[str, list] = {k: [] for k in ("energies", "trials", "accepted", "rog", "times")}
    current = None
    with Trajectory(trajectory, "r") as frames:
        for i in range(len(frames)):
            rec = frames[i]
            step = int(rec.info["step"])
            if step < 0:
                current = rec
                continue
            if step >= steps:
                break
            if rec.info["accepted"]:
                current = rec
            h["energies"].append(float(current.get_potential_energy()))
            h["trials"].append(float(rec.get_potential_energy()))
            h["accepted"].append(bool(rec.info["accepted"]))
            h["rog"].append(radius_of_gyration(current))
            h["times"].append(float(rec.info["call_time"]))
    return h, int(sum(h["accepted"]))


def tune(atoms: Atoms, temperature_K: float, settings: Iterable[tuple[float, int]], steps: int, screen: Any = None,
         rng: int = 0) -> list[dict[str, Any]]:
    """Short chains of ``atoms`` (its calculator the target) for each ``(step_size, inner_steps)``,
    all with one screen; their statistics, most efficient first (fewest target calls per
    effective sample).  ``inner_steps = 0`` is the target alone (plain Metropolis, one call per
    step).  A learned screen should be trained and frozen first (an exact chain's burn-in, or
    :meth:`~ase_proxima.screens.LearnedScreen.from_proxima`): every chain here samples from its
    first step."""
    screen = None if screen is None else as_screen(screen)
    rows = []
    for step_size, inner in settings:
        a = atoms.copy()
        a.calc = atoms.calc
        if inner == 0:
            mc = MonteCarlo(a, temperature_K, step_size, rng=rng)
            result = mc.run(steps)
            kept = {"energy": result.energies, "rog": result.rog}
            ess = {k: effective_samples(v) for k, v in kept.items()}
            worst = min((v for v in ess.values() if math.isfinite(v)), default=math.nan)
            rows.append({"step_size": step_size, "inner_steps": 0, "steps": steps, "target_calls_sampling": steps,
                         "acceptance": result.acceptance_ratio, "effective_samples_energy": ess["energy"],
                         "effective_samples_rog": ess["rog"],
                         "target_calls_per_effective_sample": steps / worst if worst > 0 else math.nan})
            continue
        if screen is None:
            raise ValueError("a setting with inner_steps >= 1 needs a screen")
        screen.freeze()
        mc = ExactMonteCarlo(a, temperature_K, step_size, screen=screen, inner_steps=inner, burn_in=0, rng=rng)
        mc.run(steps)
        rows.append(mc.stats)
    return sorted(rows, key=lambda r: (not math.isfinite(r["target_calls_per_effective_sample"]),
                                       r["target_calls_per_effective_sample"]))
