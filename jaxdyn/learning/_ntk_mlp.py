"""The multilayer perceptron in the NTK parameterisation (Jacot, Gabriel & Hongler 2018):
every affine layer is `h = σ_w W x / √fan_in + σ_b b` with `W, b ~ N(0, 1)`, so that as the
width grows the network's tangent kernel at initialisation converges to a deterministic limit
(`analytic_kernels`) and stays there during training.
"""

from collections.abc import Callable
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_count, check_key, lookup

__all__ = ["NTK_ACTIVATIONS", "NTKLinear", "NTKMLP"]

NTK_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "relu": jax.nn.relu,
    "erf": jax.scipy.special.erf,
}
"""The activations whose kernels `analytic_kernels` knows in closed form."""


def check_variance(argument: str, value: float) -> float:
    """A variance `σ² >= 0` (a real Python or NumPy number), as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise TypeError(f"{argument} must be a number >= 0, got {value!r}")
    if not value >= 0:
        raise ValueError(f"{argument} must be >= 0, got {value!r}")
    return float(value)


class NTKLinear(eqx.Module):
    """One affine layer in the NTK parameterisation:
    `h = σ_w W x / √dim + σ_b b`, `W ~ N(0, 1)` of shape `(out, dim)`, `b ~ N(0, 1)`.

    The scales are static, so the parameters (the leaves that gradients and the tangent kernel
    see) are the standard-normal `weight` and `bias`. `empirical_ntk(method="structured")`
    knows this layer (as it knows `eqx.nn.Linear`).
    """

    weight: Float[Array, "out dim"]
    bias: Float[Array, " out"]
    sigma_w: float = eqx.field(static=True)
    sigma_b: float = eqx.field(static=True)

    def __init__(
        self,
        *,
        dim: int,
        out: int,
        sigma_w2: float,
        sigma_b2: float,
        dtype=None,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `dim`, `out`, the input and output sizes; `sigma_w2`, `sigma_b2`,
        the weight and bias variances `σ_w²`, `σ_b²`; `dtype` of the parameters (JAX's default
        float when `None`); `key`, for the initialisation."""
        check_count("dim", dim)
        check_count("out", out)
        check_key(key, "NTKLinear")
        self.sigma_w = check_variance("sigma_w2", sigma_w2) ** 0.5
        self.sigma_b = check_variance("sigma_b2", sigma_b2) ** 0.5
        wkey, bkey = jax.random.split(key)
        self.weight = jax.random.normal(wkey, (out, dim), dtype)
        self.bias = jax.random.normal(bkey, (out,), dtype)

    @property
    def input_scale(self) -> float:
        """`σ_w / √dim`, the factor between the layer's input and `W`'s multiplier."""
        return self.sigma_w / self.weight.shape[1] ** 0.5

    def __call__(self, x: Float[Array, " dim"], *, key=None) -> Float[Array, " out"]:
        return self.weight @ (self.input_scale * x) + self.sigma_b * self.bias


class NTKMLP(eqx.Module):
    """A multilayer perceptron in the NTK parameterisation (Jacot et al. 2018):
    `depth` hidden layers of `width` units, `h^{l+1} = σ_w W^{l+1} φ(h^l) / √n_l + σ_b b^{l+1}`
    with `h^1 = σ_w W^1 x / √dim + σ_b b^1`, and a linear read-out `h^{depth+1}` of `out`
    units (no activation). All `W, b ~ N(0, 1)`.

    As `width → ∞` its empirical tangent kernel (`empirical_ntk`) at initialisation converges
    to `analytic_kernels(..., depth=depth)`'s NTK times the identity over outputs, with
    fluctuations of order `1/√width`, and its outputs to a Gaussian process with the NNGP
    kernel (Neal 1996; Lee et al. 2018; Jacot et al. 2018).
    """

    layers: tuple[NTKLinear, ...]
    activation: Callable[[Array], Array] = eqx.field(static=True)
    dim: int = eqx.field(static=True)

    def __init__(
        self,
        *,
        dim: int,
        width: int,
        depth: int,
        out: int = 1,
        activation: Literal["relu", "erf"] | Callable[[Array], Array] = "relu",
        sigma_w2: float = 2.0,
        sigma_b2: float = 0.0,
        dtype=None,
        key: PRNGKeyArray,
    ):
        """**Arguments:** `dim`, the input size; `width`, the hidden layers' size; `depth`, the
        number of hidden layers (0: an affine map); `out`, the output size (outputs have shape
        `(out,)`); `activation`, `relu`, `erf` or a callable (the analytic kernels know the
        first two); `sigma_w2`, `sigma_b2`, the variances `σ_w²`, `σ_b²` of every layer;
        `dtype` of the parameters; `key`, for the initialisation."""
        for name, value in (("dim", dim), ("width", width), ("out", out)):
            check_count(name, value)
        check_count("depth", depth, 0)
        check_key(key, "NTKMLP")
        self.dim = dim
        self.activation = lookup("activation", activation, NTK_ACTIVATIONS)
        sizes = [dim] + [width] * depth + [out]
        keys = jax.random.split(key, depth + 1)
        self.layers = tuple(
            NTKLinear(dim=n_in, out=n_out, sigma_w2=sigma_w2, sigma_b2=sigma_b2, dtype=dtype, key=k)
            for n_in, n_out, k in zip(sizes[:-1], sizes[1:], keys, strict=True)
        )

    def __call__(self, x: Float[Array, " dim"], *, key=None) -> Float[Array, " out"]:
        x = jnp.asarray(x)
        if x.shape != (self.dim,):
            raise ValueError(
                f"NTKMLP takes one input of shape ({self.dim},), got {x.shape}; for a batch, "
                "jax.vmap over inputs"
            )
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)
