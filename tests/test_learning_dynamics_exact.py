"""Exact learning dynamics: the Marchenko–Pastur law and the linear student's learning curves
(Advani & Saxe 2017), Nesterov's method against its ODE (Su, Boyd & Candès 2016), and the
heavy-ball counterexample of Lessard, Recht & Packard (2016)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special

from jaxdyn.experiments.acceleration_ode import lessard_gradient
from jaxdyn.learning import (
    heavy_ball_iterates,
    linear_learning_curves,
    marchenko_pastur_density,
    marchenko_pastur_quadrature,
    nesterov_flow,
    nesterov_iterates,
)


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_marchenko_pastur_has_mass_one_mean_alpha_and_second_moment_alpha_plus_alpha2(alpha):
    lam, w = marchenko_pastur_quadrature(alpha, 256)
    # the midpoint rule in θ integrates these polynomials (times the smooth density) to rounding
    np.testing.assert_allclose([w.sum(), w @ lam, w @ lam**2], [1, alpha, alpha + alpha**2],
                               rtol=1e-12)  # fmt: skip
    # the density itself, by the trapezoid rule in u = √λ (an independent quadrature; the
    # 1/√λ of α = 1 becomes bounded): its continuous part has mass min(α, 1); 1e-4 for the
    # square-root edges at 1e5 points
    u = np.linspace(0, 1 + np.sqrt(alpha), 100_001)
    mass = np.trapezoid(np.asarray(marchenko_pastur_density(u**2, alpha)) * 2 * u, u)
    assert abs(mass - min(alpha, 1.0)) < 1e-4


def test_learning_curves_tend_to_the_closed_form_asymptote():
    """`E_test(∞) = σ_ε² α/(α − 1)` above `α = 1`, `σ_ε²/(1 − α) + σ_w̄²(1 − α)` below;
    `E_train(∞) = σ_ε² (1 − 1/α)₊`."""
    sw, se = 1.0, 0.25
    for alpha in (0.5, 2.0):
        lam, w = marchenko_pastur_quadrature(alpha, 1024)
        c = linear_learning_curves(lam, w, jnp.array([0.0, 1e4]), alpha=alpha,
                                   teacher_variance=sw, noise_variance=se)  # fmt: skip
        test = se * alpha / (alpha - 1) if alpha > 1 else se / (1 - alpha) + sw * (1 - alpha)
        np.testing.assert_allclose(c.test, [sw + se, test], rtol=1e-9)
        np.testing.assert_allclose(c.train, [sw + se, se * max(0.0, 1 - 1 / alpha)], atol=1e-9)


@pytest.mark.parametrize("num_samples", [3, 8])
def test_eigen_sum_is_the_expected_error_of_gradient_flow(num_samples):
    """At `N = 5`: the flow `τ ė = −XᵀX e + Xᵀε`, `e(0) = −w̄`, is linear in `(w̄, ε)`, so
    `e(t) = E₁₁(−w̄) + E₁₂ ε` with `E = expm(t M/τ)`, `M = [[−XᵀX, Xᵀ], [0, 0]]`, and the
    errors averaged over `w̄ ~ N(0, σ_w̄²)`, `ε ~ N(0, σ_ε²)` are Frobenius norms: a second
    method, by the matrix exponential, for `linear_learning_curves` on the sample's spectrum."""
    size, sw, se, tau = 5, 0.7, 0.3, 2.0
    x = jax.random.normal(jax.random.key(num_samples), (num_samples, size)) / np.sqrt(size)
    gram = x.T @ x
    m = jnp.block([[-gram, x.T], [jnp.zeros((num_samples, size + num_samples))]])
    ts = jnp.array([0.0, 0.3, 1.0, 4.0, 20.0])

    @jax.jit
    @jax.vmap
    def expected(t):
        e = jax.scipy.linalg.expm(t * m / tau)[:size]
        e11, e12 = e[:, :size], e[:, size:]
        r11, r12 = x @ e11, x @ e12 - jnp.eye(num_samples)  # residual Xe − ε
        test = (sw * jnp.sum(e11**2) + se * jnp.sum(e12**2)) / size + se
        return (sw * jnp.sum(r11**2) + se * jnp.sum(r12**2)) / num_samples, test

    expected_train, expected_test = expected(ts)
    lam = jnp.maximum(jnp.linalg.eigvalsh(gram), 0.0)
    c = linear_learning_curves(lam, jnp.full(size, 1 / size), ts, alpha=num_samples / size,
                               teacher_variance=sw, noise_variance=se, tau=tau)  # fmt: skip
    np.testing.assert_allclose(c.test, expected_test, rtol=1e-9)  # expm: ~1e-13
    np.testing.assert_allclose(c.train, expected_train, rtol=1e-9)


