"""approx: numpy export of trained networks, their exact gradients, and the Newton-Raphson region."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nnapprox import MLPWeights, approximate, parse_topology, train_mlp
from nnapprox import newton_raphson_quadratic, root_scores, sample_quadratics


def random_net(topology, seed, activation="tanh"):
    rng = np.random.default_rng(seed)
    layers = [(rng.normal(size=(a, b)), rng.normal(size=b)) for a, b in zip(topology, topology[1:])]
    return MLPWeights(layers, activation, x_shift=rng.normal(size=topology[0]),
                      x_scale=rng.uniform(0.5, 2, topology[0]), y_shift=0.3, y_scale=1.7)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), hidden=st.lists(st.integers(1, 6), min_size=1, max_size=3),
       n_in=st.integers(1, 3), activation=st.sampled_from(["tanh", "softsign"]))
def test_gradient_is_exact(seed, hidden, n_in, activation):
    net = random_net((n_in, *hidden, 1), seed, activation)
    x = np.random.default_rng(seed + 1).normal(size=(5, n_in))
    y, g = net.value_and_gradient(x)
    np.testing.assert_allclose(y, net(x), rtol=1e-12)
    h = 1e-6
    for k in range(n_in):
        e = np.zeros(n_in)
        e[k] = h
        np.testing.assert_allclose(g[:, k], (net(x + e) - net(x - e)) / (2 * h), rtol=1e-5, atol=1e-7)


def test_save_and_load_round_trip(tmp_path):
    net = random_net((3, 5, 3, 1), 0, activation="relu")
    back = MLPWeights.load(net.save(tmp_path / "net.json"))
    x = np.random.default_rng(1).normal(size=(7, 3))
    np.testing.assert_array_equal(back(x), net(x))
    assert back.topology == (3, 5, 3, 1) and back.n_parameters == net.n_parameters


def test_topology_and_input_checks():
    assert parse_topology("1x3x1") == (1, 3, 1)
    for bad in ("1", "1x0x1", "1x3x2"):
        with pytest.raises(ValueError):
            parse_topology(bad)
    with pytest.raises(ValueError):
        random_net((2, 3, 1), 0)(np.zeros((4, 3)))
    with pytest.raises(ValueError):
        MLPWeights([(np.ones((1, 2)), np.ones(2)), (np.ones((3, 1)), np.ones(1))])


def test_training_fits_a_smooth_function():
    x = np.linspace(-2, 2, 400)
    net, info = train_mlp(x, np.sin(2 * x), "1x8x1", steps=1500, refine_steps=300, restarts=1)
    assert np.abs(net(x) - np.sin(2 * x)).max() < 0.02
    assert info.steps == 1500 and info.train_time_s > 0


def test_newton_raphson_finds_the_larger_root():
    coeffs = sample_quadratics(np.random.default_rng(0), 500)
    roots = newton_raphson_quadratic(coeffs)
    a, b, c = coeffs.T
    exact = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    np.testing.assert_allclose(roots, exact, atol=1e-9)


def test_newton_raphson_network_beats_a_constant():
    rows = approximate(newton_raphson_quadratic, sample_quadratics, ["3x8x5x1"], n_train=4000, n_test=1000,
                       steps=1500, learning_rate=0.01, refine_steps=300, restarts=1, score=root_scores)
    row = rows[0]
    rng = np.random.default_rng(99)
    coeffs = sample_quadratics(rng, 4000)
    true = newton_raphson_quadratic(coeffs)
    constant = root_scores(coeffs, true, np.full_like(true, np.mean(true)))
    assert row.extra["accuracy"] > constant["accuracy"] + 0.3
    assert row.mean_abs_error < 0.25 * np.mean(np.abs(true - true.mean()))
    assert row.network_s_per_eval > 0 and row.original_s_per_eval > 0
