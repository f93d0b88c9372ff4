"""Metropolis Monte Carlo driver and replay, with EMT."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.units import kB
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima.workflows import MonteCarlo, radius_of_gyration, replay


def test_radius_of_gyration_is_mass_weighted():
    ch4 = molecule("CH4")
    assert radius_of_gyration(ch4) == pytest.approx(0.5463, abs=1e-4)
    m = ch4.get_masses()
    r = ch4.positions - ch4.get_center_of_mass()
    assert radius_of_gyration(ch4) == pytest.approx(np.sqrt(np.sum(m * np.sum(r**2, axis=1)) / m.sum()))


def test_seeded_runs_repeat_and_differ_across_seeds():
    a = MonteCarlo(molecule("CH4"), EMT(), 500, step_size=0.01, seed=7).run(80)
    b = MonteCarlo(molecule("CH4"), EMT(), 500, step_size=0.01, seed=7).run(80)
    c = MonteCarlo(molecule("CH4"), EMT(), 500, step_size=0.01, seed=8).run(80)
    np.testing.assert_array_equal(a.energies, b.energies)
    assert not np.array_equal(a.energies, c.energies)


def test_metropolis_rule_with_kt_in_ev():
    # at 1 K (kT = 86 ueV) a 0.05 A move raises the energy by far more than kT: nearly all uphill moves fail
    cold = MonteCarlo(molecule("CH4"), EMT(), 1.0, step_size=0.05, seed=0).run(100)
    hot = MonteCarlo(molecule("CH4"), EMT(), 1e5, step_size=0.05, seed=0).run(100)
    assert cold.acceptance_ratio < 0.3 < hot.acceptance_ratio
    # every accepted uphill move had probability exp(-dE/kT): none at 1 K beyond ~10 kT
    prev = np.concatenate([[cold.energies[0]], cold.energies[:-1]])
    uphill = cold.accepted & (cold.trial_energies > prev)
    assert np.all(cold.trial_energies[uphill] - prev[uphill] < 20 * kB * 1.0)
    # the current energy only changes on acceptance
    assert np.all((np.diff(cold.energies) != 0) <= cold.accepted[1:])


def test_observer_and_trajectory_then_replay(tmp_path):
    seen = []
    traj = tmp_path / "mc.traj"
    mc = MonteCarlo(molecule("CH4"), EMT(), 800, step_size=0.01, seed=1, trajectory=traj,
                    observer=lambda step, atoms, e, ok: seen.append((step, e, ok)))
    res = mc.run(50)
    assert [s for s, _, _ in seen] == list(range(50))
    assert [e for _, e, _ in seen] == list(res.energies)
    rep = replay(traj, EMT())
    assert len(rep.energies) == 51  # the start plus 50 trials
    np.testing.assert_allclose(rep.errors, 0.0, atol=1e-12)
    np.testing.assert_array_equal(rep.accepted[1:], res.accepted)
    np.testing.assert_allclose(rep.rog[1:], res.rog)
    np.testing.assert_allclose(rep.reference[1:], res.trial_energies)
    assert rep.speedup > 0


def test_run_continues_from_the_last_state():
    mc = MonteCarlo(molecule("CH4"), EMT(), 500, step_size=0.01, seed=3)
    first = mc.run(20)
    np.testing.assert_allclose(mc.atoms.positions, first.final.positions)
    second = mc.run(20)
    assert second.energies.size == 20


@settings(max_examples=30, deadline=None)
@given(temperature=st.floats(-1e3, 0.0), step=st.floats(-1.0, 0.0))
def test_invalid_settings_rejected(temperature, step):
    with pytest.raises(ValueError):
        MonteCarlo(molecule("CH4"), EMT(), temperature)
    with pytest.raises(ValueError):
        MonteCarlo(molecule("CH4"), EMT(), 300.0, step_size=step)


def test_zero_steps_rejected():
    with pytest.raises(ValueError):
        MonteCarlo(molecule("CH4"), EMT(), 300.0).run(0)
