"""The score Fokker–Planck residual: zero for the exact score of a diffused Gaussian mixture
(VP and VE), clearly non-zero for a perturbed score, and equal to a pure finite-difference
evaluation of its defining formula; the natural weighting against its closed form; the
per-sample regulariser; `s ≡ 0` is an exact zero of the residual.

Compilation dominates (each residual of a mixture score is a third-derivative program), so each
test compiles as few residual programs as its check needs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.generative import (
    OUSDE,
    VESDE,
    VPSDE,
    GaussianMixture,
    PotentialScore,
    diffused_mixture,
    fokker_planck_loss,
    fokker_planck_residual,
    log_density_residual,
)
from jaxdyn.generative.fokker_planck import fokker_planck_weight

MIXTURE = GaussianMixture(
    jnp.array([0.3, 0.7]),
    jnp.array([[1.0, -1.0], [-2.0, 0.5]]),
    jnp.array([[0.2, 0.5], [0.3, 0.1]]),
)
SDES = {"vp": VPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=10.0)}
TIMES = jnp.array([0.01, 0.1, 0.4, 0.9])
POINTS = jnp.array([[0.3, -0.7], [-1.5, 0.4], [2.0, 1.0], [0.0, 0.0]])


def _exact_score(sde, data=MIXTURE):
    return lambda t, x, args=None: diffused_mixture(sde, data, t).score(x)


def _perturbed_score(sde):
    exact = _exact_score(sde)
    return lambda t, x, args=None: exact(t, x) + 0.1 * jnp.sin(x + t)


def _residuals(score, sde):
    return jax.jit(jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x)))(TIMES, POINTS)


@pytest.mark.parametrize("name", sorted(SDES))
def test_exact_score_has_zero_residual(name):
    sde = SDES[name]
    score = _exact_score(sde)

    @jax.jit  # the residuals and the scores' scale: one program
    def run(ts, xs):
        residual = jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x))(ts, xs)
        return residual, jnp.max(jnp.abs(jax.vmap(score)(ts, xs)))

    exact, scale = run(TIMES, POINTS)
    # float64 round-off: terms of size |s|² g² ~ 1e3 cancel (VE at t = 0.9: g² ≈ 1e3)
    np.testing.assert_allclose(exact, 0.0, atol=1e-11 * max(1.0, float(scale)) * 1e3)
    # (a perturbed score's residual is non-zero at every point: checked in the FD test below)


def test_zero_score_is_a_trivial_zero():
    """With affine drift `∇·f` is constant in `x`, so `s ≡ 0` has `R ≡ 0` exactly (why a
    regulariser that outweighs DSM collapses the model to it); a constant non-zero score does
    not: `R = −∇(½ g² |c|² − f·c) = ∇(f·c) = −½ β c` for VP."""
    sde = SDES["vp"]
    c = jnp.array([0.5, -1.0])
    residual = jax.jit(jax.vmap(lambda t, x: fokker_planck_residual(lambda t, y, a: c, sde, t, x)))
    zero = jax.jit(
        jax.vmap(lambda t, x: fokker_planck_residual(lambda t, y, a: 0.0 * y, sde, t, x))
    )
    np.testing.assert_array_equal(zero(TIMES, POINTS), 0.0)  # exactly: every term is 0
    expected = -0.5 * sde.beta(TIMES)[:, None] * c
    np.testing.assert_allclose(residual(TIMES, POINTS), expected, rtol=1e-14)  # round-off


def test_natural_weight_matches_its_closed_form():
    """`λ_R = (σ³/g²)²`; for VP at small `t`, `σ² ≈ β_min t`, `g² ≈ β_min`, so `λ_R ≈ β_min t³`."""
    t = np.array([0.01, 0.3, 1.0])
    for sde in SDES.values():
        sigma, g = np.asarray(sde.std(t)), np.asarray(sde.diffusion(t))
        # the same arithmetic: round-off
        np.testing.assert_allclose(fokker_planck_weight(sde)(t), sigma**6 / g**4, rtol=1e-13)
    sde = VPSDE(beta_min=0.1, beta_max=0.1 + 1e-9)  # β ≈ constant: σ² = 1 − e^{−β t} exactly
    # relative corrections O(β t) = 1e-5 from 1 − e^{−βt} ≈ βt at t = 1e-4
    np.testing.assert_allclose(float(fokker_planck_weight(sde)(1e-4)), 0.1 * 1e-12, rtol=1e-4)
    with pytest.raises(TypeError, match="DiffusionSDE"):
        fokker_planck_weight("vp")


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


def test_residual_matches_finite_differences(name="vp"):
    """A perturbed score (its residual clearly non-zero at every test point) in 2-D, and a
    non-linear 3-D score; on VP, whose drift terms are non-zero (the exact-score test covers
    VE's coefficients)."""
    sde = SDES[name]
    perturbed = _perturbed_score(sde)
    at_points = _residuals(perturbed, sde)  # one compiled program for the mixture score
    # a 0.1-sized perturbation leaves a residual of the same order at every point
    assert float(jnp.min(jnp.linalg.norm(at_points, axis=1))) > 1e-4
    residual_3d = jax.jit(lambda t, x: fokker_planck_residual(_score_3d, sde, t, x))
    x_3d = np.array([1.0, -0.2, 0.4])
    cases = ((perturbed, float(TIMES[2]), np.asarray(POINTS[2]), at_points[2]),
             (_score_3d, 0.7, x_3d, residual_3d(0.7, jnp.asarray(x_3d))))  # fmt: skip
    for score, t, x, ad in cases:
        ad = np.asarray(ad)
        fd = _fd_residual(score, sde, t, x)
        # nested central differences: O(h_out²) ≈ 1e-6 truncation and ~1e-16/(h_in h_out)
        # ≈ 1e-9 round-off, relative to residual terms of size up to g² ~ 1e2 (VE)
        np.testing.assert_allclose(ad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


def _score_3d(t, x, args=None):
    return -x / (1 + t) + 0.2 * jnp.tanh(x[::-1] * (1 + t**2))


_score_2d = _score_3d  # written for any dimension


def test_loss_is_per_sample_and_weighted():
    sde = SDES["vp"]
    x0 = jax.jit(lambda key: MIXTURE.sample(16, key=key))(jax.random.key(0))
    key = jax.random.key(1)
    score = _score_2d  # the bookkeeping under test does not need a costly mixture score

    @jax.jit  # the draws, both losses and the residuals: one program
    def losses():
        t = jax.random.uniform(jax.random.split(key)[0], (16,), minval=0.01, maxval=1.0)
        z = jax.random.normal(jax.random.split(key)[1], x0.shape)
        x_t = sde.mean_coeff(t)[:, None] * x0 + sde.std(t)[:, None] * z
        plain = fokker_planck_loss(score, sde, x0, key=key, t_min=0.01)
        weight = lambda t: sde.std(t) ** 2  # noqa: E731
        weighted = fokker_planck_loss(score, sde, x0, key=key, t_min=0.01, weight=weight)
        residual = jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x))(t, x_t)
        return plain, weighted, residual, sde.std(t) ** 2

    plain, weighted, residual, variance = (np.asarray(a) for a in losses())
    # the same draws of t and x_t as the loss: round-off only
    np.testing.assert_allclose(plain, np.sum(residual**2, axis=1), rtol=1e-12)
    np.testing.assert_allclose(weighted, variance * plain, rtol=1e-12)


