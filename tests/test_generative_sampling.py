"""Sampling by the transport ODE and the forward SDE, and the exact log-likelihood by the
instantaneous change of variables: closed forms (identity and linear flows), Hutchinson against
the exact trace, and the Gaussian-mixture oracle; the `Endpoint` they return and its failure
policy."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
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
    w, m, v = (np.asarray(a) for a in (TARGET.weights[:, None], TARGET.means, TARGET.variances))
    mean = np.sum(w * m, axis=0)
    return mean, np.sum(w * (v + m**2), axis=0) - mean**2


def _check_moments(samples, z=4.5):
    """Sample mean and variance against the target's, within `z` standard errors (the standard
    errors estimated from the samples: `std/√n` and `std((x − x̄)²)/√n`). In NumPy: each eager
    `jnp` reduction would compile a program."""
    samples = np.asarray(samples)
    n = samples.shape[0]
    mean, var = _target_moments()
    centred = samples - samples.mean(0)
    se_mean = samples.std(0) / np.sqrt(n)
    se_var = (centred**2).std(0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(samples.mean(0) - mean), z * se_mean)
    np.testing.assert_array_less(np.abs(samples.var(0) - var), z * se_var)


def _normal_log_density(x):
    """`log N(x; 0, I)` row by row, in NumPy (the closed form `standard_normal` must match)."""
    x = np.asarray(x)
    return -0.5 * np.sum(x**2, axis=-1) - 0.5 * x.shape[-1] * np.log(2 * np.pi)


def linear(t, y, rate):
    """`b = a x`, the rate `a` through `args` (which the samplers pass to the field)."""
    return rate * y


def matrix_field(t, y, matrix):
    """`b = A x`, the matrix `A` through `args`."""
    return matrix @ y


# One log-likelihood program serves the three tests below: `b = A x` with `A` traced, 256 points
# in 3-D, Hutchinson's divergence with Rademacher probes, backwards (t1 < t0; the forward
# direction and the exact divergence are the oracle's test). For `A = a I` the estimate is exact
# (`εᵀ ε = d`), so the identity and the linear flow are closed-form checks of the same solve.
T0, T1, N = 1.0, 0.25, 256


def _matrix_flow(a, x):
    return one_program(
        log_likelihood, matrix_field, x, standard_normal(3).log_prob, args=jnp.asarray(a),
        t0=T0, t1=T1, divergence="hutchinson", key=jax.random.key(3), rtol=1e-10, atol=1e-10,
    )  # fmt: skip


def _matrix_flow_closed_form(a, x):
    """`x(t) = e^{A(t − t0)} x(t0)`: `log ρ_{t1}(x) = log ρ_{t0}(e^{−AΔ} x) − Δ tr A`, with
    `Δ = t1 − t0` (either direction)."""
    delta = T1 - T0
    return _normal_log_density(np.asarray(x) @ scipy.linalg.expm(-a * delta).T) - delta * np.trace(
        a
    )


def test_identity_flow_gives_base_log_density():
    x = jax.random.normal(jax.random.key(0), (N, 3))
    out = _matrix_flow(np.zeros((3, 3)), x)
    assert isinstance(out, Endpoint) and out.succeeded.shape == (N,) and bool(out.succeeded.all())
    np.testing.assert_allclose(out.value, _normal_log_density(x), rtol=0, atol=1e-14)
    assert out.stats.num_steps.shape == (N,)


def test_linear_flow_matches_closed_form():
    """`b = a x`: `log ρ_{t1}(x) = log ρ_{t0}(e^{−aΔ} x) − a d Δ`; Hutchinson's `εᵀ (a I) ε`
    is exactly `a d`."""
    a, d = 0.7, 3
    x = jax.random.normal(jax.random.key(1), (N, d))
    logp = _matrix_flow(a * np.eye(d), x).value
    np.testing.assert_allclose(logp, _matrix_flow_closed_form(a * np.eye(d), x), rtol=0, atol=1e-8)
    # and the flow itself, backwards: sample_ode carries x(t0) to e^{aΔ} x(t0). With dt0 alone:
    # fixed Euler steps, x ← (1 + a h) x ten times (h = −0.075). (Adaptive steps: the oracle's
    # test below; the direction is the same code for both.)
    x, delta = x[:4], T1 - T0
    out = one_program(sample_ode, linear, x, args=a, t0=T0, t1=T1, solver="euler", dt0=0.075)
    np.testing.assert_allclose(out.value, (1 + a * delta / 10) ** 10 * x, rtol=1e-12)
    assert int(out.stats.num_steps) == 10 and int(out.stats.num_fevals) == 10


def test_hutchinson_agrees_with_exact_within_error_bars():
    """For a non-diagonal `A` Hutchinson's `εᵀ A ε` varies with the probe; its mean over probes
    is `tr A = ∇·b` (here exactly by `divergence`)."""
    d = 3
    a = 0.5 * np.random.default_rng(2).normal(size=(d, d))
    x = np.array([0.3, -0.8, 0.5])
    exact_div = jax.jit(divergence, static_argnums=0)(matrix_field, 0.4, jnp.asarray(x), a)
    np.testing.assert_allclose(exact_div, np.trace(a), atol=1e-14)
    exact = _matrix_flow_closed_form(a, x)
    # The same point, one probe each (Rademacher only: each probe kind compiles its own solve;
    # the Gaussian one is the same code path with another draw).
    est = np.asarray(_matrix_flow(a, jnp.broadcast_to(x, (N, d))).value)
    se = est.std() / np.sqrt(N)
    assert est.std() > 0  # the probes differ
    assert abs(est.mean() - exact) < 4 * se, (float(est.mean()), float(exact), float(se))


def test_oracle_ode_samples_target():
    x0 = jax.random.normal(jax.random.key(4), (2000, 2))
    out = one_program(sample_ode, ORACLE.velocity, x0, rtol=1e-5, atol=1e-5)
    assert out.value.shape == (2000, 2) and bool(out.succeeded)
    _check_moments(out.value)
    assert out.stats.num_fevals.shape == () and out.succeeded.shape == ()  # one joint solve


def test_oracle_likelihood_equals_exact_log_density():
    # One point (`(dim,)`, not a batch: the unbatched path; the batched one is the linear test's)
    x = jnp.array([-1.4, 0.6])
    logp = one_program(
        log_likelihood, ORACLE.velocity, x, standard_normal(2).log_prob, rtol=1e-8, atol=1e-8
    )
    assert logp.value.shape == ()
    exact = float(jax.jit(lambda y: ORACLE.log_density(1.0, y))(x))  # one compile, not per op
    np.testing.assert_allclose(logp.value, exact, rtol=0, atol=1e-6)


def _scaled_score(t, y, scale):
    return scale * ORACLE.score(t, y)


def _oracle_sde(scale):
    """The oracle's forward SDE with its score times `scale`, traced: one program serves the
    sampling test (scale 1) and the failure test (a NaN score). A constant `ε = 0.5`, traced
    (a time-dependent `ε(t)`: test_diffusion's reverse SDE, which runs through `sample_sde`)."""
    x0 = jax.random.normal(jax.random.key(5), (2000, 2))
    return one_program(
        sample_sde, ORACLE.velocity, _scaled_score, x0, key=jax.random.key(6),
        args=jnp.asarray(scale), epsilon=jnp.asarray(0.5), on_failure="return",
    )  # fmt: skip


def test_oracle_sde_samples_target():
    out = _oracle_sde(1.0)
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

    @eqx.filter_jit  # the "return" and "nan" policies in one program
    def run(x0):
        out = sample_ode(_blowup, x0, on_failure="return", **kw)
        return out, sample_ode(_blowup, x0, on_failure="nan", **kw).value

    out, nan = run(x0)
    assert list(np.asarray(out.succeeded)) == [False, True]
    assert list(np.asarray(out.result == RESULTS.max_steps_reached)) == [True, False]
    np.testing.assert_allclose(out.value[1], 0.1 / (1 - 0.2), rtol=1e-5)  # adaptive at 1e-6
    assert bool(jnp.all(jnp.isnan(nan[0]))) and bool(jnp.all(nan[1] == out.value[1]))
    with pytest.raises(RuntimeError, match="sample_ode: the solver reached max_steps=60"):
        jax.block_until_ready(one_program(sample_ode, _blowup, x0, **kw).value)


def _half_line(y):  # log-density of a law on y > 0
    return jnp.where(y[0] > 0, 0.0, -jnp.inf)


def _zero(t, y, args):
    return jnp.zeros_like(y)


def test_non_finite_values_are_failures():
    """A solve that succeeds with a non-finite value fails: a log-density of −∞, a NaN score."""
    x = jnp.array([[1.0], [-1.0]])
    out = one_program(log_likelihood, _zero, x, _half_line, on_failure="nan")
    assert out.value[0] == 0.0 and bool(jnp.isnan(out.value[1]))
    assert list(np.asarray(out.result == RESULTS.nonfinite)) == [False, True]
    # (the raise policy per sample: the failed sample_ode's test above, the same `endpoint` branch)
    # one joint SDE solve: its result covers the batch (the raise policy on a joint solve's
    # result: test_diffusion's predictor-corrector failure test, the same `endpoint` branch)
    sde = _oracle_sde(jnp.nan)
    assert sde.result == RESULTS.nonfinite and not bool(sde.succeeded)
