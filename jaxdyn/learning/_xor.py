"""XOR cluster data with label noise (Xu, Wang, Frei, Vardi & Hu 2024, "Benign overfitting and
grokking in ReLU networks for XOR cluster data", ICLR, arXiv:2310.02541), and the accuracy of
its Bayes classifier.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_count, check_key, check_non_negative

__all__ = ["xor_bayes_accuracy", "xor_clusters"]


def _check_noise(label_noise: float) -> None:
    if isinstance(label_noise, bool) or not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise!r}")


def xor_clusters(
    n: int, *, dim: int, mean_norm: float, label_noise: float, key: PRNGKeyArray
) -> tuple[Float[Array, "n dim"], Float[Array, " n"], Float[Array, " n"]]:
    r"""`n` draws `x = μ + ξ`, `ξ ~ N(0, I_dim)`, with `μ` uniform over the four cluster means
    `±μ₁` (clean label `+1`) and `±μ₂` (clean label `−1`), `μ₁ = ‖μ‖ e₁ ⊥ μ₂ = ‖μ‖ e₂`
    (Xu et al. 2024's XOR clusters: no linear classifier beats chance); each label is then
    flipped independently with probability `label_noise` (`η`).

    **Returns:** `(x, y, y_clean)`, labels in `{−1, +1}` (`y` the observed, noisy ones).
    """
    check_key(key, "xor_clusters")
    check_count("n", n)
    check_count("dim", dim, 2)
    check_non_negative("mean_norm", mean_norm)
    _check_noise(label_noise)
    return _draw(key, n, dim, jnp.asarray(mean_norm, float), jnp.asarray(label_noise, float))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _draw(key, n: int, dim: int, mean_norm, label_noise):
    k_mean, k_noise, k_flip = jax.random.split(key, 3)
    cluster = jax.random.randint(k_mean, (n,), 0, 4)  # +μ₁, −μ₁, +μ₂, −μ₂
    sign = jnp.where(cluster % 2 == 0, 1.0, -1.0)
    axis = cluster // 2
    x = jax.random.normal(k_noise, (n, dim)) + mean_norm * sign[:, None] * jax.nn.one_hot(axis, dim)
    clean = jnp.where(axis == 0, 1.0, -1.0)
    flip = jax.random.bernoulli(k_flip, label_noise, (n,))
    return x, jnp.where(flip, -clean, clean), clean


def xor_bayes_accuracy(mean_norm: float, label_noise: float) -> tuple[float, float]:
    r"""The accuracy of the Bayes classifier of `xor_clusters`, `ŷ = sign(|⟨x, μ₁⟩| − |⟨x,
    μ₂⟩|)` (equal priors and norms: `cosh⟨x, μ₁⟩ ≷ cosh⟨x, μ₂⟩`), on clean and on noisy labels.

    For `x = μ₁ + ξ` the two projections are `‖μ‖(‖μ‖ + g₁)` and `‖μ‖ g₂` with `g₁, g₂` iid
    `N(0, 1)`, so the clean accuracy is `q = P(|‖μ‖ + g₁| > |g₂|) = E[erf(|‖μ‖ + g₁|/√2)]`
    (a 1-D quadrature), and on labels flipped with probability `η` it is
    `(1 − η) q + η (1 − q)`.

    **Returns:** `(clean, noisy)`.
    """
    _check_noise(label_noise)
    if not mean_norm >= 0:
        raise ValueError(f"mean_norm must be >= 0, got {mean_norm!r}")
    # the integrand has a kink at g₁ = −‖μ‖ (no Gauss rule fits it): the trapezoid rule on a
    # grid of 2·10⁴ steps over ±12 standard deviations, whose error is far below 1e-6 here
    g = np.linspace(-12.0, 12.0, 20_001)
    erf = np.array([math.erf(abs(mean_norm + t) / math.sqrt(2)) for t in g])
    clean = float(np.trapezoid(erf * np.exp(-(g**2) / 2), g) / math.sqrt(2 * math.pi))
    return clean, (1 - label_noise) * clean + label_noise * (1 - clean)
