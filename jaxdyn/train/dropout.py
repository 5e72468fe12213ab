"""Coordinated dropout (Keshtkaran & Pandarinath 2019, "Enabling hyperparameter optimization
in sequential autoencoders for spiking neural data"), as LangevinFlow's reference
implementation trains with it (Song et al. 2025)."""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, PRNGKeyArray

__all__ = ["coordinated_dropout", "gradient_masked"]


def coordinated_dropout(
    data: Float[Array, "*shape"],
    rate: float,
    *,
    key: PRNGKeyArray,
    pass_rate: float | None = None,
) -> tuple[Float[Array, "*shape"], Bool[Array, "*shape"]]:
    """Coordinated dropout of an autoencoder's input `data`: each entry is dropped (set to 0)
    with probability `rate`, independently, and the kept ones are scaled by `1/(1 − rate)`
    (so every entry's expectation is unchanged). Returns `(inputs, gradient_mask)`.

    The reconstruction loss of an entry the encoder saw could be lowered by copying it
    through (an identity map): coordinated dropout lets only the dropped entries' loss train
    the model, `gradient_mask = dropped ∨ passed`, where a kept entry is also "passed" (its
    loss trains the model) with probability `pass_rate`. Apply the mask to the per-entry loss
    with `gradient_masked`. `pass_rate=None` takes `rate`, the reference implementation's
    choice (there, entries are kept with probability `1 − rate` and passed with probability
    `rate`); `pass_rate=0` is plain coordinated dropout (lfads-torch's default). `rate=0` is
    no dropout: the data unchanged, every entry's gradient kept (`gradient_mask` all true).
    `rate` and `pass_rate` are static Python floats (they choose the program)."""
    pass_rate = rate if pass_rate is None else pass_rate
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"coordinated_dropout needs 0 <= rate < 1, got {rate!r}")
    if not 0.0 <= pass_rate <= 1.0:
        raise ValueError(f"coordinated_dropout needs 0 <= pass_rate <= 1, got {pass_rate!r}")
    data = jnp.asarray(data)
    if rate == 0.0:  # no dropout: nothing to hold out of the loss
        return data, jnp.ones(data.shape, bool)
    k_keep, k_pass = jax.random.split(key)
    kept = jax.random.bernoulli(k_keep, 1.0 - rate, data.shape)
    passed = jax.random.bernoulli(k_pass, pass_rate, data.shape)
    inputs = jnp.where(kept, data / (1.0 - rate), jnp.zeros_like(data))
    return inputs, jnp.logical_not(kept) | passed


def gradient_masked(
    loss: Float[Array, "*shape"], mask: Bool[Array, "*shape"]
) -> Float[Array, "*shape"]:
    """`loss` with its value unchanged and its gradient blocked where `mask` is false
    (`jax.lax.stop_gradient`): the per-entry loss of coordinated dropout, whose sum still
    reports the whole reconstruction loss."""
    return jnp.where(mask, loss, jax.lax.stop_gradient(loss))
