"""Causal weights for time-dependent PINNs (Wang, Sankaran & Perdikaris 2022, "Respecting
causality is all you need for training physics-informed neural networks", arXiv:2203.07404).

The time interval is cut into `M` consecutive chunks with mean squared residuals
`L_1, …, L_M`; the residual loss is `(1/M) Σ_i w_i L_i` with

    w_i = stop_gradient(exp(−ε Σ_{k<i} L_k)),   w_1 = 1,

so a chunk only counts once the residual before it is small: training proceeds forward in
time as a time-marching solver would. The tolerance `ε` is annealed upwards
(`anneal_causal_epsilon`) once every weight exceeds a threshold `δ` (the paper's
`min_i w_i > δ = 0.99`), making the criterion stricter as the residual falls.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

__all__ = ["anneal_causal_epsilon", "causal_weights", "chunk_losses"]


def chunk_losses(
    residuals: Float[ArrayLike, " n"], t: Float[ArrayLike, " n"], *, chunks: int
) -> Float[Array, " chunks"]:
    """The mean squared residual `L_i` of each of `chunks` time chunks: the points sorted by
    `t` and cut into `chunks` equal groups (`n` must be a multiple of `chunks`), as jaxpi
    does with its sorted collocation batch."""
    residuals, t = jnp.asarray(residuals), jnp.asarray(t)
    n = residuals.shape[0]
    if t.shape != residuals.shape or residuals.ndim != 1:
        raise ValueError(
            f"residuals and t must be 1-D of one length, got {residuals.shape} and {t.shape}"
        )
    if not isinstance(chunks, int) or chunks < 1 or n % chunks:
        raise ValueError(f"chunks must be an int >= 1 dividing the {n} points, got {chunks!r}")
    ordered = residuals[jnp.argsort(t)]
    return jnp.mean(ordered.reshape(chunks, n // chunks) ** 2, axis=1)


def causal_weights(
    losses: Float[ArrayLike, " chunks"], epsilon: float | Scalar
) -> Float[Array, " chunks"]:
    """`w_i = exp(−ε Σ_{k<i} L_k)` (`w_1 = 1`, non-increasing), behind `stop_gradient`: no
    gradient flows through the weights."""
    losses = jnp.asarray(losses)
    before = jnp.cumsum(losses) - losses  # Σ_{k<i} L_k
    return jax.lax.stop_gradient(jnp.exp(-epsilon * before))


def anneal_causal_epsilon(
    epsilon: float | Scalar,
    weights: Float[ArrayLike, " chunks"],
    *,
    factor: float = 10.0,
    threshold: float = 0.99,
    maximum: float = 100.0,
) -> Scalar:
    """The next tolerance: `min(factor · ε, maximum)` when `min_i w_i > threshold` (every
    chunk already counts), else `ε`. Jittable; the paper's schedule is
    `ε ∈ [1e-2, 1e-1, 1, 10, 100]` with `threshold = 0.99`."""
    epsilon = jnp.asarray(epsilon)
    grown = jnp.minimum(epsilon * factor, maximum)
    return jnp.where(jnp.min(jnp.asarray(weights)) > threshold, grown, epsilon)
