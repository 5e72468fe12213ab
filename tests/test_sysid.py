"""jaxdyn.sysid's sparse regression (SINDy, weak SINDy, PDE-FIND) against pysindy on the same
data, closed forms and finite differences (float64, tests/conftest.py)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pysindy as ps
import pytest
import scipy.signal

from jaxdyn.data import burgers_gaussian, lorenz
from jaxdyn.sysid import (
    SR3,
    STLSQ,
    CustomLibrary,
    FourierLibrary,
    PolynomialLibrary,
    bump_functions,
    ensemble_sindy,
    finite_difference,
    fit_pde_find,
    fit_sindy,
    fit_weak_sindy,
    savgol_smooth,
    smoothed_finite_difference,
    spectral_derivative,
    trapezoid_weights,
    weak_form,
)

# Lorenz's true coefficients on PolynomialLibrary(2) = (1, x, y, z, x², xy, xz, y², yz, z²).
TRUE = np.zeros((3, 10))
TRUE[0, [1, 2]] = -10.0, 10.0
TRUE[1, [1, 2, 6]] = 28.0, -1.0, -1.0
TRUE[2, [3, 5]] = -8.0 / 3.0, 1.0
DT = 0.002


@pytest.fixture(scope="module")
def trajectory():
    """pysindy's Lorenz example: x0 = (−8, 8, 27), dt = 0.002, t < 10 (5,000 samples)."""
    ts = jnp.arange(0.0, 10.0, DT)
    return np.asarray(ts), np.asarray(lorenz(ts))


def _max_rel_error(coefficients):
    c = np.asarray(coefficients)
    return np.max(np.abs(c - TRUE)[TRUE != 0] / np.abs(TRUE[TRUE != 0]))


# ---- libraries ----


def test_library_features_and_names_match_pysindy():
    x = np.random.default_rng(0).normal(size=(7, 3))
    for ours, theirs in [
        (PolynomialLibrary(3), ps.PolynomialLibrary(degree=3)),
        (PolynomialLibrary(2, include_bias=False), ps.PolynomialLibrary(2, include_bias=False)),
        (FourierLibrary(2), ps.FourierLibrary(n_frequencies=2)),
    ]:
        theirs.fit(x)
        np.testing.assert_allclose(ours(x), theirs.transform(x), rtol=1e-12)
        names = [n.replace(" ", "") for n in ours.names(("x0", "x1", "x2"))]
        assert names == [n.replace(" ", "") for n in theirs.get_feature_names()]


def test_library_combinations():
    x = jnp.asarray([[2.0, -3.0]])
    exp = CustomLibrary((jnp.exp,), ("exp({})",))
    poly = PolynomialLibrary(1, include_bias=False)
    both = poly + exp
    assert both.names(("a", "b")) == ("a", "b", "exp(a)", "exp(b)")
    np.testing.assert_allclose(both(x), [[2.0, -3.0, np.exp(2.0), np.exp(-3.0)]])
    product = poly * poly
    assert product.names(("a", "b")) == ("a a", "a b", "b a", "b b")
    np.testing.assert_allclose(product(x), [[4.0, -6.0, -6.0, 9.0]])
    assert product.num_features(2) == 4
    with pytest.raises(ValueError, match="degree"):
        PolynomialLibrary(0)
    with pytest.raises(ValueError, match="one format per function"):
        CustomLibrary((jnp.exp, jnp.sin), ("exp({})",))


# ---- derivatives ----


