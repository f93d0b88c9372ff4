"""The uncertainty-rise measure of a stale model (pure numerics) and what the calculator does with it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima import ProximaCalculator
from ase_proxima.staleness import UncertaintyRise


def test_stale_once_the_newest_median_is_over_factor_times_the_reference():
    rise = UncertaintyRise(newest=5, factor=2.0)
    for u in (1.0, 1.1, 0.9, 1.0, 1.2):  # the reference: median 1.0
        rise.note(u)
    for u in (2.0, 2.0, 2.0, 2.0):
        rise.note(u)
    assert not rise.risen  # four of five newest: not yet judged
    rise.note(2.0)
    assert not rise.risen  # exactly twice: not over
    rise.note(2.5)
    rise.note(2.5)
    rise.note(2.5)
    assert rise.risen  # median of the newest five 2.5
    rise.refitted()
    assert rise.refits == 1 and not rise.risen
    rise.refitted()  # a refit with nothing risen is not counted
    assert rise.refits == 1


def test_unknown_uncertainty_is_not_counted_and_bad_settings_are_refused():
    rise = UncertaintyRise(newest=3)
    for u in (math.nan, math.inf, 1.0, 1.0, 1.0, 5.0, math.nan, 5.0, 5.0):
        rise.note(u)
    assert rise.risen
    with pytest.raises(ValueError):
        UncertaintyRise(newest=2)
    with pytest.raises(ValueError):
        UncertaintyRise(factor=1.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-6, 1e3), min_size=0, max_size=80), st.floats(1.1, 5.0), st.integers(3, 12))
def test_the_state_continues_identically_and_a_steady_or_falling_run_is_never_stale(us, factor, newest):
    rise = UncertaintyRise(newest, factor)
    for u in us[: len(us) // 2]:
        rise.note(u)
    again = UncertaintyRise(newest, factor)
    again.load_state(json.loads(json.dumps(rise.state())))
    for u in us[len(us) // 2:]:
        rise.note(u)
        again.note(u)
        assert again.risen == rise.risen
    falling = UncertaintyRise(newest, factor)
    for u in sorted(us, reverse=True):
        falling.note(u)
        assert not falling.risen


def _rattled_cu(cold: int, warming: int, hottest: float, seed: int = 0) -> list:
    """Cu32 cells rattled about the lattice: ``cold`` at 0.03 A, then ``warming`` whose rattle
    grows to ``hottest`` (a heating run's structures, drawn independently)."""
    cell = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    rng = np.random.default_rng(seed)
    frames = []
    for amplitude in [0.03] * cold + list(np.linspace(0.03, hottest, warming)):
        frame = cell.copy()
        frame.positions += rng.normal(0.0, amplitude, frame.positions.shape)
        frames.append(frame)
    return frames


def _run(frames: list) -> ProximaCalculator:
    # refits never affordable: only a model never fitted, data doubled, an error over the bound
    # or a risen uncertainty bring one
    calc = ProximaCalculator(target=EMT(), error_bound=0.1, error_metric="forces_mean", seed=0,
                             cost_aware=False, refit_share=1e-9)
    for frame in frames:
        frame.calc = calc
        frame.get_forces()
    return calc


def test_a_model_whose_uncertainty_has_risen_is_refitted_before_the_data_double():
    """Found on the heating ramp (Cu108 EMT, 300 to 2000 K): with a cheap target no refit fitted
    ``refit_share`` and the next waited for the data to double, so the start-up model served
    hundreds of calls of a rising temperature, its error climbing with it (worst 100-call block
    1.14x the bound) while the run's mean stayed under it.  Here the same on a small cell: the model
    fitted on the first 20 cold cells served 170 of 200 calls while the uncertainty grew tenfold."""
    warming = _run(_rattled_cu(40, 160, 0.08))
    served = [r for r in warming.log if r["kind"] == "surrogate"]
    assert served[-1]["n_fitted"] > 20  # the last answers come from a model that saw warm cells
    s = warming.stats
    assert s["refits_on_risen_uncertainty"] >= 2  # the uncertainty climbed about tenfold
    assert s["surrogate_calls"] >= 100  # and the run still serves

    steady = _run(_rattled_cu(200, 0, 0.03))
    assert steady.stats["refits_on_risen_uncertainty"] == 0
