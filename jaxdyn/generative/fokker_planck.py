"""The score Fokker–Planck residual of a diffusion model and its regulariser (Deveney, Stanczuk,
Kreusser, Budd & Schönlieb 2023, "Closing the ODE–SDE gap in score-based diffusion models
through the Fokker–Planck equation").

For the forward SDE `dx = f(t, x) dt + g(t) dW` the density obeys the Fokker–Planck equation
`∂_t p = −∇·(f p) + ½ g² Δp`; dividing by `p`, the log-density `u = log p_t` obeys

    ∂_t u = −∇·f − f·∇u + ½ g² (Δu + |∇u|²),

and its gradient gives the score PDE for `s = ∇u`:

    ∂_t s = ∇_x [½ g² (∇·s + |s|²) − f·s − ∇·f].

A learned score `s_θ` that is the score of *some* family of densities satisfying the forward
equation makes the probability-flow ODE and the reverse SDE sample the same law; the residual

    R(t, x) = ∂_t s_θ − ∇_x [½ g² (∇·s_θ + |s_θ|²) − f·s_θ − ∇·f]

measures how far it is from that. Deveney et al. bound the 2-Wasserstein distance between the
ODE- and SDE-induced distributions by a quantity controlled by `R`, and regularise training with
`E_{t, x_t} |R|²`, the loss `DSM + w_R · FP`. Here `∂_t s_θ` is a `jax.jvp` in `t`, the
divergences are exact (traces of `jax.jacfwd`: `dim` forward passes each, meant for small
dimensions such as 2-D toys, but written for any `dim`), and the outer gradient is `jax.grad` of
the scalar in brackets, so training with it differentiates the score network three times.

**Scale and weighting.** The residual of a learned score is naturally of size `g(t)²/σ(t)³`:
for `s = −ε/σ` with `ε = O(1)` varying on the length scale `σ` near the data (as the exact
score does), `∂_t s ≈ ε σ'/σ²` with `σ' = a² g²/(2σ)` (VP; `g²/(2σ)` for VE) and the spatial
terms `½ g² ∇(∇·s + |s|²)` are `g²/σ³` too. So `E|R|²` spans many decades over `t ∈ [10⁻³, 1]`
(for a DSM-trained VP model on the 2-D checkerboard, from `3·10⁸` at `t = 10⁻³` to `2` at
`t = 0.3`, while `(σ³/g²)² E|R|²` stays within `0.014–0.024`), and an unweighted or `σ²`-weighted
regulariser is dominated by the smallest times. `fokker_planck_weight` returns the weighting
`λ_R(t) = (σ(t)³/g(t)²)²` that makes `λ_R |R|²` `O(1)` at every `t`: the residual measured in
the units of the noise predictor `ε` per unit of `log σ`-time.

**A trivial zero.** With affine drift `f = c(t) x`, `∇·f = c(t) dim` is constant in `x`, so
`s ≡ 0` (the score of an improper flat density) has `R ≡ 0` exactly. A regulariser that
outweighs the DSM loss drives the model there (`ε ≡ 0`, DSM loss `= dim`); its samplers then
just undo the forward drift, `x(t_min) ≈ x(1) a(t_min)/a(1)` (about `150 x(1)` for the default
VP SDE). Weight the regulariser so that, for a DSM-trained score, it is not much larger than
the DSM loss's excess `dim − DSM` over that collapse.

**The log-density form.** For a conservative model `s = ∇_x φ` (`PotentialScore`) the paper's
experiments use the scalar residual of the log-density equation itself,

    r(t, x) = ∂_t φ + ∇·f + f·∇φ − ½ g² (Δφ + |∇φ|²)        (`log_density_residual`),

whose gradient `∇_x r` is the score residual `R` of `s = ∇φ`. It needs two derivatives of
`φ` (not three of a score network) and pins `φ` down to the log-density up to a constant that
cannot depend on `t`.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ._checks import check_diffusion_batch, check_sde
from ._fields import Field
from .diffusion_sde import DiffusionSDE
from .likelihood import divergence

__all__ = [
    "fokker_planck_loss",
    "fokker_planck_residual",
    "fokker_planck_weight",
    "log_density_residual",
]


def _one_point(t: ArrayLike, x: ArrayLike) -> tuple[Array, Array]:
    """`(t, x)` as arrays: `x` one point `(dim,)`, `t` a scalar of its dtype (else a clear error:
    the residuals are vmapped over a batch, not given one)."""
    x = jnp.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"x must have shape (dim,) (vmap over a batch); got {x.shape}")
    t = jnp.asarray(t, dtype=x.dtype)
    if t.ndim != 0:
        raise ValueError(f"t must be a scalar time (vmap over a batch); got shape {t.shape}")
    return t, x


def fokker_planck_residual(
    score: Field, sde: DiffusionSDE, t: ArrayLike, x: Float[Array, " dim"], *, args: Any = None
) -> Float[Array, " dim"]:
    """The score Fokker–Planck residual `R(t, x) = ∂_t s − ∇_x[½ g² (∇·s + |s|²) − f·s − ∇·f]`
    of `score` under `sde`, at one point `x` of shape `(dim,)` (see the module). Zero for the
    exact score `∇log p_t` of the forward SDE's marginals.

    **Arguments:** `score`, the field `s(t, x, args)`; `sde` (its drift `f` may be any
    differentiable function of `(t, x)`; `g` depends on `t` only); `t`, a scalar time; `x`, the
    point; `args`, passed to the score.
    """
    check_sde(sde)
    t, x = _one_point(t, x)
    _, ds_dt = jax.jvp(lambda t: score(t, x, args), (t,), (jnp.ones_like(t),))
    g2 = sde.diffusion(t) ** 2

    def drift(t, y, args):
        return sde.drift(t, y)

    def potential(y):
        s = score(t, y, args)
        div_s = divergence(score, t, y, args)
        div_f = divergence(drift, t, y)
        return 0.5 * g2 * (div_s + jnp.sum(s**2)) - jnp.dot(sde.drift(t, y), s) - div_f

    return ds_dt - jax.grad(potential)(x)


def log_density_residual(
    potential: Callable[..., Array],
    sde: DiffusionSDE,
    t: ArrayLike,
    x: Float[Array, " dim"],
    *,
    args: Any = None,
) -> Array:
    """The log-density Fokker–Planck residual `r(t, x) = ∂_t φ + ∇·f + f·∇φ − ½ g² (Δφ +
    |∇φ|²)` of a scalar `potential` `φ(t, x, args)` under `sde` at one point `x` of shape
    `(dim,)` (Deveney et al. 2023; see the module). Zero, at every point, for `φ = log p_t + c`
    with `p_t` the forward SDE's marginal density and `c` a constant; `∇_x r` is
    `fokker_planck_residual` of the score `∇_x φ`. The Laplacian is the trace of the exact
    Hessian (`dim` passes: meant for small `dim`). Time is the SDE's (for `OUSDE`, the
    normalised `τ`; divide by the horizon for the residual in real time)."""
    check_sde(sde)
    t, x = _one_point(t, x)

    def u(t, y):
        return potential(t, y, args)

    du_dt = jax.grad(u, argnums=0)(t, x)
    grad_u = jax.grad(u, argnums=1)(t, x)
    laplacian = jnp.trace(jax.hessian(u, argnums=1)(t, x))
    f = sde.drift(t, x)
    div_f = divergence(lambda t, y, args: sde.drift(t, y), t, x)
    g2 = sde.diffusion(t) ** 2
    return du_dt + div_f + jnp.dot(f, grad_u) - 0.5 * g2 * (laplacian + jnp.sum(grad_u**2))


def fokker_planck_weight(sde: DiffusionSDE) -> Callable[[ArrayLike], Array]:
    """The time weighting `λ_R(t) = (σ(t)³ / g(t)²)²` that makes the squared Fokker–Planck
    residual of a learned score `O(1)` at every time (see the module: the residual's natural
    size is `g²/σ³`), for `fokker_planck_loss(..., weight=fokker_planck_weight(sde))`. It
    vanishes like `t³` as `t → 0` (`σ² ≈ g(0)² t`), which is what keeps the small times, where
    `|R|²` is largest, from dominating the average."""
    check_sde(sde)

    def weight(t: ArrayLike) -> Array:
        return (sde.std(t) ** 3 / sde.diffusion(t) ** 2) ** 2

    return weight


def fokker_planck_loss(
    score: Field,
    sde: DiffusionSDE,
    x0: Float[Array, "batch dim"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    t_min: float = 1e-3,
    weight: Callable[[Array], Array] | None = None,
) -> Float[Array, " batch"]:
    """Per-sample Fokker–Planck regulariser `λ_R(t) |R(t, x_t)|²` with `t ~ U[t_min, 1]` and
    `x_t = a(t) x_0 + σ(t) z` drawn here, one per sample (Deveney et al. 2023); combine as
    `dsm_loss + w_R · fokker_planck_loss`.

    **Arguments:** `score`; `sde`; `x0`, data `(batch, dim)`; `key`; `args`, passed to the
    score; `t_min`; `weight`, the time
    weighting `λ_R(t)` (default `1`). The residual of a learned score grows like `g²/σ³` as
    `t → 0`, so without a weighting the smallest times dominate; `fokker_planck_weight(sde)`
    makes every time count alike.
    """
    x0 = check_diffusion_batch("fokker_planck_loss", sde, "x0", x0, key, t_min)
    if weight is not None and not callable(weight):
        raise TypeError(f"weight must be a function of t or None; got {type(weight).__name__}")
    t, xt, _ = sde.perturb(x0, key=key, t_min=t_min)
    residual = jax.vmap(lambda t, x: fokker_planck_residual(score, sde, t, x, args=args))(t, xt)
    values = jnp.sum(residual**2, axis=1)
    return values if weight is None else jax.vmap(weight)(t) * values
