"""Score-based diffusion: the VP/VE kernels against the moment ODEs of the forward SDE, the
denoising score-matching loss against its closed form for Gaussian data, and the three samplers
(probability-flow ODE against its closed-form map, reverse SDE and predictor–corrector against
the exact law) with the exact score of Gaussian data.

Compilation dominates, and the VP and VE SDEs are static (each compiles its own program): the
SDE-specific pieces (drift, diffusion, kernel, the corrector's step scale) are checked on both
SDEs, each SDE-generic function (`dsm_loss`, `sample_probability_flow`, `sample_reverse_sde`)
on one of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import one_program

from jaxdyn.generative import (
    OUSDE,
    VESDE,
    VPSDE,
    GaussianMixture,
    diffused_mixture,
    dsm_loss,
    sample_predictor_corrector,
    sample_probability_flow,
    sample_reverse_sde,
)
from jaxdyn.solve import RESULTS

MEAN, SCALE = jnp.array([1.0, -0.5]), 0.5  # data N(MEAN, SCALE² I)
DATA = GaussianMixture(jnp.ones(1), MEAN[None], SCALE**2)
SDES = {"vp": VPSDE(), "ve": VESDE(sigma_min=0.01, sigma_max=10.0)}
T_MIN = 1e-3


def _exact_score(sde):
    return lambda t, x, args=None: diffused_mixture(sde, DATA, t).score(x)


def _exact_moments(sde, t):
    """`p_t = N(a m, (a² s² + σ²) I)` for data `N(m, s² I)`."""
    return sde.mean_coeff(t) * MEAN, sde.mean_coeff(t) ** 2 * SCALE**2 + sde.std(t) ** 2


def _gaussian_score(sde):
    """The same exact score in closed form, `−(x − a m)/V` (cheaper to compile)."""

    def score(t, x, args=None):
        mean, var = _exact_moments(sde, t)
        return -(x - mean) / var

    return score


def _exact_p1(sde, key, n):
    """`n` draws of `p_1`, as one program (eager, each operation compiles one)."""
    return one_program(_draw_p1, sde, key, n)


def _draw_p1(sde, key, n):
    mean, var = _exact_moments(sde, 1.0)
    return mean + jnp.sqrt(var) * jax.random.normal(key, (n, 2))


@pytest.mark.parametrize("name", sorted(SDES))
def test_kernel_solves_the_moment_equations(name):
    """For `dx = c(t) x dt + g dW` the kernel `N(a x0, σ² I)` has `ȧ = c a`, `d σ²/dt = 2cσ² +
    g²`, `a(0) = 1`, `σ(0) = 0`; derivatives by `jax.jvp`."""
    sde = SDES[name]
    ts = jnp.linspace(0.05, 1.0, 7)
    c = jax.vmap(lambda t: sde.drift(t, jnp.ones(1))[0])(ts)  # the drift is linear in x
    g2 = jax.vmap(sde.diffusion)(ts) ** 2
    a, da = jax.jvp(jax.vmap(sde.mean_coeff), (ts,), (jnp.ones_like(ts),))
    var, dvar = jax.jvp(jax.vmap(lambda t: sde.std(t) ** 2), (ts,), (jnp.ones_like(ts),))
    # float64 round-off of a few operations on O(1e3) quantities (VE's g² at t = 1)
    np.testing.assert_allclose(da, c * a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dvar, 2 * c * var + g2, rtol=1e-12, atol=1e-12)
    assert float(sde.mean_coeff(0.0)) == 1.0 and float(sde.std(0.0)) == 0.0
    # the prior is the law of x_1 for data at 0 (VP: up to a(1) ≈ 0.0066 and σ(1)² ≈ 1 - 4e-5)
    assert float(sde.prior_std()) == pytest.approx(float(sde.std(1.0)), rel=1e-4)


def test_ou_sde_kernel_and_its_vp_equivalent():
    """`OUSDE` (`dx = −θ x dt + c dW` on `(0, T]`, time normalised to `τ = t/T`) solves the
    moment equations `ȧ = −θT a`, `dσ²/dτ = −2θT σ² + c²T`, its prior is the stationary
    `N(0, c²/2θ)`, and with `c² = 2θ` it is the VP SDE with constant `β = 2θT`."""
    sde = OUSDE(rate=0.7, noise=1.3, horizon=10.0)
    ts = jnp.linspace(1e-4, 1.0, 7)

    @jax.jit  # one program for the kernel's derivatives
    def moments(ts):
        a, da = jax.jvp(jax.vmap(sde.mean_coeff), (ts,), (jnp.ones_like(ts),))
        var, dvar = jax.jvp(jax.vmap(lambda t: sde.std(t) ** 2), (ts,), (jnp.ones_like(ts),))
        return a, da, var, dvar

    a, da, var, dvar = moments(ts)
    rate = 0.7 * 10.0
    np.testing.assert_allclose(da, -rate * a, rtol=1e-13)  # float64 round-off
    # the right side cancels two O(17) terms at τ = 1 (to 1e-5): round-off 17 · 1e-16 per term
    np.testing.assert_allclose(dvar, -2 * rate * var + 1.3**2 * 10.0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(jax.vmap(lambda t: sde.drift(t, jnp.ones(1))[0])(ts), -rate)
    np.testing.assert_allclose(jax.vmap(sde.diffusion)(ts) ** 2, 1.3**2 * 10.0, rtol=1e-14)
    assert float(sde.mean_coeff(0.0)) == 1.0 and float(sde.std(0.0)) == 0.0
    assert float(sde.prior_std()) == pytest.approx(1.3 / np.sqrt(1.4), rel=1e-14)
    ou, vp = OUSDE(rate=1.0, noise=np.sqrt(2.0), horizon=10.0), VPSDE(20.0, 20.0)
    for method in ("mean_coeff", "std", "diffusion"):  # NumPy-sized arrays: eager is cheap
        np.testing.assert_allclose(getattr(ou, method)(ts), getattr(vp, method)(ts), rtol=1e-12)
    with pytest.raises(ValueError, match="horizon must be positive"):
        OUSDE(horizon=0.0)


def test_prior_log_prob_and_samples():
    sde = SDES["ve"]
    x = jnp.array([0.3, -2.0, 5.0])
    var = float(sde.std(1.0)) ** 2
    expected = -0.5 * float(jnp.sum(x**2)) / var - 1.5 * np.log(2 * np.pi * var)
    np.testing.assert_allclose(sde.prior_log_prob(x), expected, rtol=1e-14)
    draws = sde.prior_sample((20000, 2), key=jax.random.key(0))
    # sample std within 5 standard errors (σ/√(2n) ≈ 0.5% of σ)
    np.testing.assert_allclose(draws.std(), np.sqrt(var), rtol=5 * np.sqrt(1 / 40000))


def test_dsm_loss_of_the_exact_score_matches_closed_form(name="vp"):
    """For Gaussian data and the exact score, `E|σ s + z|² = d a² s²/(a² s² + σ²)` at time `t`
    (write `x_t − a m = a s ξ + σ z`); averaged over `t ~ U[t_min, 1]` by quadrature. The loss
    is also stationary there: `d/dc E|σ c s + z|²` at `c = 1` vanishes."""
    sde = SDES[name]
    score = _exact_score(sde)
    n = 20000
    x0 = MEAN + SCALE * jax.random.normal(jax.random.key(1), (n, 2))
    key = jax.random.key(2)

    @jax.jit
    def losses(c):  # per-sample losses at scale c, their c-derivatives, and at c = 1.3
        def at(c):
            return dsm_loss(lambda t, x, args: c * score(t, x), sde, x0, key=key, t_min=T_MIN)

        values, slope = jax.jvp(at, (c,), (jnp.ones_like(c),))
        return values, slope, at(1.3 * c)

    values, slope, wrong = losses(jnp.asarray(1.0))
    ts = jnp.linspace(T_MIN, 1.0, 20001)
    a2s2 = sde.mean_coeff(ts) ** 2 * SCALE**2
    expected = float(jnp.trapezoid(2 * a2s2 / (a2s2 + sde.std(ts) ** 2), ts)) / (1 - T_MIN)

    def stderr(v):
        return float(v.std()) / np.sqrt(n)

    assert abs(float(values.mean()) - expected) < 4 * stderr(values)  # Monte Carlo: 4 s.e.
    assert abs(float(slope.mean())) < 4 * stderr(slope)  # mean zero at the minimiser
    # a wrong scale is worse: the paired difference is (c − 1)² σ²|s|² ≥ 0 sample by sample
    # in expectation, and here clearly positive (far beyond its Monte Carlo error)
    assert float((wrong - values).mean()) > 10 * stderr(wrong - values)


def test_probability_flow_matches_its_closed_form(name="ve"):
    """For Gaussian data the probability-flow map is affine: `x(t) = a_t m + √(V_t / V_1)
    (x(1) − a_1 m)` with `V_t = a_t² s² + σ_t²` (each coordinate keeps its standardised value).
    On VE, the stiffer case for the adaptive solver (`g²` grows to 1.4e3 at `t = 1`)."""
    sde = SDES[name]
    x1 = _exact_p1(sde, jax.random.key(3), 64)
    out = one_program(
        sample_probability_flow, _gaussian_score(sde), sde, x1, t_min=T_MIN, rtol=1e-8, atol=1e-8
    )
    x, stats = out.value, out.stats
    (m1, v1), (mt, vt) = _exact_moments(sde, 1.0), _exact_moments(sde, T_MIN)
    expected = np.asarray(mt) + np.sqrt(float(vt) / float(v1)) * (np.asarray(x1) - np.asarray(m1))
    # adaptive dopri5 at tolerance 1e-8: global error ~1e-7 on O(1) values
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-6)
    assert int(stats.num_fevals) > 0


def _check_law(x, sde, z=5.0, bias=0.0):
    """Sample mean and variance of each coordinate against the exact `p_{t_min}`, within `z`
    standard errors (`std/√n`, and `std((x − x̄)²)/√n` for the variance) plus `bias`."""
    mean, var = (np.asarray(m) for m in _exact_moments(sde, T_MIN))
    x = np.asarray(x)  # NumPy: each eager jnp reduction would compile a program
    n = x.shape[0]
    centred = x - x.mean(0)
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), z * x.std(0) / np.sqrt(n) + bias)
    np.testing.assert_array_less(
        np.abs(x.var(0) - var), z * (centred**2).std(0) / np.sqrt(n) + bias
    )


# Euler–Maruyama's weak error with 200 steps, from the exact recursion of the mean and variance
# for Gaussian data: at most 0.002 on the variance (VP), against sampling errors ~0.01 at n = 1500
NUM_SAMPLES, NUM_STEPS = 1500, 200


def test_reverse_sde_reproduces_the_data_law(name="vp"):
    sde = SDES[name]
    x1 = _exact_p1(sde, jax.random.key(4), NUM_SAMPLES)
    dt0 = (1 - T_MIN) / NUM_STEPS
    out = one_program(sample_reverse_sde, _gaussian_score(sde), sde, x1, key=jax.random.key(5),
                      dt0=dt0)  # fmt: skip
    _check_law(out.value, sde)  # the bias is below the sampling error (see NUM_STEPS)
    assert int(out.stats.num_steps) == NUM_STEPS and bool(out.succeeded)


@pytest.mark.parametrize("name", sorted(SDES))
def test_predictor_corrector_reproduces_the_data_law(name):
    sde = SDES[name]
    x1 = _exact_p1(sde, jax.random.key(6), NUM_SAMPLES)
    out = sample_predictor_corrector(
        _gaussian_score(sde), sde, x1, key=jax.random.key(7), t_min=T_MIN,
        dt0=(1 - T_MIN) / NUM_STEPS, corrector_steps=1, snr=0.16,
    )  # fmt: skip
    # the corrector targets p_t itself: the bias stays below the sampling error
    _check_law(out.value, sde)
    assert int(out.stats.num_fevals) == 2 * NUM_STEPS and bool(out.succeeded)


def test_predictor_corrector_without_corrector_is_euler_maruyama():
    """`corrector_steps=0`, `denoise=False`: one step is `x − [f − g² s](−h) + g √h z`."""
    sde = SDES["vp"]
    score = _gaussian_score(sde)
    x1 = _exact_p1(sde, jax.random.key(8), 3)
    key = jax.random.key(9)
    h = 0.5

    @jax.jit  # the sampler and its expected step: one program
    def run(x1, key):
        x = sample_predictor_corrector(
            score, sde, x1, key=key, t_min=0.5, dt0=h, corrector_steps=0, denoise=False
        ).value
        z = jax.random.normal(jax.random.split(jax.random.split(key, 1)[0])[1], x1.shape)
        drift = jax.vmap(lambda x: sde.drift(1.0, x) - sde.diffusion(1.0) ** 2 * score(1.0, x))
        return x, x1 - drift(x1) * h + sde.diffusion(1.0) * np.sqrt(h) * z

    x, expected = run(x1, key)
    np.testing.assert_allclose(x, expected, rtol=1e-13)  # the same arithmetic


def test_predictor_corrector_follows_on_failure():
    """A NaN score makes the whole batch non-finite (the corrector averages over it)."""
    sde = SDES["vp"]
    x1 = _exact_p1(sde, jax.random.key(8), 3)
    nan_score = lambda t, x, args: x * jnp.nan  # noqa: E731
    kw = dict(key=jax.random.key(9), t_min=0.5, dt0=0.5)
    out = sample_predictor_corrector(nan_score, sde, x1, on_failure="return", **kw)
    assert out.result == RESULTS.nonfinite and not bool(out.succeeded)
    assert bool(jnp.all(jnp.isnan(sample_predictor_corrector(nan_score, sde, x1, on_failure="nan",
                                                             **kw).value)))  # fmt: skip
    with pytest.raises(RuntimeError, match="sample_predictor_corrector: NaN or Inf"):
        jax.block_until_ready(sample_predictor_corrector(nan_score, sde, x1, **kw).value)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="beta_max"):
        VPSDE(beta_min=1.0, beta_max=0.5)
    with pytest.raises(ValueError, match="sigma_min"):
        VESDE(sigma_min=-1.0)
    with pytest.raises(TypeError, match="sigma_max"):
        VESDE(sigma_max="big")
    sde, score = SDES["vp"], _exact_score(SDES["vp"])
    x = jnp.zeros((4, 2))
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="t_min"):
        dsm_loss(score, sde, x, key=key, t_min=0.0)
    with pytest.raises(ValueError, match="x0"):
        dsm_loss(score, sde, jnp.zeros(2), key=key)
    with pytest.raises(TypeError, match="DiffusionSDE"):
        dsm_loss(score, "vp", x, key=key)
    with pytest.raises(ValueError, match="snr"):
        sample_predictor_corrector(score, sde, x, key=key, snr=0.0)
    with pytest.raises(ValueError, match="dt0 must be a positive number"):
        sample_predictor_corrector(score, sde, x, key=key, dt0=0.0)
    with pytest.raises(ValueError, match="corrector_steps must be an int >= 0"):
        sample_predictor_corrector(score, sde, x, key=key, corrector_steps=-1)
    # `key` is keyword-only: the old order (score, sde, key, x0) fails loudly.
    with pytest.raises(TypeError, match="positional argument"):
        dsm_loss(score, sde, key, x)
    with pytest.raises(TypeError, match="sample_predictor_corrector needs key"):
        sample_predictor_corrector(score, sde, x, key=None)
