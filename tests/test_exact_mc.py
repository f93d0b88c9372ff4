"""Exact Monte Carlo with a screen: the chain samples the target's distribution whatever the
screen's errors, a learned screen stops learning at the end of its burn-in, and the statistics
count what the target was asked."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.calculators.harmonic import HarmonicCalculator, HarmonicForceField
from ase.cluster import Icosahedron
from ase.units import kB
from conftest import kill_past_checkpoint
from scipy import stats

from ase_proxima import ProximaCalculator
from ase_proxima.cli import main
from ase_proxima.screens import CalculatorScreen, LearnedScreen, as_screen
from ase_proxima.workflows.exact_mc import ExactMonteCarlo, effective_samples, tune
from ase_proxima.workflows.mc import MonteCarlo

T = 300.0
STIFFNESS = 1.0  # eV/A^2: each coordinate of the atom is normal with variance kT / STIFFNESS
SIGMA = math.sqrt(kB * T / STIFFNESS)


def _well(centre: tuple[float, float, float], stiffness: float) -> HarmonicCalculator:
    ref = Atoms("Ar", positions=[centre])
    return HarmonicCalculator(HarmonicForceField(ref_atoms=ref, ref_energy=0.0, hessian_x=stiffness * np.eye(3)))


def _target() -> HarmonicCalculator:
    return _well((0.0, 0.0, 0.0), STIFFNESS)


def _biased() -> HarmonicCalculator:
    """A screen that is plainly wrong: its well is off-centre by half a standard deviation and
    80% stiffer."""
    return _well((0.5 * SIGMA, 0.0, 0.0), 1.8 * STIFFNESS)


def _sample(mc, steps: int) -> np.ndarray:
    positions = []
    mc.attach(lambda: positions.append(mc.atoms.positions[0].copy()))
    mc.run(steps)
    return np.array(positions[1:])  # the start is not a sample


def _ks_p(x: np.ndarray) -> float:
    """Kolmogorov-Smirnov p-value of the coordinates against the target's normal distribution,
    on the chain thinned to about independent samples (every 2 tau, tau from the slowest
    coordinate)."""
    tau = max(len(x) / effective_samples(x[:, i]) for i in range(3))
    thin = max(1, math.ceil(2.0 * tau))
    return float(stats.kstest(x[::thin].ravel(), "norm", args=(0.0, SIGMA)).pvalue)


@pytest.mark.parametrize("inner_steps", [1, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_chain_samples_the_target_distribution_with_a_biased_screen(inner_steps: int, seed: int) -> None:
    atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    atoms.calc = _target()
    mc = ExactMonteCarlo(atoms, T, step_size=0.25, screen=_biased(), inner_steps=inner_steps, rng=seed)
    x = _sample(mc, 6000)
    assert _ks_p(x) > 0.01
    s = mc.stats
    assert s["burn_in"] == 0 and s["samples"] == 6000
    # the biased screen turns proposals away before the target sees them
    assert s["target_calls"] < 6000 + 1
    assert 0.0 < s["second_stage_acceptance"] < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_the_biased_screen_alone_fails_the_same_test(seed: int) -> None:
    atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    atoms.calc = _biased()
    x = _sample(MonteCarlo(atoms, T, step_size=0.25, rng=seed), 6000)
    assert _ks_p(x) < 1e-4


def test_a_learned_screen_learns_during_burn_in_only() -> None:
    atoms = Icosahedron("Cu", 2)
    atoms.calc = EMT()
    screen = LearnedScreen(min_training=15)
    mc = ExactMonteCarlo(atoms, 500.0, step_size=0.03, screen=screen, inner_steps=3, burn_in=40, rng=0)
    mc.run(40)
    assert screen.fits >= 1 and not screen.frozen
    learned, version = screen.training_size, screen.version
    assert learned == mc.counts["target_calls"]  # every target energy of the burn-in, the start's included
    mc.run(60)
    assert screen.frozen
    assert screen.version in (version, version + 1)  # the freeze refits once on what arrived since
    frozen_version = screen.version
    mc.run(20)
    assert screen.version == frozen_version and screen.training_size == learned
    s = mc.stats
    assert s["burn_in"] == 40 and s["samples"] == 80
    assert s["target_calls_sampling"] == mc.counts["target_calls"] - learned
    assert s["screen_calls"] > 0 and s["inner_steps"] == 3
    # energies of the samples are the target's
    np.testing.assert_allclose(mc.samples()["energy"][-1], EMT().get_potential_energy(mc.atoms), atol=1e-9)


def test_freezing_refits_on_what_arrived_since_the_last_fit() -> None:
    atoms = Icosahedron("Cu", 2)
    screen = LearnedScreen(min_training=10, growth=10.0)
    rng = np.random.default_rng(0)
    for _ in range(14):
        a = atoms.copy()
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        screen.learn(a, EMT().get_potential_energy(a))
    assert screen.fits == 1 and screen._fitted_on == 10
    screen.freeze()
    assert screen.fits == 2 and screen._fitted_on == 14
    screen.learn(atoms, 0.0)
    assert screen.training_size == 14  # frozen: nothing more is learned


def test_a_proxima_calculator_screens_at_once_and_is_left_as_it_was() -> None:
    atoms = Icosahedron("Cu", 2)
    # cost_aware=False: EMT stands in for a costly target (the economy would otherwise, by measured
    # time, leave the surrogate of so cheap a target unfitted)
    calc = ProximaCalculator(target=EMT(), error_bound=0.05, seed=0, cost_aware=False, refit_share=None)
    atoms.calc = calc
    walk = MonteCarlo(atoms, 500.0, step_size=0.03, rng=0)
    walk.run(40)
    assert calc.surrogate.is_fitted
    before = calc.surrogate.fitted_state().arrays
    screen = as_screen(calc)
    assert isinstance(screen, LearnedScreen) and screen.ready
    a = atoms.copy()
    a.calc = EMT()
    mc = ExactMonteCarlo(a, 500.0, step_size=0.03, screen=calc, inner_steps=2, rng=0)
    assert mc.burn_in == 0  # ready at the start: every step is a sample
    mc.run(10)
    after = calc.surrogate.fitted_state().arrays
    assert before.keys() == after.keys() and all(np.array_equal(before[k], after[k]) for k in before)


def test_without_a_ready_screen_the_chain_is_plain_metropolis() -> None:
    atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    atoms.calc = _target()
    mc = ExactMonteCarlo(atoms, T, step_size=0.25, screen=LearnedScreen(), burn_in=0, rng=3)
    mc.run(50)
    plain = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    plain.calc = _target()
    ref = MonteCarlo(plain, T, step_size=0.25, rng=3)
    ref.run(50)
    np.testing.assert_allclose(mc.atoms.positions, plain.positions)
    assert mc.counts["target_calls"] == 51 and mc.stats["screen_calls"] == 0


def test_bad_settings_are_refused() -> None:
    atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    atoms.calc = _target()
    with pytest.raises(ValueError, match="inner_steps"):
        ExactMonteCarlo(atoms, T, screen=_biased(), inner_steps=0)
    with pytest.raises(ValueError, match="burn_in"):
        ExactMonteCarlo(atoms, T, screen=_biased(), burn_in=-1)
    with pytest.raises(ValueError, match="the target itself"):
        ExactMonteCarlo(atoms, T, screen=atoms.calc)
    with pytest.raises(TypeError, match="screen"):
        as_screen(42)
    wrapped = atoms.copy()
    wrapped.calc = ProximaCalculator(target=_target(), error_bound=0.01)
    with pytest.raises(ValueError, match="approximate"):
        ExactMonteCarlo(wrapped, T, screen=_biased())
    with pytest.raises(TypeError, match="instance"):
        CalculatorScreen(EMT)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_effective_samples_of_an_autoregressive_series(phi: float) -> None:
    """AR(1) with coefficient phi has integrated autocorrelation time (1 + phi) / (1 - phi)."""
    rng = np.random.default_rng(1)
    n, x = 40000, np.empty(40000)
    x[0] = 0.0
    noise = rng.normal(size=n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + noise[i]
    expected = n * (1 - phi) / (1 + phi)
    assert effective_samples(x) == pytest.approx(expected, rel=0.2)
    assert math.isnan(effective_samples(np.ones(100)))


def test_tune_ranks_settings_by_target_calls_per_effective_sample() -> None:
    atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
    atoms.calc = _target()
    rows = tune(atoms, T, [(0.02, 0), (0.25, 0), (0.25, 3)], 2000, screen=_biased())
    costs = [r["target_calls_per_effective_sample"] for r in rows]
    assert costs == sorted(costs)
    tiny = next(r for r in rows if r["step_size"] == 0.02)
    assert tiny is rows[-1]  # a step a tenth of the width decorrelates slowest
    with pytest.raises(ValueError, match="needs a screen"):
        tune(atoms, T, [(0.25, 2)], 10)


def test_cli_exact_method_writes_its_statistics(tmp_path, capsys) -> None:
    out = tmp_path / "exact"
    code = main(["mc", "--method", "exact", "--target", "emt", "--molecule", "CH4", "--temperature", "300",
                 "--steps", "60", "--step-size", "0.02", "--burn-in", "30", "--inner-steps", "3", "--out", str(out),
                 "--quiet"])
    assert code == 0
    report = json.loads((out / "stats.json").read_text())
    e = report["exact"]
    assert e["burn_in"] == 30 and e["samples"] == 30 and e["inner_steps"] == 3
    assert e["target_calls"] <= 61 and report["method"] == "exact"
    assert (out / "mc.traj").exists() and not (out / "store").exists()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "second_stage_acceptance" in page and (out / "report.png").stat().st_size > 0
    # the default burn-in (300 steps) would leave a 60-step run no samples: refused before running
    assert main(["mc", "--method", "exact", "--target", "emt", "--steps", "60", "--out", str(tmp_path / "b"),
                 "--quiet"]) == 2
    assert "burn-in" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_a_learned_screen_on_a_baseline_learns_the_correction() -> None:
    from ase.calculators.lj import LennardJones

    atoms = Icosahedron("Cu", 2)
    baseline = LennardJones(sigma=2.3, epsilon=0.4, rc=6.0)
    screen = LearnedScreen(baseline=baseline, min_training=12)
    images = []
    for seed in range(14):
        a = atoms.copy()
        a.rattle(0.05, seed=seed)
        images.append(a)
        screen.learn(a, EMT().get_potential_energy(a))
    assert screen.ready and screen.summary()["screen_baseline"] == baseline.name
    for a, r in zip(images, screen._results):  # what it learned: target minus baseline
        assert r["energy"] == pytest.approx(EMT().get_potential_energy(a) - baseline.get_potential_energy(a))
    probe = atoms.copy()
    probe.rattle(0.03, seed=99)
    base = {"energy": baseline.get_potential_energy(probe)}
    learned = screen.surrogate.predict(probe, ["energy"], baseline=base).results["energy"]
    assert screen.energy(probe) == pytest.approx(learned + base["energy"])
    # a checkpoint keeps the baseline's energies; one written without them has them computed again
    state = screen.state()
    assert len(state["baseline_energies"]) == len(images)
    for saved in (state, {k: v for k, v in state.items() if k != "baseline_energies"}):
        again = LearnedScreen(baseline=LennardJones(sigma=2.3, epsilon=0.4, rc=6.0), min_training=12)
        again.restore(saved)
        assert again.energy(probe) == pytest.approx(screen.energy(probe), abs=1e-6)


def test_a_saved_chain_continues_as_if_never_stopped() -> None:
    def chain() -> ExactMonteCarlo:
        atoms = Atoms("Ar", positions=[(0.0, 0.0, 0.0)])
        atoms.calc = _target()
        return ExactMonteCarlo(atoms, T, step_size=0.25, screen=_biased(), inner_steps=3, rng=7)

    whole = chain()
    whole.run(60)
    first = chain()
    first.run(30)
    saved = json.loads(json.dumps(first.state()))  # plain JSON
    second = chain()
    second.restore(saved)
    second.run(30)
    np.testing.assert_array_equal(second.atoms.positions, whole.atoms.positions)
    assert second.counts == whole.counts


def test_a_learned_screen_is_rebuilt_from_its_state() -> None:
    atoms = Icosahedron("Cu", 2)
    atoms.calc = EMT()
    mc = ExactMonteCarlo(atoms, 500.0, step_size=0.03, inner_steps=2, burn_in=30, rng=0)
    mc.run(40)
    rebuilt = LearnedScreen()
    rebuilt.restore(json.loads(json.dumps(mc.screen.state())))
    assert rebuilt.frozen and rebuilt.training_size == mc.screen.training_size and rebuilt.version == mc.screen.version
    probe = atoms.copy()
    probe.rattle(0.02, seed=3)
    # refitted in one go: close to the running fits' model, not identical (see LearnedScreen.restore)
    assert rebuilt.energy(probe) == pytest.approx(mc.screen.energy(probe), abs=0.01)


def test_a_killed_exact_run_resumes(tmp_path) -> None:
    from ase.io import read


    out = tmp_path / "exact"
    args = ["mc", "--method", "exact", "--target", "emt", "--step-size", "0.02", "--burn-in", "40", "--inner-steps",
            "3", "--quiet", "--out", str(out)]
    # killed past the burn-in: the screen is frozen, and refitted from the checkpoint's data
    done = kill_past_checkpoint(["-m", "ase_proxima.cli", *args, "--steps", "20000"], out / "mc_state.json", 80)
    assert done >= 80
    assert main([*args, "--steps", str(done + 40), "--resume"]) == 0
    report = json.loads((out / "stats.json").read_text())
    assert report["resumed"] and report["steps"] == done + 40
    e = report["exact"]
    assert e["steps"] == done + 40 and e["samples"] == done + 40 - 40  # the history spans the whole chain
    frames = read(out / "mc.traj", ":")
    assert [f.info["step"] for f in frames] == list(range(-1, done + 40))
