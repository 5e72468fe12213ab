"""Per-sample regression losses for the velocity, score and denoiser of a stochastic interpolant.

For an interpolant `x_t = α x0 + β x1 + γ z` (Albergo, Boffi & Vanden-Eijnden 2023), with
`t ~ U[t_min, 1 − t_min]` and `z ~ N(0, I)` drawn here, one per pair `(x0, x1)`:

- `velocity_loss`: `|b(t, x_t) − ∂_t x_t|²`. The paper's objective is
  `L_b = ∫ E[½|b|² − ∂_t x_t · b] dt`; ours is `2 L_b + E|∂_t x_t|²`, the same minimiser
  `b = E[∂_t x_t | x_t]`, written as a regression so that its value is non-negative.
- `flow_matching_loss`: `velocity_loss` for the linear interpolant with `γ = 0`, the conditional
  flow matching / rectified flow loss `|b(t, x_t) − (x1 − x0)|²` (Lipman et al. 2023, σ_min = 0;
  Liu et al. 2023).
- `denoiser_loss`: `|η(t, x_t) − z|²` (the paper's `L_η = ∫ E[½|η|² − z·η] dt`, doubled plus
  `E|z|²`), minimised by `η = E[z | x_t]`; the score is `s = −η / γ`.
- `score_loss`: `|γ(t) s(t, x_t) + z|²`, the denoiser loss of `η = −γ s`: the paper's `L_s`
  weighted by `γ(t)²` so that it stays bounded as `γ → 0`; minimised by `s = ∇ log ρ_t`.

For `OneSidedInterpolant` the latent is `x0` (not `z`) with scale `α`, in both score losses.
Each loss returns the per-sample values, shape `(batch,)`; average them for training. Fields are
`(t, x, args) -> vector` for one sample; the losses `vmap` them and pass `args` (`None` by
default). `key` is keyword-only, as everywhere in jaxdyn.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_key
from ._fields import Field
from .interpolants import Interpolant, LinearInterpolant

__all__ = ["denoiser_loss", "flow_matching_loss", "score_loss", "velocity_loss"]


def _regression_loss(
    predict: Field,
    target: Callable[[Array, Array, Array, Array], Array],
    interpolant: Interpolant,
    x0: Array,
    x1: Array,
    key: PRNGKeyArray,
    args: Any,
    t_min: float,
) -> Array:
    """Per-sample `|predict(t, x_t, args) − target(x0, x1, z, t)|²` with `t ~ U[t_min, 1 − t_min]`
    and `z ~ N(0, I)` drawn from `key`, one per pair."""
    if jnp.ndim(x0) < 2 or jnp.shape(x0) != jnp.shape(x1):
        raise ValueError(
            "x0 and x1 must be batches of the same shape (batch, *dims); "
            f"got {jnp.shape(x0)} and {jnp.shape(x1)}"
        )
    if not 0 <= t_min < 0.5:
        raise ValueError(f"t_min must be in [0, 0.5); got {t_min}")
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (x0.shape[0],), dtype=x0.dtype, minval=t_min, maxval=1 - t_min)
    z = jax.random.normal(k_z, x0.shape, dtype=x0.dtype)

    def one(t, x0, x1, z):
        return predict(t, interpolant(x0, x1, z, t), args) - target(x0, x1, z, t)

    r = jax.vmap(one)(t, x0, x1, z)
    return jnp.sum(r.reshape(r.shape[0], -1) ** 2, axis=1)


def velocity_loss(
    velocity: Field,
    interpolant: Interpolant,
    x0: Float[Array, "batch ..."],
    x1: Float[Array, "batch ..."],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 0.0,
) -> Float[Array, " batch"]:
    """Per-sample `|b(t, x_t) − ∂_t x_t|²` (`∂_t x_t` by `jax.jvp`); see the module.

    **Arguments:** `velocity`, the field `b(t, x, args)`; `interpolant`; `x0`, `x1`, coupled
    batches; `key`, for `t` and `z`; `args`, passed to the field; `t_min`, to draw
    `t ~ U[t_min, 1 − t_min]` (use a small positive value with `gamma="brownian"`, whose `γ̇` is
    infinite at the endpoints).
    """
    check_key(key, "velocity_loss")
    target = interpolant.time_derivative
    return _regression_loss(velocity, target, interpolant, x0, x1, key, args, t_min)


def flow_matching_loss(
    velocity: Field,
    x0: Float[Array, "batch ..."],
    x1: Float[Array, "batch ..."],
    *,
    key: PRNGKeyArray,
    args: Any = None,
) -> Float[Array, " batch"]:
    """Per-sample conditional flow matching loss `|b(t, (1 − t) x0 + t x1) − (x1 − x0)|²`,
    `t ~ U[0, 1]` (Lipman et al. 2023 with σ_min = 0): `velocity_loss` for
    `LinearInterpolant(gamma="zero")`."""
    check_key(key, "flow_matching_loss")
    return velocity_loss(velocity, LinearInterpolant("zero"), x0, x1, key=key, args=args)


def _check_noisy(interpolant: Interpolant, name: str) -> None:
    if getattr(interpolant, "gamma", None) == "zero":
        raise ValueError(
            f"{name} needs a latent: the interpolant has gamma='zero' (use gamma='brownian' or "
            "'quadratic', or OneSidedInterpolant)"
        )


def denoiser_loss(
    denoiser: Field,
    interpolant: Interpolant,
    x0: Float[Array, "batch ..."],
    x1: Float[Array, "batch ..."],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 0.0,
) -> Float[Array, " batch"]:
    """Per-sample `|η(t, x_t) − z|²` (`z` is `x0` for `OneSidedInterpolant`), minimised by
    `η = E[z | x_t]`; the score is `−η / interpolant.latent_scale(t)`. Arguments as
    `velocity_loss`; `t_min > 0` keeps `t` away from where the latent vanishes."""
    _check_noisy(interpolant, "denoiser_loss")
    check_key(key, "denoiser_loss")

    def latent(x0, x1, z, t):
        return interpolant.latent(x0, z)

    return _regression_loss(denoiser, latent, interpolant, x0, x1, key, args, t_min)


def score_loss(
    score: Field,
    interpolant: Interpolant,
    x0: Float[Array, "batch ..."],
    x1: Float[Array, "batch ..."],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 0.0,
) -> Float[Array, " batch"]:
    """Per-sample `|λ(t) s(t, x_t) + z|²` with `λ = interpolant.latent_scale(t)` (`γ`, or `α`
    and latent `x0` for `OneSidedInterpolant`): the `λ²`-weighted score matching loss, minimised
    by `s = ∇ log ρ_t`. Arguments as `velocity_loss`."""
    _check_noisy(interpolant, "score_loss")
    check_key(key, "score_loss")

    def denoiser(t, x, args):
        return -interpolant.latent_scale(t) * score(t, x, args)

    return denoiser_loss(denoiser, interpolant, x0, x1, key=key, args=args, t_min=t_min)
