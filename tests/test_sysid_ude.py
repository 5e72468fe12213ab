"""`UniversalField` (Rackauckas et al. 2020): known terms plus a learned term, differentiated
through `odeint`. Gradients are compared with central finite differences in float64."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn.models import ACTIVATIONS, MLPField
from jaxdyn.solve import odeint
from jaxdyn.sysid import PolynomialLibrary, SINDy, UniversalField

TS = jnp.array([0.0, 0.5, 1.0])
Y0 = jnp.array([0.8, 1.5])


def _field() -> UniversalField:
    known = SINDy(PolynomialLibrary(1, include_bias=False), jnp.diag(jnp.array([1.3, -1.8])),
                  ("x", "y"))  # fmt: skip
    network = MLPField(dim=2, width=4, depth=1, activation="rbf", key=jax.random.key(0))
    return UniversalField(known, network)


def _loss(field_and_y0):
    field, y0 = field_and_y0
    ys = odeint(field, y0, TS, solver="tsit5", rtol=1e-10, atol=1e-10).ys
    return jnp.sum(ys[1:] ** 2)


# One program for the value and every gradient; one for the finite differences.
_value_and_grad = eqx.filter_jit(eqx.filter_value_and_grad(_loss))
_loss_jit = eqx.filter_jit(_loss)


def test_gradients_reach_the_learned_term_and_the_state_but_not_the_frozen_known_terms():
    """Frozen known coefficients get a zero gradient, yet still shape the solve's derivative
    with respect to the state: the gradients with respect to the network (along a random
    direction) and to the initial state (which flows through the known linear terms) match
    central finite differences. A stop_gradient on the known terms' *output* would zero
    their state derivative and fail the second check."""
    field = _field()
    value, (grads, grad_y0) = _value_and_grad((field, Y0))
    assert np.isfinite(value)
    assert np.all(grads.known.coefficients == 0)  # exactly: behind stop_gradient
    params, static = eqx.partition(field, eqx.is_inexact_array)
    leaves, treedef = jax.tree.flatten(params.learned)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noise = [jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree.leaves(grads.learned), noise,
                                                   strict=True))  # fmt: skip
    direction = jax.tree.unflatten(treedef, noise)
    h = 1e-6

    def network_moved(s):
        moved = eqx.tree_at(
            lambda p: p.learned,
            params,
            jax.tree.map(lambda p, d: p + s * d, params.learned, direction),
        )
        return float(_loss_jit((eqx.combine(moved, static), Y0)))  # fmt: skip

    def state_moved(i, s):
        return float(_loss_jit((field, Y0.at[i].add(s))))

    # 1e-6: central differences at h = 1e-6 of solves at tol 1e-10 in float64 carry ~1e-8
    # relative error (rounding ~1e-16/h, truncation ~h²), well inside it.
    fd = (network_moved(h) - network_moved(-h)) / (2 * h)
    np.testing.assert_allclose(analytic, fd, rtol=1e-6)
    fd_y0 = [(state_moved(i, h) - state_moved(i, -h)) / (2 * h) for i in range(2)]
    np.testing.assert_allclose(grad_y0, fd_y0, rtol=1e-6)
    assert float(ACTIVATIONS["rbf"](jnp.asarray(1.5))) == pytest.approx(np.exp(-2.25))
