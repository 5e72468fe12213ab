"""Stable neural SDEs (Oh, Lim & Kim 2024), the GRU-Δt baseline and the UEA loader
(float64, see conftest.py)."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import directional_check, random_direction

from jaxdyn.data import (
    UEA_DATASETS,
    augment,
    drop_observations,
    hermite_coefficients,
    uea,
    uea_split,
)
from jaxdyn.models.gru import GRUDeltaT
from jaxdyn.models.stable_sde import (
    ControlledDrift,
    ControlledNeuralSDE,
    NeuralGSDE,
    NeuralLNSDE,
    NeuralLSDE,
    TimeDiffusion,
)
from jaxdyn.solve import sdeint

KEY = jax.random.key(0)
CLASSES = [NeuralLSDE, NeuralLNSDE, NeuralGSDE, ControlledNeuralSDE]
TS = jnp.linspace(0.0, 1.0, 9)
CHANNELS, HIDDEN, OUT = 3, 4, 2  # 3 = time + 2 values


@functools.partial(jax.jit, static_argnums=(0, 1, 2))  # one program, not one per operation
def series(batch: int = 3, rate: float = 0.3, seed: int = 0):
    """Hermite coefficients of `batch` noisy series on TS with a fraction `rate` dropped."""
    rng = np.random.default_rng(seed)
    values = jnp.asarray(rng.normal(size=(batch, TS.shape[0], CHANNELS - 1)))
    values = drop_observations(values, rate, key=jax.random.key(seed))
    return hermite_coefficients(TS, augment(TS, values))


def build(cls, out=OUT, **kwargs):
    options = dict(channels=CHANNELS, hidden=HIDDEN, out=out, width=8, depth=1, dt0=0.125)
    return cls(**{**options, **kwargs}, key=KEY)


def one(coefficients, i: int = 0):
    """Series `i`, sliced in NumPy (eager jnp indexing compiles a program per shape)."""
    traced = any(isinstance(c, jax.core.Tracer) for c in coefficients)
    return tuple(c[i] if traced else np.asarray(c)[i] for c in coefficients)


# --- shapes, jit, vmap, gradients ----------------------------------------------------------


@eqx.filter_jit
def loss_and_grad(model, coefficients, keys):
    """The batch's logits (the model vmapped over series and keys) and the gradient of their
    mean square: one program per class serves the shape, vmap and gradient checks."""

    def loss(model):
        logits = jax.vmap(lambda c, k: model(TS, c, key=k))(coefficients, keys)
        return jnp.mean(logits**2), logits

    return eqx.filter_value_and_grad(loss, has_aux=True)(model)


def batch_program(model):
    """`(value_and_grad, params, logits)`: `loss_and_grad` of `model` on `series()` as a
    function of its parameters (NumPy leaves: never weakly typed, so one program), and the
    batch's logits there."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = jax.tree.map(np.asarray, params)
    coefficients, keys = series(), jax.random.split(KEY, 3)

    def value_and_grad(p):
        (loss, _), grads = loss_and_grad(eqx.combine(p, static), coefficients, keys)
        return loss, grads

    return value_and_grad, params, loss_and_grad(eqx.combine(params, static), coefficients, keys)


@pytest.mark.parametrize("cls", CLASSES)
def test_jit_vmap_shapes_and_gradients_match_finite_differences(cls):
    """With the keys fixed, the Euler paths are smooth functions of the parameters: the
    gradient of the vmapped batch's loss matches central differences (float64, h = 1e-6:
    truncation ~1e-12, round-off ~1e-10) along a random direction in every parameter and
    along the diffusion's scale logit θ alone (the noise reaches the readout)."""
    value_and_grad, params, ((loss, logits), grads) = batch_program(build(cls))
    assert logits.shape == (3, OUT) and bool(np.isfinite(loss))
    grads = [np.asarray(g) for g in jax.tree.leaves(eqx.filter(grads, eqx.is_array))]
    assert all(bool(np.all(np.isfinite(g))) for g in grads)  # NumPy: no eager programs
    assert any(float(np.max(np.abs(g))) > 0 for g in grads)
    theta = eqx.tree_at(lambda p: p.diffusion.theta, jax.tree.map(np.zeros_like, params),
                        np.ones(()))  # fmt: skip
    for direction in (random_direction(params, seed=1), theta):
        autodiff, difference, _ = directional_check(value_and_grad, params, direction)
        assert autodiff == pytest.approx(difference, rel=1e-6, abs=1e-9)
    assert abs(autodiff) > 1e-6  # along θ: the noise reaches the readout


