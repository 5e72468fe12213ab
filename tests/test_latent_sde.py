"""LatentSDE: the integrated path KL against the closed form for two Ornstein–Uhlenbeck
processes, the context interpolation and the backwards encoder, ELBO gradients (finite
differences, float64), shapes under jit/vmap, KL annealing, and argument errors; torchsde's
sine setup (fixed OU prior and diffusion, sin/cos time features, zero-initialised drift,
identity decoder, Laplace likelihood, path KL past the data) and the exponential lr decay."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import compiled, directional_check, random_direction, strongly_typed

from jaxdyn.models.latent_sde import (
    ConstantDiffusion,
    ContextDrift,
    LatentSDE,
    sdeint_path_kl,
)

KEY = jax.random.key(0)
A, B, SIGMA, X0, T = 1.0, 3.0, 0.5, 1.0, 1.0  # posterior rate a, prior rate b


class OU(eqx.Module):
    rate: float

    def __call__(self, t, z, args):
        return -self.rate * z


class Constant(eqx.Module):
    value: float

    def __call__(self, t, z, args):
        return jnp.full_like(z, self.value)


def ou_kl_closed_form(a, b, sigma, x0, t1):
    """KL between the path measures of dX = -aX dt + σ dW (posterior) and dX = -bX dt + σ dW
    from the same x0 on [0, t1]: ½ (a - b)²/σ² ∫ E[X_t²] dt, E[X_t²] = x0² e^{-2at} +
    σ²(1 - e^{-2at})/(2a) under the posterior."""
    decay = (1 - np.exp(-2 * a * t1)) / (2 * a)
    second_moment_integral = x0**2 * decay + sigma**2 / (2 * a) * (t1 - decay)
    return 0.5 * (a - b) ** 2 / sigma**2 * second_moment_integral


def ou_kl_euler(a, b, sigma, x0, t1, dt):
    """The exact expectation of the Euler–Maruyama KL sum ½ (a-b)²/σ² Σ X_n² dt, with
    E[X_{n+1}²] = (1 - a dt)² E[X_n²] + σ² dt."""
    m, total = x0**2, 0.0
    for _ in range(round(t1 / dt)):
        total += m * dt
        m = (1 - a * dt) ** 2 * m + sigma**2 * dt
    return 0.5 * (a - b) ** 2 / sigma**2 * total


def test_euler_kl_expectation_converges_to_the_closed_form():
    # The recursion used as the Monte-Carlo test's reference is itself checked: its bias is
    # O(dt) (left Riemann sum and Euler's second moment), so 10x smaller dt, ~10x smaller error.
    exact = ou_kl_closed_form(A, B, SIGMA, X0, T)
    errors = [abs(ou_kl_euler(A, B, SIGMA, X0, T, dt) / exact - 1) for dt in (0.01, 0.001)]
    assert errors[1] < 2e-3 and 7 < errors[0] / errors[1] < 13


def test_path_kl_zero_noise_limit_is_the_deterministic_sum():
    # With σ → 0 the path is deterministic, X_n = x0 (1 - a dt)^n, and σ²·KL is the exact sum
    # ½ (a-b)² Σ X_n² dt. σ = 1e-7 perturbs X by ~1e-8: rtol 1e-6 leaves room for that only.
    sigma, dt = 1e-7, 0.01
    ts = np.linspace(0.0, T, 11)
    zs, kl = compiled(sdeint_path_kl, OU(A), OU(B), Constant(sigma), y0=jnp.array([X0]), ts=ts,
                      key=KEY, dt0=dt)  # fmt: skip
    n = np.arange(round(T / dt))
    path = X0 * (1 - A * dt) ** n
    expected = 0.5 * (A - B) ** 2 * np.cumsum(path**2 * dt)
    np.testing.assert_allclose(sigma**2 * np.asarray(kl[1:]), expected[9::10], rtol=1e-6)
    np.testing.assert_allclose(zs[1:, 0], X0 * (1 - A * dt) ** (10 * np.arange(1, 11)), rtol=1e-6)
    assert kl.shape == (11,) and zs.shape == (11, 1) and kl[0] == 0


def test_path_kl_monte_carlo_matches_the_ou_closed_form():
    # 5000 paths: the estimator's standard error is ~0.7% of the KL. Tolerance: 4 standard
    # errors (a false failure has probability ~6e-5) plus Euler's exact bias at dt = 0.002,
    # computed by `ou_kl_euler` (about 0.1% here). (The solve's run time, not its compile,
    # dominates this test and grows with the paths: 5000 paths detect a 2.8% error in the KL,
    # 10000 took twice as long to detect 2%, 20000 four times as long to detect 1.4%.)
    dt, n = 0.002, 5_000
    _, kl = compiled(sdeint_path_kl, OU(A), OU(B), Constant(SIGMA), y0=jnp.full((n, 1), X0),
                     ts=[0.0, T], key=KEY, dt0=dt, batch="vmap")  # fmt: skip
    samples = np.asarray(kl[:, -1])
    mean, se = samples.mean(), samples.std() / np.sqrt(n)
    exact = ou_kl_closed_form(A, B, SIGMA, X0, T)
    bias = abs(ou_kl_euler(A, B, SIGMA, X0, T, dt) - exact)
    assert abs(mean - ou_kl_euler(A, B, SIGMA, X0, T, dt)) < 4 * se
    assert abs(mean - exact) < 4 * se + bias


def small_model(**kwargs):
    options = dict(context=3, hidden=5, width=8, depth=1, dt0=0.05, obs_std=0.1)
    return LatentSDE(channels=2, latent=3, **{**options, **kwargs}, key=jax.random.key(1))


TS = np.array([0.1, 0.25, 0.3, 0.6, 0.9])
XS = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)))


def test_no_path_kl_when_posterior_and_prior_agree():
    model = small_model()  # the MLP prior (the learned OU prior: the gradient test below)
    model = eqx.tree_at(lambda m: m.posterior_drift, model, lambda t, z, c: model.prior_drift(t, z))
    out = eqx.filter_jit(lambda m: m.elbo(TS, XS, key=KEY, n_samples=3))(model)  # t0 = TS[0]
    assert float(out.kl_path) == 0.0 and float(out.kl_z0) > 0
    np.testing.assert_allclose(out.value, out.log_likelihood - out.kl_z0, rtol=1e-12)


def test_context_is_the_encoder_output_at_the_next_observation():
    from jaxdyn.models.latent_sde import _Posterior

    obs = jnp.array([0.1, 0.5, 0.9])
    contexts = jnp.array([[0.0], [1.0], [2.0]])
    drift = _Posterior(lambda t, z, c: c)
    at = jax.jit(lambda t: drift(t, jnp.zeros(1), (obs, contexts)))  # one program, t traced
    for t, index in ((0.0, 0), (0.1, 1), (0.3, 1), (0.5, 2), (0.9, 2), (1.2, 2)):
        assert at(t)[0] == index


def test_encoder_runs_backwards_in_time():
    model = small_model()
    encode = eqx.filter_jit(lambda m, xs: m.encode(TS, xs))  # one program for the three calls
    base = encode(model, XS)
    last = encode(model, XS.at[-1].add(1.0))
    first = encode(model, XS.at[0].add(1.0))
    assert base.shape == (5, 3)
    assert np.all(np.any(np.asarray(last != base), axis=1))  # c_k sees x_N for every k
    np.testing.assert_array_equal(first[1:], base[1:])  # only c_1 sees x_1
    assert np.any(first[0] != base[0])


def test_elbo_gradient_matches_finite_differences_under_jit_and_vmap():
    # Fixed keys: the ELBO estimate is a smooth function of the parameters. Central differences
    # in float64 with h = 1e-6 are accurate to ~1e-8 relative; rtol 1e-5 allows for that.
    # The learned OU prior (`prior="ou"`): its rate and p(z0) get a gradient (every leaf does).
    model = small_model(time_input=True, prior="ou")
    params, static = eqx.partition(model, eqx.is_inexact_array)
    xs = jnp.stack([XS, 2 * XS, -XS])
    keys = jax.random.split(KEY, 3)
    save = np.linspace(0.0, 1.2, 7)

    def objective(p):  # the ELBO vmapped over series
        m = eqx.combine(p, static)
        out = jax.vmap(lambda x, k: m.elbo(TS, x, key=k, n_samples=2, kl_weight=0.5, t0=0.0))(
            xs, keys
        )
        return jnp.sum(out.value), out

    # One compile: the finite differences, the shapes and the samples read the same program;
    # posterior and prior samples beside the gradient, forward only (not differentiated).
    @jax.jit
    def jitted(p):
        m = eqx.combine(p, static)
        post = m.sample_posterior(save, XS, TS, key=KEY, n_samples=4)
        prior = m.sample_prior(save, key=KEY, n_samples=5)
        (value, out), grads = jax.value_and_grad(objective, has_aux=True)(p)
        return (value, (out, post, prior)), grads

    def value_and_grad(p):
        (value, _), grads = jitted(p)
        return value, grads

    direction = random_direction(params, seed=3)
    analytic, numeric, leaves = directional_check(value_and_grad, params, direction, h=1e-6)
    assert all(np.all(np.isfinite(g)) for g in leaves)
    assert all(np.max(np.abs(g)) > 0 for g in leaves)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)
    out, post, prior = jitted(jax.tree.map(np.asarray, params))[0][1]
    assert all(v.shape == (3,) for v in out) and bool(np.all(np.isfinite(out.value)))
    assert post.shape == (4, 7, 3)
    assert prior.shape == (5, 7, 3) and model.decode(prior).shape == (5, 7, 2)


def test_bad_inputs_raise_clear_errors():
    model = small_model()
    with pytest.raises(ValueError, match=r"xs of shape \(time, channels\) = \(5, 2\)"):
        model.elbo(TS, XS[:, :1], key=KEY)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.elbo(TS[::-1], XS, key=KEY)
    with pytest.raises(ValueError, match="t0=0.5 must not be after"):
        model.elbo(TS, XS, key=KEY, t0=0.5)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        model.elbo(TS, XS, key=KEY, n_samples=0)
    with pytest.raises(ValueError, match="kl_weight must be a scalar"):
        model.elbo(TS, XS, key=KEY, kl_weight=jnp.ones(2))
    with pytest.raises(ValueError, match="known at trace time"):
        jax.jit(lambda ts: model.elbo(ts, XS, key=KEY).value)(TS)
    with pytest.raises(ValueError, match="at least two observation times"):
        model.elbo(TS[:1], XS[:1], key=KEY)
    with pytest.raises(ValueError, match=r"ts\[0\]=0.5 must not be after obs_ts"):
        model.sample_posterior(np.array([0.5, 1.0]), XS, TS, key=KEY)
    with pytest.raises(ValueError, match="unknown prior='gp'"):
        small_model(prior="gp")
    with pytest.raises(ValueError, match="latent must be an int >= 1, got 0"):
        LatentSDE(channels=2, latent=0, key=KEY)
    with pytest.raises(TypeError, match="positional"):  # sizes are keywords
        LatentSDE(2, 3, key=KEY)
    with pytest.raises(ValueError, match=r"z0 of shape \(2, 1\) needs batch='vmap' or 'joint'"):
        sdeint_path_kl(OU(A), OU(B), Constant(SIGMA), jnp.ones((2, 1)), TS, key=KEY, dt0=0.1)


# --- torchsde's sine setup: fixed OU prior and diffusion, time features, Laplace, t1 ----------


def torchsde_model(**kwargs):
    options = dict(context=3, hidden=5, width=8, depth=1, dt0=0.05, prior="ou_fixed",
                   diffusion="constant", diffusion_scale=0.5, time_input="sincos",
                   posterior_context=False, activation="tanh", decoder="identity",
                   likelihood="laplace", obs_std=0.05)  # fmt: skip
    model = LatentSDE(channels=1, latent=1, **{**options, **kwargs}, key=jax.random.key(2))
    return strongly_typed(model)  # the no-gradient and the FD tests share one program


XS1 = jnp.asarray(0.8 * np.sin(2 * np.pi * TS))[:, None]


@eqx.filter_jit
def torchsde_program(model):
    """`((out, expected, short), grads)`: the ELBO `out` on the sine data with its path KL
    integrated past the data (to t1 = 1.5) and its gradient in every parameter; beside it,
    forward only, the log-likelihood `expected` of `sample_posterior`'s paths at (t0, obs,
    1.5) for the same key, and the ELBO `short` with its path KL to the last observation (t1
    unset). One program for the no-gradient, the t1 and the finite-difference tests (eagerly,
    ~140 small ones)."""
    options = dict(key=KEY, n_samples=2, kl_weight=0.5, t0=0.0)

    def value(m):
        out = m.elbo(TS, XS1, t1=1.5, **options)
        return out.value, out

    (_, out), grads = eqx.filter_value_and_grad(value, has_aux=True)(model)
    zs = model.sample_posterior(np.concatenate([[0.0], TS, [1.5]]), XS1, TS, key=KEY, n_samples=2)
    expected = jnp.mean(jnp.sum(model.log_likelihood(XS1, zs[:, 1:-1]), axis=1))
    short = model.elbo(TS, XS1, **options)
    return (out, expected, short), grads


def test_constant_diffusion_is_fixed():
    g = ConstantDiffusion(latent=3, sigma=0.5)
    np.testing.assert_array_equal(g(0.0, jnp.arange(3.0)), [0.5, 0.5, 0.5])
    assert g(0.0, jnp.zeros(3, jnp.float32)).dtype == jnp.float32
    assert jax.tree.leaves(eqx.filter(g, eqx.is_inexact_array)) == []  # nothing to train
    with pytest.raises(ValueError, match="sigma must be a positive number, got 0.0"):
        ConstantDiffusion(latent=1, sigma=0.0)


def test_context_drift_inputs():
    key = jax.random.key(4)
    z, c = jnp.array([0.3, -0.2]), jnp.array([1.0, 2.0, 3.0])
    sizes = dict(latent=2, context=3, width=6)
    sincos = ContextDrift(**sizes, depth=1, time="sincos", use_context=False, key=key)
    assert sincos.mlp.in_size == 4  # (z, sin t, cos t)
    np.testing.assert_array_equal(sincos(0.7, z, c), sincos(0.7, z, 0 * c))  # ignores c
    manual = sincos.mlp(jnp.concatenate([z, jnp.sin(jnp.array([0.7])), jnp.cos(jnp.array([0.7]))]))
    np.testing.assert_allclose(sincos(0.7, z, c), manual, rtol=1e-12)
    with_t = ContextDrift(**sizes, depth=1, time=True, key=key)
    assert with_t.time == "t" and with_t.mlp.in_size == 6
    assert ContextDrift(**sizes, depth=1, key=key).mlp.in_size == 5
    zero = ContextDrift(**sizes, depth=2, time="sincos", zero_init=True, activation="tanh",
                        key=key)  # fmt: skip
    np.testing.assert_array_equal(zero(0.3, z, c), [0.0, 0.0])  # Glow's trick: starts at zero
    assert float(np.max(np.abs(zero.mlp.layers[0].weight))) > 0
    with pytest.raises(ValueError, match="unknown time input 'hours'"):
        ContextDrift(**sizes, depth=1, time="hours", key=key)
    with pytest.raises(ValueError, match="unknown activation='relu'"):
        ContextDrift(**sizes, depth=1, activation="relu", key=key)


def test_fixed_ou_prior_and_p_z0_get_no_gradient():
    model = torchsde_model()
    mean, std = model.prior_z0()
    np.testing.assert_allclose(mean, [0.0])
    np.testing.assert_allclose(std, [0.5 / np.sqrt(2.0)], rtol=1e-12)  # N(0, σ²/2θ)
    np.testing.assert_allclose(model.prior_drift(0.0, jnp.array([2.0])), [-2.0], rtol=1e-12)
    assert model.decoder is None and model.decode(jnp.ones((4, 7, 1))).shape == (4, 7, 1)

    grads = torchsde_program(model)[1]
    for fixed in (grads.prior_drift.mean, grads.prior_drift.log_rate, grads.prior_z0_mean,
                  grads.prior_z0_log_std):  # fmt: skip
        np.testing.assert_array_equal(fixed, 0.0)
    assert float(np.max(np.abs(grads.posterior_drift.mlp.layers[-1].weight))) > 0
    assert float(np.max(np.abs(grads.to_initial.weight))) > 0  # q(z0) is learned
    # The learned OU prior's rate and p(z0) do get a gradient: see
    # test_elbo_gradient_matches_finite_differences_under_jit_and_vmap (prior="ou").


def test_laplace_log_likelihood_by_hand():
    model = torchsde_model(obs_std=0.2)
    xs, zs = jnp.array([[0.5], [-1.0]]), jnp.array([[0.3], [-0.4]])
    expected = [-0.2 / 0.2 - np.log(0.4), -0.6 / 0.2 - np.log(0.4)]
    np.testing.assert_allclose(model.log_likelihood(xs, zs), expected, rtol=1e-12)
    normal = torchsde_model(obs_std=0.2, likelihood="normal")
    gauss = -0.5 * (np.array([0.2, 0.6]) / 0.2) ** 2 - np.log(0.2 * np.sqrt(2 * np.pi))
    np.testing.assert_allclose(normal.log_likelihood(xs, zs), gauss, rtol=1e-12)


def test_elbo_terms_agree_with_sample_posterior_and_t1_extends_the_path_kl():
    # The ELBO's paths are `sample_posterior`'s for the same key and times (t0, obs, t1): its
    # log-likelihood is theirs, recomputed here. Integrating the KL further only adds to it.
    model = torchsde_model(zero_init=False)
    (out, expected, short), _ = torchsde_program(model)  # shared with the tests around
    np.testing.assert_allclose(out.log_likelihood, expected, rtol=1e-10)
    assert float(out.kl_path) > float(short.kl_path) > 0
    assert float(out.kl_z0) == float(short.kl_z0)
    # t1 = ts[-1] is t1 unset: the same solve times (all the ELBO reads of t1), without a
    # second solve of the same program.
    obs = TS.astype(model._dtype)
    for t0 in (0.0, None):
        unset, last = (model._solve_times(obs, t0, t1, "ts") for t1 in (None, float(TS[-1])))
        np.testing.assert_array_equal(last[0], unset[0])
        assert last[1] == unset[1]
    with pytest.raises(ValueError, match="t1=0.5 must not be before"):
        model.elbo(TS, XS1, key=KEY, t1=0.5)


def test_torchsde_setup_gradient_matches_finite_differences():
    model = torchsde_model(zero_init=False)
    params, static = eqx.partition(model, eqx.is_inexact_array)

    # One compile (shared with the tests above): the finite differences read its values.
    def value_and_grad(p):
        (out, *_), grads = torchsde_program(eqx.combine(p, static))
        return out.value, grads

    direction = random_direction(params, seed=5)
    # The fixed prior's parameters are behind stop_gradient: not a direction to difference in.
    fixed = lambda p: (p.prior_drift.mean, p.prior_drift.log_rate, p.prior_z0_mean,  # noqa: E731
                       p.prior_z0_log_std)  # fmt: skip
    direction = eqx.tree_at(fixed, direction, replace_fn=np.zeros_like)
    analytic, numeric, _ = directional_check(value_and_grad, params, direction, h=1e-6)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_new_options_raise_clear_errors():
    with pytest.raises(ValueError, match="decoder='identity' needs latent == channels"):
        LatentSDE(channels=2, latent=3, decoder="identity", key=KEY)
    with pytest.raises(ValueError, match="unknown diffusion='fixed'"):
        torchsde_model(diffusion="fixed")
    with pytest.raises(ValueError, match="unknown likelihood='cauchy'"):
        torchsde_model(likelihood="cauchy")
    with pytest.raises(ValueError, match="ou_rate must be a positive number"):
        torchsde_model(ou_rate=0.0)


def test_exponential_learning_rate_decay(tmp_path):
    # SGD on a linear loss: the update at step n is -lr · decay^n · gradient.
    from omegaconf import OmegaConf

    from jaxdyn.experiments._training import fit_from_config

    train = OmegaConf.create(dict(optimizer="sgd", lr=0.1, lr_decay=0.5, schedule="constant",
                                  steps=3, batch_size=None, chunk=3, checkpoint_every=1,
                                  devices=None, parallel="compiler"))  # fmt: skip

    def loss_fn(model, step, batch, key):
        return jnp.sum(2.0 * model), {"step": step}

    result = fit_from_config(loss_fn, jnp.zeros(2), jnp.ones((1, 1)), train, key=KEY,
                             run_dir=tmp_path, resume=False, has_aux=True,
                             with_step=True)  # fmt: skip
    np.testing.assert_allclose(result.model.model, -0.1 * 2.0 * (1 + 0.5 + 0.25), rtol=1e-6)
    assert float(result.model.step) == 3.0
    with pytest.raises(ValueError, match="train.lr_decay=0.5 replaces the schedule"):
        cosine = OmegaConf.merge(train, {"schedule": "cosine"})
        fit_from_config(loss_fn, jnp.zeros(2), jnp.ones((1, 1)), cosine, key=KEY,
                        run_dir=tmp_path, resume=False, with_step=True)  # fmt: skip
