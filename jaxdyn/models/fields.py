"""Neural vector fields `f(t, y, args)` for differential-equation models."""

from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray, Scalar

from .._checks import check_count, lookup
from ._arguments import check_sizes

__all__ = ["ACTIVATIONS", "FEATURES", "MLPField", "SoftplusField"]


def _gaussian_rbf(x: Array) -> Array:
    """`exp(-x²)`, the radial-basis activation of Rackauckas et al. 2020's UDE networks."""
    return jnp.exp(-(x**2))


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "softplus": jax.nn.softplus,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "identity": lambda x: x,
    "rbf": _gaussian_rbf,
}


def _cube(y: Array) -> Array:
    return y**3


FEATURES: dict[str, Callable[[Array], Array]] = {
    "identity": lambda y: y,
    "cube": _cube,
}


class MLPField(eqx.Module):
    r"""A multilayer-perceptron vector field `f(t, y, args) = MLP(u)` on the input

        u = [φ(y), t, sin(πt), …, sin(Kπt), cos(πt), …, cos(Kπt), c],

    where each block but `φ(y)` is optional: `t` with `time=True`, the `2K` Fourier time
    features with `time_features=K > 0` (as in the toy flows of Lipman et al. 2023, "Flow
    Matching for Generative Modeling", and Tong et al. 2023), and a conditioning vector `c`
    of length `conditioning`, passed as `args` (e.g. a class one-hot for class-conditional
    flow matching). `φ` is a fixed input feature map (`identity`, or `cube` for the spiral
    demo of Chen et al. 2018, "Neural Ordinary Differential Equations"). Without `time` or
    time features the field is autonomous.
    """

    mlp: eqx.nn.MLP
    feature: Callable[[Array], Array] = eqx.field(static=True)
    time: bool = eqx.field(static=True)
    time_features: int = eqx.field(static=True)
    conditioning: int = eqx.field(static=True)
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
        time_features: int = 0,
        conditioning: int = 0,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `dim`, the state dimension; `width` and `depth`, the hidden layers
        (depth = number of hidden layers); `activation` and `feature` by name or callable;
        `time`, whether `t` itself is an input; `time_features`, the number `K` of Fourier
        frequencies `kπ`, `k = 1..K`, whose sines and cosines of `t` are inputs (0: none);
        `conditioning`, the length of the vector `args` that is an input (0: `args` is
        ignored); `key`, for the initialisation."""
        check_sizes(dim=dim, width=width, depth=depth)
        if not isinstance(time, bool):
            raise TypeError(f"time must be a bool, got {time!r}")
        check_count("time_features", time_features, 0)
        check_count("conditioning", conditioning, 0)
        self.dim = dim
        self.time = time
        self.time_features = time_features
        self.conditioning = conditioning
        self.feature = lookup("feature", feature, FEATURES)
        activation = lookup("activation", activation, ACTIVATIONS)
        inputs = dim + int(time) + 2 * time_features + conditioning
        self.mlp = eqx.nn.MLP(inputs, dim, width, depth, activation=activation, key=key)

    def __call__(self, t: Scalar, y: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        parts = [self.feature(y)]
        dtype = parts[0].dtype
        if self.time:
            parts.append(jnp.reshape(t, (1,)).astype(dtype))
        if self.time_features:
            angle = jnp.pi * jnp.arange(1, self.time_features + 1, dtype=dtype)
            angle = angle * jnp.asarray(t, dtype)
            parts += [jnp.sin(angle), jnp.cos(angle)]
        if self.conditioning:
            parts.append(self._condition(args, dtype))
        return self.mlp(jnp.concatenate(parts) if len(parts) > 1 else parts[0])

    def _condition(self, args, dtype) -> Array:
        if args is None or jnp.shape(args) != (self.conditioning,):
            raise ValueError(
                f"MLPField(conditioning={self.conditioning}) needs args of shape "
                f"({self.conditioning},), got {None if args is None else jnp.shape(args)}"
            )
        return jnp.asarray(args).astype(dtype)


class SoftplusField(eqx.Module):
    """A positive field `σ(t, y) = softplus(h(t, y))`, e.g. a diagonal diffusion."""

    field: Callable[..., Array]

    def __call__(self, t: Scalar, y: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        return jax.nn.softplus(self.field(t, y, args))
