"""Two-dimensional toy distributions (float64, conftest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.data import (
    CHECKERBOARD_ENTROPY,
    TOY2D,
    blobs_mixture,
    checkerboard,
    checkerboard_log_density,
    eight_gaussians_mixture,
    toy2d,
)


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_each_toy_is_jittable_finite_and_fresh_per_key(name):
    sample = jax.jit(TOY2D[name], static_argnums=0)
    x, y = sample(1000, key=jax.random.key(0)), sample(1000, key=jax.random.key(1))
    assert x.shape == (1000, 2) and bool(jnp.all(jnp.isfinite(x)))
    assert not np.allclose(x, y)
    # Eager and jitted draws agree up to XLA's fusion of the arithmetic.
    np.testing.assert_allclose(x, toy2d(name, 1000, key=jax.random.key(0)), rtol=1e-12, atol=1e-12)


def test_checkerboard_fills_the_dark_squares_uniformly():
    x = checkerboard(64_000, key=jax.random.key(0))
    # Every sample lies on a dark square, where the density is 1/32.
    np.testing.assert_allclose(checkerboard_log_density(x), -np.log(32.0))
    assert float(checkerboard_log_density(jnp.array([1.0, -1.0]))) == -np.inf  # a light square
    assert float(checkerboard_log_density(jnp.array([5.0, 5.0]))) == -np.inf  # off the board
    # 8 squares, 8000 samples each on average: counts within 5 binomial sds (sd ≈ 84).
    counts = np.unique(np.asarray(jnp.floor(x / 2)), axis=0, return_counts=True)[1]
    assert len(counts) == 8 and np.all(np.abs(counts - 8000) < 5 * np.sqrt(64_000 * 7 / 64))
    assert CHECKERBOARD_ENTROPY == pytest.approx(3.4657, abs=1e-4)


@pytest.mark.parametrize("name, mixture", [("eight_gaussians", eight_gaussians_mixture),
                                           ("blobs", blobs_mixture)])  # fmt: skip
def test_mixture_toys_sample_their_mixture(name, mixture):
    x = toy2d(name, 20_000, key=jax.random.key(3))
    m = mixture()
    mean = jnp.sum(m.weights[:, None] * m.means, axis=0)
    # Sample mean within 5 standard errors (per-coordinate sd is at most ~3).
    np.testing.assert_allclose(jnp.mean(x, axis=0), mean, atol=5 * 3 / np.sqrt(20_000))


def test_bad_toy_arguments_are_named():
    with pytest.raises(ValueError, match="unknown 2-D toy distribution 'chess'"):
        toy2d("chess", 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match="n must be a positive integer"):
        toy2d("moons", 0, key=jax.random.key(0))
    # `key` is keyword-only: the old positional order fails loudly instead of misreading.
    with pytest.raises(TypeError, match="positional argument"):
        toy2d("moons", jax.random.key(0), 10)
    with pytest.raises(TypeError, match="positional argument"):
        checkerboard(jax.random.key(0), 10)
