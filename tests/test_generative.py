"""Stochastic interpolants, their losses and the Gaussian-mixture oracle (float64, conftest)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.generative import (
    EncoderDecoderInterpolant,
    GaussianMixture,
    InterpolantOracle,
    LinearInterpolant,
    MirrorInterpolant,
    OneSidedInterpolant,
    TrigonometricInterpolant,
    denoiser_loss,
    flow_matching_loss,
    ot_coupling,
    ot_plan,
    score_loss,
    standard_normal,
    velocity_loss,
)

INTERPOLANTS = {
    "linear-zero": LinearInterpolant("zero"),
    "linear-brownian": LinearInterpolant("brownian", 2.0),
    "trig-quadratic": TrigonometricInterpolant("quadratic", 0.5),
    "encoder-decoder": EncoderDecoderInterpolant(),
    "one-sided-linear": OneSidedInterpolant("linear"),
    "one-sided-trig": OneSidedInterpolant("trigonometric"),
    "one-sided-vp": OneSidedInterpolant("vp"),
    "mirror": MirrorInterpolant("brownian"),
}

BASE = GaussianMixture([1.0, 3.0], [[-1.0, 0.5], [1.5, -0.5]], [[0.3, 0.6], [0.5, 0.2]])
TARGET = GaussianMixture(
    [2.0, 1.0, 1.0], [[2.0, 2.0], [-2.0, 1.0], [0.0, -2.0]], [[0.1, 0.1], [0.2, 0.05], [0.3, 0.3]]
)


def _base(name):
    return standard_normal(2) if name.startswith("one-sided") else BASE


@pytest.mark.parametrize("name", sorted(INTERPOLANTS))
def test_endpoints_and_jvp_derivative(name):
    interpolant = INTERPOLANTS[name]
    x0, x1, z = jax.random.normal(jax.random.key(0), (3, 4))
    if name == "mirror":
        x0 = x1
    np.testing.assert_allclose(interpolant(x0, x1, z, 0.0), x0, atol=1e-15)
    np.testing.assert_allclose(interpolant(x0, x1, z, 1.0), x1, atol=1e-15)
    h = 1e-5  # central difference: truncation ~h² f''' ~1e-10, rounding ~eps/h ~1e-11
    for t in (0.2, 0.35, 0.8):  # away from 0 and 1 (brownian γ̇) and ½ (encoder–decoder)
        fd = (interpolant(x0, x1, z, t + h) - interpolant(x0, x1, z, t - h)) / (2 * h)
        np.testing.assert_allclose(interpolant.time_derivative(x0, x1, z, t), fd, atol=1e-8)


def test_gaussian_to_gaussian_closed_form():
    """One component each, linear Brownian bridge: `ρ_t = N(μ, V)` with `μ = (1 − t) m + t n`,
    `V = (1 − t)² v + t² w + a t (1 − t)`, score `−(x − μ)/V`, velocity `μ̇ + ½ V̇/V (x − μ)`."""
    a, t, x = 2.0, 0.3, np.array([0.4, -1.2])
    m, v, n, w = np.array([-1.0, 0.5]), np.array([0.3, 0.6]), np.array([2.0, 1.0]), 0.2
    oracle = InterpolantOracle(
        LinearInterpolant("brownian", a),
        GaussianMixture([1.0], [m], [v]),
        GaussianMixture([1.0], [n], w),
    )

    @jax.jit  # one program (eager, each operation of the oracle is one)
    def at(x):
        return (oracle.score(t, x), oracle.velocity(t, x), oracle.log_density(t, x),
                oracle.density(t).log_prob(x))  # fmt: skip

    score, velocity, log_density, density = at(x)
    mu, var = (1 - t) * m + t * n, (1 - t) ** 2 * v + t**2 * w + a * t * (1 - t)
    var_dot = -2 * (1 - t) * v + 2 * t * w + a * (1 - 2 * t)
    np.testing.assert_allclose(score, -(x - mu) / var, rtol=1e-12)
    np.testing.assert_allclose(velocity, n - m + 0.5 * var_dot / var * (x - mu))
    log_rho = -0.5 * np.sum((x - mu) ** 2 / var + np.log(2 * np.pi * var))
    np.testing.assert_allclose(log_density, log_rho, rtol=1e-12)
    np.testing.assert_allclose(density, log_rho, rtol=1e-12)


def test_mixture_sampling_moments():
    x = np.asarray(jax.jit(lambda key: TARGET.sample(40_000, key=key))(jax.random.key(1)))
    w, means, variances = (np.asarray(a) for a in (TARGET.weights[:, None], TARGET.means,
                                                    TARGET.variances))  # fmt: skip
    mean = np.sum(w * means, axis=0)
    var = np.sum(w * (variances + means**2), axis=0) - mean**2
    # standard errors: sqrt(var / n) ≈ 0.01 for the mean; 5σ
    np.testing.assert_allclose(x.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(x.var(0), var, rtol=0.03)


@pytest.mark.parametrize(
    "name", ["linear-brownian", "trig-quadratic", "encoder-decoder", "one-sided-vp", "mirror"]
)
def test_oracle_velocity_solves_continuity_equation(name):
    """`∂_t ρ + ∇·(ρ b) = 0`, divided by `ρ`: `∂_t log ρ + ∇·b + b·∇ log ρ = 0`, with
    `∂_t log ρ` by jvp through `t`, `∇·b` by jacfwd and `∇ log ρ` by grad."""
    oracle = InterpolantOracle(INTERPOLANTS[name], _base(name), TARGET)

    @jax.jit
    def residual(t, x):
        dlog_dt = jax.jvp(lambda s: oracle.log_density(s, x), (t,), (jnp.ones_like(t),))[1]
        b = oracle.velocity(t, x)
        div_b = jnp.trace(jax.jacfwd(oracle.velocity, argnums=1)(t, x))
        terms = jnp.stack([dlog_dt, div_b, b @ oracle.score(t, x)])
        return jnp.sum(terms), jnp.max(jnp.abs(terms))

    ts = jnp.array([0.15, 0.4, 0.7, 0.9])
    xs = 2.0 * jax.random.normal(jax.random.key(2), (ts.shape[0], 2))
    res, scale = jax.vmap(residual)(ts, xs)
    assert jnp.all(scale > 1e-2)  # the terms are O(1): the check is not vacuous
    np.testing.assert_allclose(res, 0.0, atol=1e-10 * float(scale.max()) + 1e-12)


def _losses_at(loss, field, **kwargs):
    """The mean loss at the oracle, at 1.1 × oracle and at oracle + 0.05, on one batch."""
    base = kwargs.pop("base")
    key = jax.random.key(5)

    @eqx.filter_jit  # the draws and the three losses: one program
    def run():
        x0 = base.sample(8000, key=jax.random.key(3))
        x1 = TARGET.sample(8000, key=jax.random.key(4))
        fields = (
            field,
            lambda t, x, args: 1.1 * field(t, x, args),
            lambda t, x, args: field(t, x, args) + 0.05,
        )
        return jnp.stack([loss(f, key=key, x0=x0, x1=x1, **kwargs).mean() for f in fields])

    return run()


@pytest.mark.parametrize(
    "case", ["velocity", "flow_matching", "denoiser", "score", "score-one-sided"]
)
def test_oracle_minimises_loss(case):
    if case == "velocity":
        interpolant = INTERPOLANTS["linear-brownian"]
        oracle = InterpolantOracle(interpolant, BASE, TARGET)
        loss, field = velocity_loss, oracle.velocity
        kwargs = dict(interpolant=interpolant, t_min=0.01, base=BASE)
    elif case == "flow_matching":
        oracle = InterpolantOracle(LinearInterpolant("zero"), BASE, TARGET)
        loss, field, kwargs = flow_matching_loss, oracle.velocity, dict(base=BASE)
    elif case == "denoiser":
        interpolant = INTERPOLANTS["trig-quadratic"]
        oracle = InterpolantOracle(interpolant, BASE, TARGET)
        loss, field = denoiser_loss, oracle.denoiser
        kwargs = dict(interpolant=interpolant, t_min=0.01, base=BASE)
    else:
        name = "one-sided-trig" if case == "score-one-sided" else "linear-brownian"
        interpolant = INTERPOLANTS[name]
        oracle = InterpolantOracle(interpolant, _base(name), TARGET)
        loss, field = score_loss, oracle.score
        kwargs = dict(interpolant=interpolant, t_min=0.01, base=_base(name))
    at_oracle, scaled, shifted = _losses_at(loss, field, **kwargs)
    # the excess of a perturbation b + δ is E|δ|² ≳ 2.5e-3 (shift) up to 1e-2 E|b|² (scale);
    # its Monte-Carlo cross term E[2δ·(b − target)] has mean 0 and is far smaller at n = 8000
    assert at_oracle < scaled and at_oracle < shifted, (at_oracle, scaled, shifted)


def test_errors():
    x = jnp.zeros(2)
    with pytest.raises(ValueError, match="gamma="):
        LinearInterpolant("cubic")
    with pytest.raises(ValueError, match="gamma_scale"):
        TrigonometricInterpolant("brownian", 0.0)
    with pytest.raises(ValueError, match="gamma='zero'"):
        MirrorInterpolant("zero")
    with pytest.raises(ValueError, match="schedule="):
        OneSidedInterpolant("cosine")
    with pytest.raises(ValueError, match="same shape"):
        LinearInterpolant()(x, jnp.zeros(3), x, 0.5)
    with pytest.raises(ValueError, match="t must be a scalar"):
        LinearInterpolant()(x, x, x, jnp.zeros(2))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batches"):
        flow_matching_loss(lambda t, x, a: x, x, x, key=key)
    with pytest.raises(ValueError, match="t_min"):
        velocity_loss(lambda t, x, a: x, LinearInterpolant(), x[None], x[None], key=key, t_min=0.5)
    with pytest.raises(ValueError, match="needs a latent"):
        denoiser_loss(lambda t, x, a: x, LinearInterpolant(), x[None], x[None], key=key)
    with pytest.raises(ValueError, match="needs a latent"):
        score_loss(lambda t, x, a: x, LinearInterpolant(), x[None], x[None], key=key)
    # `key` is keyword-only: the old positional order (model, key, x0, x1) fails loudly.
    with pytest.raises(TypeError, match="positional argument"):
        flow_matching_loss(lambda t, x, a: x, key, x[None], x[None])
    with pytest.raises(TypeError, match=r"flow_matching_loss needs key=jax.random.key\(seed\)"):
        flow_matching_loss(lambda t, x, a: x, x[None], x[None], key=0)
    with pytest.raises(ValueError, match="means"):
        GaussianMixture([1.0], [0.0, 1.0], 1.0)
    with pytest.raises(ValueError, match="weights must have shape"):
        GaussianMixture([1.0, 1.0], [[0.0, 1.0]], 1.0)
    with pytest.raises(ValueError, match="variances must have shape"):
        GaussianMixture([1.0], [[0.0, 1.0]], [[1.0, 1.0, 1.0]])
    with pytest.raises(ValueError, match="positive"):
        GaussianMixture([1.0], [[0.0, 1.0]], -1.0)
    with pytest.raises(ValueError, match="dims differ"):
        InterpolantOracle(LinearInterpolant(), standard_normal(3), TARGET)
    with pytest.raises(ValueError, match=r"x must have shape \(2,\)"):
        InterpolantOracle(LinearInterpolant(), BASE, TARGET).velocity(0.5, jnp.zeros(3))


def test_ot_coupling_pairs_along_the_plan():
    # Two sets related by a small shift: the OT plan pairs each point with its own shift, so
    # re-paired batches are (nearly) the shifted pairs, while independent pairs are far apart.
    x0 = 3.0 * jax.random.normal(jax.random.key(0), (64, 2))
    x1 = x0[::-1] + 0.05

    @jax.jit  # one program for the pairs and the plan (eager, Sinkhorn is ~60 small programs)
    def run(x0, x1):
        return ot_coupling(x0, x1, key=jax.random.key(1), epsilon=1e-3), ot_plan(
            x0, x1, epsilon=1e-3
        )

    (a, b), (plan, converged) = jax.tree.map(np.asarray, run(x0, x1))
    x0, x1 = np.asarray(x0), np.asarray(x1)
    # The entropic blur (ε = 1e-3 of the mean cost, a length ~0.2) lets a few draws pick a
    # near neighbour's partner; most drawn pairs are exact OT pairs.
    exact = np.all(np.abs(b - a - 0.05) < 1e-9, axis=1)
    assert np.mean(exact) > 0.9
    assert np.mean(np.sum((b - a) ** 2, axis=1)) < 0.01 * np.mean(np.sum((x1 - x0) ** 2, axis=1))
    assert bool(converged)
    np.testing.assert_allclose(plan.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(plan.sum(axis=1), 1 / 64, rtol=1e-2)  # Sinkhorn threshold 1e-3


def test_ot_plan_reports_non_convergence():
    x0 = jax.random.normal(jax.random.key(0), (32, 2))
    kw = dict(epsilon=1e-4, max_steps=5)

    @jax.jit  # the "return" and "nan" policies in one program (eager: ~60 programs each)
    def run(x0, x1):
        return ot_plan(x0, x1, on_failure="return", **kw), ot_plan(x0, x1, on_failure="nan", **kw)

    (plan, converged), (nan_plan, _) = run(x0, x0 + 1.0)
    assert not bool(converged) and bool(jnp.all(jnp.isfinite(plan)))
    assert bool(jnp.all(jnp.isnan(nan_plan)))
    with pytest.raises(Exception, match="Sinkhorn did not converge"):
        jax.block_until_ready(jax.jit(lambda x0, x1: ot_plan(x0, x1, **kw))(x0, x0 + 1.0))
    with pytest.raises(ValueError, match="same sample shape"):
        ot_plan(x0, jnp.zeros((32, 3)))
    with pytest.raises(ValueError, match="unknown on_failure"):
        ot_plan(x0, x0, on_failure="ignore")