def test_one_series_matches_its_row_of_the_batch():
    """What the classes share (`_PathSDEClassifier`), checked once: one series alone gives
    its row of the vmapped batch (same key, same Brownian path; float64 round-off only),
    `out=None` returns the state, and `solve` saves the state where asked."""
    model = build(NeuralLSDE)
    assert model.max_steps is None  # sdeint's default
    coefficients, keys = series(), jax.random.split(KEY, 3)
    logits = batch_program(model)[2][0][1]  # the gradient test's program

    @eqx.filter_jit  # one program (TS closed over: known at trace time)
    def alone(model, bare, c, key):
        return model(TS, c, key=key), bare(TS, c, key=key), model.solve(TS, c, key=key,
                                                                        save_ts=TS)  # fmt: skip

    logit, state, sol = alone(model, build(NeuralLSDE, out=None), one(coefficients, 1), keys[1])
    np.testing.assert_allclose(logit, logits[1], rtol=1e-12, atol=1e-12)
    assert state.shape == (HIDDEN,)
    assert sol.ys.shape == (TS.shape[0], HIDDEN) and bool(sol.succeeded)


# --- the stable classes' structure ---------------------------------------------------------


def test_lsde_diffusion_does_not_depend_on_the_state():
    model = build(NeuralLSDE)
    path = model._path(TS, one(series()))
    z = np.asarray(jax.random.normal(KEY, (HIDDEN,)))

    @jax.jit  # one program for every t (eager, each operation compiles on its own)
    def diffusion_and_jacobian(t, y):
        g = lambda y: model._sde_diffusion(t, y, path)  # noqa: E731
        return g(y), jax.jacfwd(g)(y)

    for t in (0.0, 0.4, 1.0):
        g, jacobian = diffusion_and_jacobian(t, z)
        np.testing.assert_array_equal(g, diffusion_and_jacobian(t, 100.0 * z - 3.0)[0])
        np.testing.assert_array_equal(jacobian, 0.0)
    assert model.noise == "additive"


def test_lnsde_diffusion_is_linear_in_the_state():
    """g(t, a z1 + b z2) = a g(t, z1) + b g(t, z2), and g(t, z) = σ(t) ⊙ z (exact up to
    float64 round-off)."""
    model = build(NeuralLNSDE)
    path = model._path(TS, one(series()))
    z1, z2 = jax.random.normal(KEY, (2, HIDDEN))
    a, b = 2.5, -0.7
    for t in (0.0, 0.4, 1.0):
        g = lambda z, t=t: model._sde_diffusion(t, z, path)  # noqa: E731
        np.testing.assert_allclose(g(a * z1 + b * z2), a * g(z1) + b * g(z2), rtol=1e-13,
                                   atol=1e-13)  # fmt: skip
        np.testing.assert_allclose(g(z1), model.diffusion(t) * z1, rtol=1e-15)
    np.testing.assert_array_equal(model._sde_diffusion(0.3, jnp.zeros(HIDDEN), path), 0.0)


def _noisy(model, sigma_logit: float = 8.0):
    """The model with σ(t) ≈ 1 everywhere: the last diffusion layer's bias set high."""
    bias = lambda m: m.diffusion.mlp.layers[-1].bias  # noqa: E731
    return eqx.tree_at(bias, model, jnp.full(HIDDEN, sigma_logit))


