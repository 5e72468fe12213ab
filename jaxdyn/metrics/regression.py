"""Coefficients of determination: R² as scikit-learn and the Neural Latents Benchmark compute
it, and the R² of a latent after the best affine map onto a true state."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Scalar

from .._checks import paired_arrays

__all__ = ["r2_score", "linear_r2"]


def _as_samples(x: Array) -> Array:
    return x[:, None] if x.ndim == 1 else x.reshape(-1, x.shape[-1])


def r2_score(
    pred: Float[ArrayLike, "*samples outputs"], target: Float[ArrayLike, "*samples outputs"]
) -> Scalar:
    """R² of `pred` against `target`, per output and averaged uniformly over outputs, as
    `sklearn.metrics.r2_score(target, pred)` (note: scikit-learn takes the target first;
    here the prediction comes first) with NLB's flattening of trials × bins into samples.

    For output `j` (the last axis; all other axes are samples; 1-D arrays are one output),

        R²_j = 1 - Σ (target - pred)² / Σ (target - mean(target))²,

    and, as scikit-learn's `force_finite=True`, an output with constant target scores 1 if
    predicted exactly and 0 otherwise. Returns `mean_j R²_j`.
    """
    pred, target = paired_arrays("r2_score", pred=pred, target=target)
    if pred.ndim < 1 or _as_samples(pred).shape[0] < 2:
        raise ValueError(f"r2_score needs at least two samples, got shape {pred.shape}")
    return _r2(_as_samples(pred), _as_samples(target))


@jax.jit  # one program per shape (eagerly, each operation compiles its own)
def _r2(pred: Array, target: Array) -> Scalar:
    residual = jnp.sum((target - pred) ** 2, axis=0)
    total = jnp.sum((target - jnp.mean(target, axis=0)) ** 2, axis=0)
    safe_total = jnp.where(total == 0, 1.0, total)
    r2 = jnp.where(total == 0, jnp.where(residual == 0, 1.0, 0.0), 1.0 - residual / safe_total)
    return jnp.mean(r2)


def linear_r2(
    latents_pred: Float[ArrayLike, "trials *bins latent"],
    latents_true: Float[ArrayLike, "trials *bins state"],
    *,
    fit_on: Int[ArrayLike, " fit"] | None = None,
) -> Scalar:
    """R² of the true state explained by an affine map of the predicted latents.

    Fits `W, c = argmin Σ ‖latents_true - (latents_pred W + c)‖²` by least squares over the
    trials `fit_on` (indices into the first axis; all trials when `None`), then returns
    `r2_score(latents_pred W + c, latents_true)` over the other trials (over all trials when
    `fit_on` is `None`, an in-sample score). Axes between the first and the last are samples
    (e.g. bins). The latent dimension may differ from the state's.

    One unbatched `jnp.linalg.lstsq` (batched LAPACK calls can deadlock on 2 cores with
    jaxlib 0.10.2; see docs/architecture.md). `fit_on` must be concrete.
    """
    pred, true = jnp.asarray(latents_pred), jnp.asarray(latents_true)
    if pred.ndim < 2 or true.ndim != pred.ndim or pred.shape[:-1] != true.shape[:-1]:
        raise ValueError(
            "linear_r2 needs latents_pred (trials, ..., latent) and latents_true "
            f"(trials, ..., state) with the same leading axes, got {pred.shape}, {true.shape}"
        )
    num_trials = pred.shape[0]
    if fit_on is None:
        fit_idx = eval_idx = np.arange(num_trials)
    else:
        fit_idx = np.asarray(fit_on)
        if (
            fit_idx.ndim != 1
            or fit_idx.size == 0
            or not np.issubdtype(fit_idx.dtype, np.integer)
            or fit_idx.min() < 0
            or fit_idx.max() >= num_trials
            or np.unique(fit_idx).size != fit_idx.size
        ):
            raise ValueError(
                f"linear_r2 needs fit_on: distinct trial indices in [0, {num_trials}), got "
                f"{fit_on!r}"
            )
        eval_idx = np.setdiff1d(np.arange(num_trials), fit_idx)
        if eval_idx.size == 0:
            raise ValueError("linear_r2: fit_on covers every trial, none is left to score")
    return _linear_r2(pred, true, fit_idx, eval_idx)


@jax.jit
def _linear_r2(pred: Array, true: Array, fit_idx: Array, eval_idx: Array) -> Scalar:
    """One program per shape (eagerly, each operation compiles its own)."""
    x_fit = _as_samples(pred[fit_idx])
    y_fit = _as_samples(true[fit_idx])
    design = jnp.concatenate([x_fit, jnp.ones_like(x_fit[:, :1])], axis=1)
    weights, *_ = jnp.linalg.lstsq(design, y_fit)
    x_eval = _as_samples(pred[eval_idx])
    mapped = x_eval @ weights[:-1] + weights[-1]
    return r2_score(mapped, _as_samples(true[eval_idx]))
