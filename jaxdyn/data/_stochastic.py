"""Synthetic stochastic systems: sample paths of known SDEs, generated with `sdeint`.

The stochastic double well (overdamped Langevin dynamics in the potential
`V(x) = x⁴/4 - x²/2`, the standard test of SDE estimators; e.g. Gardiner, "Stochastic
Methods", §9.1),

    dx = (x - x³) dt + σ(x) dW,    σ(x) = √(σ₀² + σ₁² x²),

in one dimension, Itô. With `σ₁ = 0` (the default) the noise is additive, `dx = (x - x³) dt +
σ₀ dW`; `σ₁ > 0` makes it multiplicative. The wells are at `x = ±1`, the barrier at `0`.
"""

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..solve import sdeint

__all__ = ["double_well_diffusion", "double_well_drift", "double_well_paths"]


def double_well_drift(t, y: Float[Array, " 1"], args=None) -> Float[Array, " 1"]:
    """`f(x) = x - x³ = -V'(x)`, `V(x) = x⁴/4 - x²/2`."""
    return y - y**3


def double_well_diffusion(
    t, y: Float[Array, " 1"], args: tuple[float, float] = (0.5, 0.0)
) -> Float[Array, " 1"]:
    """`σ(x) = √(σ₀² + σ₁² x²)` with `args = (σ₀, σ₁)` (diagonal noise, shape of `y`)."""
    sigma0, sigma1 = args
    return jnp.sqrt(sigma0**2 + (sigma1 * y) ** 2)


def double_well_paths(
    y0: Float[ArrayLike, "paths 1"],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    sigma: float = 0.5,
    sigma_x: float = 0.0,
    dt0: float,
    solver: str = "milstein",
) -> Float[Array, "paths time 1"]:
    """Paths of the stochastic double well `dx = (x - x³) dt + √(σ² + σₓ² x²) dW` (Itô) from
    the initial states `y0`, observed at the times `ts`.

    Integrated by `sdeint` with fixed steps of at most `dt0` on a grid containing `ts`
    (choose `dt0` well below the observation spacing, so the data are exact to the
    scheme's weak order in `dt0`), on the Brownian grid path, each path solved separately
    (`batch="vmap"`: Milstein differentiates the diffusion with respect to the state, which
    for a batch solved as one state would be the Jacobian of the whole batch). `solver` is an
    `sdeint` name (Itô Milstein by default: strong order 1 for this one-dimensional noise).
    Path `b` uses `jax.random.split(key, paths)[b]`. `ts` must be concrete (not traced).
    """
    y0 = jnp.asarray(y0)
    if y0.ndim != 2 or y0.shape[1] != 1:
        raise ValueError(f"double_well_paths needs y0 of shape (paths, 1), got {y0.shape}")
    if sigma < 0 or sigma_x < 0 or sigma + sigma_x == 0:
        raise ValueError(
            f"double_well_paths needs sigma, sigma_x >= 0, not both 0; got {sigma}, {sigma_x}"
        )
    times = np.asarray(ts)  # concrete: sdeint builds its step grid from it
    span = float(times[-1] - times[0])
    args = (jnp.asarray(sigma, y0.dtype), jnp.asarray(sigma_x, y0.dtype))
    sol = sdeint(
        double_well_drift,
        double_well_diffusion,
        y0,
        ts,
        key=key,
        args=args,
        noise="diagonal",
        solver=solver,
        dt0=dt0,
        batch="vmap",
        max_steps=max(16384, int(1.01 * span / dt0) + times.shape[0] + 1),
    )
    return sol.ys
