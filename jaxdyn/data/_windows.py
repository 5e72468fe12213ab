"""Cutting trajectories into training windows."""

import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["windows"]


def windows(ys: Float[Array, "time ..."], length: int) -> Float[Array, "count length ..."]:
    """All `time - length + 1` overlapping windows of `length` consecutive samples.

    Used to train on random short segments of one long trajectory (the torchdiffeq demo).
    """
    if not 2 <= length <= ys.shape[0]:
        raise ValueError(f"window length must be in [2, {ys.shape[0]}], got {length}")
    starts = jnp.arange(ys.shape[0] - length + 1)
    return ys[starts[:, None] + jnp.arange(length)[None, :]]
