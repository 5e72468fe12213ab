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

# Through `toy2d`, which checks its arguments and calls `TOY2D[name]`: one program per toy, shared
# by the tests below.
sample = jax.jit(toy2d, static_argnums=(0, 1))
N = 20_000


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_each_toy_is_jittable_finite_and_fresh_per_key(name):
    x, y = sample(name, N, key=jax.random.key(0)), sample(name, N, key=jax.random.key(1))
    assert x.shape == (N, 2) and bool(jnp.all(jnp.isfinite(x)))
    assert not np.allclose(x, y)


def test_checkerboard_fills_the_dark_squares_uniformly():
    @jax.jit  # the draw and the log-densities: one program (eager, one per operation)
    def run(key):
        x = checkerboard(64_000, key=key)
        off = jnp.array([[1.0, -1.0], [5.0, 5.0]])  # a light square, off the board
        return x, checkerboard_log_density(x), jax.vmap(checkerboard_log_density)(off)

    x, log_density, off = (np.asarray(a) for a in run(jax.random.key(0)))
    # Every sample lies on a dark square, where the density is 1/32.
    np.testing.assert_allclose(log_density, -np.log(32.0))
    assert list(off) == [-np.inf, -np.inf]
    # 8 squares, 8000 samples each on average: counts within 5 binomial sds (sd ≈ 84).
    counts = np.unique(np.floor(x / 2), axis=0, return_counts=True)[1]
    assert len(counts) == 8 and np.all(np.abs(counts - 8000) < 5 * np.sqrt(64_000 * 7 / 64))
    assert CHECKERBOARD_ENTROPY == pytest.approx(3.4657, abs=1e-4)


@pytest.mark.parametrize("name, mixture", [("eight_gaussians", eight_gaussians_mixture),
                                           ("blobs", blobs_mixture)])  # fmt: skip
def test_mixture_toys_sample_their_mixture(name, mixture):
    x = np.asarray(sample(name, N, key=jax.random.key(3)))
    m = mixture()
    mean = np.sum(np.asarray(m.weights)[:, None] * np.asarray(m.means), axis=0)
    # Sample mean within 5 standard errors (per-coordinate sd is at most ~3).
    np.testing.assert_allclose(x.mean(axis=0), mean, atol=5 * 3 / np.sqrt(N))


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
