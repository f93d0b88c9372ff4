"""ProximaCalculator with real targets (EMT, LennardJones): drop-in use, accounting, estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError, get_calculator_class
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.cluster import Icosahedron
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import thermalize_momenta
from ase.optimize import BFGS
from ase.units import fs
from conftest import CountingEMT, fixed_sequence, metropolis_walk

from ase_proxima import DistanceUncertainty, ProximaCalculator
from ase_proxima.surrogates import SNAPEnsemble, SOAPBayesianRidge, default_surrogate


def test_registered_with_ase():
    assert get_calculator_class("proxima") is ProximaCalculator


def test_one_line_swap_in_monte_carlo_serves_and_counts_target_exactly(methane):
    target = CountingEMT()
    calc = ProximaCalculator(cost_aware=False, target=target, error_bound=0.005, seed=1)
    walk = metropolis_walk(methane, calc, 400, step_size=0.01, seed=1)
    s = calc.stats
    assert s["calls"] == 401 == len(calc.log)
    assert s["target_calls"] == target.ncalls
    assert s["target_calls"] + s["surrogate_calls"] == s["calls"]
    kinds = calc.log.column("kind")
    assert s["target_calls"] == int(np.sum(kinds != "surrogate"))
    assert s["audits"] == int(np.sum(kinds == "audit"))
    assert s["surrogate_calls"] > 150, "the surrogate should answer a good share of a smooth walk"
    assert all(math.isfinite(w["energy"]) for w in walk)
    # the first min_training calls always go to the target
    assert all(k == "target" for k in kinds[:10])
    for key in ("served_fraction", "served_error", "served_error_se", "threshold", "alpha", "oscillations",
                "time_target", "time_surrogate", "time_uncertainty", "time_training", "time_controller"):
        assert key in s


def test_served_error_estimate_agrees_with_ground_truth(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.004, audit_fraction=0.25, seed=3)
    walk = metropolis_walk(methane, calc, 500, step_size=0.01, seed=3)
    reference = EMT()
    truth = [abs(w["energy"] - reference.get_potential_energy(w["atoms"])) for w in walk if w["kind"] == "surrogate"]
    assert len(truth) > 100
    s = calc.stats
    assert s["audits"] >= 20
    true_mae = float(np.mean(truth))
    # the audit estimate is unbiased: within 3 standard errors of the truth measured on every served call
    assert abs(s["served_error"] - true_mae) <= 3 * s["served_error_se"] + 0.1 * true_mae
    assert true_mae <= 0.004


def test_target_answers_are_exact_and_served_answers_consistent(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, seed=0)
    walk = metropolis_walk(methane, calc, 200, seed=0)
    ref = EMT()
    for w in walk:
        if w["kind"] in ("target", "audit"):
            assert w["energy"] == pytest.approx(ref.get_potential_energy(w["atoms"]), abs=1e-10)
    # an energy request predicts the energy only (no force derivatives on a Monte Carlo step);
    # forces asked next for the same structure are a call of their own
    atoms = walk[-1]["atoms"].copy()
    atoms.positions[0, 0] += 1e-3
    atoms.calc = calc
    n = calc.stats["calls"]
    e = atoms.get_potential_energy()
    first = calc.log[-1]["kind"]
    side_forces = "forces" in calc.results  # a target answer (EMT) brings its forces along
    assert side_forces == (first != "surrogate")
    atoms.get_forces()
    assert calc.stats["calls"] == n + (1 if side_forces else 2)
    if first == "surrogate" and calc.log[-1]["kind"] == "surrogate":
        assert atoms.get_potential_energy() == pytest.approx(e, abs=1e-12)
    # a forces request fills energy and forces from one source: asking the energy next costs nothing
    n = calc.stats["calls"]
    atoms.positions[0, 0] += 1e-3
    atoms.get_forces()
    atoms.get_potential_energy()
    assert calc.stats["calls"] == n + 1


def test_langevin_md_of_a_cluster_with_force_bound(cu13):
    atoms = cu13.copy()
    target = CountingEMT()
    atoms.calc = ProximaCalculator(cost_aware=False, target=target, error_bound=0.2, error_metric="forces_max", seed=0)
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dyn = Langevin(atoms, 2 * fs, temperature_K=300, friction=0.02, fixcm=False, rng=np.random.default_rng(1))
    reference, served = EMT(), []

    def check_served_forces():
        if atoms.calc.log[-1]["kind"] == "surrogate":
            diff = atoms.get_forces() - reference.get_forces(atoms)
            served.append(np.max(np.linalg.norm(diff, axis=1)))

    dyn.attach(check_served_forces)
    dyn.run(300)
    s = atoms.calc.stats
    assert s["calls"] == 301
    assert s["target_calls"] == target.ncalls
    assert s["surrogate_calls"] > 100
    assert len(served) > 100
    assert np.mean(served) <= 0.2  # ground truth on every served step
    assert np.all(np.isfinite(atoms.get_forces()))
    # the cluster stays a cluster: no atom flew off under surrogate forces
    assert np.max(np.linalg.norm(atoms.positions - atoms.get_center_of_mass(), axis=1)) < 5.0


def test_optimiser_converges_to_target_minimum(cu13):
    atoms = cu13.copy()
    atoms.rattle(0.05, seed=2)
    atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.02, error_metric="forces_max", min_training=5,
                                   seed=0)
    BFGS(atoms, logfile=None).run(fmax=0.02, steps=300)
    ref = atoms.copy()
    ref.calc = EMT()
    # judged by the target: the structure really is a minimum
    assert np.max(np.linalg.norm(ref.get_forces(), axis=1)) < 0.1
    relaxed = cu13.copy()
    relaxed.calc = EMT()
    BFGS(relaxed, logfile=None).run(fmax=0.01)
    assert ref.get_potential_energy() == pytest.approx(relaxed.get_potential_energy(), abs=0.01)


def test_lennard_jones_target():
    atoms = Icosahedron("Ar", noshells=2, latticeconstant=5.26)
    target = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0)
    calc = ProximaCalculator(cost_aware=False, target=target, error_bound=0.002, seed=0)
    walk = metropolis_walk(atoms, calc, 300, temperature=40.0, step_size=0.03, seed=0)
    assert calc.stats["surrogate_calls"] > 0
    ref = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.0)
    served = [abs(w["energy"] - ref.get_potential_energy(w["atoms"])) for w in walk if w["kind"] == "surrogate"]
    assert np.mean(served) < 0.002


def test_lazy_retrain_serves_from_a_model_with_every_target_result(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, seed=0, refit_share=None)
    metropolis_walk(methane, calc, 300, seed=0)
    log = calc.log
    seen = 0  # target results gathered before the call
    served, max_stale = 0, 0
    for rec in log:
        if rec["kind"] in ("surrogate", "audit"):
            # lazy: refitted just before use, so the model knows everything the target said
            assert rec["n_fitted"] == seen, rec
            served += 1
        elif rec["n_fitted"] > 0:
            # comparisons on target calls may come from a model up to one window stale, never more
            max_stale = max(max_stale, seen - rec["n_fitted"])
        if rec["kind"] != "surrogate":
            seen += 1
    assert served > 100
    assert max_stale <= calc.controller.window_size
    # no refit on a served call that follows a served call (nothing new to learn)
    for prev, rec in zip(log.records, log.records[1:]):
        if rec["kind"] == "surrogate" and prev["kind"] == "surrogate":
            assert rec["t_training"] == 0.0
    assert calc.stats["fits"] < calc.stats["target_calls"]


def test_retrain_never_and_every_k(methane):
    frames = fixed_sequence(methane, 120, amplitude=0.01)
    never = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, retrain="never", seed=0)
    every = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, retrain=7, seed=0, refit_share=None)
    for a in frames:
        never.get_potential_energy(a)
        every.get_potential_energy(a)
    assert never.stats["fits"] == 1
    expected = 1 + (every.stats["training_size"] - 10) // 7
    assert every.stats["fits"] == expected


def test_unseen_species_fall_back_to_target(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.01, seed=0)
    metropolis_walk(methane, calc, 120, seed=0)
    assert calc.surrogate.is_fitted
    for name in ("NH3", "H2O", "CH3OH"):
        atoms = molecule(name)
        atoms.calc = calc
        e = atoms.get_potential_energy()
        rec = calc.log[-1]
        assert rec["kind"] == "target"
        assert "species" in rec["reason"]
        assert e == pytest.approx(EMT().get_potential_energy(molecule(name)))


def test_default_surrogate_for_a_bulk_cell_serves_forces_and_stress():
    """Langevin MD of bulk Cu: the default SNAP ensemble serves forces and stress under the bound."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, error_metric="forces_mean", seed=0)
    atoms.calc = calc
    rng = np.random.default_rng(0)
    thermalize_momenta(atoms, temperature_K=600, rng=rng)
    ref = EMT()
    served = []

    def check():
        if calc.log[-1]["kind"] == "surrogate":
            served.append(np.abs(atoms.get_forces() - ref.get_forces(atoms)).mean())
            assert np.all(np.isfinite(atoms.get_stress()))

    md = Langevin(atoms, 4 * fs, temperature_K=600, friction=0.01 / fs, fixcm=False, rng=rng)
    md.attach(check, interval=1)
    md.run(200)
    assert isinstance(calc.surrogate, SNAPEnsemble)
    assert len(served) > 100, calc.stats
    assert np.mean(served) <= 0.05


