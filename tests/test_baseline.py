"""A baseline under the surrogate (delta-learning): the surrogate learns target minus baseline, a
served answer is baseline plus correction, the store keeps both answers, a run resumes with it."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import finite_difference_forces, fixed_sequence
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ase_proxima import ProximaCalculator, RunStore
from ase_proxima.baseline import Baseline, BaselineError, make_baseline
from ase_proxima.store import StoreMismatch
from ase_proxima.training import TrainingSet


def _drive(calc, frames, properties=("energy",)):
    out = []
    for a in frames:
        b = a.copy()
        b.calc = calc
        e = b.get_potential_energy() if properties == ("energy",) else b.get_forces()[0, 0]
        out.append((calc.log[-1]["kind"], e, calc.log[-1]["threshold"]))
    return out


@pytest.fixture
def frames(methane):
    return fixed_sequence(methane, 160, amplitude=0.006, seed=4)


def _new(baseline=None, **kw):
    # identical decisions need decisions that do not count measured time (see test_persistence.py)
    return ProximaCalculator(target=EMT(), error_bound=0.003, audit_fraction=0.2, seed=11, cost_aware=False,
                             refit_share=None, baseline=baseline, **kw)


# ----------------------------------------------------------------- the Baseline room
def test_baseline_refuses_what_cannot_carry_a_correction():
    with pytest.raises(TypeError, match="instance"):
        Baseline(EMT)
    with pytest.raises(TypeError, match="ASE calculator"):
        Baseline(object())
    energy_only = SinglePointCalculator(molecule("CH4"), energy=1.0)
    with pytest.raises(ValueError, match="energies and forces"):
        Baseline(energy_only)
    with pytest.raises(ValueError, match="xtb:gfn2"):
        make_baseline("xtb:gfn7")
    assert isinstance(make_baseline("emt"), EMT)


finite = st.floats(-50, 50, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(e_t=finite, e_b=finite, f_t=arrays(float, (4, 3), elements=finite), f_b=arrays(float, (4, 3), elements=finite),
       s_t=arrays(float, 6, elements=finite))
def test_correction_then_total_gives_the_target_back(e_t, e_b, f_t, f_b, s_t):
    base_calc = Baseline(EMT())
    target = {"energy": e_t, "forces": f_t, "stress": s_t, "dipole": np.ones(3)}
    base = {"energy": e_b, "forces": f_b}  # no stress from this baseline: stress is not learned
    corr = base_calc.correction(target, base)
    assert set(corr) == {"energy", "forces"}
    back = base_calc.total(corr, base)
    assert back["energy"] == pytest.approx(e_t, abs=1e-9)
    np.testing.assert_allclose(back["forces"], f_t, atol=1e-9)


# ----------------------------------------------------------------- xTB through tblite
def test_xtb_forces_match_finite_differences():
    pytest.importorskip("tblite", reason="tblite is installed by scripts/setup.sh (extra 'xtb')")
    ch4 = molecule("CH4")
    ch4.rattle(0.03, seed=2)
    calc = make_baseline("xtb:gfn2")
    forces = calc.get_forces(ch4)
    np.testing.assert_allclose(forces, finite_difference_forces(calc, ch4, h=1e-3), atol=2e-3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-6
    gfn1 = make_baseline("xtb:gfn1")
    assert gfn1.parameters["method"] == "GFN1-xTB"
    assert gfn1.get_potential_energy(ch4) != pytest.approx(calc.get_potential_energy(ch4), abs=1e-3)


def test_a_system_the_baseline_cannot_do_is_a_clear_error():
    pytest.importorskip("tblite", reason="tblite is installed by scripts/setup.sh (extra 'xtb')")
    u2 = Atoms("U2", positions=[[0, 0, 0], [0, 0, 2.6]])
    calc = ProximaCalculator(target=LennardJones(), error_bound=0.01, baseline=make_baseline("xtb:gfn2"))
    u2.calc = calc
    with pytest.raises(BaselineError, match="could not compute U2.*86"):
        u2.get_potential_energy()


# ----------------------------------------------------------------- in a run
def test_the_surrogate_learns_the_difference_and_serves_baseline_plus_correction(frames):
    morse = MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
    calc = _new(baseline=morse)
    kinds = [k for k, _, _ in _drive(calc, frames)]
    assert "surrogate" in kinds
    reference = EMT()
    images, learned = calc.training.data()
    for atoms, res in zip(images[:5], learned[:5]):  # what was learned: target minus baseline
        b = atoms.copy()
        exact = reference.get_potential_energy(b)
        assert res["energy"] == pytest.approx(exact - MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
                                              .get_potential_energy(b), abs=1e-9)
        np.testing.assert_allclose(res["forces"], reference.get_forces(b) - morse.get_forces(b), atol=1e-9)
    # a served answer is the baseline plus the model's correction, on the same structure
    last = frames[-1].copy()
    last.calc = calc
    served = [f for f, k in zip(frames, kinds) if k == "surrogate"][-1].copy()
    served.calc = calc
    e = served.get_potential_energy()
    if calc.answer == "surrogate":
        base = {"energy": morse.get_potential_energy(served), "forces": morse.get_forces(served)}
        correction = calc.surrogate.predict(served, ["energy"], baseline=base).results["energy"]
        assert e == pytest.approx(morse.get_potential_energy(served) + correction, abs=1e-9)
    s = calc.stats
    assert s["baseline"] == morse.name and s["baseline_calls"] >= s["target_calls"]
    assert s["time_baseline"] > 0 and s["baseline_failures"] == 0
    assert calc.todict()["baseline"]["name"] == morse.name


def test_served_forces_are_minus_the_gradient_of_served_energies(methane):
    """Baseline plus correction stays a conservative force field."""
    frames = fixed_sequence(methane, 60, amplitude=0.01, seed=1)
    morse = MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
    calc = _new(baseline=morse, error_metric="forces_mean")
    for a in frames:
        calc.get_forces(a)
    atoms = frames[-1].copy()

    def served(a, prop):
        corr = calc.surrogate.predict(a, ["energy", "forces"], baseline={"energy": morse.get_potential_energy(a),
                                                                          "forces": morse.get_forces(a)}).results
        base = morse.get_potential_energy(a) if prop == "energy" else morse.get_forces(a)
        return base + corr[prop]

    numeric = finite_difference_forces(lambda a: served(a, "energy"), atoms, h=1e-4)
    np.testing.assert_allclose(served(atoms, "forces"), numeric, atol=1e-4)


def test_a_property_the_baseline_lacks_is_the_targets(methane):
    """Charges are not learned; a baseline without stress cannot carry a stress correction either."""
    no_stress = MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
    no_stress.implemented_properties = ["energy", "forces"]  # as a baseline giving no stress would say
    b = Baseline(no_stress)
    assert b.properties == ("energy", "forces")
    calc = _new(baseline=no_stress)
    assert calc._why_not_baseline(["stress"]) == f"property stress not given by the baseline {no_stress.name}"
    assert calc._why_not_baseline(["free_energy", "forces"]) is None


# ----------------------------------------------------------------- the baseline feature
def _labels(calc, frames):
    return [{"energy": calc.get_potential_energy(a), "forces": calc.get_forces(a)} for a in frames]


def test_the_baselines_own_energy_carries_most_of_a_hartree_fock_correction():
    """Hartree-Fock (STO-3G) minus GFN2-xTB on methane structures of a hot walk: much of the
    difference grows with the baseline's own strain energy (Hartree-Fock bonds are stiffer), so
    the default model, which weighs that energy, errs several times less on held-out structures
    than the same SOAP model without it, fitted on the same 30 structures."""
    from ase_proxima.surrogates.soap_ridge import SOAPBayesianRidge
    from ase_proxima.targets import make_target
    from ase_proxima.workflows.mc import MonteCarlo

    xtb = make_baseline("xtb:gfn2")
    walker = molecule("CH4")
    walker.calc = make_baseline("xtb:gfn2")
    trials = []
    mc = MonteCarlo(walker, temperature_K=1000, step_size=0.02, rng=1)
    mc.attach(lambda: trials.append(mc.trial.copy()))
    mc.run(600)
    frames = trials[::10]
    base, truth = _labels(xtb, frames), _labels(make_target("pyscf:hf/sto-3g"), frames)
    room = Baseline(xtb)
    learned = [room.correction(t, b) for t, b in zip(truth, base)]
    n = 30
    with_energy = SOAPBayesianRidge().fit(frames[:n], learned[:n], baselines=base[:n])
    soap_only = SOAPBayesianRidge(baseline_feature=False).fit(frames[:n], learned[:n], baselines=base[:n])
    assert with_energy.with_baseline_ and not soap_only.with_baseline_
    e_with = [abs(with_energy.predict(a, baseline=b).results["energy"] - t["energy"])
              for a, b, t in zip(frames[n:], base[n:], learned[n:])]
    e_without = [abs(soap_only.predict(a).results["energy"] - t["energy"]) for a, t in zip(frames[n:], learned[n:])]
    assert np.mean(e_with) < 0.5 * np.mean(e_without)


def test_a_model_fitted_on_the_baseline_asks_for_it_and_persists_it(methane):
    from ase_proxima.surrogates.base import FitError
    from ase_proxima.surrogates.soap_ridge import SOAPBayesianRidge

    base_calc, target = MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0), EMT()
    frames = fixed_sequence(methane, 30, amplitude=0.02, seed=5)
    base, truth = _labels(base_calc, frames), _labels(target, frames)
    room = Baseline(base_calc)
    learned = [room.correction(t, b) for t, b in zip(truth, base)]
    model = SOAPBayesianRidge().fit(frames[:25], learned[:25], baselines=base[:25])
    probe, b = frames[27], base[27]
    with pytest.raises(ValueError, match="baseline"):
        model.predict(probe)
    with pytest.raises(ValueError, match="forces"):
        model.predict(probe, baseline={"energy": b["energy"]})
    assert "forces" not in model.predict(probe, ["energy"], baseline={"energy": b["energy"]}).results
    with pytest.raises(FitError, match="baseline answers"):
        SOAPBayesianRidge().fit(frames[:25], learned[:25], baselines=base[:24])
    # the fitted state carries the feature's references: a restored model predicts the same
    again = SOAPBayesianRidge()
    again.restore_fitted_state(model.fitted_state())
    p1, p2 = model.predict(probe, baseline=b), again.predict(probe, baseline=b)
    assert p2.results["energy"] == pytest.approx(p1.results["energy"], abs=1e-12)
    np.testing.assert_allclose(p2.results["forces"], p1.results["forces"], atol=1e-12)
    assert p2.spread["energy"] == pytest.approx(p1.spread["energy"], rel=1e-9)
    # folded in one at a time, the posterior is the one fit's on all the structures
    grown = SOAPBayesianRidge().fit(frames[:13], learned[:13], baselines=base[:13])
    for n in range(16, 26, 3):
        grown.fit(frames[:n], learned[:n], baselines=base[:n])
    once = SOAPBayesianRidge().fit(frames[:13], learned[:13], baselines=base[:13])  # the same frozen basis
    once._ridge.regrow = 0.0  # always optimise
    once.fit(frames[:25], learned[:25], baselines=base[:25])
    g, o = grown.predict(probe, baseline=b).results, once.predict(probe, baseline=b).results
    assert g["energy"] == pytest.approx(o["energy"], abs=2e-3)
    np.testing.assert_allclose(g["forces"], o["forces"], atol=5e-3)
    # without the baseline's answers the same settings fit SOAP terms only
    plain_fit = SOAPBayesianRidge().fit(frames[:25], learned[:25])
    assert not plain_fit.with_baseline_ and np.isfinite(plain_fit.predict(probe).results["energy"])


# ----------------------------------------------------------------- store and resume
def test_store_keeps_both_answers_and_a_run_resumes_identically(frames, tmp_path):
    morse = dict(epsilon=0.1, r0=1.5, rho0=4.0)
    straight = _new(baseline=MorsePotential(**morse))
    ref = _drive(straight, frames)

    first = _new(baseline=MorsePotential(**morse), store=tmp_path / "run")
    head = _drive(first, frames[:70])
    first.close()
    rows = RunStore(tmp_path / "run", readonly=True).training()
    atoms, res = rows[0]
    assert res["energy"] == pytest.approx(EMT().get_potential_energy(atoms), abs=1e-9)  # the target's own
    assert res["baseline"]["energy"] == pytest.approx(MorsePotential(**morse).get_potential_energy(atoms), abs=1e-9)

    with pytest.raises(StoreMismatch, match="baseline"):
        _new(baseline=MorsePotential(epsilon=0.2, r0=1.5, rho0=4.0), store=tmp_path / "run")
    with pytest.raises(StoreMismatch, match="baseline"):
        _new(store=tmp_path / "run")
    resumed = _new(baseline=MorsePotential(**morse), store=tmp_path / "run")
    tail = _drive(resumed, frames[70:])
    got = head + tail
    assert [k for k, _, _ in got] == [k for k, _, _ in ref]
    np.testing.assert_allclose([e for _, e, _ in got], [e for _, e, _ in ref], atol=1e-12)
    assert json.dumps(asdict(resumed.controller.state())) == json.dumps(asdict(straight.controller.state()))
    assert resumed.stats["baseline_calls"] == straight.stats["baseline_calls"]


def test_snapshot_with_a_baseline_continues_identically(frames, tmp_path):
    morse = dict(epsilon=0.1, r0=1.5, rho0=4.0)
    straight = _new(baseline=MorsePotential(**morse))
    ref = _drive(straight, frames)
    first = _new(baseline=MorsePotential(**morse))
    head = _drive(first, frames[:90])
    first.save_state(tmp_path / "snap")
    resumed = _new(baseline=MorsePotential(**morse))
    resumed.load_state(tmp_path / "snap")
    got = head + _drive(resumed, frames[90:])
    assert [k for k, _, _ in got] == [k for k, _, _ in ref]
    np.testing.assert_allclose([e for _, e, _ in got], [e for _, e, _ in ref], atol=1e-12)


def test_rows_stored_without_the_baseline_get_it_when_loaded(frames):
    """A shared store's rows from runs without this baseline can still be learned from."""
    target, morse = EMT(), MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
    rows = [(a, {"energy": target.get_potential_energy(a), "forces": target.get_forces(a)}) for a in frames[:12]]
    data = TrainingSet(baseline=Baseline(morse))
    data.load(rows)
    images, learned = data.data()
    for (a, res), got in zip(rows, learned):
        assert got["energy"] == pytest.approx(res["energy"] - morse.get_potential_energy(a), abs=1e-9)
    stored = data.given()
    assert stored[0][1]["baseline"]["energy"] == pytest.approx(morse.get_potential_energy(frames[0]), abs=1e-9)
    with pytest.raises(ValueError, match="baseline"):
        data.add(frames[20], rows[0][1])  # a point of a run with a baseline comes with its answer


