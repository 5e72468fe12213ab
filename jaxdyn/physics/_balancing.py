"""Loss balancing by gradient norms (Wang, Sankaran, Wang & Perdikaris 2023, "An expert's
guide to training physics-informed neural networks", arXiv:2308.08468, Algorithm 1; jaxpi's
`grad_norm` weighting).

For losses `L_1, …, L_m` with parameter gradients `g_i = ∇_θ L_i`, the global weights

    λ̂_i = (Σ_j ‖g_j‖) / ‖g_i‖

make every weighted term `λ̂_i ‖g_i‖ = Σ_j ‖g_j‖` contribute a gradient of the same norm. They
are smoothed, `λ ← α λ + (1 − α) λ̂` (momentum `α`, 0.9 in the paper), and recomputed only every
`k` steps (1000 there); the training loss is `Σ_i λ_i L_i` with `λ` held constant between
updates. `GradNormState` is that state, `update_grad_norm_weights` its jittable update, to be
carried by the training loop.
"""

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PyTree

__all__ = ["GradNormState", "grad_norm_weights", "gradient_norms", "update_grad_norm_weights"]


class GradNormState(NamedTuple):
    """The current loss weights `λ` (shape `(m,)`) and how many updates made them."""

    weights: Float[Array, " m"]
    count: Array

    @classmethod
    def init(cls, num_losses: int) -> "GradNormState":
        """Equal weights `λ_i = 1` (jaxpi's `init_weights`)."""
        return cls(jnp.ones(num_losses), jnp.asarray(0))


def gradient_norms(
    losses_fn: Callable[..., Float[Array, " m"]], model: PyTree, *args
) -> Float[Array, " m"]:
    """`‖∇_θ L_i‖₂` for each entry of `losses_fn(model, *args)` (a vector of `m` losses), the
    gradient taken with respect to the model's floating-point arrays (one reverse pass per
    loss, by `jax.jacrev`)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def losses(p):
        return losses_fn(eqx.combine(p, static), *args)

    jac = jax.jacrev(losses)(params)  # each leaf: (m, *leaf.shape)
    squares = [
        jnp.sum(leaf.reshape(leaf.shape[0], -1) ** 2, axis=1) for leaf in jax.tree.leaves(jac)
    ]
    return jnp.sqrt(sum(squares))


def grad_norm_weights(norms: Float[ArrayLike, " m"]) -> Float[Array, " m"]:
    """`λ̂_i = Σ_j ‖g_j‖ / ‖g_i‖` from the gradient norms."""
    norms = jnp.asarray(norms)
    return jnp.sum(norms) / norms


def update_grad_norm_weights(
    state: GradNormState, norms: Float[ArrayLike, " m"], *, momentum: float = 0.9
) -> GradNormState:
    """`λ ← α λ + (1 − α) λ̂(norms)` (`α = momentum`); jittable."""
    target = grad_norm_weights(norms)
    return GradNormState(momentum * state.weights + (1 - momentum) * target, state.count + 1)