def test_derivatives_match_pysindy_and_scipy():
    t = np.linspace(0.0, 3.0, 301)
    x = np.stack([np.sin(2 * t), t**3], -1)
    dt = t[1] - t[0]
    # second order with one-sided ends is numpy's gradient (to rounding)
    np.testing.assert_allclose(
        finite_difference(x, dt), np.gradient(x, dt, axis=0, edge_order=2), atol=1e-10
    )
    for order, d in [(4, 1), (2, 2)]:
        reference = ps.FiniteDifference(order=order, d=d)._differentiate(x, dt)
        ours = finite_difference(x, dt, order=order, derivative=d)
        np.testing.assert_allclose(ours, reference, atol=1e-8)
    expected = scipy.signal.savgol_filter(x, 11, 3, axis=0)
    np.testing.assert_allclose(savgol_smooth(x), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        smoothed_finite_difference(x, dt),
        ps.SmoothedFiniteDifference()._differentiate(x, dt),
        atol=1e-9,
    )
    # fourth order: error O(dt⁴) ≈ 1e-7 on sin(2t)
    error = np.abs(np.asarray(finite_difference(x, dt, order=4))[:, 0] - 2 * np.cos(2 * t))
    assert error.max() < 1e-6
    with pytest.raises(ValueError, match="order must be even"):
        finite_difference(x, dt, order=3)
    with pytest.raises(ValueError, match="at least"):
        finite_difference(x[:2], dt)


def test_spectral_derivative_is_exact_on_trigonometric_polynomials():
    length = 2 * np.pi
    s = np.linspace(0.0, length, 64, endpoint=False)
    u = np.sin(3 * s) + 0.5 * np.cos(5 * s)
    first = 3 * np.cos(3 * s) - 2.5 * np.sin(5 * s)
    second = -9 * np.sin(3 * s) - 12.5 * np.cos(5 * s)
    np.testing.assert_allclose(spectral_derivative(u, length), first, atol=1e-11)
    np.testing.assert_allclose(spectral_derivative(u, length, derivative=2), second, atol=1e-10)


# ---- sparse regression ----


def test_sindy_matches_pysindy_on_lorenz(trajectory):
    ts, x = trajectory
    model = eqx.filter_jit(fit_sindy)(x, DT)
    reference = ps.SINDy(optimizer=ps.STLSQ(threshold=0.1, alpha=0.05))
    reference.fit(x, t=DT)
    # the same arithmetic up to the linear solves' rounding
    np.testing.assert_allclose(model.coefficients, reference.coefficients(), atol=1e-9)
    # pysindy's example: the worst coefficient 0.15% from the truth with finite differences
    assert _max_rel_error(model.coefficients) < 2e-3
    assert (np.asarray(model.support) == (TRUE != 0)).all()
    assert model.equations(precision=1)[0] == "(x0)' = -10.0 x0 + 10.0 x1"
    # the fitted model is a vector field: its short-time trajectory follows the data
    np.testing.assert_allclose(model.simulate(x[0], ts[:200], rtol=1e-9, atol=1e-9), x[:200],
                               rtol=0, atol=2e-2)  # fmt: skip


def test_sr3_matches_pysindy(trajectory):
    _, x = trajectory
    theta, x_dot = PolynomialLibrary(2)(x), finite_difference(x, DT)
    fit = SR3(reg_weight=0.1)(theta, x_dot)
    reference = ps.SINDy(optimizer=ps.SR3(reg_weight_lam=0.1))
    reference.fit(x, t=DT)
    assert bool(fit.converged)
    np.testing.assert_allclose(fit.coefficients, reference.coefficients(), atol=1e-8)
    l1 = SR3(reg_weight=0.1, regularizer="l1", unbias=True, max_iter=200)(theta, x_dot)
    assert (np.asarray(l1.support) == (TRUE != 0)).all()


@pytest.mark.parametrize("regularizer", ["l0", "l1"])
def test_sr3_gradient_is_its_fixed_points(regularizer):
    # d/dy of the sparse fixed point on its support (implicit function theorem), against
    # central differences of converged solves (tol 1e-12: the loop's error is below the step)
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(60, 5))
    y = theta @ np.array([1.5, 0.0, -0.8, 0.0, 0.05]) + 1e-2 * rng.normal(size=60)
    sr3 = SR3(reg_weight=0.05, regularizer=regularizer, tol=1e-12, max_iter=500)

    def total(y):
        return sr3(theta, y).coefficients.sum()

    v = rng.normal(size=60)
    fd = (total(y + 1e-6 * v) - total(y - 1e-6 * v)) / 2e-6
    np.testing.assert_allclose(jax.grad(total)(jnp.asarray(y)) @ v, fd, rtol=1e-6)


