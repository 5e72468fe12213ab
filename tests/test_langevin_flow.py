"""LangevinFlow and the GRU sequential VAE: shapes, jit, gradients, the Langevin drift and
potential against finite differences, energy conservation/dissipation, coupling structure,
errors. (x64 is on in conftest.)"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gradient_by_central_differences
from scipy.stats import poisson

from jaxdyn.models.langevin_flow import (
    CoupledOscillatorPotential,
    LangevinDynamics,
    LangevinFlow,
    TransformerDecoder,
)
from jaxdyn.models.seq_vae import (
    BidirectionalGRU,
    SequentialVAE,
    gaussian_kl,
    poisson_log_likelihood,
)

KEY = jax.random.key(0)
T, IN, OUT = 12, 5, 7


def _spikes(shape=(T, IN)):
    """Poisson(0.5) counts drawn by NumPy (an eager `jax.random.poisson` compiles a program
    per shape)."""
    return np.random.default_rng(1).poisson(0.5, shape).astype(np.float64)


def _models(**options):
    lf = LangevinFlow(in_neurons=IN, out_neurons=OUT, units=4, inputs=2, encoder_hidden=8,
                      decoder_width=8, key=KEY, **options)  # fmt: skip
    vae = SequentialVAE(in_neurons=IN, out_neurons=OUT, encoder_hidden=8, generator_hidden=8,
                        latent=3, key=KEY)  # fmt: skip
    return {"langevin_flow": lf, "seq_vae": vae}


def _dynamics(units=5, damping=0.5, noise=0.1, key=KEY):
    kp, kd = jax.random.split(key)
    return LangevinDynamics(CoupledOscillatorPotential(units=units, key=kp), inputs=2,
                            damping=damping, noise=noise, key=kd)  # fmt: skip


@eqx.filter_jit
def _batch_and_grad(model, spikes, keys):
    """The model vmapped over trials (one key each) and the gradient of the batch's negative
    ELBO: one program per model for the shape, key, jit/vmap and gradient checks (un-jitted
    calls would run Diffrax's solve eagerly)."""

    def loss(m):
        o = jax.vmap(lambda s, k: m(s, key=k))(spikes, keys)
        full = jnp.concatenate([spikes, spikes[..., :2]], axis=-1)  # OUT = IN + 2 targets
        return -poisson_log_likelihood(o.log_rates, full) + jnp.sum(o.kl), o

    return eqx.filter_value_and_grad(loss, has_aux=True)(model)


# The same trial twice, under two keys.
BATCH, KEYS = np.stack([_spikes(), _spikes()]), jax.random.split(KEY, 2)


@pytest.mark.parametrize("name", ["langevin_flow", "seq_vae"])
def test_shapes_keys_jit_vmap_and_finite_gradients(name):
    model = _models()[name]
    (_, out), grads = _batch_and_grad(model, BATCH, KEYS)
    latent = 4 if name == "langevin_flow" else 3
    assert out.log_rates.shape == (2, T, OUT) and out.latents.shape == (2, T, latent)
    assert out.kl.shape == (2,) and np.all(np.asarray(out.kl) >= 0.0)  # sums of KLs
    assert np.all(np.isfinite(out.log_rates))
    leaves = jax.tree.leaves(eqx.filter(grads, eqx.is_inexact_array))
    assert leaves and all(np.all(np.isfinite(g)) for g in leaves)
    assert any(np.any(g != 0) for g in leaves)
    # Same key, same sample; another key (the second row, same trial), another sample.
    (_, again), _ = _batch_and_grad(model, BATCH, KEYS)
    assert np.array_equal(out.log_rates, again.log_rates)
    assert not np.allclose(out.log_rates[0], out.log_rates[1])


def test_langevin_flow_failed_latent_solve_follows_on_failure():
    """A potential far too stiff for the Euler step (k = e^200, dt = 0.1) sends the latent
    path out of the finite numbers: with `on_failure="nan"` the sample's rates are NaN (to be
    counted), with the default `"raise"` the call fails naming the failure."""
    # full_like keeps the leaf strongly typed (jnp.full(4, 200.0) is weak): the "raise" model
    # then shares the shape test's program; only on_failure="nan" compiles anew (forward only).
    stiff = lambda m: eqx.tree_at(  # noqa: E731
        lambda m: m.dynamics.potential.log_stiffness,
        m,
        replace_fn=lambda k: jnp.full_like(k, 200.0),
    )
    model = stiff(_models()["langevin_flow"])
    assert model.on_failure == "raise"
    with pytest.raises(RuntimeError, match="sdeint: NaN or Inf in the state"):
        _batch_and_grad(model, BATCH, KEYS)[0][1].log_rates.block_until_ready()
    sample = eqx.filter_jit(lambda model, spikes, key: model(spikes, key=key))
    out = sample(stiff(_models(on_failure="nan")["langevin_flow"]), _spikes(), KEY)
    assert np.all(np.isnan(out.log_rates)) and np.all(np.isnan(out.latents))


def test_potential_gradient_matches_finite_differences():
    potential = CoupledOscillatorPotential(units=6, key=KEY)
    x = np.random.default_rng(2).normal(size=6)
    grad = eqx.filter_jit(lambda p, x: p.gradient(x))(potential, x)  # one program, not one per op
    fd = gradient_by_central_differences(potential, x, h=1e-6)
    # central differences in float64: error O(h²·U''') + rounding O(1e-16/h) ≈ 1e-9
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-8)