def test_gsde_keeps_the_state_positive_where_euler_in_z_does_not():
    """With σ ≈ 1 and a coarse step (dt0 = 1 on [0, 8]), Euler–Maruyama on dz = zγ dt + zσ dW
    crosses zero (a step multiplies z by 1 + γ dt + σ ΔW, negative when ΔW < -1 - γ); the
    GSDE, solved for log z, stays positive on every path."""
    ts = jnp.linspace(0.0, 8.0, 9)  # closed over below: known at trace time
    model = _noisy(build(NeuralGSDE, dt0=1.0))

    @jax.jit  # one program (eager, every operation and every primitive under vmap is its own)
    def gsde_and_euler():
        values = jax.random.normal(KEY, (ts.shape[0], CHANNELS - 1))
        coefficients = hermite_coefficients(ts, augment(ts, values))
        path = model._path(ts, coefficients)
        z0 = jnp.exp(model.initial(path.evaluate(ts[0])))
        keys = jax.random.split(KEY, 20)
        gsde = jax.vmap(lambda k: model.solve(ts, coefficients, key=k, save_ts=ts).ys)(keys)
        euler = sdeint(
            lambda t, z, p: model.geometric_drift(t, z, p.evaluate(t)),
            lambda t, z, p: model.geometric_diffusion(t, z),
            jnp.broadcast_to(z0, (20, HIDDEN)), ts, key=KEY, args=path, dt0=1.0, batch="vmap",
            on_failure="return",  # log z of a negative z is NaN: those paths stop there
        ).ys  # fmt: skip
        return gsde, euler

    gsde, euler = gsde_and_euler()
    assert float(np.min(gsde)) > 0
    assert float(np.nanmin(euler)) < 0


def test_gsde_matches_the_geometric_closed_form():
    """With γ and σ constant (all weights before the output biases zeroed), the GSDE is
    geometric Brownian motion, z(T) = z(0) exp((γ - σ²/2) T + σ W(T)), and Euler in log z is
    exact. W(T) is read from the same key by solving dy = dW (float64 round-off only)."""
    model = build(NeuralGSDE)
    zero = lambda m: [m.drift.mlp.layers[-1].weight, m.diffusion.mlp.layers[-1].weight]  # noqa: E731
    model = eqx.tree_at(zero, model, replace_fn=jnp.zeros_like)
    gamma = jnp.tanh(model.drift.mlp.layers[-1].bias)
    sigma = jnp.tanh(jax.nn.sigmoid(model.diffusion.theta)
                     * jax.nn.relu(model.diffusion.mlp.layers[-1].bias))  # fmt: skip
    assert float(jnp.min(sigma)) > 0  # some noise to test
    coefficients = one(series())

    @jax.jit  # one program (eager, each operation around the two solves is its own)
    def initial_final_and_w():
        path = model._path(TS, coefficients)
        z0 = jnp.exp(model.initial(path.evaluate(TS[0])))
        zs = model.solve(TS, coefficients, key=KEY).ys
        w = sdeint(lambda t, y, a: jnp.zeros_like(y), lambda t, y, a: jnp.ones_like(y),
                   jnp.zeros(HIDDEN), np.asarray(TS)[[0, -1]], key=KEY, dt0=0.125,
                   noise="additive").ys[-1]  # fmt: skip
        return z0, zs, w

    z0, zs, w = initial_final_and_w()
    t_final = float(TS[-1] - TS[0])
    exact = z0 * jnp.exp((gamma - 0.5 * sigma**2) * t_final + sigma * w)
    np.testing.assert_allclose(zs[0], z0, rtol=1e-14)
    np.testing.assert_allclose(zs[-1], exact, rtol=1e-12)


