import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import MLPField, NeuralODE


def field(time=False, feature="identity"):
    return MLPField(dim=3, width=16, depth=2, time=time, feature=feature, key=jax.random.key(0))


def test_mlp_field_shapes_and_time_input():
    f = field(time=True)
    y = jnp.ones(3)
    assert f(0.0, y).shape == (3,)
    assert not np.allclose(f(0.0, y), f(1.0, y))  # time is an input
    g = field(time=False)
    np.testing.assert_array_equal(g(0.0, y), g(1.0, y))


def test_cube_feature_applies_before_mlp():
    f, g = field(feature="cube"), field()
    y = jnp.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(f(0.0, y), g(0.0, y**3), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(activation="sigmoidal"), "unknown activation='sigmoidal'"),
        (dict(feature="square"), "unknown feature='square'"),
        (dict(width=0), "width must be an int >= 1, got 0"),
        (dict(depth=-1), "depth must be an int >= 0, got -1"),
    ],
)
def test_mlp_field_bad_arguments(kwargs, match):
    args = dict(dim=2, width=8, depth=1, key=jax.random.key(0)) | kwargs
    with pytest.raises(ValueError, match=match):
        MLPField(**args)
    with pytest.raises(TypeError, match="positional"):  # sizes are keywords
        MLPField(2, 8, 1, key=jax.random.key(0))


def test_neural_ode_single_batched_and_vmapped_agree():
    assert NeuralODE(field()).batch == "joint"  # models see batches: one step sequence
    model = NeuralODE(field(), rtol=1e-9, atol=1e-9, batch="vmap")
    ts = np.linspace(0.0, 1.0, 5)
    y0 = np.random.default_rng(1).normal(size=(4, 3))

    @eqx.filter_jit  # one program (eagerly, every call and the checks around it compile anew)
    def three_ways(model, y0):
        # jax.vmap of the one-series model: each series its own solve and step sequence (the
        # reference; a lax.map of the same one-series path would be the same jaxdyn code)
        single = jax.vmap(model, in_axes=(None, 0))(ts, y0)
        joint = dataclasses.replace(model, batch="joint")(ts, y0)
        return single, model(ts, y0), joint

    single, batched, joint = three_ways(model, y0)
    assert single.shape == batched.shape == joint.shape == (4, 5, 3)
    np.testing.assert_allclose(batched, single, atol=1e-12)
    np.testing.assert_allclose(joint, single, atol=1e-7)  # one shared step sequence


def test_neural_ode_rejects_bad_state_rank():
    with pytest.raises(ValueError, match=r"y0 of shape \(dim,\) or \(batch, dim\)"):
        NeuralODE(field())(jnp.array([0.0, 1.0]), jnp.ones((2, 2, 3)))


def test_neural_ode_max_steps_none_is_the_solve_default_and_a_cap_is_forwarded():
    """`max_steps=None` leaves the cap to `odeint`; a given cap reaches it and a solve that
    hits it follows `on_failure` (fixed steps: 10 steps of 0.1 need max_steps >= 10)."""
    ts, y0 = jnp.array([0.0, 1.0]), jnp.ones(3)
    model = NeuralODE(field(), solver="euler", dt0=0.1, on_failure="return")
    assert model.max_steps is None
    assert bool(model.solve(ts, y0).succeeded)
    capped = dataclasses.replace(model, max_steps=5).solve(ts, y0)
    assert not bool(capped.succeeded) and int(capped.stats.num_steps) == 5


def test_neural_ode_gradient_matches_finite_differences():
    model = NeuralODE(field(time=True), rtol=1e-10, atol=1e-10)
    ts = jnp.array([0.0, 0.5, 1.0])
    y0 = jnp.array([0.3, -0.2, 0.1])

    def loss(m):
        return jnp.sum(m(ts, y0) ** 2)

    # One compiled program: the gradient, and the loss values for the central difference.
    value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(loss))
    grads = value_and_grad(model)[1]
    bias = np.asarray(model.field.mlp.layers[-1].bias)  # shifted in NumPy: no eager programs
    h = 1e-6
    shift = lambda d: eqx.tree_at(lambda m: m.field.mlp.layers[-1].bias, model, bias + d)  # noqa: E731
    e = np.zeros(3)
    e[2] = h
    fd = (value_and_grad(shift(e))[0] - value_and_grad(shift(-e))[0]) / (2 * h)
    assert float(grads.field.mlp.layers[-1].bias[2]) == pytest.approx(float(fd), rel=1e-6)


@pytest.mark.parametrize(
    "time, time_features, conditioning",
    [(False, 2, 0), (True, 3, 4), (True, 0, 0)],  # toy2d's, digits', ode_sde_gap's layouts
)
def test_mlp_field_input_layout(time, time_features, conditioning):
    """The MLP sees `[y, t, sin(πt) … sin(Kπt), cos(πt) … cos(Kπt), args]`, each block only
    when asked for (exactly: the same concatenation by hand)."""
    f = MLPField(dim=3, width=8, depth=1, time=time, time_features=time_features,
                 conditioning=conditioning, key=jax.random.key(0))  # fmt: skip
    assert f.mlp.in_size == 3 + int(time) + 2 * time_features + conditioning
    t, y = 0.3, jnp.array([0.5, -1.0, 2.0])
    c = jnp.arange(conditioning, dtype=y.dtype) if conditioning else None
    angle = jnp.pi * jnp.arange(1, time_features + 1) * t
    blocks = [y, jnp.array([t])] if time else [y]
    blocks += [jnp.sin(angle), jnp.cos(angle)] + ([c] if conditioning else [])
    out = f(t, y, c)
    assert out.shape == (3,)
    np.testing.assert_array_equal(out, f.mlp(jnp.concatenate(blocks)))
    if time or time_features:
        assert not np.allclose(out, f(0.7, y, c))  # non-autonomous
    if conditioning:
        assert not np.allclose(out, f(t, y, c + 1.0))  # args is an input


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(time_features=-1), ValueError, "time_features must be an int >= 0, got -1"),
        (dict(time_features=1.5), ValueError, "time_features must be an int >= 0, got 1.5"),
        (dict(conditioning=-2), ValueError, "conditioning must be an int >= 0, got -2"),
        (dict(time="yes"), TypeError, "time must be a bool, got 'yes'"),
    ],
)
def test_mlp_field_bad_time_and_conditioning_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        MLPField(dim=2, width=8, depth=1, key=jax.random.key(0), **kwargs)


def test_mlp_field_conditioning_needs_args_of_its_length():
    f = MLPField(dim=2, width=8, depth=1, conditioning=3, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"needs args of shape \(3,\), got None"):
        f(0.0, jnp.ones(2))
    with pytest.raises(ValueError, match=r"needs args of shape \(3,\), got \(2,\)"):
        f(0.0, jnp.ones(2), jnp.ones(2))