# ----------------------------------------------------------------- learning curves
def _walk(methane, n, tmp_path=None):
    from ase.io import write

    from ase_proxima.workflows.mc import MonteCarlo

    a = methane.copy()
    a.calc = EMT()
    frames = []
    mc = MonteCarlo(a, temperature_K=3000, step_size=0.02, rng=3)
    mc.attach(lambda: frames.append(mc.trial.copy()))
    mc.run(n)
    if tmp_path is not None:
        write(tmp_path / "walk.traj", frames)
    return frames


def test_learning_curve_falls_with_training_size_and_names_what_is_needed(methane):
    from ase_proxima.learning_curve import label, learning_curve

    frames = _walk(methane, 90)
    truth = label(EMT(), frames, ("energy", "forces"))
    curve = learning_curve(frames, truth, sizes=[5, 20, 60], held_out=25, seed=1)
    assert curve.sizes == [5, 20, 60] and curve.held_out == 25 and curve.baseline is None
    assert curve.energy_mae[-1] < curve.energy_mae[0] and curve.forces_mae[-1] < curve.forces_mae[0]
    assert curve.structures_needed(curve.energy_mae[1]) == 20
    assert curve.structures_needed(0.0) is None
    morse = MorsePotential(epsilon=0.1, r0=1.5, rho0=4.0)
    with_base = learning_curve(frames, truth, sizes=[5, 20, 60], held_out=25, seed=1, baseline=morse)
    assert with_base.baseline == morse.name
    assert with_base.sizes == [5, 20, 60] and all(np.isfinite(with_base.energy_mae))
    with pytest.raises(ValueError, match="cannot hold"):
        learning_curve(frames, truth, sizes=[80], held_out=25)


