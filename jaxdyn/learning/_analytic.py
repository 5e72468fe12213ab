"""The infinite-width kernels of a multilayer perceptron in the NTK parameterisation: the NNGP
kernel (Neal 1996; Lee et al. 2018; Matthews et al. 2018) and the neural tangent kernel (Jacot,
Gabriel & Hongler 2018), by their layer recursions, with the Gaussian expectations of ReLU in
closed form (the arc-cosine kernel, Cho & Saul 2009) and of erf (the arcsine kernel, Williams
1997).
"""

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_choice, check_count
from ._ntk_mlp import NTK_ACTIVATIONS, check_variance

__all__ = ["analytic_kernels"]


def analytic_kernels(
    x1: Float[ArrayLike, "n1 dim"],
    x2: Float[ArrayLike, "n2 dim"] | None = None,
    *,
    depth: int,
    activation: Literal["relu", "erf"] = "relu",
    sigma_w2: float,
    sigma_b2: float,
) -> tuple[Float[Array, "n1 n2"], Float[Array, "n1 n2"]]:
    r"""The NNGP kernel `Σ` and the NTK `Θ` of an infinitely wide `NTKMLP` (`depth` hidden
    layers, `h = σ_w W x / √fan_in + σ_b b`) between two batches of inputs, per output unit.

    With `Σ¹(x, x') = σ_w² x·x'/dim + σ_b²` and `Θ¹ = Σ¹`, for `l = 1, …, depth`:

        Σ^{l+1} = σ_w² E[φ(u) φ(v)] + σ_b²,    Σ̇^{l+1} = σ_w² E[φ'(u) φ'(v)],
        Θ^{l+1} = Σ^{l+1} + Θ^l Σ̇^{l+1},

    with `(u, v)` centred Gaussian of covariance `[[Σ^l(x, x), Σ^l(x, x')], [·, Σ^l(x', x')]]`
    (Jacot et al. 2018, Theorem 1; Lee et al. 2019, eq. (10)-(11)). In closed form, with
    `ρ = Σ^l(x, x') / √(Σ^l(x, x) Σ^l(x', x'))` and `θ = arccos ρ`:

    - ReLU (Cho & Saul 2009): `E[φ(u)φ(v)] = √(Σ_xx Σ_x'x') (sin θ + (π − θ) cos θ) / 2π`,
      `E[φ'(u)φ'(v)] = (π − θ) / 2π`;
    - erf (Williams 1997): `E[φ(u)φ(v)] = (2/π) arcsin(2Σ_xx' / √((1 + 2Σ_xx)(1 + 2Σ_x'x')))`,
      `E[φ'(u)φ'(v)] = (4/π) / √((1 + 2Σ_xx)(1 + 2Σ_x'x') − 4Σ_xx'²)`.

    **Arguments:**

    - `x1`: inputs `(n1, dim)`; `x2`: inputs `(n2, dim)`, `None` for `x1` itself.
    - `depth`: the number of hidden layers (0: an affine map, `Θ = Σ = Σ¹`).
    - `activation`: `relu` or `erf`.
    - `sigma_w2`, `sigma_b2`: `σ_w²`, `σ_b²` of every layer (read-out included).

    **Returns:** `(nngp, ntk)`, each `(n1, n2)`: the covariance of the network's outputs at
    initialisation and the limit of `empirical_ntk(..., outputs="mean")`. Jittable and
    differentiable in the inputs (away from `ρ = ±1` for ReLU).
    """
    check_count("depth", depth, 0)
    check_choice("activation", activation, NTK_ACTIVATIONS)
    sigma_w2 = check_variance("sigma_w2", sigma_w2)
    sigma_b2 = check_variance("sigma_b2", sigma_b2)
    x1 = jnp.asarray(x1)
    if x1.ndim != 2 or x1.shape[0] < 1:
        raise ValueError(f"x1 must be inputs (n1, dim), got shape {x1.shape}")
    x2 = x1 if x2 is None else jnp.asarray(x2)
    if x2.ndim != 2 or x2.shape[1] != x1.shape[1] or x2.shape[0] < 1:
        raise ValueError(f"x2 must be inputs (n2, {x1.shape[1]}) like x1's, got shape {x2.shape}")
    return _recursion(x1, x2, sigma_w2, sigma_b2, depth=depth, activation=activation)


@functools.partial(jax.jit, static_argnames=("depth", "activation"))
def _recursion(x1, x2, sigma_w2, sigma_b2, *, depth: int, activation: str):
    """The recursion as one compiled program (an eager call would dispatch, and compile, each
    operation of each layer on its own)."""
    dim = x1.shape[1]
    cross = sigma_w2 * (x1 @ x2.T) / dim + sigma_b2
    var1 = sigma_w2 * jnp.sum(x1**2, axis=1) / dim + sigma_b2
    var2 = sigma_w2 * jnp.sum(x2**2, axis=1) / dim + sigma_b2
    ntk = cross
    expectations = _relu if activation == "relu" else _erf
    for _ in range(depth):
        phi, dphi = expectations(cross, var1[:, None], var2[None, :])
        phi1 = expectations(var1, var1, var1)[0]
        phi2 = expectations(var2, var2, var2)[0]
        cross = sigma_w2 * phi + sigma_b2
        ntk = cross + ntk * sigma_w2 * dphi
        var1 = sigma_w2 * phi1 + sigma_b2
        var2 = sigma_w2 * phi2 + sigma_b2
    return cross, ntk


def _relu(cov: Array, var1: Array, var2: Array) -> tuple[Array, Array]:
    """`E[relu(u) relu(v)]` and `E[relu'(u) relu'(v)]` (the arc-cosine kernels of degree 1
    and 0)."""
    norm = jnp.sqrt(var1 * var2)
    safe = jnp.where(norm > 0, norm, 1.0)
    rho = jnp.clip(jnp.where(norm > 0, cov / safe, 0.0), -1.0, 1.0)
    theta = jnp.arccos(rho)
    value = norm * (jnp.sqrt(1 - rho**2) + (jnp.pi - theta) * rho) / (2 * jnp.pi)
    return value, (jnp.pi - theta) / (2 * jnp.pi)


def _erf(cov: Array, var1: Array, var2: Array) -> tuple[Array, Array]:
    """`E[erf(u) erf(v)]` and `E[erf'(u) erf'(v)]` (Williams 1997)."""
    denominator = (1 + 2 * var1) * (1 + 2 * var2)
    value = 2 / jnp.pi * jnp.arcsin(2 * cov / jnp.sqrt(denominator))
    return value, 4 / jnp.pi / jnp.sqrt(denominator - 4 * cov**2)