def test_default_surrogate_for_a_molecule_is_soap():
    assert isinstance(default_surrogate(molecule("CH4")), SOAPBayesianRidge)
    assert isinstance(default_surrogate(bulk("Al", cubic=True)), SNAPEnsemble)


def test_property_the_surrogate_cannot_give_goes_to_target():
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 2, 2))
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, seed=0, min_training=5,
                             surrogate=SOAPBayesianRidge())
    frames = fixed_sequence(atoms, 40, amplitude=0.01)
    for a in frames:
        calc.get_potential_energy(a)
    n_target = calc.stats["target_calls"]
    a = frames[-1].copy()
    a.positions[0, 0] += 0.01
    forces = calc.get_forces(a)  # periodic: the SOAP model serves energies only
    assert calc.log[-1]["kind"] == "target" and "forces" in calc.log[-1]["reason"]
    assert calc.stats["target_calls"] == n_target + 1
    np.testing.assert_allclose(forces, EMT().get_forces(a), atol=1e-10)
    stress = calc.get_stress(a)
    assert stress.shape == (6,)


def test_unknown_property_raises():
    calc = ProximaCalculator(target=LennardJones(), error_bound=0.01)
    atoms = molecule("H2")
    with pytest.raises(PropertyNotImplementedError):
        calc.get_property("dipole", atoms)


