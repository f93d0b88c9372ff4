"""Proxima as a drop-in for what ASE users run: alloys, molecules in boxes, slabs, optimisers,
NEB, vibrations, Monte Carlo.  Real calculators throughout; each test of a defect reproduces
what an earlier version got wrong (the issue's numbering in the test names)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.cluster import Icosahedron
from conftest import CountingEMT, fixed_sequence, kill_past_checkpoint

from ase_proxima import ProximaCalculator


def test_4_identical_structures_never_go_back_to_the_target(tmp_path):
    a, b = fixed_sequence(molecule("CH4"), 2, amplitude=0.05, seed=1)
    target = CountingEMT()
    calc = ProximaCalculator(target=target, error_bound=0.005, seed=0, store=tmp_path / "s")
    energies = []
    for k in range(30):
        atoms = (a if k % 2 == 0 else b).copy()
        atoms.calc = calc
        energies.append(atoms.get_potential_energy())
    assert target.ncalls == 2 and calc.stats["target_calls"] == 2 and calc.stats["cache_hits"] == 28
    assert calc.store.training_count() == 2
    assert energies[0::2] == [energies[0]] * 15 and energies[1::2] == [energies[1]] * 15
    assert set(calc.log.column("kind")[2:]) == {"cached"}
    # forces asked for a structure answered with its energy only (EMT gives both): no new call
    atoms = a.copy()
    atoms.calc = calc
    atoms.get_forces()
    assert target.ncalls == 2


def test_6_force_metrics_skip_fixed_atoms():
    """Errors on atoms held by FixAtoms are not errors of the answer: the logged comparison is
    over the free atoms (a model fitted once, so the comparisons can be recomputed)."""
    from ase.constraints import FixAtoms

    from ase_proxima.metrics import compute_error

    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    atoms.set_constraint(FixAtoms(indices=range(1, 13)))  # only the centre moves
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.3, error_metric="forces_mean", min_training=6,
                             retrain="never", window=2, audit_fraction=1.0, seed=0)
    trials = []
    for a in fixed_sequence(atoms, 30, amplitude=0.05, seed=4):
        a.set_constraint(FixAtoms(indices=range(1, 13)))
        a.calc = calc
        a.get_forces()
        trials.append(a)
    compared = [(a, rec["error"]) for a, rec in zip(trials, calc.log) if math.isfinite(rec["error"])]
    assert compared
    for a, logged in compared:
        pred = calc.surrogate.predict(a, ["forces"]).results
        exact = {"forces": EMT().get_forces(a)}
        free = compute_error("forces_mean", pred, exact, 13, np.arange(13) == 0)
        assert logged == pytest.approx(free, rel=1e-9)
        assert compute_error("forces_mean", pred, exact, 13) != pytest.approx(free, rel=1e-3)  # not all atoms


def test_6_a_size_change_is_not_served_before_it_is_validated():
    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.3, error_metric="forces_max", seed=0)
    for a in fixed_sequence(atoms, 120, amplitude=0.02, seed=2):
        calc.get_forces(a)
    assert calc.stats["surrogate_calls"] > 30
    smaller = fixed_sequence(atoms, 1, amplitude=0.02, seed=9)[0]
    del smaller[5]
    calc.get_forces(smaller)
    assert calc.log[-1]["kind"] == "target"
    # the new size is either refused outright (a prediction far outside the trained range) or
    # held back until it has been checked
    reason = calc.log[-1]["reason"]
    assert "composition Cu12 not yet validated" in reason or "implausible" in reason
    from ase_proxima import gate

    assert gate.why_unvalidated("Cu12", 3, 10) == "composition Cu12 not yet validated (3 of 10 comparisons)"
    assert gate.why_unvalidated("Cu13", 10, 10) is None


def test_7_silent_traps_are_said(tmp_path):
    import pickle

    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    from ase_proxima.notices import ProximaWarning

    # MD under an energy bound: the served forces are unchecked, and the user is told so
    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    atoms.rattle(0.05, seed=1)
    atoms.calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, seed=0)
    with pytest.warns(ProximaWarning, match="bounds energies only") as said:
        VelocityVerlet(atoms, 2 * fs).run(150)
    assert atoms.calc.stats["surrogate_calls"] > 0
    # it points at the user's line (here), not at ASE's or the calculator's
    assert [w.filename for w in said if w.category is ProximaWarning] == [__file__]
    # a stress request the target cannot answer keeps the energy and forces already computed
    n = atoms.calc.stats["calls"]
    forces = atoms.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    np.testing.assert_array_equal(atoms.get_forces(), forces)
    assert atoms.calc.stats["calls"] == n
    # a bound below what the surrogate reaches: nothing is served, and after a while it says why
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=1e-7, seed=0, store=tmp_path / "s")
    with pytest.warns(ProximaWarning, match="no surrogate answer in the last 200 calls"):
        for a in fixed_sequence(molecule("CH4"), 260, amplitude=0.01, seed=3):
            calc.get_potential_energy(a)
    note = calc.stats["not_serving"]
    assert "uncertain" in note and "above the bound" in note
    # with the default cost rule the same run turns idle, and says so and why
    idle = ProximaCalculator(target=EMT(), error_bound=1e-7, seed=0)
    with pytest.warns(ProximaWarning, match="no surrogate answer in the last 200 calls"):
        for a in fixed_sequence(molecule("CH4"), 260, amplitude=0.01, seed=3):
            idle.get_potential_energy(a)
    assert "idle" in idle.stats["not_serving"] and "straight to the target" in idle.stats["not_serving"]
    # a calculator with a store pickles (ASE's EMT itself does not, once used: LennardJones here);
    # the copy carries the run, not the store
    from ase.calculators.lj import LennardJones

    calc = ProximaCalculator(cost_aware=False, target=LennardJones(), error_bound=0.01, seed=0, store=tmp_path / "lj")
    for a in fixed_sequence(molecule("CH4"), 40, amplitude=0.01, seed=3):
        calc.get_potential_energy(a)
    copy = pickle.loads(pickle.dumps(calc))
    assert copy.store is None and copy.stats["calls"] == calc.stats["calls"] == 40
    probe = fixed_sequence(molecule("CH4"), 1, amplitude=0.01, seed=77)[0]
    assert copy.get_potential_energy(probe) == pytest.approx(calc.get_potential_energy(probe), abs=1e-12)
    assert calc.store.training_count() == calc.stats["target_calls"]  # the copy wrote nothing there


def test_7_job_threads_default_to_one_per_process(tmp_path):
    from ase_proxima.workflows.mc_job import MCJob

    report = MCJob(target="pyscf:hf/sto-3g", method="baseline", steps=3, step_size=0.01).run(tmp_path / "mc")
    assert report["threads"] == 1
    with pytest.raises(ValueError, match="threads"):
        MCJob(threads=0)


def _free(atoms) -> np.ndarray:
    """The atoms no FixAtoms holds."""
    from ase.constraints import FixAtoms

    free = np.ones(len(atoms), bool)
    for c in atoms.constraints:
        if isinstance(c, FixAtoms):
            free[c.index] = False
    return free


def _md_with_truth(atoms, calc, steps, temperature, metric, seed=0):
    """Langevin MD through ``calc``; the served forces checked against an independent EMT."""
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.units import fs

    assert metric == "forces_mean"
    atoms.calc = calc
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 2 * fs, temperature_K=temperature, friction=0.02, fixcm=False,
                  rng=np.random.default_rng(seed + 1))
    reference, errors = EMT(), []

    def check():
        if calc.log[-1]["kind"] == "surrogate":
            free = _free(atoms)
            errors.append(float(np.mean(np.abs(atoms.get_forces()[free] - reference.get_forces(atoms)[free]))))

    md.attach(check)
    md.run(steps)
    return errors


@pytest.mark.parametrize("pair", [("Cu", "Ni"), ("Pt", "Al")])
def test_1_alloys_are_served_under_the_bound(pair):
    a, b = pair
    atoms = bulk(a, "fcc", a=3.8, cubic=True).repeat(2)
    atoms.symbols[::2] = b
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.1, error_metric="forces_mean", seed=0)
    errors = _md_with_truth(atoms, calc, 200, 600.0, "forces_mean")
    s = calc.stats
    assert s["fit_failures"] == 0 and s["surrogate_calls"] > 100
    assert np.mean(errors) < 0.1


def test_1_a_molecule_in_a_periodic_box_is_served():
    from ase_proxima.surrogates import SOAPBayesianRidge

    atoms = molecule("H2O")
    atoms.center(vacuum=4.0)
    atoms.pbc = True
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.1, error_metric="forces_mean", seed=0)
    errors = _md_with_truth(atoms, calc, 200, 300.0, "forces_mean")
    assert isinstance(calc.surrogate, SOAPBayesianRidge)  # seen as the free molecule it is
    assert calc.stats["surrogate_calls"] > 100 and np.mean(errors) < 0.1


def test_2_slabs_get_forces():
    from ase.build import add_adsorbate, fcc111
    from ase.constraints import FixAtoms

    slab = fcc111("Al", size=(3, 3, 3), vacuum=6.0)
    add_adsorbate(slab, "Au", 1.7, "fcc")
    slab.set_constraint(FixAtoms(indices=range(9)))
    calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.05, error_metric="forces_mean", seed=0)
    errors = _md_with_truth(slab, calc, 200, 400.0, "forces_mean")
    assert calc.stats["surrogate_calls"] > 100
    assert np.mean(errors) < 0.05
    assert not any("not served" in (r["reason"] or "") for r in calc.log)


def test_5_a_killed_mc_run_resumes(tmp_path):
    import json

    from ase.io import read

    from ase_proxima.cli import main


    out = tmp_path / "mc"
    cmd = ["-m", "ase_proxima.cli", "mc", "--target", "emt", "--steps", "20000", "--step-size", "0.01", "--quiet",
           "--out", str(out)]
    done = kill_past_checkpoint(cmd, out / "mc_state.json", 100)
    assert main(["mc", "--target", "emt", "--steps", str(done + 40), "--step-size", "0.01", "--quiet", "--out",
                 str(out), "--resume"]) == 0
    report = json.loads((out / "stats.json").read_text())
    assert report["resumed"] and report["steps"] == done + 40
    frames = read(out / "mc.traj", ":")
    assert [f.info["step"] for f in frames] == list(range(-1, done + 40))
    assert report["stats"]["calls"] == done + 41  # the calculator resumed at the walk's checkpoint


def _true_fmax(atoms) -> float:
    ref = atoms.copy()
    ref.calc = EMT()
    f = ref.get_forces()[_free(atoms)]
    return float(np.sqrt((f ** 2).sum(axis=1)).max())


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
def test_3_optimisers_stop_on_target_forces_only(optimizer):
    """Rattled Cu55, fmax 0.05: the optimiser stops where the target agrees, every time."""
    import ase.optimize

    opt_class = getattr(ase.optimize, optimizer)
    for seed in range(3):
        atoms = Icosahedron("Cu", noshells=3, latticeconstant=3.61)
        atoms.rattle(0.1, seed=seed)
        atoms.calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.1, error_metric="forces_max", seed=seed)
        assert opt_class(atoms, logfile=None).run(fmax=0.05, steps=400)
        assert _true_fmax(atoms) <= 0.05
        assert atoms.calc.answer in ("target", "audit", "cached")
        assert any("confirmed by the target" in (r["reason"] or "") for r in atoms.calc.log)


def test_3_every_answer_carries_its_provenance(tmp_path):
    import ase.db
    from ase.io import read, write
    from ase.io.trajectory import Trajectory
    from ase.md.verlet import VelocityVerlet
    from ase.units import fs

    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    atoms.rattle(0.05, seed=1)
    atoms.calc = ProximaCalculator(cost_aware=False, target=EMT(), error_bound=0.2, error_metric="forces_max", seed=0)
    md = VelocityVerlet(atoms, 2 * fs, trajectory=str(tmp_path / "md.traj"))
    db = ase.db.connect(tmp_path / "md.db")
    md.attach(lambda: db.write(atoms), interval=1)
    md.run(120)
    frames = read(tmp_path / "md.traj", ":")
    kinds = [f.info["proxima_answer"] for f in frames]
    assert kinds == list(atoms.calc.log.column("kind")[: len(kinds)])
    assert {"target", "surrogate"} <= set(kinds)
    assert [row.calculator_parameters["answer"] for row in db.select()] == kinds[:len(db)]
    write(tmp_path / "last.extxyz", atoms)
    assert read(tmp_path / "last.extxyz").info["proxima_answer"] == atoms.calc.answer
    del Trajectory


def _adatom_hop():
    """ASE's NEB tutorial system: an Au adatom hopping between hollow sites of Al(100)."""
    from ase.build import add_adsorbate, fcc100
    from ase.constraints import FixAtoms
    from ase.optimize import BFGS

    initial = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(initial, "Au", 1.7, "hollow")
    initial.center(axis=2, vacuum=4.0)
    initial.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in initial]))
    final = initial.copy()
    final.positions[-1, 0] += initial.cell[0, 0] / 2
    for end in (initial, final):
        end.calc = EMT()
        BFGS(end, logfile=None).run(fmax=0.05)
    return initial, final


def test_4_neb_with_a_shared_calculator_never_repeats_a_target_call():
    from ase.mep import NEB
    from ase.optimize import FIRE

    from ase_proxima.identity import identity

    initial, final = _adatom_hop()
    target = CountingEMT()
    calc = ProximaCalculator(target=target, error_bound=0.05, error_metric="forces_mean", seed=0)
    images = [initial.copy() for _ in range(4)] + [final.copy()]
    for image in images:
        image.calc = calc
    neb = NEB(images, allow_shared_calculator=True)
    neb.interpolate()
    asked = set()
    opt = FIRE(neb, logfile=None)
    opt.attach(lambda: asked.update(identity(im) for im in images))
    opt.run(fmax=0.1, steps=60)
    assert target.ncalls <= len(asked)
    assert calc.stats["target_calls"] == target.ncalls
