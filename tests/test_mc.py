"""Metropolis Monte Carlo as an ASE driver (BaseDynamics), and replay, with EMT."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import read
from ase.optimize.optimize import BaseDynamics
from ase.units import kB
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima.faults import FaultInjector
from ase_proxima.workflows import MonteCarlo, radius_of_gyration, replay, walk_summary


def _ch4(calc=None):
    atoms = molecule("CH4")
    atoms.calc = calc if calc is not None else EMT()
    return atoms


def test_radius_of_gyration_is_mass_weighted():
    ch4 = molecule("CH4")
    assert radius_of_gyration(ch4) == pytest.approx(0.5463, abs=1e-4)
    m = ch4.get_masses()
    r = ch4.positions - ch4.get_center_of_mass()
    assert radius_of_gyration(ch4) == pytest.approx(np.sqrt(np.sum(m * np.sum(r**2, axis=1)) / m.sum()))


def test_seeded_runs_repeat_and_differ_across_seeds():
    a = MonteCarlo(_ch4(), 500, step_size=0.01, rng=7).run(80)
    b = MonteCarlo(_ch4(), 500, step_size=0.01, rng=7).run(80)
    c = MonteCarlo(_ch4(), 500, step_size=0.01, rng=8).run(80)
    np.testing.assert_array_equal(a.energies, b.energies)
    assert not np.array_equal(a.energies, c.energies)


def test_metropolis_rule_with_kt_in_ev():
    # at 1 K (kT = 86 ueV) a 0.05 A move raises the energy by far more than kT: nearly all uphill moves fail
    cold = MonteCarlo(_ch4(), 1.0, step_size=0.05, rng=0).run(100)
    hot = MonteCarlo(_ch4(), 1e5, step_size=0.05, rng=0).run(100)
    assert cold.acceptance_ratio < 0.3 < hot.acceptance_ratio
    # every accepted uphill move had probability exp(-dE/kT): none at 1 K beyond ~10 kT
    prev = np.concatenate([[cold.energies[0]], cold.energies[:-1]])
    uphill = cold.accepted & (cold.trial_energies > prev)
    assert np.all(cold.trial_energies[uphill] - prev[uphill] < 20 * kB * 1.0)
    # the current energy only changes on acceptance
    assert np.all((np.diff(cold.energies) != 0) <= cold.accepted[1:])


def test_5_it_is_an_ase_driver_that_moves_the_users_atoms(tmp_path):
    atoms = _ch4()
    start = atoms.positions.copy()
    log = io.StringIO()
    mc = MonteCarlo(atoms, 800, step_size=0.01, rng=1, logfile=log)
    assert isinstance(mc, BaseDynamics)
    seen = []
    mc.attach(lambda: seen.append((mc.nsteps, mc.trial.copy(), mc.trial_energy, mc.accepted, mc.energy)))
    every_fifth = []
    mc.attach(lambda: every_fifth.append(mc.nsteps), interval=5)
    for accepted in mc.irun(30):
        assert accepted == mc.accepted
    assert mc.nsteps == 30 and [s for s, *_ in seen] == list(range(31))  # the start, then every step
    assert every_fifth == [0, 5, 10, 15, 20, 25, 30]
    assert not np.allclose(atoms.positions, start)  # the user's atoms moved
    # the observer saw each trial with its energy and the decision
    for _, trial, e_trial, accepted, e_current in seen[1:]:
        assert e_trial == pytest.approx(EMT().get_potential_energy(trial))
        if accepted:
            assert e_current == e_trial
    assert atoms.get_potential_energy() == pytest.approx(mc.energy)
    assert len(log.getvalue().splitlines()) == 31 and "MonteCarlo: step" in log.getvalue()


def test_5_a_second_run_appends_to_the_trajectory_then_replay(tmp_path):
    traj = tmp_path / "mc.traj"
    mc = MonteCarlo(_ch4(), 800, step_size=0.01, rng=1, trajectory=traj)
    mc.run(30)
    res = mc.run(20)
    assert res.energies.size == 50
    frames = read(traj, ":")
    assert len(frames) == 51 and [f.info["step"] for f in frames] == list(range(-1, 50))
    rep = replay(traj, EMT())
    assert len(rep.energies) == 51  # the start plus 50 trials
    np.testing.assert_allclose(rep.errors, 0.0, atol=1e-12)
    np.testing.assert_array_equal(rep.accepted[1:], res.accepted)
    np.testing.assert_allclose(rep.rog[1:], res.rog)
    np.testing.assert_allclose(rep.reference[1:], res.trial_energies)
    summary = walk_summary(traj)
    assert summary["steps"] == 50 and summary["acceptance_ratio"] == pytest.approx(res.acceptance_ratio)
    assert summary["mean_rog"] == pytest.approx(res.mean_rog)


def test_5_state_restores_the_walk_exactly():
    straight = MonteCarlo(_ch4(), 600, step_size=0.01, rng=5).run(40)
    first = MonteCarlo(_ch4(), 600, step_size=0.01, rng=5)
    first.run(25)
    state = first.state()
    second = MonteCarlo(_ch4(), 600, step_size=0.01, rng=0)
    second.restore(state)
    tail = second.run(15)
    np.testing.assert_array_equal(tail.energies, straight.energies[25:])


def test_5_a_failed_trial_can_be_skipped():
    atoms = _ch4(FaultInjector(EMT(), on_calls={4: "raise", 9: "raise"}))
    with pytest.raises(RuntimeError, match="injected"):
        MonteCarlo(atoms, 500, step_size=0.01, rng=0).run(10)
    atoms = _ch4(FaultInjector(EMT(), on_calls={4: "raise", 9: "raise"}))
    res = MonteCarlo(atoms, 500, step_size=0.01, rng=0, skip_failed=True).run(10)
    assert res.failed == 2 and np.isnan(res.trial_energies).sum() == 2
    assert not res.accepted[np.isnan(res.trial_energies)].any()


def test_5_temperatures_in_ev_by_mistake_are_refused():
    with pytest.raises(ValueError, match="kT in eV"):
        MonteCarlo(_ch4(), 0.043)
    with pytest.raises(ValueError, match="calculator"):
        MonteCarlo(molecule("CH4"), 300.0)


@settings(max_examples=30, deadline=None)
@given(temperature=st.floats(-1e3, 0.99), step=st.floats(-1.0, 0.0))
def test_invalid_settings_rejected(temperature, step):
    with pytest.raises(ValueError):
        MonteCarlo(_ch4(), temperature)
    with pytest.raises(ValueError):
        MonteCarlo(_ch4(), 300.0, step_size=step)


def test_the_radius_of_gyration_history_follows_the_current_state():
    """Kept per step without recomputing it on a rejected move: each value is the state's."""
    atoms = _ch4()
    mc = MonteCarlo(atoms, 300, step_size=0.05, rng=3)
    seen = []
    mc.attach(lambda: seen.append(radius_of_gyration(mc.atoms)))
    result = mc.run(60)
    assert 0 < result.accepted.sum() < 60
    np.testing.assert_allclose(result.rog, seen[1:], rtol=0, atol=1e-12)