def test_bound_on_all_counts_target_answers_as_exact(methane):
    """The thesis's definition: the mean over every answer, target answers exact, stays under the
    bound (checked against an independent EMT), the threshold moves on calls that compare nothing,
    and the stats' returned error is the served share times the served error."""
    ref = EMT()
    for seed in range(3):
        calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.003, bound_on="all", seed=seed,
                                 refit_share=None)
        moves = []
        calc.controller.note_call = _watching_threshold(calc.controller, moves)
        walk = metropolis_walk(methane, calc, 300, seed=5 + seed)
        served = [abs(w["energy"] - ref.get_potential_energy(w["atoms"])) for w in walk if w["kind"] == "surrogate"]
        assert served and sum(served) / calc.stats["calls"] <= 0.003
        assert sum(served) / calc.stats["calls"] <= calc.stats["returned_error_upper"]
        assert any(moved for moved, compared in moves if not compared)  # a served call moved it
        assert calc.stats["returned_error"] == pytest.approx(
            calc.stats["served_fraction"] * calc.stats["served_error"])


def _watching_threshold(controller, moves: list):
    """``controller.note_call``, also recording whether each call moved the threshold and whether
    the call was compared with the target (refused by the gate, or audited)."""
    note = controller.note_call

    def watched(u, passed, p=0.0, error=math.nan, returned=False):
        before = controller.threshold
        note(u, passed, p, error, returned)
        moves.append((controller.threshold != before, not passed or math.isfinite(error)))

    return watched


def test_distance_uncertainty_as_gate(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, uncertainty=DistanceUncertainty(), seed=0)
    walk = metropolis_walk(methane, calc, 300, seed=2)
    assert calc.stats["surrogate_calls"] > 0
    ref = EMT()
    served = [abs(w["energy"] - ref.get_potential_energy(w["atoms"])) for w in walk if w["kind"] == "surrogate"]
    assert np.mean(served) < 0.005
    bigger = Icosahedron("Cu", 2)  # more atoms than the descriptor was built for, and new species
    calc.get_potential_energy(bigger)
    assert calc.log[-1]["kind"] == "target"


