"""Fields the samplers build from the user's: Equinox modules rather than closures, so that
equal fields compare equal and a repeated un-jitted call reuses Diffrax's compiled solve."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["Constant", "Field", "Reparametrised", "SDEDrift", "SDENoise"]

#: A velocity, score or denoiser `(t, x, args) -> (dim,)` for one sample `x` of shape `(dim,)`.
Field = Callable[[Array, Float[Array, " dim"], Any], Float[Array, " dim"]]


class Reparametrised(eqx.Module):
    """`scale · field(start + sign · s, x, args)`: `field` in the time `s = sign (t − start)`
    (`sign = −1` runs it backwards; `odeint` and `sdeint` take increasing times only)."""

    field: Callable
    start: float = eqx.field(static=True)
    sign: float = eqx.field(static=True)
    scale: float = eqx.field(static=True)

    def __call__(self, s, x, args):
        return self.scale * self.field(self.start + self.sign * s, x, args)


class Constant(eqx.Module):
    """`t ↦ value`."""

    value: ArrayLike

    def __call__(self, t) -> ArrayLike:
        return self.value


class SDEDrift(eqx.Module):
    """`b(t, x) + ε(t) s(t, x)`: the drift of the interpolant's SDE with diffusion `ε`."""

    velocity: Callable
    score: Callable
    epsilon: Callable

    def __call__(self, t, x, args) -> Array:
        return self.velocity(t, x, args) + self.epsilon(t) * self.score(t, x, args)


class SDENoise(eqx.Module):
    """`√(2ε(t))` on every component (diagonal noise)."""

    epsilon: Callable

    def __call__(self, t, x, args) -> Array:
        return jnp.broadcast_to(jnp.sqrt(2 * jnp.asarray(self.epsilon(t), dtype=x.dtype)), x.shape)
