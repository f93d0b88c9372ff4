"""The bound holds over seeds: over 20 seeds of a cheap plant (methane MC, EMT target, every served
energy checked) the bound and the audited estimate keep their promises; at a bound near or below
the surrogate's reach (Cu13 MD) the run's own audited record keeps it from serving over the bound,
and says so.  The long version over four systems is ``benchmarks/served_coverage.py``."""

from ase_proxima.validation import bound_check


def test_twenty_seeds_keep_the_bound_and_the_certificate():
    r = bound_check(range(20), steps=300, error_bound=0.0015)
    assert r["runs_serving"] == 20
    # promise: a run exceeds bound + se in at most ~16% of runs; 8 or more of 20 would have
    # probability under 2% if the promise held
    assert r["fraction_exceeding_bound_plus_se"] <= 7 / 20
    # the certificate holds at every served call in all but ~5% of runs: 4 or more misses of 20 would
    # have probability under 2% if it held
    assert r["fraction_certificate_missed"] <= 3 / 20


def test_with_enough_audits_the_estimate_is_calibrated():
    """The audited mean +- its standard error is a fair summary only with enough audits: at the
    default 5% these runs make 11-34, their errors drift upward through a run and are skewed, and
    the truth fell within 2 se in 12 of 20 runs (the certificate, which assumes nothing of the
    errors' shape, held in all).  At 20% (30-50 audits) the truth is within 2 se in most runs (its lean
    low is the known defect below)."""
    r = bound_check(range(20), steps=300, error_bound=0.0015, audit_fraction=0.2)
    assert r["runs_serving"] == 20
    # a calibrated estimate has the truth within 2 se in ~95% of runs; 14 or fewer of 20: p < 0.3%
    assert r["within_2_se"] >= 15 / 20
    assert r["fraction_certificate_missed"] <= 3 / 20


def test_with_enough_audits_the_estimate_is_unbiased():
    """No bias: the mean of 20 z-scores (truth minus estimate, over its standard error) has a
    standard error of about 0.22.  It was 1.04 on these seeds while refits were starved under
    ``cost_aware=False`` (one early model served most of each run); 0.44 since."""
    r = bound_check(range(20), steps=300, error_bound=0.0015, audit_fraction=0.2)
    assert abs(r["mean_z"]) < 0.75


def _cu13_served_errors(seed: int, bound: float, steps: int) -> list[float]:
    """Cu13 Langevin MD with an EMT target, every served force set checked against EMT."""
    return _cu13_run(seed, bound, steps)[0]


def _cu13_run(seed: int, bound: float, steps: int, **settings):
    """Cu13 Langevin MD with an EMT target: the true errors of the served answers, and the calculator."""
    import numpy as np
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    from ase_proxima import ProximaCalculator
    from ase_proxima.metrics import compute_error
    from ase_proxima.validation import ServedTruth

    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=bound, error_metric="forces_max", seed=seed,
                                          cost_aware=False, **settings)
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=np.random.default_rng(seed))
    md = Langevin(atoms, 2 * fs, temperature_K=500, friction=0.02, fixcm=False, rng=np.random.default_rng(seed + 1000))
    reference = EMT()
    truth = ServedTruth(calc, lambda: compute_error("forces_max", {"forces": atoms.get_forces()},
                                                    {"forces": reference.get_forces(atoms)}, len(atoms)))
    md.attach(truth)
    md.run(steps)
    return truth.errors, calc


def test_bound_on_all_holds_the_mean_over_every_answer_and_serves_more_than_the_served_bound():
    """The thesis's definition (target answers count as exact): at a bound where it binds (Cu13,
    forces_max 0.05 eV/A), the true mean over every answer stays under the bound and under its
    certificate, and the lenient definition serves more than the bound on served answers."""
    served_all, served_strict = 0, 0
    for seed in range(4):
        errors, calc = _cu13_run(seed, 0.05, 400, bound_on="all")
        s = calc.stats
        true_all = sum(errors) / s["calls"]
        assert true_all <= 0.05, (seed, true_all)
        assert true_all <= s["returned_error_upper"]
        served_all += len(errors)
        served_strict += len(_cu13_served_errors(seed, 0.05, 400))
    assert served_all > 2 * served_strict


