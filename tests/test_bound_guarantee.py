"""Item 5 of the reliability issue: over 20 seeds of a cheap plant (methane MC, EMT target, every
served energy checked), the bound and the audited estimate keep their promises."""
from ase_proxima.validation import bound_check


def test_twenty_seeds_keep_the_bound_and_the_estimate_is_calibrated():
    r = bound_check(range(20), steps=300, error_bound=0.0015)
    assert r["runs_serving"] == 20
    # promise: a run exceeds bound + se in at most ~16% of runs; 8 or more of 20 would have
    # probability under 2% if the promise held
    assert r["fraction_exceeding_bound_plus_se"] <= 7 / 20
    # a calibrated estimate has the truth within 2 se in ~95% of runs; 14 or fewer of 20: p < 0.3%
    assert r["within_2_se"] >= 15 / 20
    # no bias: the mean of 20 z-scores has a standard error of about 0.22
    assert abs(r["mean_z"]) < 0.75
    # the certificate holds at every served call in all but ~5% of runs: 4 or more misses of 20 would
    # have probability under 2% if it held
    assert r["fraction_certificate_missed"] <= 3 / 20
