"""Sampling by the transport ODE and the forward SDE, and the exact log-likelihood by the
instantaneous change of variables: closed forms (identity and linear flows), Hutchinson against
the exact trace, and the Gaussian-mixture oracle; the `Endpoint` they return and its failure
policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import one_program

from jaxdyn.generative import (
    GaussianMixture,
    InterpolantOracle,
    LinearInterpolant,
    divergence,
    log_likelihood,
    sample_ode,
    sample_sde,
    standard_normal,
)
from jaxdyn.solve import RESULTS, Endpoint

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


def linear(t, y, rate):
    """`b = a x`, the rate `a` through `args` (which the samplers pass to the field)."""
    return rate * y


def test_identity_flow_gives_base_log_density():
    # The linear flow at rate 0 (a traced rate: the program of the linear test below, t1 > t0).
    x = jax.random.normal(jax.random.key(0), (4, 3))
    base = standard_normal(3).log_prob
    kw = dict(args=jnp.asarray(0.0), t0=0.0, t1=1.0, rtol=1e-10, atol=1e-10)
    out = one_program(log_likelihood, linear, x, base, **kw)
    assert isinstance(out, Endpoint) and out.succeeded.shape == (4,) and bool(out.succeeded.all())
    np.testing.assert_allclose(out.value, jax.vmap(base)(x), rtol=0, atol=1e-14)
    assert out.stats.num_steps.shape == (4,)


@pytest.mark.parametrize("t0, t1", [(0.0, 1.0), (1.0, 0.25)])
def test_linear_flow_matches_closed_form(t0, t1):
    """`b = a x`: `x(t) = e^{a(t − t0)} x(t0)`, so `log ρ_{t1}(x) = log ρ_{t0}(e^{−aΔ} x) − a d Δ`
    with `Δ = t1 − t0` (either direction)."""
    a, d = 0.7, 3
    x = jax.random.normal(jax.random.key(1), (4, d))
    base = standard_normal(d).log_prob
    kw = dict(args=jnp.asarray(a), t0=t0, t1=t1, rtol=1e-10, atol=1e-10)
    logp = one_program(log_likelihood, linear, x, base, **kw).value
    delta = t1 - t0
    expected = jax.vmap(base)(jnp.exp(-a * delta) * x) - a * d * delta
    np.testing.assert_allclose(logp, expected, rtol=0, atol=1e-8)
    if t1 > t0:
        return
    # and the flow itself, backwards: sample_ode carries x(t0) to e^{aΔ} x(t0)
    out = one_program(sample_ode, linear, x, args=a, t0=t0, t1=t1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.value, jnp.exp(a * delta) * x, rtol=1e-8)
    assert int(out.stats.num_fevals) > 0 and int(out.stats.num_steps) > 0
    # dt0 alone: fixed Euler steps, x ← (1 + a h) x ten times (backwards, h = −0.075).
    out = one_program(sample_ode, linear, x, args=a, t0=t0, t1=t1, solver="euler", dt0=0.075)
    np.testing.assert_allclose(out.value, (1 + a * delta / 10) ** 10 * x, rtol=1e-12)
    assert int(out.stats.num_steps) == 10


def test_hutchinson_agrees_with_exact_within_error_bars():
    d = 3
    w = jax.random.normal(jax.random.key(2), (d, d))

    def velocity(t, y, args):
        return jnp.tanh(w @ y) * (1 + t) - 0.3 * y

    x = jnp.array([0.3, -0.8, 0.5])
    base = standard_normal(d).log_prob
    t_ = jnp.asarray(0.4)
    exact_div = jax.jit(divergence, static_argnums=0)(velocity, t_, x)
    jacobian = jax.jit(jax.jacobian(velocity, 1))(t_, x, None)
    np.testing.assert_allclose(exact_div, jnp.trace(jacobian), atol=1e-14)

    exact = one_program(log_likelihood, velocity, x, base).value
    n = 256
    xs = jnp.broadcast_to(x, (n, d))  # the same point, one probe each
    # Rademacher probes only: each probe kind compiles its own solve (the Gaussian one is the
    # same code path with another draw).
    est = one_program(
        log_likelihood, velocity, xs, base, divergence="hutchinson", key=jax.random.key(3)
    ).value
    se = est.std() / np.sqrt(n)
    assert est.std() > 0  # the probes differ
    assert abs(est.mean() - exact) < 4 * se, (float(est.mean()), float(exact), float(se))


def test_oracle_ode_samples_target():
    x0 = jax.random.normal(jax.random.key(4), (2000, 2))
    out = one_program(sample_ode, ORACLE.velocity, x0, rtol=1e-5, atol=1e-5)
    assert out.value.shape == (2000, 2) and bool(out.succeeded)
    _check_moments(out.value)
    assert out.stats.num_fevals.shape == () and out.succeeded.shape == ()  # one joint solve


def test_oracle_likelihood_equals_exact_log_density():
    x = jnp.array([[-1.4, 0.6], [1.1, -0.3], [0.0, 0.0]])
    logp = one_program(
        log_likelihood, ORACLE.velocity, x, standard_normal(2).log_prob, rtol=1e-8, atol=1e-8
    )
    logp = logp.value
    exact = jax.jit(jax.vmap(lambda y: ORACLE.log_density(1.0, y)))(x)  # one compile, not per op
    np.testing.assert_allclose(logp, exact, rtol=0, atol=1e-6)


def test_oracle_sde_samples_target():
    x0 = jax.random.normal(jax.random.key(5), (2000, 2))
    # ε(t) = 0.75 − t/2: moderate, time-dependent (a constant ε takes the same path)
    out = one_program(
        sample_sde,
        ORACLE.velocity,
        ORACLE.score,
        x0,
        key=jax.random.key(6),
        epsilon=lambda t: 0.75 - t / 2,
    )
    _check_moments(out.value)
    assert int(out.stats.num_steps) == 100 and bool(out.succeeded)


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
        log_likelihood(v, jnp.zeros(2), base, divergence="hutchinson")
    with pytest.raises(ValueError, match="unknown divergence"):
        log_likelihood(v, jnp.zeros(2), base, divergence="trace")
    with pytest.raises(ValueError, match="unknown probe"):
        log_likelihood(v, jnp.zeros(2), base, divergence="hutchinson", key=key, probe="sphere")
    with pytest.raises(ValueError, match="log_base"):
        log_likelihood(v, jnp.zeros(2), lambda y: y)
    with pytest.raises(ValueError, match="velocity"):
        log_likelihood(lambda t, y, args: y[:1], jnp.zeros(2), base)
    with pytest.raises(ValueError, match="unknown on_failure"):
        sample_ode(v, jnp.zeros(2), on_failure="ignore")
    with pytest.raises(TypeError, match="key=jax.random.key"):
        log_likelihood(v, jnp.zeros(2), base, divergence="hutchinson", key=0)


def _blowup(t, y, args):
    return y**2  # y(t) = y0 / (1 − y0 t): infinite at t = 1 from y0 = 1, finite from 0.1


def test_failed_sample_follows_on_failure():
    x0 = jnp.array([[1.0], [0.1]])
    kw = dict(t1=2.0, max_steps=60, batch="vmap")  # each sample its own solve and result
    out = sample_ode(_blowup, x0, on_failure="return", **kw)
    assert list(np.asarray(out.succeeded)) == [False, True]
    assert list(np.asarray(out.result == RESULTS.max_steps_reached)) == [True, False]
    np.testing.assert_allclose(out.value[1], 0.1 / (1 - 0.2), rtol=1e-5)  # adaptive at 1e-6
    nan = sample_ode(_blowup, x0, on_failure="nan", **kw).value
    assert bool(jnp.all(jnp.isnan(nan[0]))) and bool(jnp.all(nan[1] == out.value[1]))
    with pytest.raises(RuntimeError, match="sample_ode: the solver reached max_steps=60"):
        jax.block_until_ready(sample_ode(_blowup, x0, **kw).value)


def test_non_finite_values_are_failures():
    """A solve that succeeds with a non-finite value fails: a log-density of −∞, a NaN score."""
    x = jnp.array([[1.0], [-1.0]])

    def half_line(y):  # log-density of a law on y > 0
        return jnp.where(y[0] > 0, 0.0, -jnp.inf)

    zero = lambda t, y, args: jnp.zeros_like(y)  # noqa: E731
    out = log_likelihood(zero, x, half_line, on_failure="nan")
    assert out.value[0] == 0.0 and bool(jnp.isnan(out.value[1]))
    assert list(np.asarray(out.result == RESULTS.nonfinite)) == [False, True]
    with pytest.raises(RuntimeError, match="log_likelihood: NaN or Inf"):
        jax.block_until_ready(log_likelihood(zero, x, half_line).value)
    # one joint SDE solve: its result covers the batch
    nan_score = lambda t, y, args: y * jnp.nan  # noqa: E731
    key = jax.random.key(0)
    out = sample_sde(zero, nan_score, x, key=key, dt0=0.5, on_failure="return")
    assert out.result == RESULTS.nonfinite and not bool(out.succeeded)
    with pytest.raises(RuntimeError, match="sample_sde: NaN or Inf"):
        jax.block_until_ready(sample_sde(zero, nan_score, x, key=key, dt0=0.5).value)