def test_bad_inputs_raise():
    sde, score = SDES["vp"], _exact_score(SDES["vp"])
    with pytest.raises(ValueError, match="x must have shape"):
        fokker_planck_residual(score, sde, 0.5, jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="t must be a scalar"):
        fokker_planck_residual(score, sde, jnp.ones(2), jnp.zeros(2))
    with pytest.raises(TypeError, match="DiffusionSDE"):
        fokker_planck_residual(score, None, 0.5, jnp.zeros(2))
    with pytest.raises(TypeError, match="weight"):
        fokker_planck_loss(score, sde, jnp.zeros((4, 2)), key=jax.random.key(0), weight=2.0)
    with pytest.raises(ValueError, match="t_min"):
        fokker_planck_loss(score, sde, jnp.zeros((4, 2)), key=jax.random.key(0), t_min=1.0)


def test_log_density_residual_vanishes_for_the_exact_ou_density():
    """For Gaussian data `N(m, v I)` the OU marginal is `N(a m, (a² v + σ²) I)` in closed form;
    its log-density (plus any constant) has zero residual at every point, and a perturbed one
    does not. The residual of `φ = log N(0, c²/2θ I)` — the stationary law — is zero too."""
    sde = OUSDE(rate=1.0, noise=1.0, horizon=10.0)
    m, v = jnp.array([1.0, -2.0]), 0.3

    def log_p(t, x, args=None):
        a, s = sde.mean_coeff(t), sde.std(t)
        var = a**2 * v + s**2
        return -jnp.sum((x - a * m) ** 2) / (2 * var) - jnp.log(2 * jnp.pi * var) + 3.0

    def perturbed(t, x, args=None):
        return log_p(t, x) + 0.1 * jnp.sin(x[0] + t)

    def stationary(t, x, args=None):
        return -jnp.sum(x**2)  # log N(0, ½ I) + const: c²/2θ = ½

    @jax.jit
    def run(ts, xs):
        return [jax.vmap(lambda t, x, p=p: log_density_residual(p, sde, t, x))(ts, xs)
                for p in (log_p, perturbed, stationary)]  # fmt: skip

    exact, off, still = run(TIMES, POINTS)
    np.testing.assert_allclose(exact, 0.0, atol=1e-10)  # float64 round-off of O(1e2) terms
    np.testing.assert_allclose(still, 0.0, atol=1e-12)
    assert np.all(np.abs(off) > 1e-3)


