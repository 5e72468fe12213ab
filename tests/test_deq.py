"""The deep-equilibrium layer: its output is a fixed point of the cell, its gradient the
implicit one (against central differences), and `TanhCell` is a contraction by construction."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import DEQ, TanhCell


def deq(**kw):
    cell = TanhCell(dim=8, in_size=4, contraction=0.8, key=jax.random.key(0))
    return DEQ(cell, dim=8, tol=1e-12, max_steps=300, **kw)


@pytest.mark.parametrize("solver", ["anderson", "iteration"])
def test_deq_is_a_fixed_point_with_implicit_gradient(solver):
    layer = deq(solver=solver)
    x = jnp.arange(4.0) / 4

    # One compile serves the solve, the gradient and both finite-difference evaluations.
    @eqx.filter_jit
    def run(d):
        value, grads = eqx.filter_value_and_grad(lambda d: jnp.sum(d(x) ** 2))(d)
        z, info = d.solve(x)
        return value, grads, info.converged, d.cell(z, x) - z

    _, grads, converged, residual = run(layer)
    assert bool(converged)
    np.testing.assert_allclose(residual, 0.0, atol=1e-11)
    V, h = layer.cell.V, 1e-6
    bump = np.zeros(V.shape)
    bump[2, 3] = h
    moved = lambda d: eqx.tree_at(lambda m: m.cell.V, layer, V + d)  # noqa: E731
    fd = (run(moved(bump))[0] - run(moved(-bump))[0]) / (2 * h)
    assert float(grads.cell.V[2, 3]) == pytest.approx(float(fd), rel=1e-6)


def test_tanh_cell_is_a_contraction_for_any_weights():
    cell = TanhCell(dim=6, in_size=3, contraction=0.7, key=jax.random.key(1))
    cell = eqx.tree_at(lambda c: c.V, cell, 100.0 * cell.V)  # training cannot break it
    J = eqx.filter_jit(lambda c: jax.jacobian(lambda z: c(z, jnp.ones(3)))(jnp.zeros(6)))(cell)
    assert np.linalg.norm(np.asarray(J), 2) <= 0.7 + 1e-12
    with pytest.raises(ValueError, match="contraction must be in"):
        TanhCell(dim=6, in_size=3, contraction=1.0, key=jax.random.key(1))


def test_deq_batches_and_jacobian_penalty():
    layer = deq()
    xs = jax.random.normal(jax.random.key(2), (5, 4))

    @jax.jit  # one program: the batch, the Jacobian and the probes (eager: one per operation)
    def run(xs):
        zs = jax.vmap(layer)(xs)
        J = jax.jacobian(lambda z: layer.cell(z, xs[0]))(zs[0])
        keys = jax.random.split(jax.random.key(3), 4000)
        penalty = jax.vmap(lambda k: layer.jacobian_penalty(zs[0], xs[0], key=k))(keys)
        return zs, J, jnp.mean(penalty)

    zs, J, estimate = run(xs)
    assert zs.shape == (5, 8)
    # Hutchinson: the mean over probes approaches ‖J‖_F² / dim.
    exact = np.sum(np.asarray(J) ** 2) / 8
    assert float(estimate) == pytest.approx(float(exact), rel=0.1)  # 4000 probes: ~2% s.e.


def test_deq_sizes_are_keywords():
    """Only the leading cell is positional (docs/api.md): `DEQ(cell, 8)` is refused."""
    cell = TanhCell(dim=8, in_size=4, key=jax.random.key(0))
    with pytest.raises(TypeError):
        DEQ(cell, 8)
    with pytest.raises(TypeError):
        TanhCell(8, 4, key=jax.random.key(0))
