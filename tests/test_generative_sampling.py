"""Sampling by the transport ODE and the forward SDE, and the exact log-likelihood by the
instantaneous change of variables: closed forms (identity and linear flows), Hutchinson against
the exact trace, and the Gaussian-mixture oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.generative import (
    GaussianMixture,
    InterpolantOracle,
    LinearInterpolant,
    log_likelihood,
    sample_ode,
    sample_sde,
    standard_normal,
)
from jaxdyn.generative.likelihood import divergence

TARGET = GaussianMixture(
    jnp.array([0.4, 0.6]),
    jnp.array([[-1.5, 0.5], [1.0, -0.5]]),
    jnp.array([[0.3, 0.5], [0.4, 0.2]]),
)
ORACLE = InterpolantOracle(LinearInterpolant(gamma="zero"), standard_normal(2), TARGET)


def _target_moments():
    w, m, v = TARGET.weights[:, None], TARGET.means, TARGET.variances
    mean = jnp.sum(w * m, axis=0)
    return mean, jnp.sum(w * (v + m**2), axis=0) - mean**2


def _check_moments(samples, z=4.5):
    """Sample mean and variance against the target's, within `z` standard errors (the standard
    errors estimated from the samples: `std/√n` and `std((x − x̄)²)/√n`)."""
    n = samples.shape[0]
    mean, var = _target_moments()
    centred = samples - samples.mean(0)
    se_mean = samples.std(0) / np.sqrt(n)
    se_var = (centred**2).std(0) / np.sqrt(n)
    np.testing.assert_array_less(jnp.abs(samples.mean(0) - mean), z * se_mean)
    np.testing.assert_array_less(jnp.abs(samples.var(0) - var), z * se_var)


def test_identity_flow_gives_base_log_density():
    x = jax.random.normal(jax.random.key(0), (5, 3))
    base = standard_normal(3).log_prob
    logp, stats = log_likelihood(lambda t, y: jnp.zeros_like(y), x, base)
    np.testing.assert_allclose(logp, jax.vmap(base)(x), rtol=0, atol=1e-14)
    assert stats.num_steps.shape == (5,)


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (1.0, 0.25)])
def test_linear_flow_matches_closed_form(t0, t1):
    """`b = a x`: `x(t) = e^{a(t − t0)} x(t0)`, so `log ρ_{t1}(x) = log ρ_{t0}(e^{−aΔ} x) − a d Δ`
    with `Δ = t1 − t0` (either direction)."""
    a, d = 0.7, 3
    x = jax.random.normal(jax.random.key(1), (4, d))
    base = standard_normal(d).log_prob
    logp, _ = log_likelihood(lambda t, y: a * y, x, base, t0=t0, t1=t1, rtol=1e-10, atol=1e-10)
    delta = t1 - t0
    expected = jax.vmap(base)(jnp.exp(-a * delta) * x) - a * d * delta
    np.testing.assert_allclose(logp, expected, rtol=0, atol=1e-8)
    if t1 > t0:
        return
    # and the flow itself, backwards: sample_ode carries x(t0) to e^{aΔ} x(t0)
    x1, stats = sample_ode(lambda t, y: a * y, x, t0=t0, t1=t1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(x1, jnp.exp(a * delta) * x, rtol=1e-8)
    assert int(stats.num_fevals) > 0 and int(stats.num_steps) > 0
    # dt0 alone: fixed Euler steps, x ← (1 + a h) x ten times (backwards, h = −0.075).
    x1, stats = sample_ode(lambda t, y: a * y, x, t0=t0, t1=t1, solver="euler", dt0=0.075)
    np.testing.assert_allclose(x1, (1 + a * delta / 10) ** 10 * x, rtol=1e-12)
    assert int(stats.num_steps) == 10


def test_hutchinson_agrees_with_exact_within_error_bars():
    d = 3
    w = jax.random.normal(jax.random.key(2), (d, d))

    def velocity(t, y):
        return jnp.tanh(w @ y) * (1 + t) - 0.3 * y

    x = jnp.array([0.3, -0.8, 0.5])
    base = standard_normal(d).log_prob
    t_ = jnp.asarray(0.4)
    exact_div = divergence(velocity, t_, x)
    np.testing.assert_allclose(exact_div, jnp.trace(jax.jacobian(velocity, 1)(t_, x)), atol=1e-14)

    exact, _ = log_likelihood(velocity, x, base)
    n = 256
    xs = jnp.broadcast_to(x, (n, d))  # the same point, one probe each
    # Rademacher probes only: each probe kind compiles its own solve (the Gaussian one is the
    # same code path with another draw).
    est, _ = log_likelihood(velocity, xs, base, method="hutchinson", key=jax.random.key(3))
    se = est.std() / np.sqrt(n)
    assert est.std() > 0  # the probes differ
    assert abs(est.mean() - exact) < 4 * se, (float(est.mean()), float(exact), float(se))


def test_oracle_ode_samples_target():
    x0 = jax.random.normal(jax.random.key(4), (2000, 2))
    x1, stats = sample_ode(ORACLE.velocity, x0, rtol=1e-5, atol=1e-5)
    assert x1.shape == (2000, 2)
    _check_moments(x1)
    assert stats.num_fevals.shape == ()  # one joint solve


def test_oracle_likelihood_equals_exact_log_density():
    x = jnp.array([[-1.4, 0.6], [1.1, -0.3], [0.0, 0.0]])
    logp, stats = log_likelihood(
        ORACLE.velocity, x, standard_normal(2).log_prob, rtol=1e-8, atol=1e-8
    )
    exact = jax.vmap(lambda y: ORACLE.log_density(1.0, y))(x)
    np.testing.assert_allclose(logp, exact, rtol=0, atol=1e-6)


def test_oracle_sde_samples_target():
    x0 = jax.random.normal(jax.random.key(5), (2000, 2))
    # ε(t) = 0.75 − t/2: moderate, time-dependent (a constant ε takes the same path)
    x1, stats = sample_sde(
        ORACLE.velocity, ORACLE.score, x0, key=jax.random.key(6), epsilon=lambda t: 0.75 - t / 2
    )
    _check_moments(x1)
    assert int(stats.num_steps) == 100


def test_bad_input_errors():
    v = ORACLE.velocity
    s = ORACLE.score
    base = standard_normal(2).log_prob
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"x0 must have shape \(dim,\) or \(batch, dim\)"):
        sample_ode(v, jnp.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="floating point"):
        sample_ode(v, jnp.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="t0 and t1 must differ"):
        sample_ode(v, jnp.zeros(2), t0=0.5, t1=0.5)
    with pytest.raises(ValueError, match="unknown batch"):
        sample_ode(v, jnp.zeros((3, 2)), batch="loop")
    with pytest.raises(ValueError, match="epsilon must be non-negative"):
        sample_sde(v, s, jnp.zeros(2), key=key, epsilon=-0.1)
    with pytest.raises(ValueError, match="need t1 > t0"):
        sample_sde(v, s, jnp.zeros(2), key=key, t0=1.0, t1=0.0)
    with pytest.raises(ValueError, match="needs key"):
        log_likelihood(v, jnp.zeros(2), base, method="hutchinson")
    with pytest.raises(ValueError, match="unknown method"):
        log_likelihood(v, jnp.zeros(2), base, method="trace")
    with pytest.raises(ValueError, match="unknown probe"):
        log_likelihood(v, jnp.zeros(2), base, method="hutchinson", key=key, probe="sphere")
    with pytest.raises(ValueError, match="log_base"):
        log_likelihood(v, jnp.zeros(2), lambda y: y)
    with pytest.raises(ValueError, match="velocity"):
        log_likelihood(lambda t, y: y[:1], jnp.zeros(2), base)