def test_potential_closed_form():
    potential = CoupledOscillatorPotential(units=4, key=KEY)
    x = np.array([0.3, -1.2, 2.0, 0.1])
    k, c = np.exp(potential.log_stiffness), np.exp(potential.log_coupling)
    a = np.asarray(potential.anharmonicity)
    xn = np.asarray(x)
    expected = sum(0.5 * k[i] * xn[i] ** 2 + a[i] * np.log(np.cosh(xn[i])) for i in range(4))
    expected += sum(0.5 * c[i] * (xn[i] - xn[(i + 1) % 4]) ** 2 for i in range(4))
    energy = eqx.filter_jit(lambda p, x: p(x))  # one program for both calls
    np.testing.assert_allclose(energy(potential, xn), expected, rtol=1e-12)
    # log cosh without overflow for large |x|
    assert np.isfinite(energy(potential, np.full(4, 800.0)))


def test_potential_coupling_is_nearest_neighbour_on_a_ring():
    units = 6
    potential = CoupledOscillatorPotential(units=units, key=KEY)
    x = jax.random.normal(jax.random.key(3), (units,))
    hessian = np.asarray(jax.jit(jax.hessian(potential))(x))  # one compile, not one per op
    for i in range(units):
        for j in range(units):
            neighbours = (i - j) % units in (1, units - 1)
            if i != j and not neighbours:
                assert hessian[i, j] == 0.0
            if neighbours:  # ∂²U/∂x_i∂x_{i+1} = -c_i
                c = np.exp(potential.log_coupling)[min(i, j) if abs(i - j) == 1 else units - 1]
                np.testing.assert_allclose(hessian[i, j], -c, rtol=1e-12)


# The drift as one program (the time traced): not one small program per eager operation.
_drift = eqx.filter_jit(lambda dyn, t, y, args: dyn.drift(jnp.asarray(t), y, args))


@eqx.filter_jit
def _without_inputs(dyn, y):
    """The drift without inputs, ∇U at the position, and the diffusion: one program."""
    return (
        dyn.drift(0.0, y, None),
        dyn.potential.gradient(y[: dyn.units]),
        dyn.diffusion(0.0, y, None),
    )