def test_stlsq_vmaps_over_thresholds_and_differentiates_the_refit():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(60, 5))
    xi = np.array([1.5, 0.0, -0.8, 0.0, 0.05])
    y = theta @ xi + 1e-3 * rng.normal(size=60)
    fits = jax.vmap(lambda thr: STLSQ(threshold=thr, alpha=0.0)(theta, y))(
        jnp.asarray([0.01, 0.5, 1.0])
    )
    assert fits.support.sum(axis=(1, 2)).tolist() == [3, 2, 1]

    # On a fixed support the coefficients are least squares: d/dy of Σ ξ against the
    # closed form (Θ_Sᵀ Θ_S)⁻¹ Θ_Sᵀ 1 (support held fixed, so exact).
    def total(y):
        return STLSQ(threshold=0.5, alpha=0.0)(theta, y).coefficients.sum()

    grad = jax.grad(total)(jnp.asarray(y))
    support = [0, 2]
    ts = theta[:, support]
    expected = ts @ np.linalg.solve(ts.T @ ts, np.ones(2))
    np.testing.assert_allclose(grad, expected, rtol=1e-10)
    # ... and against central differences
    v = rng.normal(size=60)
    fd = (total(y + 1e-6 * v) - total(y - 1e-6 * v)) / 2e-6
    np.testing.assert_allclose(grad @ v, fd, rtol=1e-6)


def test_stlsq_says_when_it_does_not_converge():
    theta = np.random.default_rng(2).normal(size=(40, 6))
    y = theta @ np.array([1.0, 0.6, 0.4, 0.3, 0.2, 0.1])
    stlsq = STLSQ(threshold=0.35, alpha=0.0, max_iter=1)
    with pytest.raises(Exception, match="max_iter=1"):
        jax.block_until_ready(stlsq(theta, y).coefficients)
    kept = STLSQ(threshold=0.35, alpha=0.0, max_iter=1, on_failure="return")(theta, y)
    assert not bool(kept.converged)
    nan = STLSQ(threshold=0.35, alpha=0.0, max_iter=1, on_failure="nan")(theta, y)
    assert np.isnan(np.asarray(nan.coefficients)).all()
    with pytest.raises(ValueError, match="theta"):
        STLSQ()(theta, y[:10])
    with pytest.raises(ValueError, match="y has 1 non-finite"):
        STLSQ()(theta, np.where(np.arange(40) == 3, np.nan, y))
    # traced non-finite data: the failure policy (as non-convergence)
    traced = jax.jit(lambda y: STLSQ(on_failure="return")(theta, y).converged)
    assert not bool(traced(np.where(np.arange(40) == 3, np.inf, y)))
    with pytest.raises(ValueError, match="on_failure"):
        STLSQ(on_failure="ignore")


def test_ensemble_recovers_the_support_with_its_frequency(trajectory):
    _, x = trajectory
    ensemble = ensemble_sindy(x[:2000], DT, key=jax.random.key(0), num_models=8)
    assert ensemble.coefficients.shape == (8, 3, 10)
    np.testing.assert_array_equal(np.asarray(ensemble.inclusion) == 1.0, TRUE != 0)
    # each fit sees a resample of the same clean rows: the median is as good as one fit (0.15%)
    assert _max_rel_error(ensemble.median().coefficients) < 3e-3
    assert float(ensemble.std.max()) < 0.1


# ---- weak form ----


def test_test_functions_derivatives_and_integration_by_parts():
    ts = np.linspace(0.0, 2.0, 2001)
    values = bump_functions(ts, [0.7, 1.2], 0.5, 4, derivatives=2)
    bump = ((ts - 0.2) * (1.2 - ts) / 0.25) ** 4 * (np.abs(ts - 0.7) < 0.5)
    np.testing.assert_allclose(values[0, 0], bump, atol=1e-12)
    # ∫ φ x' dt = −∫ φ' x dt for x = sin 3t (trapezoid rule: O(dt²))
    w = np.asarray(trapezoid_weights(ts))
    lhs = (np.asarray(values[0]) * w) @ (3 * np.cos(3 * ts))
    rhs = -(np.asarray(values[1]) * w) @ np.sin(3 * ts)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)
    with pytest.raises(ValueError, match="power"):
        bump_functions(ts, [0.7], 0.5, 2, derivatives=2)


