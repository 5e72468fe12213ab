"""Argument checks the models share: layer sizes and one trial of spike counts.

Sizes are keywords (`docs/api.md`); a size that is not a positive int raises `ValueError`
naming it, in the wording of `jaxdyn._checks.check_count`.
"""

import jax.numpy as jnp
from jaxtyping import Array

from .._checks import check_count

__all__ = ["check_sizes", "check_spikes"]


def check_sizes(**sizes: int) -> None:
    """Every size an int >= 1; `depth` (a count of hidden layers) may be 0."""
    for name, value in sizes.items():
        check_count(name, value, 0 if name == "depth" else 1)


def check_spikes(spikes: Array, neurons: int, owner: str) -> Array:
    """One trial's spike counts `(time >= 2, neurons)` as an array."""
    spikes = jnp.asarray(spikes)
    if spikes.ndim != 2 or spikes.shape[1] != neurons or spikes.shape[0] < 2:
        raise ValueError(
            f"{owner} needs spikes of shape (time >= 2, {neurons}) for one trial (the encoder's "
            f"held-in neurons), got {spikes.shape}; for a batch, jax.vmap over trials"
        )
    return spikes