def test_log_exports(methane, tmp_path):
    calc = ProximaCalculator(target=EMT(), error_bound=0.005, seed=0)
    metropolis_walk(methane, calc, 50, seed=0)
    df = calc.log.to_dataframe()
    assert len(df) == 51
    assert {"step", "kind", "uncertainty", "threshold", "alpha", "error", "t_total"} <= set(df.columns)
    calc.log.to_csv(tmp_path / "log.csv")
    from ase_proxima import CallLog

    back = CallLog.read_csv(tmp_path / "log.csv")
    assert [r["kind"] for r in back] == [r["kind"] for r in calc.log]


def test_todict_is_plain():
    import json

    calc = ProximaCalculator(target=EMT(), error_bound=0.005)
    d = calc.todict()
    json.dumps(d)
    assert d["error_bound"] == 0.005 and d["target"] == "emt"
    assert "window" not in d and calc.todict(skip_default=False)["window"] == 10


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"error_bound": -0.1}, ValueError),
        ({"error_bound": 0.0}, ValueError),
        ({"error_bound": 0.01, "window": 1}, ValueError),
        ({"error_bound": 0.01, "threshold_bounds": (1.0, 0.1)}, ValueError),
        ({"error_bound": 0.01, "error_metric": "rmsd"}, ValueError),
        ({"error_bound": 0.01, "retrain": "sometimes"}, ValueError),
        ({"error_bound": 0.01, "retrain": 0}, ValueError),
        ({"error_bound": 0.01, "audit_fraction": 1.5}, ValueError),
        ({"error_bound": 0.01, "bound_on": "most"}, ValueError),
        ({"error_bound": 0.01, "stop_on_capacity_loss": "yes"}, ValueError),
        ({"error_bound": 0.01, "raise_capacity": "on"}, ValueError),
        ({"error_bound": 0.01, "min_training": 0}, ValueError),
        ({"error_bound": 0.01, "surrogate": "soap"}, TypeError),
        ({"error_bound": 0.01, "confidence_level": 1.0}, ValueError),
        ({"error_bound": 0.01, "confidence_level": 0.0}, ValueError),
        ({"error_bound": 0.01, "error_scale": 0.0}, ValueError),
        ({"error_bound": 0.01, "error_scale": float("inf")}, ValueError),
    ],
)
def test_invalid_arguments(kwargs, exc):
    with pytest.raises(exc):
        ProximaCalculator(target=EMT(), **kwargs)