@pytest.mark.parametrize("cls", CLASSES)
def test_drift_and_time_diffusion_are_bounded(cls):
    """γ ∈ (-1, 1) and σ(t) ∈ [0, 1) whatever the inputs, even far outside the data."""
    model = build(cls)
    timed = isinstance(model.diffusion, TimeDiffusion)

    @jax.jit  # one program (eager, every primitive under vmap compiles on its own)
    def drift_and_diffusion():
        z = 1e3 * jax.random.normal(KEY, (50, HIDDEN))
        x = 1e3 * jax.random.normal(jax.random.key(1), (50, CHANNELS))
        t = jnp.linspace(-50.0, 50.0, 50)
        return jax.vmap(model.drift)(t, z, x), jax.vmap(model.diffusion)(t) if timed else None

    gamma, sigma = drift_and_diffusion()
    assert float(np.max(np.abs(gamma))) <= 1.0
    if timed:
        assert float(np.min(sigma)) >= 0.0 and float(np.max(sigma)) < 1.0


def test_naive_neural_sde_diffusion_depends_on_the_state():
    """The baseline has none of the stable structure: its diffusion changes with z."""
    model = _noisy(build(ControlledNeuralSDE), 0.0)
    path = model._path(TS, one(series()))
    z = jax.random.normal(KEY, (HIDDEN,))
    jacobian = jax.jit(jax.jacfwd(lambda y: model._sde_diffusion(0.3, y, path)))(z)  # one program
    assert float(np.max(np.abs(jacobian))) > 0


def test_lsde_drift_is_autonomous_apart_from_the_control():
    sizes = dict(hidden=HIDDEN, channels=CHANNELS, width=8, depth=1)
    drift = ControlledDrift(**sizes, time=False, key=KEY)
    z, x = jnp.ones(HIDDEN), jnp.ones(CHANNELS)
    np.testing.assert_array_equal(drift(0.0, z, x), drift(2.0, z, x))
    timed = ControlledDrift(**sizes, time=True, key=KEY)
    assert not np.array_equal(timed(0.0, z, x), timed(2.0, z, x))


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", CLASSES)
def test_errors_name_the_bad_argument(cls):
    model = build(cls)
    wrong = hermite_coefficients(TS, jnp.ones((TS.shape[0], CHANNELS + 1)))
    with pytest.raises(ValueError, match="built for 3 channels.*have 4"):
        model(TS, wrong, key=KEY)
    with pytest.raises(ValueError, match="hidden must be an int >= 1, got 0"):
        build(cls, hidden=0)
    for dt0 in (-0.1, None):
        with pytest.raises(ValueError, match=f"dt0 > 0 \\(the fixed step size\\), got {dt0}"):
            build(cls, dt0=dt0)
    with pytest.raises(ValueError, match="out must be an int >= 1"):
        build(cls, out=0)
    with pytest.raises(TypeError, match="positional"):  # sizes are keywords
        cls(CHANNELS, HIDDEN, OUT, 8, 1, dt0=0.1, key=KEY)
    with pytest.raises(ValueError, match="known at trace time"):
        eqx.filter_jit(lambda ts: model(ts, one(series()), key=KEY))(TS)


# --- GRU-Δt ---------------------------------------------------------------------------------


def test_gru_skips_missing_steps_and_appends_the_gap():
    """On a series with missing rows, GRU-Δt equals the GRU run on the observed rows alone,
    each with its time since the previous observation appended (0 for the first)."""
    rng = np.random.default_rng(0)
    ts = jnp.asarray(np.sort(rng.uniform(0.0, 5.0, 10)))
    values = rng.normal(size=(10, 2))
    values[[0, 3, 4, 8]] = np.nan
    model = GRUDeltaT(channels=2, hidden=5, out=3, key=KEY)
    observed = ~np.isnan(values).all(axis=1)
    t_obs, x_obs = np.asarray(ts)[observed], values[observed]
    h = jnp.zeros(5)
    for k in range(x_obs.shape[0]):
        gap = 0.0 if k == 0 else t_obs[k] - t_obs[k - 1]
        h = model.cell(jnp.concatenate([jnp.asarray(x_obs[k]), jnp.asarray([gap])]), h)
    np.testing.assert_allclose(model.hidden_states(ts, jnp.asarray(values))[-1], h, rtol=1e-13)
    np.testing.assert_allclose(model(ts, jnp.asarray(values)), model.readout(h), rtol=1e-13)


