"""PINN building blocks (`jaxdyn.physics`): residuals of exact solutions vanish, the periodic
embedding is exactly periodic, Fourier features have their shapes and scale, causal weights and
grad-norm weights match their closed forms (float64, tests/conftest.py)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.physics import (
    FactorizedLinear,
    FourierFeatures,
    GradNormState,
    PeriodicEmbedding,
    anneal_causal_epsilon,
    causal_weights,
    chunk_losses,
    derivatives,
    factorize_mlp,
    grad_norm_weights,
    gradient_norms,
    pde_residual,
    update_grad_norm_weights,
)

BETA = 30.0
POINTS = jax.random.uniform(jax.random.key(0), (2, 16), minval=-1.0, maxval=2 * math.pi)


def test_advection_residual_of_exact_solution_vanishes():
    t, x = POINTS

    def u(t, x):
        return jnp.sin(x - BETA * t)

    r = pde_residual(u, lambda d, t, x: d.u_t + BETA * d.u_x, t, x, order=1)
    # exact derivatives in float64: only rounding of terms of size β = 30 is left
    np.testing.assert_allclose(r, 0.0, atol=1e-12)
    d = derivatives(u, t, x, order=1)
    assert d.u_xx is None
    np.testing.assert_allclose(d.u_x, np.cos(x - BETA * t), rtol=1e-13)


def test_heat_residual_and_second_derivatives_match_closed_forms():
    t, x = POINTS
    nu, k = 0.3, 2.0

    def u(t, x):  # solves u_t = ν u_xx
        return jnp.exp(-nu * k**2 * t) * jnp.sin(k * x)

    r, d = jax.jit(lambda t, x: (pde_residual(u, lambda d, t, x: d.u_t - nu * d.u_xx, t, x),
                                 derivatives(u, t, x)))(t, x)  # fmt: skip
    np.testing.assert_allclose(r, 0.0, atol=1e-12)
    decay = np.exp(-nu * k**2 * t)
    np.testing.assert_allclose(d.u_tt, (nu * k**2) ** 2 * decay * np.sin(k * x), atol=1e-12)
    np.testing.assert_allclose(d.u_tx, -nu * k**3 * decay * np.cos(k * x), atol=1e-12)


def test_residual_of_a_network_is_differentiable_in_its_parameters():
    """The residual loss's parameter gradient against central differences of one weight."""
    mlp = eqx.nn.MLP(2, "scalar", 8, 2, activation=jnp.tanh, key=jax.random.key(1))
    t, x = POINTS

    def loss(scale):
        net = eqx.tree_at(lambda m: m.layers[0].weight, mlp, mlp.layers[0].weight * scale)
        r = pde_residual(lambda t, x: net(jnp.stack([t, x])),
                         lambda d, t, x: d.u_t - 0.1 * d.u_xx + d.u**3, t, x)  # fmt: skip
        return jnp.mean(r**2)

    h = 1e-5  # central differences in float64: error O(h²) ≈ 1e-10 relative

    @jax.jit  # one compilation (eagerly the vmapped Hessians dispatch op by op: ~10x slower)
    def gradient_and_difference():
        return jax.grad(loss)(1.0), (loss(1 + h) - loss(1 - h)) / (2 * h)

    g, fd = gradient_and_difference()
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_derivatives_reject_bad_order_and_shapes():
    with pytest.raises(ValueError, match="order"):
        derivatives(lambda t, x: t * x, jnp.zeros(3), jnp.zeros(3), order=3)
    with pytest.raises(ValueError, match="same length"):
        derivatives(lambda t, x: t * x, jnp.zeros(3), jnp.zeros(4))


