"""What the system-identification experiments share: measurement noise and coefficient
scores."""

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["coefficient_errors", "noisy"]


def noisy(x: np.ndarray, level: float, key, axis: int | None = 0) -> np.ndarray:
    """`x` plus Gaussian noise of standard deviation `level × RMS(x)` (the RMS over `axis`:
    per coordinate for `axis=0`, over everything for `None`), float64."""
    scale = level * np.sqrt(np.mean(x**2, axis=axis))
    return x + scale * np.asarray(jax.random.normal(key, x.shape, dtype=jnp.float64))


def coefficient_errors(coefficients, truth: np.ndarray) -> tuple[float, int]:
    """The worst relative error of the true (non-zero) terms and the number of wrong terms
    (true terms missed plus spurious ones)."""
    c = np.asarray(coefficients)
    true = truth != 0
    rel = np.abs(c - truth)[true] / np.abs(truth[true])
    return float(rel.max()), int(np.sum((c != 0) != true))