def test_gru_fills_a_partially_missing_channel_forward():
    ts = jnp.arange(4.0)
    values = jnp.asarray([[1.0, 2.0], [3.0, np.nan], [np.nan, 5.0], [7.0, 8.0]])
    filled = jnp.asarray([[1.0, 2.0], [3.0, 2.0], [3.0, 5.0], [7.0, 8.0]])
    model = GRUDeltaT(channels=2, hidden=5, out=None, key=KEY)
    np.testing.assert_array_equal(model(ts, values), model(ts, filled))
    assert model(ts, values).shape == (5,)


def test_gru_batches_jit_and_errors():
    model = GRUDeltaT(channels=2, hidden=5, out=3, key=KEY)
    values = drop_observations(jnp.ones((4, 6, 2)), 0.5, key=KEY)
    ts = jnp.linspace(0.0, 1.0, 6)
    out = eqx.filter_jit(jax.vmap(model, in_axes=(None, 0)))(ts, values)
    assert out.shape == (4, 3) and bool(jnp.all(jnp.isfinite(out)))
    with pytest.raises(ValueError, match=r"values of shape \(time, 2\)"):
        model(ts, jnp.ones((6, 3)))
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        GRUDeltaT(channels=2, hidden=0, out=3, key=KEY)


# --- the UEA loader -------------------------------------------------------------------------


def test_basic_motions_loader():
    data = uea("BasicMotions")
    assert data.x_train.shape == data.x_test.shape == (40, 100, 6)
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.int32
    assert data.classes == ("badminton", "running", "standing", "walking")
    assert set(data.y_train.tolist()) == set(data.y_test.tolist()) == {0, 1, 2, 3}
    # Standardised with training statistics: training mean 0, std 1 per channel (float32
    # sums over 4,000 values: ~1e-6); the test split is only shifted and scaled by them.
    np.testing.assert_allclose(data.x_train.mean(axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=(0, 1)), 1.0, rtol=1e-5)
    assert data.ts[0] == 0.0 and data.ts[-1] == 1.0 and np.all(np.diff(data.ts) > 0)
    short = uea("BasicMotions", stride=2)
    assert short.x_train.shape == (40, 50, 6)
    np.testing.assert_allclose(short.ts, data.ts[::2])
    with pytest.raises(ValueError, match="unknown UEA dataset name='Basic'"):
        uea("Basic")
    with pytest.raises(ValueError, match="stride must be an int >= 1"):
        uea(stride=0)
    assert "BasicMotions" in UEA_DATASETS


def test_uea_split_pools_and_stratifies_the_shipped_series():
    """ItalyPowerDemand (67 + 1029 series of 2 classes, the cheapest set to load): the 70/15/15
    split is a partition of the pooled series, stratified, of the same sizes for every seed,
    its training series at mean 0 and sd 1 (which statistics: the synthetic test below)."""
    shipped = uea("ItalyPowerDemand")
    pooled = np.concatenate([shipped.x_train, shipped.x_test]) * shipped.std + shipped.mean
    labels = np.concatenate([shipped.y_train, shipped.y_test])
    a, b = uea_split("ItalyPowerDemand", seed=0), uea_split("ItalyPowerDemand", seed=1)
    for split in (a, b):
        parts = [(split.x_train, split.y_train), (split.x_validation, split.y_validation),
                 (split.x_test, split.y_test)]  # fmt: skip
        raw = np.concatenate([x for x, _ in parts]) * split.std + split.mean
        # the same multiset of (series, label) rows as the shipped splits (float32 rounding)
        key = np.concatenate([raw[:, :, 0], np.concatenate([y for _, y in parts])[:, None]], 1)
        ref = np.concatenate([pooled[:, :, 0], labels[:, None]], 1)
        np.testing.assert_allclose(key[np.lexsort(key.T[::-1])], ref[np.lexsort(ref.T[::-1])],
                                   atol=1e-4)  # fmt: skip
        for (_, y), share in zip(parts[1:], (0.15, 0.15), strict=True):
            for c in (0, 1):
                assert (y == c).sum() == round(share * (labels == c).sum())
        # float32 sums over ~18,000 values: ~1e-6
        np.testing.assert_allclose(split.x_train.mean(axis=(0, 1)), 0.0, atol=1e-5)
        np.testing.assert_allclose(split.x_train.std(axis=(0, 1)), 1.0, rtol=1e-5)
    assert [a.y_train.size, a.y_validation.size, a.y_test.size] == [768, 164, 164]
    assert [b.y_train.size, b.y_validation.size, b.y_test.size] == [768, 164, 164]
    assert not np.array_equal(a.x_test, b.x_test)
    assert uea_split("ItalyPowerDemand", seed=0, stride=4).x_test.shape == (164, 6, 1)
    with pytest.raises(ValueError, match="leave no training series of class"):
        uea_split("ItalyPowerDemand", seed=0, validation_fraction=0.5, test_fraction=0.5)