def test_periodic_embedding_is_exactly_periodic():
    emb = PeriodicEmbedding(period=2.0, harmonics=3)
    x = jnp.linspace(-1.0, 1.0, 7)
    e = emb(x)
    assert e.shape == (7, 6) and emb.size == 6
    # x and x + period: the same features up to rounding of the phase kωx (|kωx| ≤ 3π·3)
    np.testing.assert_allclose(emb(x + 2.0), e, atol=1e-13)
    np.testing.assert_allclose(e[:, 2], np.cos(3 * np.pi * x), atol=1e-14)
    np.testing.assert_allclose(e[:, 3], np.sin(np.pi * x), atol=1e-14)
    # so are all derivatives of a network of it
    mlp = eqx.nn.MLP(6, "scalar", 8, 2, activation=jnp.tanh, key=jax.random.key(2))
    u_xx = jax.jit(lambda x: derivatives(lambda t, x: mlp(emb(x)) * t, jnp.ones(7), x).u_xx)
    np.testing.assert_allclose(u_xx(x + 2.0), u_xx(x), atol=1e-11)


def test_fourier_features_shapes_scale_and_frozen_matrix():
    ff = FourierFeatures(3, features=4000, scale=5.0, key=jax.random.key(3))
    assert ff.matrix.shape == (4000, 3) and ff.size == 8000
    z = jnp.array([0.1, -0.2, 0.3])
    out = ff(z)
    assert out.shape == (8000,)
    np.testing.assert_allclose(out[:4000] ** 2 + out[4000:] ** 2, 1.0, rtol=1e-13)
    # entries N(0, 25): the sample sd of 12,000 draws is within ±3 standard errors (5/√24000)
    assert abs(float(jnp.std(ff.matrix)) - 5.0) < 3 * 5.0 / math.sqrt(2 * 12_000)
    g = jax.grad(lambda f: jnp.sum(f(z)))(ff)
    assert float(jnp.max(jnp.abs(g.matrix))) == 0.0  # held behind stop_gradient
    with pytest.raises(TypeError, match="key"):
        FourierFeatures(3, features=2, scale=1.0, key=0)


def test_causal_weights_closed_form_monotone_and_no_gradient():
    losses = jnp.array([0.5, 0.2, 1.0, 0.1])
    w = causal_weights(losses, 2.0)
    expected = np.exp(-2.0 * np.array([0.0, 0.5, 0.7, 1.7]))
    np.testing.assert_allclose(w, expected, rtol=1e-14)
    assert float(w[0]) == 1.0 and bool(jnp.all(jnp.diff(w) <= 0))
    # the weighted loss's gradient is the weights themselves: nothing flows through w
    g = jax.grad(lambda ls: jnp.sum(causal_weights(ls, 2.0) * ls))(losses)
    np.testing.assert_allclose(g, expected, rtol=1e-14)


def test_chunk_losses_sort_by_time_and_annealing():
    t = jnp.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2])
    r = jnp.array([6.0, 1.0, 4.0, 3.0, 5.0, 2.0])  # residual = rank of t
    np.testing.assert_allclose(chunk_losses(r, t, chunks=3), [2.5, 12.5, 30.5])
    with pytest.raises(ValueError, match="chunks"):
        chunk_losses(r, t, chunks=4)
    assert float(anneal_causal_epsilon(1.0, jnp.array([1.0, 0.995]))) == 10.0
    assert float(anneal_causal_epsilon(1.0, jnp.array([1.0, 0.5]))) == 1.0
    assert float(anneal_causal_epsilon(50.0, jnp.array([1.0, 1.0]))) == 100.0


def test_grad_norm_weights_closed_form():
    """L_1 = a·θ₀², L_2 = b·(θ₀ + θ₁) at θ = (1, 2): ‖g_1‖ = 2a, ‖g_2‖ = b√2."""
    a, b = 3.0, 0.5
    theta = jnp.array([1.0, 2.0])
    norms = gradient_norms(lambda th: jnp.stack([a * th[0] ** 2, b * (th[0] + th[1])]), theta)
    np.testing.assert_allclose(norms, [2 * a, b * math.sqrt(2)], rtol=1e-14)
    lam = grad_norm_weights(norms)
    np.testing.assert_allclose(lam * norms, float(jnp.sum(norms)), rtol=1e-14)  # equal terms
    state = update_grad_norm_weights(GradNormState.init(2), norms, momentum=0.9)
    np.testing.assert_allclose(state.weights, 0.9 + 0.1 * np.asarray(lam), rtol=1e-14)
    assert int(state.count) == 1