def test_force_metric_needs_a_target_with_forces():
    from ase.calculators.calculator import Calculator

    class EnergyOnly(Calculator):
        implemented_properties = ["energy"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": float(np.sum(self.atoms.positions ** 2))}

    with pytest.raises(ValueError, match="forces"):
        ProximaCalculator(target=EnergyOnly(), error_bound=0.01, error_metric="forces_max")
    with pytest.raises(TypeError):
        ProximaCalculator(target=object(), error_bound=0.01)


def test_atoms_object_never_aliased(methane):
    calc = ProximaCalculator(target=EMT(), error_bound=0.005, seed=0)
    metropolis_walk(methane, calc, 60, seed=0)
    atoms = methane.copy()
    atoms.calc = calc
    f = atoms.get_forces()
    f[:] = 0.0
    assert np.any(atoms.get_forces() != 0.0)
    assert isinstance(atoms, Atoms)


class FlakyEMT(EMT):
    """EMT that raises on chosen calls, as a target whose SCF fails to converge would."""

    def __init__(self, fail_on):
        super().__init__()
        self.fail_on, self.n = set(fail_on), 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import all_changes

        self.n += 1
        if self.n in self.fail_on:
            raise RuntimeError(f"target failed on call {self.n}")
        super().calculate(atoms, properties, all_changes if system_changes is None else system_changes)


def test_target_failure_reaches_user_and_leaves_no_stale_results(methane, tmp_path):
    calc = ProximaCalculator(target=FlakyEMT(fail_on={3}), error_bound=0.005, store=tmp_path / "s", seed=0)
    frames = fixed_sequence(methane, 5, amplitude=0.01)
    calc.get_potential_energy(frames[0])
    calc.get_potential_energy(frames[1])
    with pytest.raises(RuntimeError, match="call 3"):
        calc.get_potential_energy(frames[2])
    assert calc.stats["calls"] == 2 and calc.stats["target_calls"] == 2
    # the failed structure is computed afresh, not answered with the previous call's energy
    e = calc.get_potential_energy(frames[2])
    assert e == pytest.approx(EMT().get_potential_energy(frames[2]))
    assert calc.stats["calls"] == 3
    from ase_proxima import RunStore

    assert RunStore(tmp_path / "s", readonly=True).training_count() == 3


@settings(max_examples=8, deadline=None)
@given(min_training=st.integers(1, 25), seed=st.integers(0, 10_000), audit=st.floats(0.0, 1.0))
def test_never_serves_before_trained_and_started(min_training, seed, audit):
    calc = ProximaCalculator(target=EMT(), error_bound=0.01, min_training=min_training, audit_fraction=audit,
                             seed=seed)
    for a in fixed_sequence(molecule("CH4"), min_training + 15, amplitude=0.005, seed=seed):
        calc.get_potential_energy(a)
    kinds = list(calc.log.column("kind"))
    first_served = next((i for i, k in enumerate(kinds) if k != "target"), len(kinds))
    # the surrogate answers (or is audited) only after min_training target results and then either a full
    # window of comparisons or the early-start evidence (at least max(early, 3) comparisons plainly under the bound)
    ctl = calc.controller
    evidence = ctl.window_size if ctl.early is None else min(ctl.window_size, max(ctl.early, 3))
    assert first_served >= min_training + evidence
    assert all(r["n_fitted"] >= min_training for r in calc.log.records[first_served:] if r["kind"] != "target")


def test_fixed_threshold_strategy_keeps_t(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, threshold=0.002, adaptive=False, retrain=5,
                             seed=0)
    metropolis_walk(methane, calc, 120, seed=0)
    t = calc.log.column("threshold")
    assert np.all(t == 0.002)
    assert calc.stats["surrogate_calls"] > 0
    with pytest.raises(ValueError, match="threshold"):
        ProximaCalculator(target=EMT(), error_bound=0.005, adaptive=False)


def test_failed_fit_falls_back_to_target_and_is_counted(methane):
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.005, seed=0, refit_share=None)
    metropolis_walk(methane, calc, 60, seed=0)
    boxed = methane.copy()
    boxed.cell = [5.0, 5.0, 5.0]  # small enough that the molecule sees its images: truly periodic
    boxed.pbc = True
    ref = EMT()
    for a in fixed_sequence(boxed, 25, amplitude=0.005):  # periodic data: SOAP cannot mix them in one fit
        assert calc.get_potential_energy(a) == pytest.approx(ref.get_potential_energy(a))
    s = calc.stats
    assert s["fit_failures"] >= 1
    walk = metropolis_walk(methane, calc, 20, seed=1)
    assert all(w["kind"] == "target" for w in walk)
    assert "fit failed" in calc.log[-1]["reason"]
    for w in walk:
        assert w["energy"] == pytest.approx(ref.get_potential_energy(w["atoms"]))


class RequestRecordingEMT(EMT):
    """ASE's EMT, recording every property it is asked for (EMT computes forces anyway,
    so what matters is what the caller asks for)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.asked: list[str] = []

    def get_property(self, name, atoms=None, allow_calculation=True):
        self.asked.append(name)
        return super().get_property(name, atoms, allow_calculation)


def test_target_is_asked_only_for_what_the_call_and_metric_need(methane):
    # default: an energy-only Monte Carlo walk never asks the target for forces
    target = RequestRecordingEMT()
    calc = ProximaCalculator(target=target, error_bound=0.005, seed=0)
    metropolis_walk(methane, calc, 60, seed=1)
    assert set(target.asked) == {"energy"}
    assert calc.parameters["train_properties"] is None
    # EMT computes forces anyway; a target that does not (PySCF) shows the difference
    from ase_proxima.targets import make_target

    for train, has_forces in ((None, False), (("energy", "forces"), True)):
        calc = ProximaCalculator(target=make_target("pyscf:hf/sto-3g"), error_bound=0.005, train_properties=train,
                                 min_training=3, seed=0)
        metropolis_walk(methane, calc, 8, step_size=0.003, seed=1)
        results = calc.training.data()[1]
        assert [("forces" in r) for r in results] == [has_forces] * len(results)
    assert calc.todict()["train_properties"] == ["energy", "forces"]
    # a force metric asks for forces on target calls, to compare against
    calc = ProximaCalculator(target=make_target("pyscf:hf/sto-3g"), error_bound=0.05, error_metric="forces_max",
                             min_training=3, seed=0)
    metropolis_walk(methane, calc, 8, step_size=0.003, seed=1)
    assert all("forces" in r for r in calc.training.data()[1])
