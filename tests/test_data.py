import jax.numpy as jnp
import numpy as np
import pytest

from jaxdyn import odeint
from jaxdyn.data import spiral, spiral_field, windows


def test_spiral_matches_an_independent_solve():
    ts, ys = spiral(200, 5.0)
    assert ts.shape == (200,) and ys.shape == (200, 2)
    np.testing.assert_allclose(ys[0], [2.0, 0.0])
    A = jnp.asarray([[-0.1, 2.0], [-2.0, -0.1]])
    other = odeint(
        spiral_field,
        jnp.array([2.0, 0.0]),
        ts,
        args=A,
        solver="dopri8",
        rtol=1e-11,
        atol=1e-11,
        max_steps=100_000,
    )
    # Both at tolerance <= 1e-8 over 5 time units of a contracting spiral.
    np.testing.assert_allclose(ys, other.ys, atol=1e-6)


def test_windows():
    ys = jnp.arange(10.0)[:, None] * jnp.ones(2)
    w = windows(ys, 4)
    assert w.shape == (7, 4, 2)
    np.testing.assert_array_equal(w[3, :, 0], [3, 4, 5, 6])
    with pytest.raises(ValueError, match="window length"):
        windows(ys, 11)
