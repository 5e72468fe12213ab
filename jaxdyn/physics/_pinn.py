"""Pointwise derivatives of a scalar network `u(t, x)` and the PDE residual built from them,
for physics-informed neural networks (Raissi, Perdikaris & Karniadakis 2019).

The network is any callable `u(t, x) -> scalar` (an Equinox module, a closure over one) of a
time `t` and one space coordinate `x`. At each point the derivatives come from forward-mode
automatic differentiation of `z = (t, x) ↦ u(z₀, z₁)`: `jax.jacfwd` gives `(u_t, u_x)` (two
JVPs), `jax.hessian` (forward over reverse) the 2 × 2 matrix of `u_tt, u_tx, u_xx`; `jax.vmap`
maps this over the points. Everything is pure: it composes with `jax.grad` with respect to the
network's parameters, which is how a PINN trains.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

__all__ = ["Derivatives", "derivatives", "pde_residual"]

ScalarField = Callable[[Scalar, Scalar], Scalar]


class Derivatives(NamedTuple):
    """`u` and its partial derivatives at `n` points, each of shape `(n,)`; the second
    derivatives are `None` when only first ones were asked for (`order=1`)."""

    u: Float[Array, " n"]
    u_t: Float[Array, " n"]
    u_x: Float[Array, " n"]
    u_tt: Float[Array, " n"] | None = None
    u_tx: Float[Array, " n"] | None = None
    u_xx: Float[Array, " n"] | None = None


def _at_point(u: ScalarField, order: int, t: Scalar, x: Scalar) -> Derivatives:
    def f(z):
        return u(z[0], z[1])

    z = jnp.stack([t, x])
    gradient = jax.jacfwd(f)(z)
    if order == 1:
        return Derivatives(f(z), gradient[0], gradient[1])
    hess = jax.hessian(f)(z)
    return Derivatives(f(z), gradient[0], gradient[1], hess[0, 0], hess[0, 1], hess[1, 1])


def derivatives(
    u: ScalarField, t: Float[ArrayLike, " n"], x: Float[ArrayLike, " n"], *, order: int = 2
) -> Derivatives:
    """`u(t, x)` and its derivatives up to `order` (1 or 2) at the points `(t[i], x[i])`.

    **Arguments:** `u`: a scalar function of a scalar time and a scalar space coordinate;
    `t`, `x`: the points' coordinates, shape `(n,)`; `order`: 1 for `u_t, u_x` (one
    `jax.jacfwd`), 2 for `u_tt, u_tx, u_xx` as well (`jax.hessian`).

    **Returns:** a `Derivatives` of arrays of shape `(n,)`.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got order={order!r}")
    t, x = jnp.asarray(t), jnp.asarray(x)
    if t.ndim != 1 or t.shape != x.shape:
        raise ValueError(
            f"t and x must be 1-D of the same length, got shapes {t.shape} and {x.shape}"
        )
    return jax.vmap(lambda ti, xi: _at_point(u, order, ti, xi))(t, x)


def pde_residual(
    u: ScalarField,
    pde: Callable[[Derivatives, Float[Array, " n"], Float[Array, " n"]], Float[Array, " n"]],
    t: Float[ArrayLike, " n"],
    x: Float[ArrayLike, " n"],
    *,
    order: int = 2,
) -> Float[Array, " n"]:
    """The residual `r_i = pde(D, t, x)_i` of a PDE `F(u, u_t, u_x, …; t, x) = 0` at the points,
    where `D = derivatives(u, t, x, order=order)`.

    E.g. advection `u_t + β u_x = 0` is `pde = lambda d, t, x: d.u_t + beta * d.u_x` with
    `order=1`; Allen–Cahn `u_t − 1e-4 u_xx + 5u³ − 5u = 0` is
    `lambda d, t, x: d.u_t - 1e-4 * d.u_xx + 5 * d.u**3 - 5 * d.u`.
    """
    t, x = jnp.asarray(t), jnp.asarray(x)
    return pde(derivatives(u, t, x, order=order), t, x)
