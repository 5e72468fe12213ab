"""A Gaussian-mixture oracle: the exact density, score and velocity of a stochastic interpolant
between two Gaussian mixtures.

With `x0 ~ Σ_i p_i N(m_i, diag v_i)`, `x1 ~ Σ_j q_j N(n_j, diag w_j)` and `z ~ N(0, I)`
independent, the interpolant `x_t = α x0 + β x1 + γ z` (Albergo, Boffi & Vanden-Eijnden 2023)
is, given the components `k = (i, j)`, Gaussian with

    μ_k(t) = α m_i + β n_j,       V_k(t) = α² v_i + β² w_j + γ²     (diagonal),

so `ρ_t = Σ_k p_i q_j N(μ_k, diag V_k)` and `s = ∇ log ρ_t` (by `jax.grad`). The velocity
`b(t, x) = E[∂_t x_t | x_t = x]` follows by Gaussian conditioning within each component:
`Cov(∂_t x_t, x_t | k) = α̇α v_i + β̇β w_j + γ̇γ = ½ V̇_k`, hence

    b(t, x) = Σ_k r_k(t, x) [μ̇_k + ½ (V̇_k / V_k) (x − μ_k)],    r_k = posterior of k given x_t = x,

with `μ̇_k` and `V̇_k` by `jax.jvp` through the interpolant's coefficients. Covariances are
diagonal, so nothing here calls LAPACK. The oracle also serves `MirrorInterpolant` (`α = 0`,
so the law of `x0` does not enter) and `OneSidedInterpolant` (pass `standard_normal(dim)` as
the base). It assumes the independent coupling, not a minibatch-OT one.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from .interpolants import Interpolant

__all__ = ["GaussianMixture", "InterpolantOracle", "standard_normal"]


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
        return self.means.shape[1]

    def component_log_densities(self, x: Float[Array, " dim"]) -> Float[Array, " K"]:
        """`log w_k + log N(x; means_k, diag variances_k)` for each component."""
        _check_point(x, self.dim)
        quadratic = jnp.sum((x - self.means) ** 2 / self.variances, axis=1)
        log_det = jnp.sum(jnp.log(2 * jnp.pi * self.variances), axis=1)
        return jnp.log(self.weights) - 0.5 * (quadratic + log_det)

    def log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        """`log ρ(x)` at one point."""
        return jax.nn.logsumexp(self.component_log_densities(x))

    def score(self, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`∇ log ρ(x)`, by `jax.grad`."""
        return jax.grad(self.log_prob)(x)

    def sample(self, key: PRNGKeyArray, n: int) -> Float[Array, "n dim"]:
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


def _check_point(x: Array, dim: int) -> None:
    if jnp.shape(x) != (dim,):
        raise ValueError(f"x must have shape ({dim},) (vmap over a batch); got {jnp.shape(x)}")


class InterpolantOracle(eqx.Module):
    """Exact `ρ_t`, score, denoiser and velocity for `interpolant` between the Gaussian mixtures
    `base` (law of `x0`) and `target` (law of `x1`), independently coupled (see the module).

    `velocity` and `score` are fields `(t, x) -> vector` for one point `x` of shape `(dim,)`.
    """

    interpolant: Interpolant
    base: GaussianMixture
    target: GaussianMixture

    def __init__(self, interpolant: Interpolant, base: GaussianMixture, target: GaussianMixture):
        if base.dim != target.dim:
            raise ValueError(f"base and target dims differ: {base.dim} != {target.dim}")
        self.interpolant, self.base, self.target = interpolant, base, target

    def _moments(self, t: Scalar) -> tuple[Array, Array, Array]:
        """Log-weights `(K0 K1,)`, means and variances `(K0 K1, dim)` of `ρ_t`."""
        alpha, beta, gamma = self.interpolant.coefficients(t)
        b, g = self.base, self.target
        log_w = (jnp.log(b.weights)[:, None] + jnp.log(g.weights)[None, :]).reshape(-1)
        mean = alpha * b.means[:, None, :] + beta * g.means[None, :, :]
        var = alpha**2 * b.variances[:, None, :] + beta**2 * g.variances[None, :, :] + gamma**2
        return log_w, mean.reshape(-1, b.dim), var.reshape(-1, b.dim)

    def density(self, t: ArrayLike) -> GaussianMixture:
        """`ρ_t` as a `GaussianMixture` of `K0 K1` components (at a concrete time `t`)."""
        log_w, mean, var = self._moments(jnp.asarray(t, dtype=float))
        return GaussianMixture(jnp.exp(log_w), mean, var)

    def _component_log_densities(self, t: Scalar, x: Array) -> Array:
        _check_point(x, self.base.dim)
        log_w, mean, var = self._moments(t)
        quadratic = jnp.sum((x - mean) ** 2 / var, axis=1)
        return log_w - 0.5 * (quadratic + jnp.sum(jnp.log(2 * jnp.pi * var), axis=1))

    def log_density(self, t: ArrayLike, x: Float[Array, " dim"]) -> Scalar:
        """`log ρ_t(x)`."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return jax.nn.logsumexp(self._component_log_densities(t, x))

    def score(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`s(t, x) = ∇ log ρ_t(x)`, by `jax.grad`."""
        return jax.grad(self.log_density, argnums=1)(t, x)

    def denoiser(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`η(t, x) = E[latent | x_t = x] = −latent_scale(t) s(t, x)` (the latent is `z`, or
        `x0` for `OneSidedInterpolant`)."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return -self.interpolant.latent_scale(t) * self.score(t, x)

    def velocity(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`b(t, x) = E[∂_t x_t | x_t = x]` by Gaussian conditioning per component, weighted by
        the posterior responsibilities `r_k(t, x)`."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        _check_point(x, self.base.dim)
        (_, mean, var), (_, mean_dot, var_dot) = jax.jvp(self._moments, (t,), (jnp.ones_like(t),))
        r = jax.nn.softmax(self._component_log_densities(t, x))
        conditional = mean_dot + 0.5 * (var_dot / var) * (x - mean)
        return r @ conditional
