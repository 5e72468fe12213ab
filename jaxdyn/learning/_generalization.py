"""The learning curves of a linear student trained by gradient flow on a noisy linear teacher
(Advani & Saxe 2017, "High-dimensional dynamics of generalization error in neural networks",
§2–3), exactly through the eigenvalues of the input covariance, and the Marchenko–Pastur law
those eigenvalues follow when `N, P → ∞` at fixed load `α = P/N`.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count, check_non_negative, check_positive

__all__ = [
    "LearningCurves",
    "linear_learning_curves",
    "marchenko_pastur_density",
    "marchenko_pastur_quadrature",
]


class LearningCurves(NamedTuple):
    """Training and test error at each time."""

    train: Float[Array, " time"]
    test: Float[Array, " time"]


def marchenko_pastur_density(
    eigenvalues: Float[ArrayLike, "*shape"], alpha: float
) -> Float[Array, "*shape"]:
    r"""The continuous part of the Marchenko–Pastur law of the eigenvalues of `XᵀX` for
    `X ∈ R^{P×N}` with i.i.d. `N(0, 1/N)` entries, `α = P/N` (Advani & Saxe 2017, eq. (9)):

        ρ(λ) = √((λ₊ − λ)(λ − λ₋)) / (2πλ)  on  [λ₋, λ₊],   λ± = (1 ± √α)²,

    zero elsewhere; for `α < 1` an atom of mass `1 − α` at `λ = 0` completes it (not included
    here). Its mean is `α` and its second moment `α + α²`.
    """
    check_positive("alpha", alpha)
    lam = jnp.asarray(eigenvalues)
    low, high = (1 - np.sqrt(alpha)) ** 2, (1 + np.sqrt(alpha)) ** 2
    inside = (lam > low) & (lam < high)
    safe = jnp.where(inside, lam, 1.0)
    return jnp.where(inside, jnp.sqrt((high - safe) * (safe - low)) / (2 * jnp.pi * safe), 0.0)


def marchenko_pastur_quadrature(
    alpha: float, num_nodes: int = 2048
) -> tuple[Float[Array, " nodes"], Float[Array, " nodes"]]:
    r"""Nodes and weights `(λ_j, w_j)` with `Σ_j w_j g(λ_j) ≈ ∫ g dρ` for the whole
        Marchenko–Pastur law (the atom `1 − α` at `0` appended as a last node when `α < 1`).

        The substitution `λ = c + r cos θ` (`c, r` the centre and half-width of `[λ₋, λ₊]`) turns
        `ρ(λ) dλ` into `r² sin²θ / (2π λ) dθ` on `[0, π]`, smooth at both edges (also at `α = 1`,
        where `λ₋ = 0`) and even and 2π-periodic in `θ`: the midpoint rule with `num_nodes` nodes
    in `θ` converges spectrally for smooth `g`.
    """
    check_positive("alpha", alpha)
    check_count("num_nodes", num_nodes, 2)
    low, high = (1 - np.sqrt(alpha)) ** 2, (1 + np.sqrt(alpha)) ** 2
    centre, radius = (high + low) / 2, (high - low) / 2
    theta = (np.arange(num_nodes) + 0.5) * np.pi / num_nodes
    lam = centre + radius * np.cos(theta)
    weights = radius**2 * np.sin(theta) ** 2 / (2 * num_nodes * lam)
    if alpha < 1:
        lam, weights = np.append(lam, 0.0), np.append(weights, 1 - alpha)
    return jnp.asarray(lam), jnp.asarray(weights)


def linear_learning_curves(
    eigenvalues: Float[ArrayLike, " n"],
    weights: Float[ArrayLike, " n"],
    ts: Float[ArrayLike, " time"],
    *,
    alpha: float,
    teacher_variance: float,
    noise_variance: float,
    tau: float = 1.0,
) -> LearningCurves:
    r"""Expected training and test error of gradient flow `τ ẇ = Xᵀ(y − Xw)` from `w(0) = 0`,
    for data `y = X w̄ + ε` with `w̄ ~ N(0, σ_w̄² I_N)`, `ε ~ N(0, σ_ε² I_P)`, averaged over
    teacher and noise, given the spectrum of `XᵀX` (Advani & Saxe 2017, eq. (6)–(10)).

    In the eigenbasis of `XᵀX` the error `e = w − w̄` decouples: `e_λ(t) = −w̄_λ e^{−λt/τ} +
    (√λ ε_λ/λ)(1 − e^{−λt/τ})`, so with `∫ · dρ` the average over the spectrum,

        E_test(t)  = ∫ [σ_w̄² e^{−2λt/τ} + σ_ε² (1 − e^{−λt/τ})²/λ] dρ(λ) + σ_ε²,
        E_train(t) = (1/α) [∫ (λσ_w̄² + σ_ε²) e^{−2λt/τ} dρ(λ) + (α − 1) σ_ε²],

    (a zero eigenvalue contributes `σ_w̄²` to the first and `σ_ε²` to the second's integral).
    `E_test = ‖w − w̄‖²/N + σ_ε²` is the error on a fresh sample `x ~ N(0, I/N)`;
    `E_train = ‖y − Xw‖²/P`.

    **Arguments:**

    - `eigenvalues`, `weights`: the spectrum as a weighted set of nodes: the `N` eigenvalues
      of a sample's `XᵀX` with weights `1/N` (exact at that size), or
      `marchenko_pastur_quadrature(alpha)` (the large-`N` limit).
    - `ts`: times; `alpha = P/N`; `teacher_variance = σ_w̄²`; `noise_variance = σ_ε²`;
      `tau`: the time constant.

    **Returns:** `LearningCurves(train, test)`, each of shape `(time,)`.
    """
    check_positive("alpha", alpha)
    check_positive("teacher_variance", teacher_variance)
    check_non_negative("noise_variance", noise_variance)
    check_positive("tau", tau)
    lam = jnp.asarray(eigenvalues)
    w = jnp.asarray(weights)
    if lam.ndim != 1 or w.shape != lam.shape:
        raise ValueError(
            f"eigenvalues and weights must be vectors of one length, got {lam.shape}, {w.shape}"
        )
    if not isinstance(eigenvalues, jax.core.Tracer) and not np.all(np.asarray(lam) >= 0):
        raise ValueError(
            f"eigenvalues (of XᵀX) must be >= 0, got min {float(np.min(np.asarray(lam)))!r}; "
            "clip a sample's round-off with jnp.maximum(eigenvalues, 0)"
        )
    if not isinstance(ts, jax.core.Tracer):
        times = np.asarray(ts)
        if times.ndim != 1:
            raise ValueError(f"ts must be a 1-D array of times, got shape {times.shape}")
        if not np.all(times >= 0):
            raise ValueError(f"ts must be >= 0 (the flow starts at t = 0), got min {times.min()!r}")
    return _curves(lam, w, jnp.asarray(ts), alpha, teacher_variance, noise_variance, tau)


@jax.jit
def _curves(lam, w, ts, alpha, teacher_variance, noise_variance, tau) -> LearningCurves:
    x = jnp.outer(ts, lam) / tau
    decay = jnp.exp(-x)
    noise = lam * (ts[:, None] / tau) ** 2 * _relaxation(x) ** 2  # (1 − e^{−x})²/λ, 0 at λ = 0
    test = (teacher_variance * decay**2 + noise_variance * noise) @ w + noise_variance
    train = (((lam * teacher_variance + noise_variance) * decay**2) @ w
             + (alpha - 1) * noise_variance) / alpha  # fmt: skip
    return LearningCurves(train=train, test=test)


def _relaxation(x: Float[ArrayLike, "*shape"]) -> Float[Array, "*shape"]:
    """`(1 − e^{−x})/x`, `1` at `x = 0` (computed by `expm1`, accurate near zero)."""
    x = jnp.asarray(x)
    small = jnp.abs(x) < 1e-8
    safe = jnp.where(small, 1.0, x)
    return jnp.where(small, 1.0 - x / 2, -jnp.expm1(-safe) / safe)