def test_a_bound_below_the_surrogates_reach_is_not_broken_by_the_few_answers_it_lets_through():
    """Cu13 at forces_max 0.05 eV/A, about half the SOAP model's typical error: the gate's best
    calls are still over the bound, so a run either serves nothing or, where its audits say the
    error is under, serves what truly is; a window alone let a handful of answers through at
    1.2x the bound."""
    import numpy as np

    for seed in range(4):
        errors = _cu13_served_errors(seed, 0.05, 400)
        assert not errors or np.mean(errors) <= 0.05, (seed, len(errors), np.mean(errors))


def test_while_the_runs_audited_error_is_over_the_bound_every_servable_call_is_checked():
    """Cu13 at forces_max 0.1 eV/A, near the SOAP model's reach: the run's upper estimate of its
    served error goes over the bound; from then on the calls the gate passes are audited for
    certain, and the log says why, until the audits bring the estimate under."""
    import numpy as np
    from ase.calculators.emt import EMT
    from ase.cluster import Icosahedron
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.units import fs

    from ase_proxima import ProximaCalculator

    atoms = Icosahedron("Cu", noshells=2, latticeconstant=3.61)
    calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.1, error_metric="forces_max", seed=6,
                                          cost_aware=False)
    MaxwellBoltzmannDistribution(atoms, temperature_K=500, rng=np.random.default_rng(6))
    Langevin(atoms, 2 * fs, temperature_K=500, friction=0.02, fixcm=False, rng=np.random.default_rng(1006)).run(300)
    checked = [r for r in calc.log if (r["reason"] or "").startswith("over the bound")]
    assert len(checked) > 20
    assert all(r["kind"] == "audit" for r in checked)
    assert "0.1 eV/A" in checked[-1]["reason"]


def test_a_run_held_over_the_bound_says_so_when_it_stops_serving():
    from ase_proxima.control import ThresholdController
    from ase_proxima.notices import Notices

    reason = ("over the bound: the run's upper estimate of its error (0.12 eV/A) is over the bound (0.1 eV/A), "
              "so every call the gate passes is checked by the target until the audits bring it under")
    log = [{"kind": "target", "reason": "uncertain"}] * 50 + [{"kind": "audit", "reason": reason}] * 150
    note = Notices(quiet_calls=200).not_serving(200, -1, log, ThresholdController(error_bound=0.1), "eV/A")
    assert note.startswith("no surrogate answer in the last 200 calls; most often (150 of 200): over the bound")
    assert "(the run's upper estimate of its error (0.12 eV/A) is over the bound (0.1 eV/A)" in note


def test_a_run_whose_errors_scatter_serves_its_most_certain_calls_first(monkeypatch):
    """Methane (EMT) Monte Carlo at 300 K, 0.02 A moves, 0.5 meV: the audited errors scatter about
    as widely as their mean, so one answer drawn from all of them could be over the bound.  Judged
    by the errors measured at uncertainties no larger than the call's, the most certain calls are
    served; held to the spread of all of them, a run serves less or nothing.  Every served answer
    stays under the bound (checked against an independent EMT)."""
    import math

    import numpy as np
    from ase.build import molecule
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator
    from ase_proxima.control import ThresholdController
    from ase_proxima.workflows.mc import MonteCarlo

    def run(seed: int) -> tuple[int, float]:
        atoms = molecule("CH4")
        calc = atoms.calc = ProximaCalculator(target=EMT(), error_bound=0.0005, seed=seed, cost_aware=False)
        mc, reference, errors = MonteCarlo(atoms, temperature_K=300, step_size=0.02, rng=seed), EMT(), []
        mc.attach(lambda: errors.append(abs(mc.trial_energy - reference.get_potential_energy(mc.trial)))
                  if calc.answer == "surrogate" else None)
        mc.run(400)
        return len(errors), float(np.mean(errors)) if errors else 0.0

    conditional = [run(seed) for seed in (0, 2)]
    monkeypatch.setattr(ThresholdController, "spread_up_to", lambda self, u, minimum=10: math.nan)
    unconditional = [run(seed) for seed in (0, 2)]
    assert all(error <= 0.0005 for _, error in conditional + unconditional)
    # more served (1.5x while refits were starved and one early model served each run; about
    # 1.1x since the model keeps learning and its errors scatter less)
    assert sum(n for n, _ in conditional) > 1.05 * sum(n for n, _ in unconditional)
