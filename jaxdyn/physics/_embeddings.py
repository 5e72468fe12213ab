"""Input embeddings for coordinate networks: the exact periodic embedding (Dong & Ni 2021;
Wang, Sankaran, Wang & Perdikaris 2023, "An expert's guide to training PINNs", §5) and random
Fourier features (Tancik et al. 2020; Wang, Wang & Perdikaris 2021 for PINNs).

A network of `PeriodicEmbedding(x)` is exactly periodic in `x` for any weights, so periodic
boundary conditions (of the function and of all its derivatives) need no loss term.
`FourierFeatures` maps `z ↦ [cos(B z), sin(B z)]` with `B` drawn once from `N(0, σ²)`, which
lets an MLP fit high frequencies (the NTK of the embedded network has bandwidth set by `σ`).
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import check_count, check_key, check_positive

__all__ = ["FourierFeatures", "PeriodicEmbedding"]


class PeriodicEmbedding(eqx.Module):
    """`x ↦ [cos(kωx), sin(kωx)]_{k=1..harmonics}`, `ω = 2π / period`: exactly periodic with
    the given period. A scalar `x` gives shape `(2 · harmonics,)` (cosines first); an array
    `x` gets the embedding on a new last axis. Nothing here is trained."""

    period: float = eqx.field(static=True)
    harmonics: int = eqx.field(static=True)

    def __init__(self, *, period: float, harmonics: int = 1):
        check_positive("period", period)
        check_count("harmonics", harmonics)
        self.period = float(period)
        self.harmonics = int(harmonics)

    @property
    def size(self) -> int:
        """The embedding's length, `2 · harmonics`."""
        return 2 * self.harmonics

    def __call__(self, x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape embed"]:
        k = jnp.arange(1, self.harmonics + 1) * (2 * math.pi / self.period)
        phase = jnp.asarray(x)[..., None] * k
        return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)], axis=-1)


class FourierFeatures(eqx.Module):
    """Random Fourier features `z ↦ [cos(B z), sin(B z)]`, `B ∈ R^{features × in_size}` with
    entries drawn from `N(0, scale²)` (Tancik et al. 2020). `B` is fixed: it is held behind
    `jax.lax.stop_gradient`, so training leaves it at its draw. Input `(in_size,)`, output
    `(2 · features,)` (cosines first)."""

    matrix: Float[Array, "features in_size"]
    scale: float = eqx.field(static=True)

    def __init__(self, in_size: int, *, features: int, scale: float, key: PRNGKeyArray):
        check_count("in_size", in_size)
        check_count("features", features)
        check_positive("scale", scale)
        check_key(key, "FourierFeatures")
        self.scale = float(scale)
        self.matrix = scale * jax.random.normal(key, (features, in_size))

    @property
    def size(self) -> int:
        """The embedding's length, `2 · features`."""
        return 2 * self.matrix.shape[0]

    def __call__(self, z: Float[ArrayLike, " in_size"]) -> Float[Array, " embed"]:
        phase = jax.lax.stop_gradient(self.matrix) @ jnp.asarray(z)
        return jnp.concatenate([jnp.cos(phase), jnp.sin(phase)])