def test_learn_curve_command_writes_curves_with_and_without_the_baseline(methane, tmp_path, capsys):
    from ase_proxima.cli import main

    _walk(methane, 80, tmp_path)
    code = main(["learn-curve", str(tmp_path / "walk.traj"), "--target", "emt", "--baseline", "emt",
                 "--sizes", "5", "20", "--held-out", "20", "--out", str(tmp_path / "lc"), "--quiet"])
    assert code == 0
    report = json.loads((tmp_path / "lc" / "learning_curve.json").read_text())
    assert set(report["curves"]) == {"emt", "emt - emt"}
    # the baseline is the target itself: nothing is left to learn, every size is exact
    assert max(report["curves"]["emt - emt"]["energy_mae"]) < 1e-9
    assert report["curves"]["emt - emt"]["structures_needed"] == 5
    assert (tmp_path / "lc" / "learning_curve.png").stat().st_size > 0
    assert "structures" in capsys.readouterr().out
    assert main(["learn-curve", str(tmp_path / "missing.traj"), "--target", "emt", "--out", str(tmp_path / "x")]) == 2


def test_a_baseline_giving_the_stress_tensor_is_read_in_voigt_order():
    """Some calculators (CHGNet) return the 3x3 stress; ASE's convention, and the target's, is Voigt."""
    from ase.build import bulk

    from ase_proxima.baseline import plain_value

    cell = bulk("Cu", "fcc", a=3.7, cubic=True)
    cell.calc = EMT()
    voigt = cell.get_stress()
    np.testing.assert_allclose(plain_value("stress", cell.get_stress(voigt=False)), voigt, atol=1e-12)
    np.testing.assert_allclose(plain_value("stress", voigt), voigt)
    assert plain_value("energy", np.float32(1.5)) == 1.5