def test_drift_is_minus_grad_u_minus_damping_v_plus_input_force():
    dyn = _dynamics()
    n = dyn.units
    rng = np.random.default_rng(4)  # NumPy draws and sums: no eager programs
    y, u = rng.normal(size=2 * n), rng.normal(size=(10, 2))
    x, v = y[:n], y[n:]
    input_map = np.asarray(dyn.input_map)
    dt = 0.1
    # ∇U by central differences (float64), independent of jax.grad
    grad = gradient_by_central_differences(dyn.potential, x, h=1e-6)
    for t, k in ((0.0, 0), (0.35, 3), (0.7, 7), (0.95, 9), (5.0, 9)):
        f = _drift(dyn, jnp.asarray(t), y, (0.0, dt, u))
        expected_dv = -grad - float(dyn.damping) * v + input_map @ u[k]
        np.testing.assert_allclose(f[:n], v, rtol=0, atol=0)
        np.testing.assert_allclose(f[n:], expected_dv, rtol=1e-7, atol=1e-7)
    no_input, gradient, g = _without_inputs(dyn, y)
    np.testing.assert_allclose(no_input[n:], -gradient - float(dyn.damping) * v)
    assert g.shape == (2 * n, n)
    np.testing.assert_allclose(g, np.vstack([np.zeros((n, n)), float(dyn.noise) * np.eye(n)]))


# A simulated path and its energy as one program per grid (`ts` a tuple, known at trace
# time): un-jitted, `simulate` runs dozens of small operations eagerly around the solve.
@eqx.filter_jit
def _simulate(dyn, y0, ts, key, inputs=None, substeps=1):
    ys = dyn.simulate(y0, np.asarray(ts), key=key, inputs=inputs, substeps=substeps)
    return ys, jax.vmap(dyn.energy)(ys)


def _energy_path(dyn, dt, horizon=1.0):
    ts = np.linspace(0.0, horizon, round(horizon / dt) + 1)
    y0 = np.concatenate([np.linspace(-0.8, 0.8, dyn.units), np.linspace(0.5, -0.5, dyn.units)])
    ys, energy = _simulate(dyn, y0, tuple(ts.tolist()), KEY)
    return ts, np.asarray(ys), np.asarray(energy)


def test_energy_conserved_without_damping_noise_and_inputs():
    dyn = _dynamics(damping=1e-300, noise=1e-300)
    errors = []
    # dt = 0.001 is also the damping test's grid: the same program, compiled once.
    for dt in (0.002, 0.001):
        _, _, energy = _energy_path(dyn, dt)
        errors.append(float(np.max(np.abs(energy - energy[0]))) / float(energy[0]))
    # Euler is first order: the energy error halves with the step (ratio 2 ± 10%)
    assert errors[-1] < 0.02
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 1.8 < coarse / fine < 2.2


def test_energy_dissipated_by_damping():
    gamma = 0.8
    dyn = _dynamics(damping=gamma, noise=1e-300)
    ts, ys, energy = _energy_path(dyn, 0.001)
    n = dyn.units
    assert np.all(np.diff(np.asarray(energy)) < 0)  # strictly decreasing at this step
    # dE/dt = -γ|v|²: the energy lost equals γ ∫|v|² dt (trapezoid), up to O(dt)
    speed2 = np.sum(ys[:, n:] ** 2, axis=1)
    lost = gamma * float(np.sum(0.5 * (speed2[1:] + speed2[:-1]) * np.diff(ts)))
    np.testing.assert_allclose(float(energy[0] - energy[-1]), lost, rtol=5e-3)


def test_inputs_are_piecewise_constant_per_bin():
    dyn = _dynamics(damping=1e-300, noise=1e-300)
    u = np.zeros((4, 2))
    u[2] = [1.0, -1.0]
    ts = np.linspace(0.0, 0.4, 5)
    ys, _ = _simulate(dyn, np.zeros(2 * dyn.units), tuple(ts.tolist()), KEY, u, substeps=3)
    # Nothing moves before bin 2; the force acts on [0.2, 0.3) only.
    np.testing.assert_allclose(ys[:3], 0.0, rtol=0, atol=1e-250)  # σ = 1e-300, not 0
    assert np.any(ys[3] != 0.0)


