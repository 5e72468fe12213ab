"""Neural vector fields `f(t, y, args)` for differential-equation models."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._checks import lookup
from ._arguments import check_sizes

__all__ = ["ACTIVATIONS", "FEATURES", "MLPField", "SoftplusField"]

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "identity": lambda x: x,
}


def _cube(y: Array) -> Array:
    return y**3


FEATURES: dict[str, Callable[[Array], Array]] = {
    "identity": lambda y: y,
    "cube": _cube,
}


class MLPField(eqx.Module):
    """A multilayer-perceptron vector field, `dy/dt = MLP(φ(y) [, t])`.

    `φ` is a fixed input feature map (`identity`, or `cube` for the spiral demo of Chen et
    al. 2018, "Neural Ordinary Differential Equations"); with `time=True` the time is
    appended as an extra input, making the field non-autonomous.
    """

    mlp: eqx.nn.MLP
    feature: Callable[[Array], Array] = eqx.field(static=True)
    time: bool = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        dim: int,
        width: int,
        depth: int,
        activation: str | Callable = "tanh",
        feature: str | Callable = "identity",
        time: bool = False,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `dim`, the state dimension; `width` and `depth`, the hidden layers
        (depth = number of hidden layers); `activation` and `feature` by name or callable;
        `time`, whether `t` is an input; `key`, for the initialisation."""
        check_sizes(dim=dim, width=width, depth=depth)
        self.dim = dim
        self.time = time
        self.feature = lookup("feature", feature, FEATURES)
        activation = lookup("activation", activation, ACTIVATIONS)
        self.mlp = eqx.nn.MLP(dim + int(time), dim, width, depth, activation=activation, key=key)

    def __call__(self, t: Scalar, y: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        x = self.feature(y)
        if self.time:
            x = jnp.concatenate([x, jnp.reshape(t, (1,)).astype(x.dtype)])
        return self.mlp(x)


class SoftplusField(eqx.Module):
    """A positive field `σ(t, y) = softplus(h(t, y))`, e.g. a diagonal diffusion."""

    field: Callable[..., Array]

    def __call__(self, t: Scalar, y: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        return jax.nn.softplus(self.field(t, y, args))
