"""CLASSP, continual learning through adjustment suppression and sparsity promotion (Ludwig
2024), as an optax gradient transformation."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from .._checks import check_non_negative, check_positive
from ._sgld import check_rate

__all__ = ["ClasspState", "classp"]


class ClasspState(NamedTuple):
    """`count`: steps taken; `total`: per parameter, the accumulated `Σ_t |g_t|^p` over the
    steps that updated it. Kept across tasks: it is the method's memory."""

    count: Array
    total: optax.Params


def classp(
    learning_rate: optax.ScalarOrSchedule,
    *,
    threshold: float = 0.0,
    power: float = 2.0,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    r"""CLASSP (Ludwig 2024, "CLASSP: a biologically-inspired approach to continual learning
    through adjustment suppression and sparsity promotion"), elementwise for every parameter:

        m = [|g| > τ],   A ← A + m |g|^p,   Δθ = −η m g / (A + ε)^{1/p}.

    Adjustment suppression: a weight's learning rate decays with the gradient magnitude it has
    accumulated (`A`), so weights that were adjusted much (which likely encode earlier tasks)
    move less; with `p = 2` and `τ = 0` this is AdaGrad (Duchi, Hazan & Singer 2011) — the
    paper's "generalisation of AdaGrad" is the power `p`. Sparsity promotion: a weight is
    updated (and accumulates) only while the loss gradient with respect to it exceeds the
    threshold `τ`, so small, diffuse updates are dropped and unused weights stay free for later
    tasks. Keep the state across tasks (do not re-initialise it): it is the memory of the
    earlier ones.

    Interpretation where the abstract is silent (ours): the threshold is on `|g|` per weight
    (the abstract's words; the author's PyTorch class compares `g²` with it per tensor);
    the accumulator grows only where the weight is updated, and includes the current step
    (as AdaGrad, and as that class); `ε` is added before the `1/p`-th root.

    Args:
        learning_rate: `η > 0`, or an optax schedule of the step count.
        threshold: `τ >= 0` on the gradient's magnitude.
        power: `p > 0` (the author's code defaults to 1; 2 is AdaGrad).
        eps: `ε > 0`, keeps the first step finite.
    """
    check_rate(learning_rate)
    check_non_negative("threshold", threshold)
    check_positive("power", power)
    check_positive("eps", eps)

    def init_fn(params):
        total = jax.tree.map(jnp.zeros_like, params)
        return ClasspState(count=jnp.zeros([], jnp.int32), total=total)

    def update_fn(updates, state, params=None):
        del params
        rate = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def accumulate(g, a):
            return a + jnp.where(jnp.abs(g) > threshold, jnp.abs(g) ** power, 0.0).astype(a.dtype)

        def move(g, a):
            step = -rate * g / (a + eps) ** (1.0 / power)
            return jnp.where(jnp.abs(g) > threshold, step, 0.0).astype(g.dtype)

        total = jax.tree.map(accumulate, updates, state.total)
        updates = jax.tree.map(move, updates, total)
        return updates, ClasspState(count=optax.safe_increment(state.count), total=total)

    return optax.GradientTransformation(init_fn, update_fn)
