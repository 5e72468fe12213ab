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
from jaxtyping import Array, ArrayLike, Float, Scalar

from ..data import GaussianMixture
from .interpolants import Interpolant

__all__ = ["InterpolantOracle"]


def _check_point(x: Array, dim: int) -> None:
    if jnp.shape(x) != (dim,):
        raise ValueError(f"x must have shape ({dim},) (vmap over a batch); got {jnp.shape(x)}")


class InterpolantOracle(eqx.Module):
    """Exact `ρ_t`, score, denoiser and velocity for `interpolant` between the Gaussian mixtures
    `base` (law of `x0`) and `target` (law of `x1`), independently coupled (see the module).

    `velocity`, `score` and `denoiser` are fields `(t, x, args=None) -> vector` for one point
    `x` of shape `(dim,)` (`args` is ignored), ready for the samplers and losses.
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

    def score(self, t: ArrayLike, x: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        """`s(t, x) = ∇ log ρ_t(x)`, by `jax.grad`."""
        return jax.grad(self.log_density, argnums=1)(t, x)

    def denoiser(self, t: ArrayLike, x: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        """`η(t, x) = E[latent | x_t = x] = −latent_scale(t) s(t, x)` (the latent is `z`, or
        `x0` for `OneSidedInterpolant`)."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return -self.interpolant.latent_scale(t) * self.score(t, x)

    def velocity(self, t: ArrayLike, x: Float[Array, " dim"], args=None) -> Float[Array, " dim"]:
        """`b(t, x) = E[∂_t x_t | x_t = x]` by Gaussian conditioning per component, weighted by
        the posterior responsibilities `r_k(t, x)`."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        _check_point(x, self.base.dim)
        (_, mean, var), (_, mean_dot, var_dot) = jax.jvp(self._moments, (t,), (jnp.ones_like(t),))
        r = jax.nn.softmax(self._component_log_densities(t, x))
        conditional = mean_dot + 0.5 * (var_dot / var) * (x - mean)
        return r @ conditional
