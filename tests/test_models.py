import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import MLPField, NeuralODE
from jaxdyn.models import DEQ, TanhCell


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
    ts = jnp.linspace(0.0, 1.0, 5)
    y0 = jax.random.normal(jax.random.key(1), (4, 3))
    single = jnp.stack([model(ts, y) for y in y0])
    batched = model(ts, y0)
    vmapped = jax.vmap(model, in_axes=(None, 0))(ts, y0)
    joint = dataclasses.replace(model, batch="joint")(ts, y0)
    assert single.shape == batched.shape == (4, 5, 3)
    np.testing.assert_allclose(batched, single, atol=1e-12)
    np.testing.assert_allclose(vmapped, single, atol=1e-12)
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

    grads = eqx.filter_grad(loss)(model)
    bias = model.field.mlp.layers[-1].bias
    h = 1e-6
    shift = lambda d: eqx.tree_at(lambda m: m.field.mlp.layers[-1].bias, model, bias + d)  # noqa: E731
    e = jnp.zeros(3).at[2].set(h)
    fd = (loss(shift(e)) - loss(shift(-e))) / (2 * h)
    assert float(grads.field.mlp.layers[-1].bias[2]) == pytest.approx(float(fd), rel=1e-6)


def deq(**kw):
    return DEQ(TanhCell(8, 4, contraction=0.8, key=jax.random.key(0)), 8, tol=1e-12,
               max_iter=300, **kw)  # fmt: skip


@pytest.mark.parametrize("method", ["anderson", "iteration"])
def test_deq_is_a_fixed_point_with_implicit_gradient(method):
    layer = deq(method=method)
    x = jnp.arange(4.0) / 4
    z, info = layer.solve(x)
    assert bool(info.converged)
    np.testing.assert_allclose(layer.cell(z, x), z, atol=1e-11)

    def loss(d):
        return jnp.sum(d(x) ** 2)

    grads = eqx.filter_grad(loss)(layer)
    V, h = layer.cell.V, 1e-6
    bump = jnp.zeros_like(V).at[2, 3].set(h)
    moved = lambda d: eqx.tree_at(lambda m: m.cell.V, layer, V + d)  # noqa: E731
    fd = (loss(moved(bump)) - loss(moved(-bump))) / (2 * h)
    assert float(grads.cell.V[2, 3]) == pytest.approx(float(fd), rel=1e-6)


def test_tanh_cell_is_a_contraction_for_any_weights():
    cell = TanhCell(6, 3, contraction=0.7, key=jax.random.key(1))
    cell = eqx.tree_at(lambda c: c.V, cell, 100.0 * cell.V)  # training cannot break it
    J = jax.jacobian(lambda z: cell(z, jnp.ones(3)))(jnp.zeros(6))
    assert float(jnp.linalg.norm(J, 2)) <= 0.7 + 1e-12
    with pytest.raises(ValueError, match="contraction must be in"):
        TanhCell(6, 3, contraction=1.0, key=jax.random.key(1))


def test_deq_batches_and_jacobian_penalty():
    layer = deq()
    xs = jax.random.normal(jax.random.key(2), (5, 4))
    zs = jax.vmap(layer)(xs)
    assert zs.shape == (5, 8)
    # Hutchinson: the mean over probes approaches ‖J‖_F² / dim.
    J = jax.jacobian(lambda z: layer.cell(z, xs[0]))(zs[0])
    keys = jax.random.split(jax.random.key(3), 4000)
    estimate = jnp.mean(jax.vmap(lambda k: layer.jacobian_penalty(zs[0], xs[0], k))(keys))
    exact = jnp.sum(J**2) / 8
    assert float(estimate) == pytest.approx(float(exact), rel=0.1)  # 4000 probes: ~2% s.e.
