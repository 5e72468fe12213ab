"""Markov-approximate fBM and the fractional OU process (jaxdyn.models.fractional), in float64
(tests/conftest.py): closed forms against quadrature, ODE solves, dense Gaussians, Monte Carlo
and finite differences. Each test compiles one or two jitted functions (XLA compiles dominate
the run time)."""

import functools
import math

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.special

from jaxdyn.models.fractional import (
    FractionalOU,
    MarkovFBM,
    sample_type2_fbm,
    type2_fbm_covariance,
    type2_fbm_variance,
)

HURSTS = (0.3, 0.5, 0.7)
KS = (1, 2, 4, 8, 16)
T_GRID = jnp.geomspace(1e-3, 1.0, 200)  # t ∈ [1e-3, 1]: see test_variance_error_near_zero


@jax.jit
def _var_errors(hursts, ts):
    """`max_t |Var B̂_H(t) / Var B_H(t) - 1|` for each H (rows) and each K in KS (columns)."""

    def errors(hurst):
        exact = type2_fbm_variance(ts, hurst)
        return jnp.stack(
            [jnp.max(jnp.abs(MarkovFBM(hurst, num_k=k).variance(ts) / exact - 1)) for k in KS]
        )

    return jax.vmap(errors)(hursts)


@functools.cache
def _var_error_table() -> dict[float, dict[int, float]]:
    table = np.asarray(_var_errors(jnp.asarray(HURSTS), T_GRID))
    return {
        h: dict(zip(KS, map(float, row), strict=True)) for h, row in zip(HURSTS, table, strict=True)
    }


@jax.jit
def _covariance_error(hurst, ts):
    """`max |Cov(B̂_H(s), B̂_H(t)) - Cov(B_H(s), B_H(t))| / √(Var B_H(s) Var B_H(t))`, K = 8."""
    s, t = ts[:, None], ts[None, :]
    exact = type2_fbm_covariance(s, t, hurst)
    scale = jnp.sqrt(type2_fbm_variance(s, hurst) * type2_fbm_variance(t, hurst))
    return jnp.max(jnp.abs(MarkovFBM(hurst, num_k=8).covariance(s, t) - exact) / scale)