def test_potential_score_is_a_gradient_and_its_residuals_agree():
    """`PotentialScore` is `∇_x φ` (against `jax.grad` of its potential), curl-free (symmetric
    Jacobian), and the gradient of its log-density residual is the score residual of `∇_x φ`
    (two implementations of the Fokker–Planck equation)."""
    sde = OUSDE(rate=1.0, noise=1.0, horizon=10.0)
    model = PotentialScore(2, 4, 1, activation="softplus", sharpness=3.0, key=jax.random.key(0))

    @jax.jit
    def run(ts, xs):
        score = jax.vmap(model)(ts, xs)
        grads = jax.vmap(jax.grad(model.potential, argnums=1))(ts, xs)
        jac = jax.vmap(jax.jacfwd(model, argnums=1))(ts, xs)
        r_grad = jax.vmap(
            jax.grad(lambda t, x: log_density_residual(model.potential, sde, t, x), argnums=1)
        )(ts, xs)
        r_score = jax.vmap(lambda t, x: fokker_planck_residual(model, sde, t, x))(ts, xs)
        return score, grads, jac, r_grad, r_score

    score, grads, jac, r_grad, r_score = run(TIMES, POINTS)
    np.testing.assert_array_equal(score, grads)  # the same program
    np.testing.assert_allclose(jac, jnp.swapaxes(jac, 1, 2), rtol=1e-12, atol=1e-14)
    assert np.all(np.abs(jac[:, 0, 1]) > 0)  # a real cross term, not a trivially diagonal one
    np.testing.assert_allclose(r_grad, r_score, rtol=1e-10, atol=1e-10)  # float64 round-off
    with pytest.raises(ValueError, match="activation must be one of"):
        PotentialScore(2, 4, 1, activation="relu", key=jax.random.key(0))
