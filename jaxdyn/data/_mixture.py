"""Gaussian mixtures with diagonal covariances: exact log-density, score and samples.

`Σ_k w_k N(m_k, diag v_k)` is the law of several 2-D toys (`eight_gaussians`, `blobs`), the
base `N(0, I)` of generative models (`standard_normal`), and, diffused or interpolated, the
closed-form reference of `jaxdyn.generative`'s tests. Covariances are diagonal, so nothing here
calls LAPACK.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

__all__ = ["GaussianMixture", "standard_normal"]


class GaussianMixture(eqx.Module):
    """`Σ_k w_k N(means_k, diag(variances_k))` with `K` components in `dim` dimensions."""

    weights: Float[Array, " K"]
    means: Float[Array, "K dim"]
    variances: Float[Array, "K dim"]

    def __init__(self, weights: ArrayLike, means: ArrayLike, variances: ArrayLike):
        """**Arguments:** `weights` `(K,)`, positive (normalised here); `means` `(K, dim)`;
        `variances` `(K, dim)`, `(K,)` (isotropic) or a scalar, positive."""
        weights, means = jnp.asarray(weights, dtype=float), jnp.asarray(means, dtype=float)
        if means.ndim != 2:
            raise ValueError(f"means must have shape (K, dim); got {means.shape}")
        n, dim = means.shape
        if weights.shape != (n,):
            raise ValueError(f"weights must have shape ({n},) to match means; got {weights.shape}")
        variances = jnp.asarray(variances, dtype=float)
        if variances.ndim == 1:
            variances = variances[:, None]
        try:
            variances = jnp.broadcast_to(variances, (n, dim))
        except ValueError:
            raise ValueError(
                f"variances must have shape ({n}, {dim}), ({n},) or (); got {variances.shape}"
            ) from None
        if isinstance(weights, jax.core.Tracer) or isinstance(variances, jax.core.Tracer):
            pass  # values cannot be checked under a trace
        elif not (bool(jnp.all(weights > 0)) and bool(jnp.all(variances > 0))):
            raise ValueError("weights and variances must be positive")
        self.weights = weights / jnp.sum(weights)
        self.means = means
        self.variances = variances

    @property
    def dim(self) -> int:
        """The dimension of a sample."""
        return self.means.shape[1]

    def component_log_densities(self, x: Float[Array, " dim"]) -> Float[Array, " K"]:
        """`log w_k + log N(x; means_k, diag variances_k)` for each component."""
        if jnp.shape(x) != (self.dim,):
            raise ValueError(
                f"x must have shape ({self.dim},) (vmap over a batch); got {jnp.shape(x)}"
            )
        quadratic = jnp.sum((x - self.means) ** 2 / self.variances, axis=1)
        log_det = jnp.sum(jnp.log(2 * jnp.pi * self.variances), axis=1)
        return jnp.log(self.weights) - 0.5 * (quadratic + log_det)

    def log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        """`log ρ(x)` at one point."""
        return jax.nn.logsumexp(self.component_log_densities(x))

    def score(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`∇ log ρ(x)`, by `jax.grad`."""
        return jax.grad(self.log_prob)(x)

    def sample(self, n: int, *, key: PRNGKeyArray) -> Float[Array, "n dim"]:
        """`n` independent draws."""
        k_component, k_noise = jax.random.split(key)
        k = jax.random.choice(k_component, self.weights.shape[0], (n,), p=self.weights)
        noise = jax.random.normal(k_noise, (n, self.dim), dtype=self.means.dtype)
        return self.means[k] + jnp.sqrt(self.variances[k]) * noise


def standard_normal(dim: int) -> GaussianMixture:
    """`N(0, I_dim)` as a one-component mixture (the base of `OneSidedInterpolant`)."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1; got {dim}")
    return GaussianMixture(jnp.ones(1), jnp.zeros((1, dim)), jnp.ones((1, dim)))