def _mc_z_scores(paths: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """|sample covariance - cov| in standard errors, `se² = (C_ii C_jj + C_ij²)/n` (Gaussian)."""
    n = paths.shape[0]
    sample = np.cov(paths.T, bias=False)
    var = np.diag(cov)
    return np.abs(sample - cov) / np.sqrt((var[:, None] * var[None] + cov**2) / n)


PAIRS = np.asarray([(0.1, 1.0), (0.5, 1.0), (0.51, 1.0), (0.9, 1.0), (0.999, 1.0), (2.0, 0.4)])


@pytest.mark.parametrize("hurst", (0.1, 0.3, 0.5, 0.7, 0.9))
def test_type2_covariance_matches_quadrature(hurst):
    alpha = hurst + 0.5

    def reference(s, t):
        lo, hi = min(s, t), max(s, t)
        integrand = lambda u: (hi - u) ** (alpha - 1) * (lo - u) ** (alpha - 1)  # noqa: E731
        return scipy.integrate.quad(integrand, 0, lo, limit=200)[0] / math.gamma(alpha) ** 2

    ref = [reference(s, t) for s, t in PAIRS]
    # 1e-9: quad's own accuracy with the endpoint singularity (u → lo)
    np.testing.assert_allclose(type2_fbm_covariance(*PAIRS.T, hurst), ref, rtol=1e-9)
    np.testing.assert_allclose(
        type2_fbm_covariance(PAIRS[:, 0], PAIRS[:, 0], hurst),
        type2_fbm_variance(PAIRS[:, 0], hurst),
        rtol=1e-13,
    )


def test_type2_is_brownian_at_half():
    s, t = np.linspace(0, 2, 6), np.linspace(2, 0, 6)
    np.testing.assert_allclose(type2_fbm_covariance(s, t, 0.5), np.minimum(s, t), atol=1e-14)


@eqx.filter_jit
def _weights_parts(model: MarkovFBM):
    return model.gamma, model.weights, model.relative_l2_error()


def test_weights_minimise_the_l2_error_by_quadrature():
    """ω = A⁻¹b (Daems et al. 2024) against the objective ∫_0^T (T-r) f(r)² dr computed by
    quadrature, f(r) = r^{H-½}/Γ(H+½) - Σ ω_k e^{-γ_k r}: ω is its minimum and
    `relative_l2_error` is the objective at ω divided by E∫_0^T B_H² dt."""
    hurst, horizon = 0.3, 2.0
    model = MarkovFBM(hurst, num_k=4, horizon=horizon, gamma_min=0.2, gamma_max=40.0)
    gamma, omega, relative_error = map(np.asarray, _weights_parts(model))

    def objective(w):
        def f2(r):
            return (r ** (hurst - 0.5) / math.gamma(hurst + 0.5) - w @ np.exp(-gamma * r)) ** 2

        return scipy.integrate.quad(lambda r: (horizon - r) * f2(r), 0, horizon, limit=400)[0]

    c = horizon ** (2 * hurst + 1) / (2 * hurst * (2 * hurst + 1) * math.gamma(hurst + 0.5) ** 2)
    mid = objective(omega)
    # 1e-6: quadrature accuracy of a small difference (the error is 2e-3 of c)
    assert mid / c == pytest.approx(float(relative_error), rel=1e-6)
    for k in range(4):  # a quadratic at its minimum: ±h along any axis raises it by the same
        e = np.eye(4)[k] * 1e-3
        up, down = objective(omega + e), objective(omega - e)
        assert up > mid and down > mid
        assert (up - mid) == pytest.approx(down - mid, rel=1e-3)


@pytest.mark.parametrize("hurst", HURSTS)
def test_variance_error_vs_k(hurst, record_property):
    """The issue's target: max |Var B̂_H / Var B_H - 1| ≤ 5 % on t ∈ [1e-3, 1] at K = 8."""
    errors = _var_error_table()[hurst]
    print(f"H={hurst}: max rel. Var error on [1e-3, 1] by K: {errors}")
    record_property(f"var_error_h{hurst}", errors)
    assert errors[8] <= 0.05
    assert all(errors[a] >= errors[b] for a, b in zip(KS[:3], KS[1:4], strict=True))
    if hurst == 0.5:  # Brownian motion: Var B_H(t) = t; 1e-3 is the K = 8 error (2e-4)
        assert errors[8] < 1e-3


def test_variance_error_near_zero_is_unavoidable():
    """Every Y_k behaves like W near 0, so Var B̂_H(t) ≈ (Σω)² t: for H < ½ the relative error
    tends to 1 as t → 0, for H > ½ it is unbounded. The K = 8 target holds from t ≈ 1e-3."""
    # np.full: jnp.full(..., 1e-9) is weakly typed and would compile `_var_errors` again.
    errors = np.asarray(_var_errors(jnp.asarray(HURSTS), np.full(T_GRID.shape, 1e-9)))
    assert errors[0, KS.index(8)] > 0.9 and errors[2, KS.index(8)] > 10.0


@pytest.mark.parametrize("hurst", HURSTS)
def test_markov_fbm_covariance_near_exact(hurst):
    # 1 %: the approximation error at K = 8 (up to 0.5 % measured at H = 0.3); at H = ½
    # (exact: min(s, t)) the approximation is within 1e-3
    error = float(_covariance_error(jnp.asarray(hurst), jnp.linspace(0.05, 1.0, 20)))
    assert error < (1e-3 if hurst == 0.5 else 0.01)


@jax.jit
def _covariances_and_fd(hurst):
    def covariances(h):
        return jnp.stack([MarkovFBM(h).covariance(0.4, 0.9), type2_fbm_covariance(0.4, 0.9, h)])

    fd = (covariances(hurst + 1e-6) - covariances(hurst - 1e-6)) / 2e-6
    return jax.jacfwd(covariances)(hurst), fd


def _ou_loglik(params, xs, ts):
    h, theta, sigma = params
    return FractionalOU(MarkovFBM(h, num_k=6), theta, sigma).log_likelihood(ts, xs)


@jax.jit
def _loglik_grad_and_fd(params, ts, key):
    xs = FractionalOU(MarkovFBM(0.3, num_k=6), 1.5, 0.8).sample(ts, key=key)
    diff = lambda e: _ou_loglik(params + e, xs, ts) - _ou_loglik(params - e, xs, ts)  # noqa: E731
    fd = jax.vmap(diff)(1e-6 * jnp.eye(3)) / 2e-6
    return jax.grad(_ou_loglik)(params, xs, ts), fd


def test_hurst_gradients_match_finite_differences():
    for h in HURSTS:
        grad, fd = _covariances_and_fd(jnp.asarray(h))
        assert np.all(np.isfinite(grad))
        # 1e-6: FD truncation ~h² plus rounding amplified by cond(A) ~ 1e5
        np.testing.assert_allclose(grad, fd, rtol=1e-6)
    ts = jnp.linspace(0.0, 1.0, 21)
    grad, fd = _loglik_grad_and_fd(jnp.asarray([0.35, 1.2, 0.9]), ts, jax.random.key(0))
    # 1e-5: the log-likelihood is O(10), so FD rounding is ~1e-9 absolute
    np.testing.assert_allclose(grad, fd, rtol=1e-5)


@eqx.filter_jit
def _transition_checks(model: FractionalOU, z0, t1):
    """`(Φ(t1) z0, Var z(t1))` in closed form and by one diffrax solve of dz/dt = F z with the
    Lyapunov ODE dP/dt = F P + P Fᵀ + L Lᵀ, F and L read off `drift` and `diffusion`."""
    f = jax.jacfwd(lambda z: model.drift(0.0, z))(jnp.zeros_like(z0))
    ell = model.diffusion(0.0, z0)

    def field(t, state, args):
        z, p = state
        return model.drift(t, z), f @ p + p @ f.T + ell @ ell.T

    sol = dfx.diffeqsolve(
        dfx.ODETerm(field), dfx.Tsit5(), 0.0, t1, None, (z0, jnp.zeros((z0.size, z0.size))),
        stepsize_controller=dfx.PIDController(rtol=1e-12, atol=1e-14), max_steps=100_000,
    )  # fmt: skip
    phi, q = model.transition(t1)
    return (phi @ z0, q), jax.tree.map(lambda y: y[-1], sol.ys), model.noise.transition(t1)


def test_fou_transition_matches_its_drift_and_diffusion():
    """Moderate γ_max keeps the ODEs non-stiff; atol 1e-11 is the solver's tolerance."""
    model = FractionalOU(MarkovFBM(0.3, num_k=4, gamma_max=50.0), 1.5, 0.8)
    z0 = jnp.arange(1.0, 6.0)
    (z1, q), (z1_ode, q_ode), (phi_y, q_y) = _transition_checks(model, z0, 0.7)
    np.testing.assert_allclose(z1, z1_ode, atol=1e-11)
    np.testing.assert_allclose(q, q_ode, atol=1e-11)
    # the Y block is MarkovFBM's own transition
    np.testing.assert_allclose(z1[1:], phi_y @ z0[1:], rtol=1e-14)
    np.testing.assert_allclose(q[1:, 1:], q_y, rtol=1e-14)


def test_fou_with_vanishing_theta_is_the_noise():
    model = FractionalOU(MarkovFBM(0.3), 1e-7, 1.0)
    s, t = jnp.meshgrid(jnp.linspace(0.1, 1.0, 4), jnp.linspace(0.1, 1.0, 4))
    both = eqx.filter_jit(lambda m, s, t: (m.covariance(s, t), m.noise.covariance(s, t)))
    # 1e-6: the O(θ t) effect of θ = 1e-7 and the cancellation in P∞ - Φ P∞ Φᵀ ~ 1/θ
    np.testing.assert_allclose(*both(model, s, t), rtol=1e-6)


@eqx.filter_jit
def _kalman_and_dense(model: FractionalOU, ts, key):
    xs = model.sample(ts, key=key, x0=0.3)
    cov = model.covariance(ts[1:, None], ts[None, 1:])
    dense = jax.scipy.stats.multivariate_normal.logpdf(xs[1:], model.mean(ts[1:], 0.3), cov)
    return model.log_likelihood(ts, xs), dense


def test_kalman_likelihood_equals_dense_gaussian():
    model = FractionalOU(MarkovFBM(0.3), 1.5, 0.8)
    kalman, dense = _kalman_and_dense(model, jnp.linspace(0.0, 1.0, 31), jax.random.key(1))
    assert float(kalman) == pytest.approx(float(dense), rel=1e-10)


@eqx.filter_jit
def _mc_draws(model: FractionalOU, ts, key, n: int):
    """Exact samples and closed-form covariances on `ts[1:]` of B̂_H, X and type-II fBM."""
    keys = jax.random.split(key, 3)
    grid = (ts[1:, None], ts[None, 1:])
    noise = model.noise
    return (
        (noise.sample(ts, key=keys[0], shape=(n,)), noise.covariance(*grid)),
        (model.sample(ts, key=keys[1], x0=1.0, shape=(n,)), model.covariance(*grid)),
        (sample_type2_fbm(ts[1:], 0.7, key=keys[2], shape=(n,)), type2_fbm_covariance(*grid, 0.7)),
    )


def test_samples_match_closed_form_covariances():
    """Monte Carlo: exact samples of B̂_H, of X and of type-II fBM have the closed-form
    covariances, within 5 standard errors entrywise (n = 4000 paths, ~50 entries each)."""
    n, ts = 4000, jnp.linspace(0.0, 1.0, 9)
    model = FractionalOU(MarkovFBM(0.3, num_k=4), 2.0, 0.7)
    (paths, cov), (xs, x_cov), (fbm, fbm_cov) = _mc_draws(model, ts, jax.random.key(2), n)
    assert paths.shape == (n, 9) and float(jnp.max(jnp.abs(paths[:, 0]))) == 0.0
    assert _mc_z_scores(np.asarray(paths[:, 1:]), np.asarray(cov)).max() < 5
    centred = np.asarray(xs[:, 1:]) - np.exp(-2.0 * np.asarray(ts[1:]))  # E X(t) = e^{-θt} x0
    assert np.abs(centred.mean(0) / np.sqrt(np.diag(x_cov) / n)).max() < 5
    assert _mc_z_scores(centred, np.asarray(x_cov)).max() < 5
    assert _mc_z_scores(np.asarray(fbm), np.asarray(fbm_cov)).max() < 5


def test_argument_errors():
    with pytest.raises(ValueError, match="hurst"):
        MarkovFBM(1.2)
    with pytest.raises(ValueError, match="gamma_min"):
        MarkovFBM(0.3, gamma_min=10.0, gamma_max=1.0)
    with pytest.raises(ValueError, match="num_k must be an int >= 1, got 0"):
        MarkovFBM(0.3, num_k=0)
    with pytest.raises(TypeError, match="positional"):  # num_k and the rest are keywords
        MarkovFBM(0.3, 4)
    with pytest.raises(ValueError, match="ts"):
        MarkovFBM(0.3).sample(jnp.zeros(1), key=jax.random.key(0))
    model = FractionalOU(MarkovFBM(0.3), 1.0, 1.0)
    with pytest.raises(ValueError, match="xs"):
        model.log_likelihood(jnp.linspace(0, 1, 5), jnp.zeros(4))
