"""The quadratic network of Gromov 2023, its modular-addition data and analytic solution, the
Fourier spectrum of its first layer, and the XOR cluster data of Xu et al. 2024."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.learning import (
    QuadraticNetwork,
    empirical_ntk,
    fourier_concentration,
    fourier_spectrum,
    gromov_solution,
    modular_addition,
    xor_bayes_accuracy,
    xor_clusters,
)


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


@pytest.mark.parametrize("p", [23, 31])
def test_gromov_solution_is_exact_on_all_pairs(p):
    """Grid phases: `f(x) = e_{(n+m) mod p} − 1/p` on every pair, to rounding (float64), so
    the p² pairs are all classified correctly without training."""
    model = gromov_solution(p, 9 * (p - 1) // 2)
    x, y = modular_addition(p)
    out = jax.vmap(model)(x)
    np.testing.assert_allclose(out, jax.nn.one_hot(y, p) - 1 / p, atol=1e-12)
    assert np.array_equal(np.argmax(out, 1), y)


def test_gromov_solution_with_random_phases_classifies_every_pair():
    """Gromov's random phases: the identity holds in expectation; at N = 500 (p = 23) every
    pair is classified correctly, at N = 11 (one neuron per frequency) not."""
    x, y = modular_addition(23)
    wide = gromov_solution(23, 500, key=jax.random.key(0))
    assert np.array_equal(np.argmax(jax.vmap(wide)(x), 1), y)
    narrow = gromov_solution(23, 11, key=jax.random.key(0))
    assert np.mean(np.argmax(jax.vmap(narrow)(x), 1) == y) < 1.0


def test_fourier_spectrum_parseval_and_concentration():
    p = 7
    w1 = jax.random.normal(jax.random.key(2), (5, 2 * p))
    power = fourier_spectrum(w1, p)
    assert power.shape == (5, 4)
    np.testing.assert_allclose(power.sum(1), np.sum(np.asarray(w1) ** 2, 1), rtol=1e-12)
    # even p: the Nyquist frequency p/2 is counted once, like σ = 0
    w1 = jax.random.normal(jax.random.key(3), (5, 12))
    np.testing.assert_allclose(fourier_spectrum(w1, 6).sum(1), np.sum(np.asarray(w1) ** 2, 1),
                               rtol=1e-12)  # fmt: skip
    # a row cos(2π·2n/p + φ) on both halves: power 2 · (p/2) on frequency 2, none elsewhere
    gromov = gromov_solution(p, 9 * 3)
    power = fourier_spectrum(gromov.w1, p)
    amplitude2 = (4.0 * (p - 1)) ** (2 / 3)
    expected = np.zeros((27, 4))
    expected[np.arange(27), 1 + np.arange(27) % 3] = amplitude2 * p
    np.testing.assert_allclose(power, expected, atol=1e-10)
    ipr, top = fourier_concentration(power)
    np.testing.assert_allclose(ipr, 1.0)
    np.testing.assert_allclose(top, 1.0)
    # power spread evenly over F frequencies: IPR 1/F, top-2 fraction 2/F
    ipr, top = fourier_concentration(jnp.ones((3, 4)), top=2)
    np.testing.assert_allclose(ipr, 0.25)
    np.testing.assert_allclose(top, 0.5)


def test_gromov_and_fourier_refuse_bad_arguments():
    with pytest.raises(ValueError, match="p must be odd"):
        gromov_solution(22, 99)
    with pytest.raises(ValueError, match="multiple of 9 \\(p - 1\\)/2 = 99"):
        gromov_solution(23, 100)
    with pytest.raises(ValueError, match="shape \\(hidden, 2p=10\\)"):
        fourier_spectrum(jnp.ones((3, 7)), 5)
    with pytest.raises(ValueError, match="at least top=5"):
        fourier_concentration(jnp.ones((3, 4)), top=5)


def test_xor_clusters_means_labels_and_flips():
    x, y, clean = xor_clusters(20_000, dim=5, mean_norm=3.0, label_noise=0.2, key=jax.random.key(0))
    x, y, clean = map(np.asarray, (x, y, clean))
    assert x.shape == (20_000, 5) and set(np.unique(y)) == {-1.0, 1.0}
    # clean +1: x₀ = ±3 + g, so E x₀² = 10 and E x₁² = 1; clean −1 the other way round; the
    # other coordinates pure noise (standard errors ≤ √(38/10⁴) = 0.06; 5 of them)
    second = np.stack([np.mean(x[clean == c] ** 2, 0) for c in (1.0, -1.0)])
    np.testing.assert_allclose(second, [[10, 1, 1, 1, 1], [1, 10, 1, 1, 1]], atol=0.3)
    # flips at rate 0.2: binomial standard error 0.0028, 4 of them
    assert abs(np.mean(y != clean) - 0.2) < 0.012
    # XOR: the mean of y·x vanishes (no linear signal): standard error 3.2/√20000 = 0.023
    assert np.all(np.abs(np.mean(clean[:, None] * x, 0)) < 0.1)
    with pytest.raises(ValueError, match="label_noise must be in \\[0, 0.5\\)"):
        xor_clusters(10, dim=5, mean_norm=3.0, label_noise=0.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="mean_norm must be a number >= 0"):
        xor_clusters(10, dim=5, mean_norm=-3.0, label_noise=0.1, key=jax.random.key(0))


def test_xor_bayes_accuracy_against_closed_forms_and_monte_carlo():
    # no signal: chance on either label set; η mixes q and 1 − q
    np.testing.assert_allclose(xor_bayes_accuracy(0.0, 0.3), (0.5, 0.5), atol=1e-6)
    clean, noisy = xor_bayes_accuracy(1.0, 0.1)
    np.testing.assert_allclose(noisy, 0.9 * clean + 0.1 * (1 - clean), rtol=1e-12)
    assert xor_bayes_accuracy(12.25, 0.1) == pytest.approx((1.0, 0.9), abs=1e-12)
    # a second method: the Bayes rule on 10⁵ draws (standard error 0.0015; 4 of them)
    x, _, labels = xor_clusters(
        100_000, dim=2, mean_norm=1.0, label_noise=0.0, key=jax.random.key(1)
    )
    x = np.asarray(x)
    rule = np.where(np.abs(x[:, 0]) > np.abs(x[:, 1]), 1.0, -1.0)
    assert abs(np.mean(rule == np.asarray(labels)) - clean) < 0.006


def test_grokking_sharpness_is_the_top_eigenvalue_of_the_dense_hessian():
    """`grokking_modular.sharpness` (power iteration on `hessian_operator`), which sets the
    step of `train.lr_sharpness`, against `eigvalsh` of the dense Hessian of the same loss."""
    from jax.flatten_util import ravel_pytree

    from jaxdyn.experiments.grokking_modular import _mse, sharpness

    x, labels = modular_addition(5)  # float64: tests/conftest.py enables x64
    x, y = x[:15], jax.nn.one_hot(labels[:15], 5)
    model = QuadraticNetwork(10, 3, 5, key=jax.random.key(0))
    flat, unravel = ravel_pytree(model)
    dense = jax.jit(jax.hessian(lambda v: _mse(unravel(v), (x, y), None)))(flat)
    lam, residual = sharpness(model, x, y, key=jax.random.key(1))
    top = float(jnp.linalg.eigvalsh(dense)[-1])
    assert flat.dtype == jnp.float64
    assert lam == pytest.approx(top, rel=1e-8) and residual < 1e-7
