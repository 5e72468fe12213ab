"""The quadratic network of Gromov 2023 and its modular-addition data."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.learning import QuadraticNetwork, empirical_ntk, modular_addition


def test_modular_addition_pairs_and_labels():
    x, y = modular_addition(5)
    assert x.shape == (25, 10) and y.shape == (25,)
    # pair 13 is (n, m) = (2, 3): e_2 then e_3, label 0
    assert np.array_equal(np.nonzero(np.asarray(x[13]))[0], [2, 8]) and int(y[13]) == 0
    assert np.array_equal(np.asarray(x.sum(1)), np.full(25, 2.0))
    assert np.array_equal(np.bincount(np.asarray(y)), np.full(5, 5))


def test_quadratic_network_shapes_and_a_hand_computed_output():
    model = QuadraticNetwork(4, 2, 3, key=jax.random.key(0))
    assert model.w1.shape == (2, 4) and model.w2.shape == (3, 2)
    w1 = jnp.array([[1.0, 2.0, 0.0, -1.0], [0.5, 0.0, 1.0, 1.0]])
    w2 = jnp.array([[1.0, 0.0], [0.0, 2.0], [1.0, -1.0]])
    model = eqx.tree_at(lambda m: (m.w1, m.w2), model, (w1, w2))
    x = jnp.array([1.0, 0.0, 0.0, 1.0])  # [e_0, e_1] for p = 2
    # h = W1 x / √4 = (0, 1.5) / 2 = (0, 0.75); h² = (0, 0.5625); f = W2 h² / 2
    expected = jnp.array([0.0, 2 * 0.5625, -0.5625]) / 2
    np.testing.assert_allclose(model(x), expected, rtol=1e-6)


def test_quadratic_network_initialisation_is_standard_normal():
    model = QuadraticNetwork(200, 300, 50, key=jax.random.key(1))
    w = np.concatenate([np.ravel(model.w1), np.ravel(model.w2)])
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01


@pytest.mark.parametrize("bad", [0, 2.0, True])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="hidden must be an int"):
        QuadraticNetwork(4, bad, 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="p must be an int"):
        modular_addition(bad)


def test_empirical_ntk_of_the_quadratic_network_matches_its_closed_form():
    """With `h = W₁x/√D`: `∂f_k/∂W₂[k', j] = δ_kk' h_j²/N`, `∂f_k/∂W₁[j, i] = 2 W₂[k, j] h_j
    x_i/(N√D)`, so the output-averaged kernel is `Σ_j h_j² h'_j²/N² + 4 (x·x') Σ_j (Σ_k
    W₂[k, j]²) h_j h'_j / (N² D p)`."""
    p, hidden = 5, 7
    model = QuadraticNetwork(2 * p, hidden, p, key=jax.random.key(3))
    x = modular_addition(p)[0][:6]
    h = x @ model.w1.T / np.sqrt(2 * p)
    column = np.sum(np.asarray(model.w2) ** 2, axis=0)
    expected = (h**2) @ (h**2).T / hidden**2 + 4 * (x @ x.T) * ((h * column) @ h.T) / (
        hidden**2 * 2 * p * p
    )
    for method in ("jacobian", "jvp"):
        np.testing.assert_allclose(empirical_ntk(model, x, method=method), expected, rtol=1e-5)