def test_factorized_linear_reproduces_its_layer_with_the_factorised_gradient():
    """Random weight factorisation: diag(exp s) V = W₀ at initialisation, and for
    L = ½‖y‖², y = diag(exp s) V x + b, the closed forms ∂L/∂s = exp(s) ⊙ (V x) ⊙ y and
    ∂L/∂V = diag(exp s) y xᵀ; `factorize_mlp` leaves an MLP's function unchanged."""
    k0, k1, k2, k3 = jax.random.split(jax.random.key(3), 4)
    linear = eqx.nn.Linear(3, 4, key=k0)
    layer = FactorizedLinear(linear, mean=1.0, std=0.1, key=k1)
    x = jnp.array([0.3, -1.2, 0.7])
    np.testing.assert_allclose(layer.weight, linear.weight, rtol=1e-14)
    np.testing.assert_allclose(layer(x), linear(x), rtol=1e-13)
    assert 0.5 < float(jnp.min(layer.log_scale)) and float(jnp.max(layer.log_scale)) < 1.5
    y = layer(x)
    grads = jax.grad(lambda m: 0.5 * jnp.sum(m(x) ** 2))(layer)
    scale = jnp.exp(layer.log_scale)
    np.testing.assert_allclose(grads.log_scale, scale * (layer.direction @ x) * y, rtol=1e-12)
    np.testing.assert_allclose(grads.direction, scale[:, None] * jnp.outer(y, x), rtol=1e-12)
    np.testing.assert_allclose(grads.bias, y, rtol=1e-12)

    mlp = eqx.nn.MLP(2, "scalar", 5, 2, activation=jnp.tanh, key=k2)
    factorized = factorize_mlp(mlp, key=k3)
    assert all(isinstance(m, FactorizedLinear) for m in factorized.layers)
    points = jax.random.normal(k0, (7, 2))
    np.testing.assert_allclose(jax.vmap(factorized)(points), jax.vmap(mlp)(points), rtol=1e-12)
    with pytest.raises(TypeError, match="equinox.nn.Linear"):
        FactorizedLinear(mlp, key=k1)
    with pytest.raises(ValueError, match="std"):
        FactorizedLinear(linear, std=-1.0, key=k1)


def test_pinn_schedules_end_at_their_final_rate():
    """ "exponential" and "cosine" go from lr to final_lr over the run's steps; "decay" is
    jaxpi's lr · rate^(k / decay_steps)."""
    from jaxdyn.experiments._pinn import TrainConfig, schedule

    for kind in ("exponential", "cosine"):
        cfg = TrainConfig(steps=1000, lr=1e-2, final_lr=1e-5, schedule=kind)
        np.testing.assert_allclose(
            [float(schedule(cfg)(k)) for k in (0, 1000)], [1e-2, 1e-5], rtol=1e-6
        )
    cfg = TrainConfig(lr=1e-3, decay_rate=0.9, decay_steps=100, schedule="decay")
    np.testing.assert_allclose(float(schedule(cfg)(250)), 1e-3 * 0.9**2.5, rtol=1e-6)


def test_accelerator_allen_cahn_config_loads_with_jaxpi_sizes():
    """configs/accelerator/pinn_allen_cahn.yaml (not run on CPU) validates against the schema."""
    from pathlib import Path

    from jaxdyn import experiments

    path = Path(__file__).resolve().parent.parent / "configs/accelerator/pinn_allen_cahn.yaml"
    experiment, cfg = experiments.load(path)
    assert experiment.name == cfg.experiment == "pinn_allen_cahn"
    assert (cfg.network.width, cfg.network.depth, cfg.train.steps) == (256, 4, 200_000)