def test_gaussian_kl_and_poisson_likelihood_closed_forms():
    mean, log_var, s = jnp.array([0.3, -1.0]), jnp.array([-0.5, 0.4]), 0.7
    sd = np.exp(0.5 * np.asarray(log_var))
    expected = np.sum(np.log(s / sd) + (sd**2 + np.asarray(mean) ** 2) / (2 * s**2) - 0.5)
    np.testing.assert_allclose(gaussian_kl(mean, log_var, s), expected, rtol=1e-12)
    assert float(gaussian_kl(jnp.zeros(3), jnp.zeros(3))) == 0.0
    counts, log_rates = jnp.array([0.0, 1.0, 4.0]), jnp.array([-1.0, 0.2, 1.5])
    expected = np.sum(poisson.logpmf(np.asarray(counts), np.exp(np.asarray(log_rates))))
    np.testing.assert_allclose(poisson_log_likelihood(log_rates, counts), expected, rtol=1e-12)


def test_bidirectional_gru_directions():
    enc = BidirectionalGRU(inputs=IN, hidden=6, key=KEY)
    encode = eqx.filter_jit(lambda enc, spikes: enc(spikes))  # one program for both calls
    spikes = _spikes()
    features, summary = encode(enc, spikes)
    assert features.shape == (T, 12) and summary.shape == (12,)
    # the forward half at t depends on s_{≤t} only, the backward half on s_{≥t}
    changed = spikes.copy()
    changed[-1] += 3.0
    features2, _ = encode(enc, changed)
    np.testing.assert_array_equal(features[:-1, :6], features2[:-1, :6])
    assert not np.allclose(features[:-1, 6:], features2[:-1, 6:])


def test_errors():
    models = _models()
    for model in models.values():
        with pytest.raises(ValueError, match="spikes of shape"):
            model(_spikes((T, IN + 1)), key=KEY)
        with pytest.raises(ValueError, match="spikes of shape"):
            model(_spikes((2, T, IN)), key=KEY)
        with pytest.raises(TypeError, match="positional"):  # key is keyword-only
            model(_spikes(), KEY)
    neurons = dict(in_neurons=IN, out_neurons=OUT)
    with pytest.raises(ValueError, match="units"):
        LangevinFlow(**neurons, units=0, key=KEY)
    with pytest.raises(ValueError, match="dt"):
        LangevinFlow(**neurons, dt=0.0, key=KEY)
    # The decoder reads x alone by default, or [x, v, encoder features] (2·4 + 2·8).
    assert models["langevin_flow"].decoder.embed.in_features == 4
    state = _models(decoder_reads="state")["langevin_flow"]
    assert state.decoder.embed.in_features == 24
    log_rates = eqx.filter_jit(lambda m, s: m(s, key=KEY).log_rates)(state, _spikes())
    assert log_rates.shape == (T, OUT) and np.all(np.isfinite(log_rates))
    with pytest.raises(ValueError, match="decoder_reads in"):
        LangevinFlow(**neurons, decoder_reads="velocity", key=KEY)
    with pytest.raises(ValueError, match="unknown on_failure='ignore'"):
        LangevinFlow(**neurons, on_failure="ignore", key=KEY)
    with pytest.raises(ValueError, match="latent must be an int >= 1, got 0"):
        SequentialVAE(**neurons, latent=0, key=KEY)
    with pytest.raises(TypeError, match="positional"):  # sizes are keywords
        SequentialVAE(IN, OUT, key=KEY)
    with pytest.raises(ValueError, match="divisible"):
        TransformerDecoder(latent=3, out=4, width=10, heads=3, key=KEY)
    with pytest.raises(ValueError, match="frequency_range"):
        CoupledOscillatorPotential(units=3, frequency_range=(2.0, 1.0), key=KEY)
    with pytest.raises(ValueError, match="damping"):
        _dynamics(damping=0.0)
    dyn = _dynamics()
    with pytest.raises(ValueError, match="inputs must have shape"):
        dyn.simulate(jnp.zeros(10), np.linspace(0, 1, 5), key=KEY, inputs=jnp.zeros((4, 3)))
    with pytest.raises(ValueError, match="y0 of shape"):
        dyn.simulate(jnp.zeros(4), np.linspace(0, 1, 5), key=KEY)