def test_uea_split_standardises_with_the_training_split_only(monkeypatch):
    """Synthetic series at very different levels (shipped train around 0-20, shipped test
    around 50-70; one value missing): the split's training series have mean 0 and sd 1 per
    channel over the observed values, while all three splits standardised the same way do not,
    so statistics taken over the pooled series would fail the check (ItalyPowerDemand itself
    cannot tell: each of its series is z-normalised)."""
    from jaxdyn.data import _uea

    rng = np.random.default_rng(0)

    def load(name, split):
        level = 0.0 if split == "train" else 50.0
        series = [level + rng.uniform(0, 20) + rng.normal(size=(12, 2)) for _ in range(40)]
        series[0][3, 1] = np.nan
        return series, np.array(["a", "b"] * 20)

    monkeypatch.setattr(_uea, "_load", load)
    split = _uea.uea_split("ItalyPowerDemand", seed=0)
    np.testing.assert_allclose(np.nanmean(split.x_train, axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(split.x_train, axis=(0, 1)), 1.0, rtol=1e-5)
    pooled = np.concatenate([split.x_train, split.x_validation, split.x_test])
    assert np.all(np.abs(np.nanmean(pooled, axis=(0, 1))) > 1e-2)


def test_variable_length_set_is_nan_padded_at_the_end():
    """JapaneseVowels (lengths 7 to 29, 12 channels): each series is its observations followed
    by NaN (all channels) up to the longest, standardised over the observed values."""
    data = uea("JapaneseVowels")
    assert data.x_train.shape == (270, 29, 12) and data.x_test.shape == (370, 29, 12)
    observed = ~np.isnan(data.x_train[:, :, 0])
    assert np.array_equal(observed, ~np.isnan(data.x_train).any(axis=-1))
    lengths = observed.sum(axis=1)
    # observed steps are a prefix: the first `length` steps
    assert np.array_equal(observed, np.arange(29)[None, :] < lengths[:, None])
    assert lengths.min() == 7 and np.isnan(data.x_test).any()
    np.testing.assert_allclose(np.nanmean(data.x_train, axis=(0, 1)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.nanstd(data.x_train, axis=(0, 1)), 1.0, rtol=1e-5)


def test_paper_sized_irregular_config_loads():
    """configs/accelerator/irregular_classification.yaml (not run on CPU) validates."""
    from pathlib import Path

    from jaxdyn import experiments

    path = (
        Path(__file__).resolve().parent.parent / "configs/accelerator/irregular_classification.yaml"
    )
    experiment, cfg = experiments.load(path)
    assert experiment.name == cfg.experiment == "irregular_classification"
    assert (cfg.model.hidden, cfg.data.max_length, len(cfg.selection.lrs)) == (64, 1000, 3)
