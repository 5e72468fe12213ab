"""The score Fokker–Planck residual: zero for the exact score of a diffused Gaussian mixture
(VP and VE), clearly non-zero for a perturbed score, and equal to a pure finite-difference
evaluation of its defining formula; the per-sample regulariser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.generative import (
    VESDE,
    VPSDE,
    GaussianMixture,
    diffused_mixture,
    fokker_planck_loss,
    fokker_planck_residual,
)

MIXTURE = GaussianMixture(
    jnp.array([0.3, 0.7]),
    jnp.array([[1.0, -1.0], [-2.0, 0.5]]),
    jnp.array([[0.2, 0.5], [0.3, 0.1]]),
)
SDES = {"vp": VPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=10.0)}
TIMES = jnp.array([0.01, 0.1, 0.4, 0.9])
POINTS = jnp.array([[0.3, -0.7], [-1.5, 0.4], [2.0, 1.0], [0.0, 0.0]])


def _exact_score(sde, data=MIXTURE):
    return lambda t, x: diffused_mixture(sde, data, t).score(x)


def _perturbed_score(sde):
    exact = _exact_score(sde)
    return lambda t, x: exact(t, x) + 0.1 * jnp.sin(x + t)


def _residuals(score, sde):
    return jax.jit(jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x)))(TIMES, POINTS)


@pytest.mark.parametrize("name", sorted(SDES))
def test_exact_score_has_zero_residual(name):
    sde = SDES[name]
    exact = _residuals(_exact_score(sde), sde)
    scale = jnp.max(jnp.abs(jax.vmap(_exact_score(sde))(TIMES, POINTS)))
    # float64 round-off: terms of size |s|² g² ~ 1e3 cancel (VE at t = 0.9: g² ≈ 1e3)
    np.testing.assert_allclose(exact, 0.0, atol=1e-11 * max(1.0, float(scale)) * 1e3)
    perturbed = _residuals(_perturbed_score(sde), sde)
    # a 0.1-sized perturbation leaves a residual of the same order at every point
    assert float(jnp.min(jnp.linalg.norm(perturbed, axis=1))) > 1e-4


def _fd_residual(score, sde, t, x, h_t=1e-5, h_in=1e-4, h_out=1e-3):
    """`∂_t s − ∇[½ g² (∇·s + |s|²) − f·s − ∇·f]` by central differences only (numpy floats)."""
    dim = x.shape[0]
    eye = np.eye(dim)

    score, drift = jax.jit(score), jax.jit(sde.drift)  # compiled once, called ~100 times

    def s(t, y):
        return np.asarray(score(t, jnp.asarray(y)))

    def div(field, y):
        return sum((field(y + h_in * e)[i] - field(y - h_in * e)[i]) / (2 * h_in)
                   for i, e in enumerate(eye))  # fmt: skip

    def potential(y):
        f = lambda z: np.asarray(drift(t, jnp.asarray(z)))  # noqa: E731
        g2 = float(sde.diffusion(t)) ** 2
        sy = s(t, y)
        return 0.5 * g2 * (div(lambda z: s(t, z), y) + sy @ sy) - f(y) @ sy - div(f, y)

    ds_dt = (s(t + h_t, x) - s(t - h_t, x)) / (2 * h_t)
    grad = np.array([(potential(x + h_out * e) - potential(x - h_out * e)) / (2 * h_out)
                     for e in eye])  # fmt: skip
    return ds_dt - grad


@pytest.mark.parametrize("name", sorted(SDES))
def test_residual_matches_finite_differences(name):
    """A perturbed score (so the residual is not zero), at two points, in 2-D and 3-D."""
    sde = SDES[name]
    residual = jax.jit(
        lambda score, t, x: fokker_planck_residual(score, sde, t, x), static_argnums=0
    )
    cases = ((_perturbed_score(sde), 0.3, np.array([-0.5, 0.8])),
             (_score_3d, 0.7, np.array([1.0, -0.2, 0.4])))  # fmt: skip
    for score, t, x in cases:
        ad = np.asarray(residual(score, t, jnp.asarray(x)))
        fd = _fd_residual(score, sde, t, x)
        # nested central differences: O(h_out²) ≈ 1e-6 truncation and ~1e-16/(h_in h_out)
        # ≈ 1e-9 round-off, relative to residual terms of size up to g² ~ 1e2 (VE)
        np.testing.assert_allclose(ad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


def _score_3d(t, x):
    return -x / (1 + t) + 0.2 * jnp.tanh(x[::-1] * (1 + t**2))


def test_loss_is_per_sample_and_weighted():
    sde = SDES["vp"]
    x0 = MIXTURE.sample(jax.random.key(0), 16)
    key = jax.random.key(1)
    score = _perturbed_score(sde)

    t = jax.random.uniform(jax.random.split(key)[0], (16,), minval=0.01, maxval=1.0)
    z = jax.random.normal(jax.random.split(key)[1], x0.shape)
    x_t = sde.mean_coeff(t)[:, None] * x0 + sde.std(t)[:, None] * z

    @jax.jit
    def losses():
        plain = fokker_planck_loss(score, sde, key, x0, t_min=0.01)
        weight = lambda t: sde.std(t) ** 2  # noqa: E731
        weighted = fokker_planck_loss(score, sde, key, x0, t_min=0.01, weight=weight)
        residual = jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x))(t, x_t)
        return plain, weighted, residual

    plain, weighted, residual = losses()
    # the same draws of t and x_t as the loss: round-off only
    np.testing.assert_allclose(plain, jnp.sum(residual**2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(weighted, sde.std(t) ** 2 * plain, rtol=1e-12)


def test_bad_inputs_raise():
    sde, score = SDES["vp"], _exact_score(SDES["vp"])
    with pytest.raises(ValueError, match="x must have shape"):
        fokker_planck_residual(score, sde, 0.5, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="t must be a scalar"):
        fokker_planck_residual(score, sde, jnp.ones(2), jnp.zeros(2))
    with pytest.raises(TypeError, match="DiffusionSDE"):
        fokker_planck_residual(score, None, 0.5, jnp.zeros(2))
    with pytest.raises(TypeError, match="weight"):
        fokker_planck_loss(score, sde, jax.random.key(0), jnp.zeros((4, 2)), weight=2.0)
    with pytest.raises(ValueError, match="t_min"):
        fokker_planck_loss(score, sde, jax.random.key(0), jnp.zeros((4, 2)), t_min=1.0)
