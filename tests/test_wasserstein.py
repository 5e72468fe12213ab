"""Exact Wasserstein distances against scipy and closed forms; non-finite samples are counted."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from jaxdyn.metrics import (
    grid_histogram,
    histogram_wasserstein2_squared,
    wasserstein2_squared,
    wasserstein_1d,
)


def test_wasserstein_1d_is_exact():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=300), rng.normal(0.3, 1.5, size=170)
    # Jitted (the traced branch; the concrete one: the non-finite test below), so each pair
    # of shapes is one program rather than one per operation.
    w1 = jax.jit(wasserstein_1d)
    # Both compute ∫|F_a - F_b| exactly; they differ by float64 rounding only.
    assert float(w1(a, b)) == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-12)
    c = rng.normal(size=300)
    assert float(w1(a, c)) == pytest.approx(np.mean(np.abs(np.sort(a) - np.sort(c))), rel=1e-12)
    assert float(w1(a, a + 0.25)) == pytest.approx(0.25, rel=1e-12)


def test_wasserstein_1d_rejects_non_finite_samples():
    a = np.array([0.0, np.nan, 1.0, np.inf, 2.0])
    with pytest.raises(ValueError, match=r"a has 2 non-finite values \(of 5\)"):
        wasserstein_1d(a, np.zeros(3))
    with pytest.raises(ValueError, match=r"b has 1 non-finite value \(of 3\)"):
        wasserstein_1d(np.zeros(3), np.array([0.0, -np.inf, 1.0]))
    # Under jit or vmap the values are unknown at trace time: a run-time error instead.
    batched = jax.jit(jax.vmap(wasserstein_1d))
    assert float(batched(jnp.zeros((1, 3)), jnp.ones((1, 3)))[0]) == pytest.approx(1.0)
    with pytest.raises(Exception, match="wasserstein_1d: a or b has non-finite values"):
        jax.block_until_ready(batched(jnp.zeros((2, 3)), jnp.full((2, 3), jnp.nan)))


def test_wasserstein2_squared_exact_on_translations_and_permutations():
    x = np.random.default_rng(0).normal(size=(300, 2))
    # Translating by v moves every point by |v|², which is optimal: W₂² = |v|² exactly.
    assert wasserstein2_squared(x, x + np.array([1.0, -2.0])) == pytest.approx(5.0, rel=1e-12)
    assert wasserstein2_squared(x, x[::-1]) == pytest.approx(0.0, abs=1e-12)
    # Unequal sizes: a point mass against two points at distance 1 and 3 costs (1 + 9) / 2.
    assert wasserstein2_squared([[0.0]], [[1.0], [-3.0]]) == pytest.approx(5.0)


def test_wasserstein2_squared_names_bad_input():
    with pytest.raises(ValueError, match="same dim"):
        wasserstein2_squared(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"y has 6 non-finite values \(of 6\)"):
        wasserstein2_squared(np.zeros((3, 2)), np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
        wasserstein2_squared(np.zeros((3, 2)), np.zeros((3, 2)), max_steps=0)


def test_histogram_wasserstein_on_translations_and_product_laws():
    """On the grid of cell centres (spacing `h = 2 limit/(bins − 1)`): shifting every sample by
    whole cells costs the shift², and two product laws `μ₁⊗μ₂`, `ν₁⊗ν₂` cost `W₂²(μ₁, ν₁) +
    W₂²(μ₂, ν₂)`, each 1-D term from sorted equal-size samples of the snapped centres."""
    bins, limit = 9, 2.0
    h = 2 * limit / (bins - 1)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, size=(200, 2))
    shift = np.array([2 * h, -h])
    value = histogram_wasserstein2_squared(x, x + shift, bins=bins, limit=limit)
    assert value == pytest.approx(5 * h**2, rel=1e-12)

    def snap(a):
        return np.rint((a + limit) / h) * h - limit

    a1, a2, b1, b2 = rng.uniform(-limit, limit, size=(4, 6))
    x = np.stack(np.meshgrid(a1, a2, indexing="ij"), -1).reshape(-1, 2)  # μ₁⊗μ₂: all pairs
    y = np.stack(np.meshgrid(b1, b2, indexing="ij"), -1).reshape(-1, 2)
    expected = sum(np.mean((np.sort(snap(a)) - np.sort(snap(b))) ** 2)
                   for a, b in ((a1, b1), (a2, b2)))  # fmt: skip
    value = histogram_wasserstein2_squared(x, y, bins=bins, limit=limit)
    assert value == pytest.approx(expected, rel=1e-10, abs=1e-14)


def test_grid_histogram_drops_samples_outside_and_names_bad_input():
    masses, centres, dropped = grid_histogram([[0.0, 0.0], [0.1, 0.9], [3.0, 0.0]], bins=3,
                                              limit=1.0)  # fmt: skip
    assert dropped == 1 and masses.sum() == pytest.approx(1.0)
    assert masses[4] == 0.5 and masses[5] == 0.5  # centres (0, 0) and (0, 1)
    np.testing.assert_array_equal(centres[5], [0.0, 1.0])
    with pytest.raises(ValueError, match="no sample of x lies in the box"):
        grid_histogram([[5.0, 5.0]], limit=1.0)
    with pytest.raises(ValueError, match="1 non-finite value"):
        histogram_wasserstein2_squared([[0.0, np.nan]], [[0.0, 0.0]])
