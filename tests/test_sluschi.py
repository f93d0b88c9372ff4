"""SLUSCHI coexistence workflow: the classifiers, the melting-point fit, and a short real run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima import ProximaCalculator
from ase_proxima.workflows.sluschi import (
    Coexistence,
    CoexistenceConfig,
    classify_structure,
    fit_melting_point,
    liquid_ratio,
    movement_label,
)


def al_crystal(rep=(2, 2, 2)):
    return bulk("Al", "fcc", a=3.994, cubic=True).repeat(rep)


@pytest.fixture(scope="module")
def melted_al():
    """32 Al atoms melted for real with EMT: 1.2 ps of Langevin dynamics at 3000 K."""
    atoms = al_crystal()
    atoms.calc = EMT()
    rng = np.random.default_rng(0)
    thermalize_momenta(atoms, temperature_K=3000, rng=rng)
    Langevin(atoms, 4 * units.fs, temperature_K=3000, friction=0.02 / units.fs, fixcm=False, rng=rng).run(300)
    return atoms


def test_perfect_and_hot_crystal_are_solid():
    assert classify_structure(al_crystal()) == ("solid", 1.0)
    hot = al_crystal((3, 3, 3))
    hot.rattle(0.15, seed=1)  # larger than the rms displacement of Al near its melting point
    label, frac = classify_structure(hot)
    assert label == "solid" and frac > 0.9


def test_melted_box_is_liquid(melted_al):
    label, frac = classify_structure(melted_al)
    assert label == "liquid", frac
    assert frac < 0.1


def test_movement_label():
    assert movement_label((0.2, 0.3)) == "solid"
    assert movement_label((1.5, 2.0)) == "liquid"
    assert movement_label((0.2, 2.0)) == "undecided"
    assert movement_label((0.7, 0.8)) == "undecided"


def test_liquid_ratio_and_binomial_error():
    p, se = liquid_ratio(["liquid", "solid", "solid", "liquid"])
    assert p == 0.5 and se == pytest.approx(0.25)
    p, se = liquid_ratio(["solid"] * 10)
    assert p == 0.0 and se > 0  # never a zero error bar from a finite sample
    assert all(math.isnan(x) for x in liquid_ratio([]))


@settings(max_examples=8, deadline=None)
@given(tm=st.floats(900.0, 1100.0), g=st.floats(0.3, 1.5), seed=st.integers(0, 10**6))
def test_melting_point_fit_recovers_the_generating_model(tm, g, seed):
    """Counts drawn from SLUSCHI's logistic model: the fitted Tm is within 3 standard errors."""
    rng = np.random.default_rng(seed)
    temps = np.linspace(tm - 150, tm + 150, 7)
    n = np.full(temps.size, 200)
    p = 1.0 / (1.0 + np.exp(g * (tm - temps) / (2 * units.kB * temps * tm)))
    k = rng.binomial(n, p)
    fit = fit_melting_point(temps, k, n)
    assert math.isfinite(fit["Tm_se"]) and fit["Tm_se"] > 0
    assert abs(fit["Tm"] - tm) < 3 * fit["Tm_se"] + 1.0


def test_melting_point_fit_rejects_bad_counts():
    with pytest.raises(ValueError):
        fit_melting_point([900.0], [1], [2])
    with pytest.raises(ValueError):
        fit_melting_point([900.0, 1000.0], [3, 1], [2, 2])


@pytest.mark.parametrize(
    "kwargs",
    [{"size": (0, 1, 1)}, {"temperature": -1.0}, {"runs": 0}, {"run_steps": 10, "average_steps": 10},
     {"melt_temperature": 500.0}, {"solid_movement": 2.0, "liquid_movement": 1.0}],
)
def test_config_rejects_bad_input(kwargs):
    with pytest.raises(ValueError):
        CoexistenceConfig(**kwargs)


def test_short_coexistence_run_with_proxima_end_to_end(tmp_path):
    """64-atom cell: prepare, two NPT coexistence runs through ProximaCalculator, resume."""
    config = CoexistenceConfig(size=(2, 2, 2), temperature=950.0, melt_temperature=3000.0, equilibrate_steps=40,
                               melt_steps=400, run_steps=120, average_steps=30, runs=2, seed=3)
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, error_metric="forces_mean", seed=0)
    flow = Coexistence(config, calc, tmp_path / "run")
    outcomes = flow.run()
    assert [o.run for o in outcomes] == [0, 1]
    for o in outcomes:
        assert o.label in ("solid", "liquid", "undecided")
        assert o.structure_label in ("solid", "liquid", "coexisting")
        assert 0.0 <= o.solid_fraction <= 1.0
        assert all(m >= 0 for m in o.movement)
        assert 600 < o.mean_temperature < 1600
    s = calc.stats
    assert s["surrogate_calls"] > 0, s
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["runs"] == 2 and summary["solid"] + summary["liquid"] + summary["undecided"] == 2
    start = (tmp_path / "run" / "start.traj")
    assert start.exists()
    # the melt worked: the new half is disordered, the held half is not
    from ase.io import read

    atoms = read(start)
    from ase_proxima.workflows.sluschi import solid_like_fraction

    flags = solid_like_fraction(atoms)
    assert flags[: len(atoms) // 2].mean() > 0.8 and flags[len(atoms) // 2:].mean() < 0.5

    # a rerun with more runs only does the missing one, from the same start
    calls_before = calc.stats["calls"]
    config.runs = 3
    finished = []
    again = Coexistence(config, calc, tmp_path / "run", on_run=finished.append).run()
    assert [o.run for o in again] == [0, 1, 2]
    assert finished == [again[2]]
    assert again[0] == outcomes[0]
    # ASE's Berendsen barostat asks for forces twice a step (after rescaling the cell, and after the move)
    assert calc.stats["calls"] - calls_before <= 2 * config.run_steps + 3
