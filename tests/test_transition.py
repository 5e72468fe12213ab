"""Transition densities (`jaxdyn.train.transition`) against closed forms (float64), and the
double-well data generator."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from jaxdyn.data import double_well_diffusion, double_well_drift, double_well_paths
from jaxdyn.train import euler_maruyama_log_density, local_linear_log_density, transition_nll

DT = 0.1


def normal_logpdf(x, mean, var):
    return -0.5 * ((x - mean) ** 2 / var + math.log(2 * math.pi * var))


def test_euler_density_is_the_hand_computed_gaussian():
    drift = lambda t, y, args: jnp.sin(y) + t  # noqa: E731
    diffusion = lambda t, y, args: 0.3 + y**2  # noqa: E731
    t, y0, y1 = 0.7, jnp.array([0.4, -1.2]), jnp.array([0.5, -1.0])
    got = euler_maruyama_log_density(drift, diffusion, t, y0, y1, DT)
    mean = np.sin([0.4, -1.2]) + 0.7
    var = (0.3 + np.array([0.4, -1.2]) ** 2) ** 2 * DT
    expected = sum(
        normal_logpdf(b, a + m * DT, v)
        for a, b, m, v in zip(np.asarray(y0), np.asarray(y1), mean, var, strict=True)
    )
    assert float(got) == pytest.approx(expected, rel=1e-13)  # same formula, float64 rounding


def test_euler_density_with_general_noise():
    g = jnp.array([[0.5, 0.2, 0.0], [0.1, 0.4, 0.3]])
    drift = lambda t, y, args: -y  # noqa: E731
    y0, y1 = jnp.array([1.0, 0.5]), jnp.array([0.8, 0.6])
    got = euler_maruyama_log_density(drift, lambda t, y, a: g, 0.0, y0, y1, DT)
    expected = scipy.stats.multivariate_normal.logpdf(
        np.asarray(y1), np.asarray(y0 - y0 * DT), np.asarray(g @ g.T) * DT
    )
    assert float(got) == pytest.approx(expected, rel=1e-12)


OU_THETA, OU_MU, OU_SIGMA, OU_X0, OU_X1 = 2.0, 0.3, 0.7, 1.5, 0.9


@jax.jit  # one program for every dt (a traced argument)
def ou_local_linear(dt):
    drift = lambda t, y, args: OU_THETA * (OU_MU - y)  # noqa: E731
    diffusion = lambda t, y, args: OU_SIGMA * jnp.ones_like(y)  # noqa: E731
    return local_linear_log_density(drift, diffusion, 0.0, jnp.array([OU_X0]),
                                    jnp.array([OU_X1]), dt)  # fmt: skip


@pytest.mark.parametrize("dt", [0.01, 0.1, 1.0])
def test_local_linear_is_exact_for_ornstein_uhlenbeck(dt):
    # dx = θ(μ - x) dt + σ dW: x(dt) | x0 ~ N(μ + (x0 - μ) e^{-θ dt}, σ²(1 - e^{-2θ dt})/(2θ)).
    theta, mu, sigma, x0, x1 = OU_THETA, OU_MU, OU_SIGMA, OU_X0, OU_X1
    got = ou_local_linear(dt)
    decay = math.exp(-theta * dt)
    var = sigma**2 * (1 - decay**2) / (2 * theta)
    # float64, O(1) entries: the Padé matrix exponentials agree to ~1e-15.
    assert float(got) == pytest.approx(normal_logpdf(x1, mu + (x0 - mu) * decay, var), rel=1e-12)


def test_local_linear_matches_shoji_ozaki_closed_form():
    # Scalar form of Shoji & Ozaki (1998) for the double well at x0 with f, J = f', M = ½σ² f''.
    sigma, x0, x1 = 0.5, 1.3, 1.1
    f, jac, m = x0 - x0**3, 1 - 3 * x0**2, 0.5 * sigma**2 * (-6 * x0)
    e = math.exp(jac * DT)
    mean = x0 + f / jac * (e - 1) + m / jac**2 * (e - 1 - jac * DT)
    var = sigma**2 * (math.exp(2 * jac * DT) - 1) / (2 * jac)
    diffusion = lambda t, y, args: double_well_diffusion(t, y, (sigma, 0.0))  # noqa: E731
    got = local_linear_log_density(
        double_well_drift, diffusion, 0.0, jnp.array([x0]), jnp.array([x1]), DT
    )
    assert float(got) == pytest.approx(normal_logpdf(x1, mean, var), rel=1e-12)


def test_local_linear_without_a_jacobian_is_euler():
    # J = 0 (constant drift, additive noise): no inverse of J is taken, and the density is EM's.
    drift = lambda t, y, args: jnp.array([0.4, -0.2]) + 0.0 * y  # noqa: E731
    diffusion = lambda t, y, args: jnp.array([0.3, 0.6])  # noqa: E731
    y0, y1 = jnp.array([0.0, 1.0]), jnp.array([0.1, 0.9])
    ll = local_linear_log_density(drift, diffusion, 0.0, y0, y1, DT)
    em = euler_maruyama_log_density(drift, diffusion, 0.0, y0, y1, DT)
    assert float(ll) == pytest.approx(float(em), rel=1e-12)


def test_local_linear_is_exact_for_a_linear_system_with_general_noise():
    # dy = (A y + b) dt + G dW: mean e^{A dt} y0 + A⁻¹(e^{A dt} - I) b; covariance Σ solves the
    # Lyapunov equation A Σ + Σ Aᵀ = e^{A dt} Q e^{Aᵀ dt} - Q, Q = G Gᵀ (a second method).
    a = np.array([[-1.0, 2.0], [-0.5, -0.3]])
    b = np.array([0.2, -0.1])
    g = np.array([[0.5, 0.1, 0.0], [0.0, 0.3, 0.2]])
    y0, y1 = np.array([1.0, -0.5]), np.array([1.1, -0.6])
    drift = lambda t, y, args: jnp.asarray(a) @ y + jnp.asarray(b)  # noqa: E731
    diffusion = lambda t, y, args: jnp.asarray(g)  # noqa: E731
    got = local_linear_log_density(drift, diffusion, 0.0, jnp.asarray(y0), jnp.asarray(y1), DT)
    phi = scipy.linalg.expm(a * DT)
    mean = phi @ y0 + np.linalg.solve(a, (phi - np.eye(2)) @ b)
    q = g @ g.T
    cov = scipy.linalg.solve_continuous_lyapunov(a, phi @ q @ phi.T - q)
    expected = scipy.stats.multivariate_normal.logpdf(y1, mean, cov)
    assert float(got) == pytest.approx(expected, rel=1e-10)  # Lyapunov solve: ~1e-13 relative


def test_transition_nll_averages_transitions():
    sigma = (0.5, 0.2)
    diffusion = lambda t, y, args: double_well_diffusion(t, y, sigma)  # noqa: E731
    rng = np.random.default_rng(0)
    t, y0, y1 = (
        jnp.zeros(5),
        jnp.asarray(rng.normal(size=(5, 1))),
        jnp.asarray(rng.normal(size=(5, 1))),
    )
    for name, density in (("euler", euler_maruyama_log_density),
                          ("local_linear", local_linear_log_density)):  # fmt: skip
        got = transition_nll(name, double_well_drift, diffusion, (t, y0, y1), DT)
        one = jax.jit(lambda a, b: density(double_well_drift, diffusion, 0.0, a, b, DT))  # noqa: B023
        each = [one(a, b) for a, b in zip(y0, y1, strict=True)]
        assert float(got) == pytest.approx(-float(np.mean(each)), rel=1e-12)


def test_bad_diffusion_shape_names_the_shapes():
    with pytest.raises(ValueError, match=r"diffusion must return shape \(2,\)"):
        euler_maruyama_log_density(
            lambda t, y, a: y, lambda t, y, a: jnp.ones(3), 0.0, jnp.ones(2), jnp.ones(2), DT
        )


def test_double_well_paths_shapes_start_and_relaxation():
    ts = np.linspace(0.0, 2.0, 11)
    y0 = jnp.array([[-1.8], [0.0], [1.8]])
    # One program (eagerly, the solve's setup dispatches ~80 small ones); ts known at trace time.
    paths = jax.jit(lambda y0, key: double_well_paths(y0, ts, key=key, sigma=1e-3, dt0=0.01))
    ys = paths(y0, jax.random.key(0))
    assert ys.shape == (3, 11, 1)
    np.testing.assert_array_equal(ys[:, 0], y0)
    # σ = 1e-3: the outer paths relax into their wells; the middle one stays near the barrier.
    np.testing.assert_allclose(ys[[0, 2], -1, 0], [-1.0, 1.0], atol=0.02)
    assert abs(float(ys[1, -1, 0])) < 0.05
    with pytest.raises(ValueError, match=r"shape \(paths, 1\)"):
        double_well_paths(jnp.zeros(3), ts, key=jax.random.key(0), dt0=0.01)


def test_local_linear_matrix_path_matches_the_scalar_path():
    # Two uncoupled double wells (2-D: matrix exponentials) = the sum of two 1-D densities
    # (closed form with φ₁, φ₂): checks the M term of the matrix path against the scalar one.
    sigma = (0.5, 0.3)

    def diffusion(t, y, args):
        return double_well_diffusion(t, y, sigma)

    y0, y1 = jnp.array([1.3, -0.2]), jnp.array([1.1, -0.1])
    joint = local_linear_log_density(double_well_drift, diffusion, 0.0, y0, y1, DT)
    parts = [
        local_linear_log_density(
            double_well_drift, diffusion, 0.0, y0[i : i + 1], y1[i : i + 1], DT
        )
        for i in range(2)
    ]
    # float64; the Padé exponentials and the φ series agree to ~1e-15 relative.
    assert float(joint) == pytest.approx(float(sum(parts)), rel=1e-12)


NEAR_ZERO_SIGMA, NEAR_ZERO_X1 = 0.4, 1.02


def near_zero_density(j):
    drift = lambda t, y, args: j * y  # noqa: E731
    diffusion = lambda t, y, args: NEAR_ZERO_SIGMA * jnp.ones_like(y)  # noqa: E731
    return local_linear_log_density(drift, diffusion, 0.0, jnp.ones(1),
                                    jnp.array([NEAR_ZERO_X1]), DT)  # fmt: skip


# Two programs for every J (a traced argument): the density and its gradient.
near_zero_density_jit = jax.jit(near_zero_density)
near_zero_grad = jax.jit(jax.grad(near_zero_density))


@pytest.mark.parametrize("jac", [0.0, 1e-9, 0.05, -0.999])  # z = J·dt across the series switch
def test_local_linear_near_zero_jacobian_is_accurate_and_differentiable(jac):
    # dx = J x dt + σ dW from x0 = 1: mean e^{J dt}, variance σ² (e^{2J dt} - 1)/(2J) (→ σ² dt).
    sigma, x1 = NEAR_ZERO_SIGMA, NEAR_ZERO_X1
    density = near_zero_density_jit
    z = jac * DT
    var = sigma**2 * DT * (math.expm1(2 * z) / (2 * z) if z else 1.0)
    assert float(density(jac)) == pytest.approx(normal_logpdf(x1, math.exp(z), var), rel=1e-13)
    grad = float(near_zero_grad(jac))
    fd = (float(density(jac + 1e-6)) - float(density(jac - 1e-6))) / 2e-6
    assert math.isfinite(grad) and grad == pytest.approx(fd, rel=1e-6, abs=1e-8)  # O(h²) FD
