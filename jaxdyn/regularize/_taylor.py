"""Taylor-mode smoothness penalties (TayNODE; Kelly, Bettencourt, Johnson & Duvenaud 2020)."""

from collections.abc import Callable
from typing import Any, Unpack

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.experimental.jet import jet
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, ArrayLike, Float, PyTree

from .._checks import check_count
from ..solve import Solution, odeint
from ._penalties import SolveOptions, solve_options

__all__ = ["taylor_derivatives", "taylor_penalty"]

Field = Callable[[Any, PyTree, Any], PyTree]


def taylor_derivatives(
    field: Field,
    t: Float[ArrayLike, ""],
    y: PyTree[Array],
    *,
    order: int,
    args: Any = None,
) -> list[PyTree[Array]]:
    """The time derivatives `[y', y'', …, y^(order)]` of the solution of
    `dy/dt = field(t, y, args)` through `(t, y)`, by Taylor mode (`jax.experimental.jet`).

    With `z = (y, t)` and `dz/dt = g(z) = (field(t, y, args), 1)`, `z^(k+1)` is the `k`-th
    derivative of `g(z(t))`, which one `jet` of `g` on the series `(z', …, z^(k))` gives:
    `order − 1` jets in all (Kelly et al. 2020, "Learning differential equations that are easy
    to solve"). Each derivative has `y`'s structure.
    """
    check_count("order", order)
    flat, unravel = ravel_pytree(y)
    z0 = jnp.concatenate([flat, jnp.asarray(t, flat.dtype)[None]])

    def g(z):
        dy, _ = ravel_pytree(field(z[-1], unravel(z[:-1]), args))
        return jnp.concatenate([dy, jnp.ones((1,), z.dtype)])

    series = [g(z0)]
    for _ in range(order - 1):
        _, out = jet(g, (z0,), (tuple(series),))
        series.append(out[-1])
    return [unravel(s[:-1]) for s in series]


class _Augmented(eqx.Module):
    """`d(y, r)/dt = (f(t, y), ‖y^(K)(t)‖²)` for one sample."""

    field: Callable
    order: int = eqx.field(static=True)

    def __call__(self, t, state, args):
        y, _ = state
        derivatives = taylor_derivatives(self.field, t, y, order=self.order, args=args)
        flat, _ = ravel_pytree(derivatives[-1])
        return derivatives[0], jnp.sum(jnp.square(flat))


def taylor_penalty(
    field: Field,
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    order: int = 2,
    **options: Unpack[SolveOptions],
) -> tuple[Solution, Float[Array, ""]]:
    """The Taylor-mode regulariser (TayNODE; Kelly, Bettencourt, Johnson & Duvenaud 2020):

        R_K = ∫_{t0}^{t1} ‖d^K y/dt^K‖² dt,

    integrated along the trajectory, as the paper does: the state is augmented with
    `r' = ‖y^(K)(t)‖²` (`taylor_derivatives`, `order = K`, the squared norm summed over all
    entries) and `r(t1)` is read at the end, so the solver integrates the penalty with the
    solution and any `adjoint` differentiates it. The augmented component takes part in the
    step-size control (as in TayNODE), so adaptive steps can differ slightly from a plain solve.
    Returns `(solution, R_K)` with the solution of `y` alone; with a batch, `R_K` is the mean
    over samples. The other arguments are `odeint`'s.
    """
    check_count("order", order)
    batch = solve_options("taylor_penalty", options)["batch"]
    leaves = jax.tree.leaves(y0)
    if not leaves:
        raise ValueError("y0 has no array leaves")
    leaf = jnp.asarray(leaves[0])
    r0 = jnp.zeros(leaf.shape[:1] if batch is not None else (), leaf.dtype)
    sol = odeint(_Augmented(field, order), (y0, r0), ts, **options)
    ys, rs = sol.ys
    penalty = jnp.mean(rs[..., -1])
    return Solution(ts=sol.ts, ys=ys, stats=sol.stats, result=sol.result), penalty
