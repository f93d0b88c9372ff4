"""The certified served error (:mod:`ase_proxima.certificate`): valid at every call against
adversarial error sequences, not vacuous, and its point estimate unbiased."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ase_proxima.certificate import ServedErrorBound
from ase_proxima.validation import ADVERSARIES, at_scale, certificate_run, drift, miscoverage


def _allowed(alpha: float, runs: int) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1 - alpha) / runs)


@settings(max_examples=8, deadline=None)
@given(kind=st.sampled_from(sorted(ADVERSARIES)), p=st.floats(0.02, 0.5), calls=st.integers(20, 150),
       seed=st.integers(0, 10_000), returned=st.booleans())
def test_coverage_holds_at_every_call_against_adversaries(kind, p, calls, seed, returned):
    runs = 400
    miss = miscoverage(ADVERSARIES[kind](p), runs, calls, seed, returned=returned)
    assert miss <= _allowed(0.05, runs)


def test_errors_at_the_scale_miss_about_alpha_and_no_more():
    # the tight case: before the first audit the bound is log(1/alpha) over n bets, and a run goes
    # unaudited long enough to exceed it with probability about (1 - p)^n ~ alpha^(1/c)
    runs = 3000
    miss = miscoverage(at_scale(0.1), runs, 120, seed=1)
    assert 0.015 < miss <= _allowed(0.05, runs)
    # a bound made a third tighter would no longer hold
    rng = np.random.default_rng(2)
    tighter = 0
    for _ in range(1000):
        b = ServedErrorBound()
        for n in range(1, 121):
            if rng.random() < 0.1:
                break
            b.serve(0.1, 1.0)
            if 1.0 > 0.66 * b.upper():
                tighter += 1
                break
    assert tighter / 1000 > 0.1


def test_higher_confidence_is_wider_and_misses_less():
    b = ServedErrorBound()
    for _ in range(50):
        b.serve(0.1, 1.0)
    b.audit(0.2, 0.1, 1.0)
    assert b.upper(0.99) > b.upper(0.95) > b.upper(0.8)
    assert miscoverage(at_scale(0.1), 2000, 100, seed=3, level=0.99) <= _allowed(0.01, 2000)


def test_small_errors_certify_close_to_the_truth():
    # errors a tenth of their scale, 5% audits: after a few thousand answers the bound is near the truth
    rng = np.random.default_rng(4)
    uncovered, bound, true = certificate_run(lambda t, h: (0.1 * (1 + math.sin(t / 50.0)) / 2 + 0.05, 0.05, 1.0), rng, 5000)
    assert not uncovered
    assert true < bound.upper() < true + 0.06
    assert abs(bound.estimate - true) < 0.02


def test_estimate_is_unbiased_over_runs():
    rng = np.random.default_rng(5)
    diffs = []
    for _ in range(600):
        _, bound, true = certificate_run(drift(0.2), rng, 60)
        diffs.append(bound.estimate - true)
    diffs = np.array(diffs)
    assert abs(diffs.mean()) < 3 * diffs.std() / math.sqrt(len(diffs))


def test_the_estimates_standard_error_matches_its_spread_over_runs():
    """The audits' own randomisation gives the estimate's standard error: the z-scores of the
    estimate against the truth spread with unit width (errors drifting, audit rate changing)."""
    rng = np.random.default_rng(6)
    z = []
    for _ in range(800):
        _, bound, true = certificate_run(lambda t, h: (0.2 + 0.1 * math.sin(t / 20.0), 0.1 + 0.2 * (t % 2), 1.0),
                                         rng, 300)
        z.append((bound.estimate - true) / bound.standard_error)
    z = np.array(z)
    assert abs(z.mean()) < 0.15
    assert 0.85 < z.std() < 1.15
    assert 0.9 < np.mean(np.abs(z) < 1.96) < 0.99


def test_rare_audits_give_a_wide_bound_never_a_false_claim():
    b = ServedErrorBound()
    for _ in range(1000):
        b.serve(0.001, 2.0)
    assert b.upper() <= 2.0  # never above the trivial bound, every error at its scale
    unaudited = ServedErrorBound()
    unaudited.serve(0.0, 2.0)  # audits off: only the trivial bound remains
    assert unaudited.upper() == 2.0
    assert b.upper() > 1.0  # a thousand answers audited at 0.1% show almost nothing
    assert math.isnan(b.estimate) is False and b.estimate == 0.0


def test_an_error_above_its_scale_is_counted():
    b = ServedErrorBound()
    b.serve(0.1, 1.0)
    b.audit(0.5, 0.1, 1.0)
    assert b.exceeded == 0
    b.audit(3.0, 0.1, 1.0)
    assert b.exceeded == 1 and math.isfinite(b.upper())


def test_nothing_served_has_no_bound_and_bad_input_is_refused():
    b = ServedErrorBound()
    assert math.isnan(b.upper()) and math.isnan(b.estimate)
    b.audit(0.1, 0.5, 1.0)
    assert math.isnan(b.upper())
    with pytest.raises(ValueError):
        b.serve(1.0, 1.0)
    with pytest.raises(ValueError):
        b.serve(0.1, 0.0)
    with pytest.raises(ValueError):
        b.audit(float("nan"), 0.1, 1.0)
    with pytest.raises(ValueError):
        b.audit(0.1, 0.0, 1.0)
    with pytest.raises(ValueError):
        b.upper(1.0)
    with pytest.raises(ValueError):
        ServedErrorBound(bet=1.0)


# ------------------------------------------------------------------ in the calculator
def _walk(calc, methane, steps=200, seed=3):
    from ase_proxima.workflows.mc import MonteCarlo

    walker = methane.copy()
    walker.calc = calc
    MonteCarlo(walker, temperature_K=500.0, step_size=0.01, rng=seed).run(steps)
    return calc.stats


def test_calculator_certifies_served_answers_and_counts_every_servable_call(methane):
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator

    calc = ProximaCalculator(target=EMT(), error_bound=0.002, audit_fraction=0.3, seed=2, cost_aware=False)
    assert math.isnan(calc.stats["served_error_upper"])
    s = _walk(calc, methane)
    cert = calc.tally.certificate
    assert s["surrogate_calls"] == cert.served > 0 and s["audits"] == cert.audits > 0
    assert s["error_scale"] == pytest.approx(0.02) and s["confidence_level"] == 0.95
    assert 0.0 < s["served_error_upper"] <= s["error_scale"]
    assert s["certificate_exceeded"] == 0
    assert s["served_error_upper"] > calc.tally.certificate.estimate
    assert s["served_error_unbiased"] == cert.estimate and s["served_error_unbiased_se"] == cert.standard_error
    assert s["served_error_unbiased_se"] > 0


def test_an_error_scale_too_small_is_caught_by_the_audits(methane):
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator

    from ase_proxima.notices import ProximaWarning

    calc = ProximaCalculator(target=EMT(), error_bound=0.002, error_scale=1e-7, audit_fraction=0.3, seed=2,
                             cost_aware=False)
    with pytest.warns(ProximaWarning, match="exceeds error_scale"):
        s = _walk(calc, methane)
    assert s["audits"] > 0 and s["certificate_exceeded"] > 0


def test_blended_audits_return_the_surrogate_answer_and_count_as_served(methane):
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator

    calc = ProximaCalculator(target=EMT(), error_bound=0.002, audit_fraction=0.3, blend=0.2, seed=2,
                             cost_aware=False)
    _walk(calc, methane)
    cert = calc.tally.certificate
    assert cert.returned == cert.audits > 0 and cert.known_sum > 0
    assert cert.answers == cert.served + cert.audits


def test_a_certain_audit_changes_no_bet():
    b = ServedErrorBound()
    b.audit(0.5, 1.0, 1.0)
    assert b.audits == 1 and b.log_penalty == 0.0 and b.estimated_sum == 0.0


def test_no_answer_is_served_before_the_served_error_has_an_estimate(methane):
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator

    for seed in range(4):
        calc = ProximaCalculator(target=EMT(), error_bound=0.003, seed=seed, cost_aware=False)
        walker = methane.copy()
        walker.calc = calc
        from ase_proxima.workflows.mc import MonteCarlo

        mc = MonteCarlo(walker, temperature_K=500.0, step_size=0.01, rng=seed)
        seen = []
        mc.attach(lambda: seen.append((calc.answer, calc.stats["served_error_se"])) if calc.answer == "surrogate"
                  else None)
        mc.run(150)
        assert seen, "the run served nothing"
        assert all(math.isfinite(se) for _, se in seen)  # two audits, at least, before the first answer
        # audits happen, and do not take the run over (near the bound the rate rises to 4x the 5%)
        assert 0.0 < calc.stats["audit_share"] < 0.35


def test_the_first_servable_calls_are_audited_for_certain():
    from ase_proxima.audits import AuditPolicy

    policy = AuditPolicy(0.05)
    assert policy.rate(0.01, math.nan, 0, 0.001) == 1.0
    assert policy.rate(0.01, math.nan, 1, 0.001) == 1.0
    assert policy.rate(0.01, 0.002, 2, 0.001) < 0.06
    assert AuditPolicy(0.0).rate(0.01, math.nan, 0, 0.001) == 0.0  # audits off stays off


def test_a_certified_block_counts_only_its_own_calls(methane):
    from ase.calculators.emt import EMT

    from ase_proxima import ProximaCalculator

    calc = ProximaCalculator(target=EMT(), error_bound=0.002, audit_fraction=0.3, seed=2, cost_aware=False)
    with calc.certified() as first:
        _walk(calc, methane, steps=150)
    whole = calc.tally.certificate
    assert (first.served, first.audits, first.log_penalty) == (whole.served, whole.audits, whole.log_penalty)
    before = (whole.served, whole.audits, whole.log_penalty, whole.known_sum)
    with calc.certified() as second:
        _walk(calc, methane, steps=150, seed=4)
    _walk(calc, methane, steps=50, seed=5)  # outside every block: the run's certificate only
    assert second.served > 0 and second.audits > 0
    assert first.served + second.served < whole.served
    with calc.certified() as third:
        pass
    assert third.answers == 0 and math.isnan(third.upper())
    # the second block saw exactly the calls it wrapped: the run's counts grew by at least its own
    assert whole.served - before[0] >= second.served and whole.audits - before[1] >= second.audits
    s = second.summary(0.9)
    assert s["answers"] == second.served and s["confidence_level"] == 0.9
    assert s["served_error_upper"] == second.upper(0.9) > s["served_error_unbiased"] >= 0.0
    assert not calc._segments  # every block closed


_CALL = st.tuples(st.booleans(), st.floats(0.01, 0.9), st.floats(0.0, 1.0), st.floats(0.2, 2.0))


def _feed(cert: ServedErrorBound, calls) -> ServedErrorBound:
    for audited, p, error, scale in calls:
        if audited:
            cert.audit(error * scale, p, scale)
        else:
            cert.serve(p, scale)
    return cert


@given(runs=st.lists(st.lists(_CALL, max_size=40), min_size=1, max_size=5))
@settings(max_examples=80, deadline=None)
def test_runs_pool_into_the_certificate_of_all_their_calls(runs):
    parts = [_feed(ServedErrorBound(), calls) for calls in runs]
    one = _feed(ServedErrorBound(), [c for calls in runs for c in calls])
    pooled = ServedErrorBound.pooled(parts)
    assert pooled.answers == one.answers and pooled.audits == one.audits
    for level in (0.9, 0.95):
        a, b = pooled.upper(level), one.upper(level)
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)
    assert (math.isnan(pooled.estimate) and math.isnan(one.estimate)) or \
        pooled.estimate == pytest.approx(one.estimate)
    # a state written as JSON gives the same bound back
    again = ServedErrorBound.from_state(json.loads(json.dumps(parts[0].state())))
    assert again.state() == parts[0].state()


def test_pooled_runs_miss_about_alpha_and_no_more():
    """Four runs side by side, each with its own coins, every error at its scale (the tight case of
    the single-run test above): the pooled bound, checked after every call of any run, misses the
    mean over all runs' answers in about alpha of scans and no more."""
    rng = np.random.default_rng(5)
    scans, misses = 2000, 0
    for _ in range(scans):
        parts = [ServedErrorBound() for _ in range(4)]
        for _call in range(120):
            run = parts[rng.integers(4)]
            if rng.random() < 0.1:
                run.audit(1.0, 0.1, 1.0)
            else:
                run.serve(0.1, 1.0)
                if ServedErrorBound.pooled(parts).upper() < 1.0:  # the truth: every served error is 1
                    misses += 1
                    break
    assert 0.015 < misses / scans <= _allowed(0.05, scans)
