"""The capacity watch: a surrogate whose uncertainty falls while its error rises is detected and said
(and, if asked, stops serving until its most certain calls are under the bound); a calibrated one
is left alone."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima.capacity import CapacityWatch


def _feed(watch: CapacityWatch, us, es, bound: float) -> list[bool]:
    states = []
    for u, e in zip(us, es):
        watch.observe(u, e, bound)
        states.append(watch.lost)
    return states


def test_uncertainty_falling_while_the_error_rises_is_a_loss_of_capacity():
    rng = np.random.default_rng(0)
    n = 400
    u = np.linspace(1.0, 0.25, n) * rng.lognormal(0.0, 0.3, n)  # the posterior spread shrinks with data
    e = np.linspace(0.03, 0.06, n) * rng.lognormal(0.0, 0.3, n)  # while the error grows
    watch = CapacityWatch()
    lost = _feed(watch, u, e, bound=0.04)
    assert not any(lost[:100])  # the newest stretch must come after the reference
    assert lost[-1] and watch.episodes >= 1
    assert watch.drift > 2.0 and watch.floor > 0.04
    assert "capacity" in watch.why_not("eV/A") and watch.summary()["capacity_lost"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), spread=st.floats(0.1, 0.6), bound_share=st.floats(0.3, 3.0))
def test_a_calibrated_uncertainty_never_loses_capacity(seed, spread, bound_share):
    """Errors proportional to the uncertainty (as they fall with data, or drift either way): the
    error per unit of uncertainty stays put, whatever the bound."""
    rng = np.random.default_rng(seed)
    n = 400
    trend = np.exp(np.linspace(0.0, rng.uniform(-1.5, 1.5), n))
    u = trend * rng.lognormal(0.0, spread, n)
    e = 0.05 * u * rng.lognormal(0.0, spread, n)
    watch = CapacityWatch()
    assert not any(_feed(watch, u, e, bound=bound_share * 0.05 * float(np.median(trend))))


def test_serving_resumes_when_the_most_certain_calls_are_clearly_under_the_bound_again():
    rng = np.random.default_rng(1)
    watch = CapacityWatch()
    _feed(watch, rng.uniform(0.5, 1.0, 50), rng.uniform(0.01, 0.02, 50), bound=0.04)  # the reference
    lost = _feed(watch, rng.uniform(0.1, 0.2, 100), rng.uniform(0.05, 0.07, 100), bound=0.04)
    assert lost[-1]
    restored = CapacityWatch()
    restored.load_state(watch.state())
    assert restored.summary() == pytest.approx(watch.summary(), nan_ok=True)
    lost = _feed(watch, rng.uniform(0.1, 0.2, 100), rng.uniform(0.005, 0.01, 100), bound=0.04)
    assert not lost[-1] and watch.episodes == 1
    report_only = CapacityWatch()  # an infinite bound (bound_on='all'): measured, never stops
    _feed(report_only, rng.uniform(0.5, 1.0, 50), rng.uniform(0.01, 0.02, 50), bound=math.inf)
    _feed(report_only, rng.uniform(0.1, 0.2, 100), rng.uniform(0.05, 0.07, 100), bound=math.inf)
    assert not report_only.lost and report_only.drift > 2.0
    with pytest.raises(ValueError):
        CapacityWatch(drift_limit=1.0)
    exact = CapacityWatch()  # a surrogate exact at first has no error per unit of uncertainty to compare
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _feed(exact, rng.uniform(0.5, 1.0, 50), np.zeros(50), bound=0.04)
        assert not any(_feed(exact, rng.uniform(0.1, 0.2, 100), rng.uniform(0.05, 0.07, 100), bound=0.04))
    assert math.isnan(exact.drift)


def _hot_cu38(steps: int, **settings):
    """Cu38 at 900 K under SOAP + Bayesian ridge (EMT target, forces_mean 0.04 eV/A): the
    calculator, its log and the warnings it gave."""
    from ase.calculators.emt import EMT
    from ase.cluster import Octahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    from ase_proxima import ProximaCalculator

    atoms = Octahedron("Cu", 4, cutoff=1, latticeconstant=3.61)
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.04, error_metric="forces_mean", seed=0,
                                          cost_aware=False, **settings)
    MaxwellBoltzmannDistribution(atoms, temperature_K=900, rng=np.random.default_rng(0))
    md = Langevin(atoms, 2 * fs, temperature_K=900, friction=0.02, fixcm=False, rng=np.random.default_rng(1000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        md.run(steps)
    return calc, [calc.log[i] for i in range(len(calc.log))], caught


def test_a_hot_cluster_past_its_models_reach_is_said_and_with_the_setting_stops_serving():
    """The model's spread falls as data arrive while its error climbs past the bound.  By default
    the run says so (warning, stats) and the threshold keeps deciding; with
    ``stop_on_capacity_loss`` it stops serving, the log says why, where it had been serving."""
    from ase_proxima.notices import ProximaWarning

    calc, log, caught = _hot_cu38(700)
    s = calc.stats
    assert s["capacity_episodes"] >= 1 and s["capacity_drift"] >= 2.0
    said = [str(w.message) for w in caught if issubclass(w.category, ProximaWarning) and "capacity" in str(w.message)]
    assert said and "still hold the bound" in said[0]
    assert not any(str(r["reason"]).startswith("capacity:") for r in log)

    calc, log, caught = _hot_cu38(700, stop_on_capacity_loss=True)
    said = [str(w.message) for w in caught if issubclass(w.category, ProximaWarning) and "capacity" in str(w.message)]
    assert said and "serving stopped" in said[0]
    stopped = [i for i, r in enumerate(log) if str(r["reason"]).startswith("capacity:")]
    assert stopped and all(log[i]["kind"] == "target" for i in stopped)
    assert "grew" in log[stopped[0]]["reason"] and "over the bound" in log[stopped[0]]["reason"]
    # it stopped where the surrogate had been serving: before the controller had given up on it
    assert any(r["kind"] == "surrogate" for r in log[stopped[0] - 100:stopped[0]])


def test_each_family_names_its_next_larger_model_and_the_growth_climbs_them_in_order():
    from ase_proxima.growth import CapacityGrowth
    from ase_proxima.surrogates import SNAPEnsemble, SOAPBayesianRidge

    soap = SOAPBayesianRidge()
    growth = CapacityGrowth()
    climbed = []
    while (candidate := growth.candidate(soap)) is not None:
        model, rung = candidate
        assert not model.is_fitted and model is not soap
        growth.adopted(rung)
        climbed.append((model.n_max, model.l_max))
        soap = model
    assert climbed == [(6, 4), (8, 6)]
    assert growth.summary() == {"capacity_raises": 2, "capacity_settings": {"n_max": 8, "l_max": 6},
                                "capacity_raise_failed": None}
    assert SOAPBayesianRidge(n_max=7, l_max=2).more_capacity() == {"n_max": 8, "l_max": 6}  # never smaller
    assert SOAPBayesianRidge(n_max=10, l_max=8).more_capacity() is None

    assert SNAPEnsemble().more_capacity() == {"quadratic": True}
    assert SNAPEnsemble(quadratic=True).more_capacity() is None

    resumed = CapacityGrowth()
    resumed.load_state(growth.state())
    fresh = SOAPBayesianRidge()
    resumed.rebuild(fresh)
    assert (fresh.n_max, fresh.l_max) == (8, 6)
    failed = CapacityGrowth()
    failed.refused("singular")
    assert failed.candidate(SOAPBayesianRidge()) is None and failed.summary()["capacity_raise_failed"] == "singular"


def test_with_the_setting_a_model_out_of_capacity_gives_way_to_a_larger_one_that_a_resumed_run_keeps(tmp_path):
    """The hot cluster again: where the watch says capacity is lost, the run fits the next SOAP
    resolution on every kept point and serves from it; its store brings back that model."""
    from ase.cluster import Octahedron
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator
    from ase_proxima.notices import ProximaWarning

    calc, log, caught = _hot_cu38(700, raise_capacity=True, store=tmp_path / "run")
    s = calc.stats
    assert s["capacity_raises"] >= 1 and s["capacity_raise_failed"] is None
    assert (calc.surrogate.n_max, calc.surrogate.l_max) >= (6, 4) and calc.surrogate.is_fitted
    said = [str(w.message) for w in caught if issubclass(w.category, ProximaWarning) and "larger model" in str(w.message)]
    assert len(said) == s["capacity_raises"] and "n_max=" in said[0]
    assert not any(str(r["reason"]).startswith("capacity:") for r in log)  # it raised, it did not stop
    probe = Octahedron("Cu", 4, cutoff=1, latticeconstant=3.61)
    probe.rattle(0.05, seed=3)
    before = calc.surrogate.predict(probe)
    settings = (calc.surrogate.n_max, calc.surrogate.l_max)
    calc.close()

    resumed = ProximaCalculator(target=EMT(), error_bound=0.04, error_metric="forces_mean", seed=0, cost_aware=False,
                                raise_capacity=True, store=tmp_path / "run")
    assert (resumed.surrogate.n_max, resumed.surrogate.l_max) == settings
    assert resumed.stats["capacity_raises"] == s["capacity_raises"]
    after = resumed.surrogate.predict(probe)
    assert after.results["energy"] == pytest.approx(before.results["energy"], abs=1e-8)
    np.testing.assert_allclose(after.results["forces"], before.results["forces"], atol=1e-8)
    resumed.close()


def test_a_larger_model_whose_fit_fails_leaves_the_serving_model_standing():
    """The candidate's fit is a trial: its failure is counted and said in stats, but the model
    that was serving keeps its fit (no 'surrogate fit failed' refusal follows)."""
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from sklearn.base import clone

    from ase_proxima import ProximaCalculator

    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.1, error_metric="forces_max", seed=0,
                                          cost_aware=False, min_training=5)
    rng = np.random.default_rng(0)
    start = atoms.positions.copy()
    for _ in range(12):
        atoms.positions = start + rng.normal(0.0, 0.03, start.shape)
        atoms.get_forces()
    training, n_fitted, failures = calc.training, calc.training.n_fitted, calc.training.fit_failures
    assert calc.surrogate.is_fitted and training.fit_error is None and n_fitted >= 5
    candidate = clone(calc.surrogate).set_params(**calc.surrogate.more_capacity())
    assert not training.fit(candidate, calc.uncertainty, n=0, trial=True)  # nothing to fit on: a real FitError
    assert training.fit_error is None and training.trial_error and training.n_fitted == n_fitted
    assert training.fit_failures == failures + 1
    calc.growth.refused(training.trial_error)
    assert calc.stats["capacity_raise_failed"] == training.trial_error and calc.growth.candidate(calc.surrogate) is None
    assert not training.fit(clone(calc.surrogate), calc.uncertainty, n=0)  # an ordinary fit's failure does stop serving
    assert training.fit_error is not None
