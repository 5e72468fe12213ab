"""Losses that depend on the training step, inside `fit`'s jitted `(model, batch, key)` loss:
a step counter carried with the model, and the linear KL warm-up that reads it."""

import equinox as eqx
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, PyTree, Scalar

__all__ = ["StepCounted", "counting_steps", "kl_warmup"]


def kl_warmup(step: int | Scalar, warmup_steps: int) -> Scalar:
    """The KL weight of a linear warm-up, `min(1, (step + 1) / warmup_steps)` (1 when
    `warmup_steps` is 0), as torchsde's `LinearScheduler` (Bowman et al. 2016, "Generating
    sentences from a continuous space", §3.1)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return jnp.ones((), jnp.result_type(float))
    return jnp.minimum(1.0, (jnp.asarray(step) + 1.0) / warmup_steps)


class StepCounted(eqx.Module):
    """A model paired with the number of optimiser steps taken, so that a loss
    `(model, batch, key)` can read the step (e.g. for `kl_warmup`). The counter is a float
    array, saved and restored with the model; `counting_steps` advances it. Losses should read
    it through `jax.lax.stop_gradient`."""

    model: PyTree
    step: Float[Array, ""]

    def __init__(self, model: PyTree, step: float = 0.0):
        self.model = model
        self.step = jnp.asarray(step, jnp.float32)


def counting_steps(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer` for a `StepCounted` model: the wrapped model is updated by `optimizer`,
    and the counter advances by exactly one per update (never by its gradient)."""

    def update(updates, state, params=None):
        updates = eqx.tree_at(lambda u: u.step, updates, jnp.zeros_like(updates.step))
        updates, state = optimizer.update(updates, state, params)
        return eqx.tree_at(lambda u: u.step, updates, jnp.ones_like(updates.step)), state

    return optax.GradientTransformation(optimizer.init, update)
