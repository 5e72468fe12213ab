"""Shared builders for the tests."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np


def decay(t, y, args):
    """dy/dt = -k y, with y(t) = exp(-k t) y0."""
    k = 1.0 if args is None else args
    return -k * y


def oscillator(t, y, args):
    """A pytree state: (x, v) with x'' = -x, so x = cos t, v = -sin t from (1, 0)."""
    x, v = y
    return (v, -x)


def leaves_equal(a, b) -> bool:
    """Bitwise equality of the array leaves of two pytrees."""
    la = jax.tree.leaves(eqx.filter(a, eqx.is_array))
    lb = jax.tree.leaves(eqx.filter(b, eqx.is_array))
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def central_difference(f, x: float, h: float = 1e-6) -> float:
    """Second-order central finite difference of a scalar function (float64)."""
    return float((f(x + h) - f(x - h)) / (2 * h))


def linear_system(seed: int = 0, dim: int = 3):
    """A stable random linear system dy/dt = M y."""
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(dim, dim)) / np.sqrt(dim) - 0.5 * np.eye(dim)
    return jnp.asarray(M), jnp.asarray(rng.normal(size=dim))


def compiled(solve, *fields, y0, ts, **options):
    """`solve(*fields, y0, ts, **options)` (`odeint`, `sdeint`) as one compiled program.

    Un-jitted, a solve runs dozens of small operations eagerly around Diffrax's jitted loop, each
    compiled anew for every new shape (every new fixed-step grid); here the whole solve is one
    program. As in `eqx.filter_jit`, array leaves of `y0` and `options` (a key, `args`, a
    tolerance given as an array) are traced and share the program; Python values and the
    fields are static. `ts` is passed as a tuple, so it stays known at trace time (fixed-step
    grids and step budgets need it). Use module-level fields so that calls share the cache.
    """
    return _compiled(solve, fields, y0, tuple(np.asarray(ts).tolist()), options)


@eqx.filter_jit
def _compiled(solve, fields, y0, ts, options):
    return solve(*fields, y0, np.asarray(ts), **options)


def random_direction(tree, seed: int):
    """A standard normal direction in every array leaf of `tree`, drawn by NumPy (an eager
    `jax.random.normal` compiles one program per leaf shape, ~0.5 s each)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: rng.normal(size=np.shape(x)).astype(np.asarray(x).dtype), tree)


def directional_check(value_and_grad, params, direction, h: float = 1e-6):
    """`(analytic, numeric)`: the gradient of `value_and_grad(params)` along `direction`, and
    the central difference of its value at `params ± h·direction` (float64). One compiled
    `value_and_grad` serves all three calls; the sums and shifts run in NumPy (eager jnp would
    compile a small program per leaf shape). Also returns the gradient's leaves as NumPy."""
    params = jax.tree.map(np.asarray, params)  # NumPy leaves are never weakly typed: one program
    grads = [np.asarray(g) for g in jax.tree.leaves(value_and_grad(params)[1])]
    dirs = jax.tree.leaves(direction)
    analytic = sum(float(np.vdot(g, d)) for g, d in zip(grads, dirs, strict=True))

    def shift(s):
        return jax.tree.map(lambda p, d: np.asarray(p) + s * d, params, direction)

    numeric = float(value_and_grad(shift(h))[0] - value_and_grad(shift(-h))[0]) / (2 * h)
    return analytic, numeric, grads


def strongly_typed(tree):
    """`tree` with its array leaves as strongly typed JAX arrays (`jnp.full(n, 0.5)` is weakly
    typed; a jitted function called with it and with a NumPy-shifted copy compiles twice)."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)) if eqx.is_array(x) else x, tree)


def one_program(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` as one compiled program (`eqx.filter_jit`: array leaves traced,
    everything else static). An un-jitted library call runs its checks, random draws, vmaps and
    result handling eagerly, each a small program compiled per shape; here it is one."""
    return _one_program(fn, args, kwargs)


@eqx.filter_jit
def _one_program(fn, args, kwargs):
    return fn(*args, **kwargs)


def gradient_by_central_differences(f, x, h: float = 1e-6) -> np.ndarray:
    """`∇f(x)` by central differences `(f(x + h e_i) − f(x − h e_i)) / 2h` (float64), all
    `2·dim` evaluations in one compiled program (a vmap over the basis vectors `e_i`; `f`'s
    arrays are traced, so calls with the same shapes share the program)."""
    return np.asarray(_central_differences(f, jnp.asarray(x), h))


@eqx.filter_jit
def _central_differences(f, x, h):
    return jax.vmap(lambda e: (f(x + h * e) - f(x - h * e)) / (2 * h))(jnp.eye(x.shape[0]))