def test_nesterov_ode_matches_its_bessel_solution_and_the_iterates_converge_to_it():
    """On `f = ½ Σ λ_i x_i²`: `X_i(t) = x₀ᵢ 2J₁(√λ_i t)/(√λ_i t)`. The ODE by `odeint` (from
    its series at `t₀ = 1e-3`) matches to its tolerances; `max_k |x_k − X(k√s)|` of Nesterov's
    iterates falls as `√s` (SBC Theorem 2, first order): ×√10 a decade of `s`."""
    lam = jnp.array([1.0, 0.05])
    x0 = jnp.array([1.0, -2.0])

    def grad(x):
        return lam * x

    def exact(t):
        u = np.sqrt(np.asarray(lam))[None, :] * np.asarray(t)[:, None]
        return np.asarray(x0) * 2 * scipy.special.j1(u) / u

    ts = np.linspace(1e-3, 10.0, 201)
    sol = nesterov_flow(grad, x0, ts)
    np.testing.assert_allclose(sol.ys[0], exact(ts), atol=1e-8)  # rtol 1e-10 over 10 time units
    gaps = []
    for s in (1e-2, 1e-3):
        k = np.arange(1, int(10 / np.sqrt(s)) + 1)
        xs = nesterov_iterates(grad, x0, step=s, num_steps=k[-1])[1:]
        gaps.append(np.max(np.abs(np.asarray(xs) - exact(k * np.sqrt(s)))))
    assert 2.5 < gaps[0] / gaps[1] < 4.0, gaps  # √10 = 3.16


def test_tuned_heavy_ball_cycles_on_lessards_function_and_nesterov_converges():
    """Lessard, Recht & Packard (2016, §4.6): `μ = 1`, `L = 25`, heavy ball at `α = 1/9`,
    `β = 4/9` from `x₀ = 3.3` settles on a 3-cycle; Nesterov at `1/L`, `(√κ−1)/(√κ+1)` reaches
    the minimiser `0`."""
    x0 = jnp.array([3.3])
    hb = np.asarray(heavy_ball_iterates(lessard_gradient, x0, step=1 / 9, momentum=4 / 9,
                                        num_steps=600)[:, 0])  # fmt: skip
    np.testing.assert_allclose(hb[-3:], hb[-6:-3], atol=1e-12)  # period 3
    assert np.min(np.abs(hb[-3:])) > 0.5 and np.max(np.abs(hb[-3:])) > 2.0
    nag = nesterov_iterates(lessard_gradient, x0, step=1 / 25, momentum=4 / 6, num_steps=600)
    assert float(jnp.max(jnp.abs(nag[-10:]))) < 1e-12


def test_iterates_flows_and_curves_refuse_bad_arguments():
    with pytest.raises(ValueError, match="x0 must be a floating-point vector"):
        nesterov_iterates(lambda x: x, jnp.ones((2, 2)), step=0.1, num_steps=3)
    with pytest.raises(ValueError, match="step must be a positive number"):
        heavy_ball_iterates(lambda x: x, jnp.ones(2), step=0.0, momentum=0.5, num_steps=3)
    with pytest.raises(ValueError, match=r"nesterov_flow needs ts\[0\] > 0"):
        nesterov_flow(lambda x: x, jnp.ones(2), jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="ts must be strictly increasing"):
        nesterov_flow(lambda x: x, jnp.ones(2), jnp.array([1e-3, 2.0, 1.0]))
    spectrum = dict(alpha=2.0, teacher_variance=1.0, noise_variance=0.1)
    with pytest.raises(ValueError, match="eigenvalues .* must be >= 0"):
        linear_learning_curves(jnp.array([-1.0, 1.0]), jnp.full(2, 0.5), jnp.ones(2), **spectrum)
    with pytest.raises(ValueError, match="ts must be >= 0"):
        linear_learning_curves(jnp.ones(2), jnp.full(2, 0.5), jnp.array([-1.0, 1.0]), **spectrum)
    with pytest.raises(ValueError, match="ts must be a 1-D array"):
        linear_learning_curves(jnp.ones(2), jnp.full(2, 0.5), jnp.ones((2, 2)), **spectrum)
