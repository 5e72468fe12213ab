"""Exact Wasserstein distances between empirical distributions."""

import jax.numpy as jnp
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