def test_weak_sindy_recovers_lorenz_and_resists_noise(trajectory):
    ts, x = trajectory
    clean = fit_weak_sindy(x, ts)
    assert _max_rel_error(clean.coefficients) < 1e-4  # no derivative error at all
    noisy = x + 0.05 * np.sqrt(np.mean(x**2, 0)) * np.random.default_rng(0).normal(size=x.shape)
    pointwise = fit_sindy(noisy, DT)
    weak = fit_weak_sindy(noisy, ts)
    # 5% noise: finite differences amplify it into two wrong terms; the weak form keeps the
    # true terms (its worst coefficient, y's −1 in y', is 10% off on this draw)
    assert (np.asarray(weak.support) == (TRUE != 0)).all()
    assert int(np.asarray(pointwise.support).sum()) > 7
    assert _max_rel_error(weak.coefficients) < 0.15 < _max_rel_error(pointwise.coefficients)
    gram, rhs = weak_form(x, ts, PolynomialLibrary(2), num_domains=7)
    assert gram.shape == (7, 10) and rhs.shape == (7, 3)
    with pytest.raises(ValueError, match="half_width"):
        weak_form(x, ts, PolynomialLibrary(2), half_width=6.0)


# ---- PDE-FIND ----


@pytest.fixture(scope="module")
def burgers():
    xs = np.linspace(-8.0, 8.0, 256, endpoint=False)
    ts = np.linspace(0.0, 10.0, 101)
    return ts, xs, np.asarray(burgers_gaussian(xs, ts, quadrature_points=8001))


def test_cole_hopf_burgers_solves_the_pde(burgers):
    _, xs, _ = burgers
    ts = np.array([1.0, 1.001, 1.002])
    u = np.asarray(burgers_gaussian(xs, ts, quadrature_points=8001))
    u_t = (u[2] - u[0]) / 0.002
    u_x = spectral_derivative(u[1], 16.0)
    u_xx = spectral_derivative(u[1], 16.0, derivative=2)
    residual = u_t + u[1] * u_x - 0.1 * u_xx
    assert np.abs(residual).max() < 1e-5 * np.abs(u_t).max() + 1e-6


def test_pde_find_matches_pysindy_and_weak_form_resists_noise(burgers):
    ts, xs, u = burgers
    optimizer = STLSQ(threshold=2.0, alpha=1e-5, normalize_columns=True)
    model = fit_pde_find(u, ts, xs, optimizer=optimizer)
    library = ps.PDELibrary(function_library=ps.PolynomialLibrary(degree=2, include_bias=False),
                            derivative_order=2, spatial_grid=xs, include_bias=True)  # fmt: skip
    stlsq = ps.STLSQ(threshold=2.0, alpha=1e-5, normalize_columns=True)
    reference = ps.SINDy(feature_library=library, optimizer=stlsq)
    reference.fit(u.T[:, :, None], t=ts[1] - ts[0])
    np.testing.assert_allclose(model.coefficients, reference.coefficients()[0], atol=1e-8)
    assert model.equation(precision=2) == "u_t = 0.10 u_xx - 1.00 u u_x"
    noisy = u + 0.1 * np.sqrt(np.mean(u**2)) * np.random.default_rng(0).normal(size=u.shape)
    weak = fit_pde_find(noisy, ts, xs, optimizer=STLSQ(threshold=0.05, alpha=1e-5), weak=True)
    assert weak.equation(precision=1) == "u_t = -0.5 (u^2)_x + 0.1 (u)_xx"
    np.testing.assert_allclose(weak.coefficient("(u^2)_x"), -0.5, rtol=0.02)
    np.testing.assert_allclose(weak.coefficient("(u)_xx"), 0.1, rtol=0.05)
    with pytest.raises(ValueError, match="no feature"):
        weak.coefficient("u_xxx")
    uneven = ts.copy()
    uneven[1] += 0.05
    with pytest.raises(ValueError, match="ts must be uniformly spaced"):
        fit_pde_find(u, uneven, xs)
    with pytest.raises(ValueError, match="xs must be strictly increasing"):
        fit_pde_find(u, ts, xs[::-1], weak=True)
