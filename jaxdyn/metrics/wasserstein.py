"""Exact Wasserstein distances between empirical distributions."""

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Scalar


def wasserstein_1d(a: Float[ArrayLike, " n"], b: Float[ArrayLike, " m"]) -> Scalar:
    """The Wasserstein-1 distance between the empirical distributions of two 1-D samples,
    exactly: `W₁ = ∫ |F_a(x) - F_b(x)| dx` over the merged sorted samples (for `n = m` this is
    `mean|sort(a) - sort(b)|`)."""
    a, b = jnp.sort(jnp.ravel(jnp.asarray(a))), jnp.sort(jnp.ravel(jnp.asarray(b)))
    z = jnp.sort(jnp.concatenate([a, b]))
    cdf_a = jnp.searchsorted(a, z[:-1], side="right").astype(z.dtype) / a.shape[0]
    cdf_b = jnp.searchsorted(b, z[:-1], side="right").astype(z.dtype) / b.shape[0]
    return jnp.sum(jnp.abs(cdf_a - cdf_b) * jnp.diff(z))


def wasserstein2_squared(
    x: Float[ArrayLike, "n dim"],
    y: Float[ArrayLike, "m dim"],
    *,
    max_iterations: int = 1_000_000,
) -> float:
    """The squared 2-Wasserstein distance between the empirical (uniform) distributions of two
    sample sets, by exact optimal transport: `W₂² = min_π Σ_ij π_ij |x_i − y_j|²` over couplings
    `π` with marginals `1/n` and `1/m`, solved by POT's network simplex (`ot.emd2`, Bonneel et
    al. 2011). Runs on the host in float64; `O(n m)` memory (a few thousand points is cheap).

    Raises `RuntimeError` if the network simplex stops before optimality (raise
    `max_iterations`)."""
    import ot  # POT: imported here, only the exact-OT metrics need it

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    for name, v in (("x", x), ("y", y)):
        if v.ndim != 2 or v.shape[0] == 0:
            raise ValueError(f"{name} must have shape (num_samples, dim); got {v.shape}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{name} has non-finite entries")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dim; got {x.shape} and {y.shape}")
    cost = ot.dist(x, y, metric="sqeuclidean")
    a, b = np.full(x.shape[0], 1.0 / x.shape[0]), np.full(y.shape[0], 1.0 / y.shape[0])
    value, log = ot.emd2(a, b, cost, numItermax=max_iterations, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"exact OT did not reach optimality: {log['warning']}")
    return float(value)
