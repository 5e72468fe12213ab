"""Random weight factorisation (Wang, Wang, Wang & Perdikaris 2022, "Random weight
factorization improves the training of continuous neural representations", arXiv:2210.01274;
used throughout jaxpi, Wang et al. 2023, "An expert's guide to training PINNs").

A dense layer `y = W x + b` is re-parametrised as

    W = diag(exp(s)) V,   s ∈ R^out,  V ∈ R^{out × in},

with `s` drawn once from `N(μ, σ²)` and `V = diag(exp(−s)) W₀` so that the layer starts as
the layer `W₀` it was built from; `s`, `V` and `b` are trained. Each output unit gets its
own trainable scale, which changes the geometry of gradient descent (a per-neuron adaptive
step: the paper's §3) without changing the function class. jaxpi's `weight_fact` draws
`μ = 1, σ = 0.1` and trains `exp(s)` directly; here `s` is trained (the paper's form).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_key

__all__ = ["FactorizedLinear", "factorize_mlp"]


class FactorizedLinear(eqx.Module):
    """`x ↦ diag(exp(s)) V x + b`: a dense layer with random weight factorisation. Built from
    an `eqx.nn.Linear` (`FactorizedLinear(linear, mean=1.0, std=0.1, key=key)`), whose
    function it reproduces at initialisation; `"scalar"` inputs and outputs behave as in
    `eqx.nn.Linear`."""

    log_scale: Float[Array, " out"]
    direction: Float[Array, "out in"]
    bias: Float[Array, " out"] | None
    in_features: int | str = eqx.field(static=True)
    out_features: int | str = eqx.field(static=True)

    def __init__(
        self, linear: eqx.nn.Linear, *, mean: float = 1.0, std: float = 0.1, key: PRNGKeyArray
    ):
        if not isinstance(linear, eqx.nn.Linear):
            raise TypeError(f"linear must be an equinox.nn.Linear, got {type(linear).__name__}")
        if not std >= 0:
            raise ValueError(f"std must be >= 0, got std={std!r}")
        check_key(key, "FactorizedLinear")
        weight = linear.weight
        self.log_scale = mean + std * jax.random.normal(key, (weight.shape[0],), weight.dtype)
        self.direction = weight * jnp.exp(-self.log_scale)[:, None]
        self.bias = linear.bias
        self.in_features, self.out_features = linear.in_features, linear.out_features

    @property
    def weight(self) -> Float[Array, "out in"]:
        """The effective weight `diag(exp(s)) V`."""
        return jnp.exp(self.log_scale)[:, None] * self.direction

    def __call__(self, x: Float[ArrayLike, "*in"], *, key=None) -> Float[Array, "*out"]:
        x = jnp.asarray(x)
        if self.in_features == "scalar":
            x = jnp.broadcast_to(x, (1,))
        y = self.weight @ x
        if self.bias is not None:
            y = y + self.bias
        return jnp.squeeze(y, 0) if self.out_features == "scalar" else y


def factorize_mlp(
    mlp: eqx.nn.MLP, *, mean: float = 1.0, std: float = 0.1, key: PRNGKeyArray
) -> eqx.nn.MLP:
    """`mlp` with every `eqx.nn.Linear` layer replaced by a `FactorizedLinear` (each its own
    draw of `s ~ N(mean, std²)`): the same function at initialisation, trained in the
    factorised parameters. Not for `scan=True` MLPs (their hidden layers are stacked)."""
    if not isinstance(mlp, eqx.nn.MLP) or getattr(mlp, "scan", False):
        raise TypeError("factorize_mlp takes an equinox.nn.MLP built with scan=False")
    check_key(key, "factorize_mlp")
    keys = jax.random.split(key, len(mlp.layers))
    layers = tuple(
        FactorizedLinear(layer, mean=mean, std=std, key=k)
        for layer, k in zip(mlp.layers, keys, strict=True)
    )
    return eqx.tree_at(lambda m: m.layers, mlp, layers)
