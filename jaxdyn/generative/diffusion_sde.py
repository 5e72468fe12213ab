"""Forward SDEs of score-based diffusion (Song et al. 2021): the VP and VE SDEs and their
Gaussian transition kernels.

A forward SDE on `t ∈ [0, 1]`, `dx = f(t, x) dt + g(t) dW`, with affine drift has Gaussian
transition kernels `p(x_t | x_0) = N(a(t) x_0, σ(t)² I)` (`mean_coeff` and `std`):

- `VPSDE` (variance preserving; the continuous DDPM): `f = −½ β(t) x`, `g = √β(t)`,
  `β(t) = β_min + t (β_max − β_min)`, `a(t) = exp(−½ ∫₀ᵗ β)`, `σ(t)² = 1 − a(t)²`; prior
  `N(0, I)`.
- `VESDE` (variance exploding; the continuous SMLD): `f = 0`, `g = √(d σ_v²/dt)` with
  `σ_v(t) = σ_min (σ_max/σ_min)^t`, so `a = 1` and `σ(t)² = σ_v(t)² − σ_min²` exactly (Song et
  al. approximate it by `σ_v(t)²`; the exact one vanishes at `t = 0`, consistent with the SDE
  and the Fokker–Planck residual); prior `N(0, σ(1)² I)`.
- `OUSDE` (Ornstein–Uhlenbeck over `(0, T]`, Deveney et al. 2023): `dx = −θ x dt + c dW` for
  `t ∈ (0, T]`, written in the normalised time `τ = t/T ∈ (0, 1]` (`f = −θT x`, `g = c√T`), so
  `a = e^{−θTτ}`, `σ² = c²/(2θ) (1 − e^{−2θTτ})`; prior the stationary law `N(0, c²/(2θ) I)`.
  With `c² = 2θ` it is the VP SDE with constant `β = 2θT`.

For Gaussian-mixture data the marginals stay Gaussian mixtures: `diffused_mixture` gives them
exactly (with their score), the reference for tests and experiments. The SDE's own methods
(`drift(t, x)`, `diffusion(t)`, …) are not fields of the solve layer; the samplers of
`jaxdyn.generative.diffusion` build those.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from ..data import GaussianMixture

__all__ = ["OUSDE", "VESDE", "VPSDE", "DiffusionSDE", "diffused_mixture"]


def _as_time(t: ArrayLike) -> Array:
    return jnp.asarray(t, dtype=jnp.result_type(float, t))


class DiffusionSDE(eqx.Module):
    """A forward SDE `dx = f(t, x) dt + g(t) dW` on `t ∈ [0, 1]` with affine drift, so that
    `p(x_t | x_0) = N(mean_coeff(t) x_0, std(t)² I)`; `prior` is `N(0, std(1)² I)` (for `VPSDE`
    `N(0, I)`), the approximation of `p_1` the samplers start from."""

    @abc.abstractmethod
    def drift(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        """`f(t, x)`."""

    @abc.abstractmethod
    def diffusion(self, t: ArrayLike) -> Scalar:
        """`g(t)` (scalar: isotropic noise)."""

    @abc.abstractmethod
    def mean_coeff(self, t: ArrayLike) -> Scalar:
        """`a(t)`: `E[x_t | x_0] = a(t) x_0`."""

    @abc.abstractmethod
    def std(self, t: ArrayLike) -> Scalar:
        """`σ(t)`: `Cov[x_t | x_0] = σ(t)² I`."""

    @abc.abstractmethod
    def prior_std(self) -> Scalar:
        """The standard deviation of the prior `N(0, prior_std² I)`."""

    @abc.abstractmethod
    def langevin_alpha(self, t: Array, dt: float) -> Array:
        """The Langevin corrector's step scale (`α_i` of Song et al. 2021, Alg. 4 / 5)."""

    def marginal_sample(
        self, t: ArrayLike, x0: Float[Array, "*batch dim"], *, key: PRNGKeyArray
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch dim"]]:
        """`(x_t, z)` with `x_t = a(t) x_0 + σ(t) z`, `z ~ N(0, I)` (`t` broadcasts against the
        batch: scalar or `(batch,)`)."""
        t = _as_time(t)
        z = jax.random.normal(key, jnp.shape(x0), dtype=jnp.result_type(x0))
        expand = (...,) + (None,) * (jnp.ndim(x0) - jnp.ndim(t))
        return self.mean_coeff(t)[expand] * x0 + self.std(t)[expand] * z, z

    def perturb(
        self, x0: Float[Array, "batch dim"], *, key: PRNGKeyArray, t_min: float
    ) -> tuple[Float[Array, " batch"], Float[Array, "batch dim"], Float[Array, "batch dim"]]:
        """`(t, x_t, z)`: a time `t ~ U[t_min, 1]` per sample of the batch `x0`, and
        `x_t = a(t) x_0 + σ(t) z` with `z ~ N(0, I)` (what denoising score matching and the
        Fokker–Planck regulariser train on)."""
        k_t, k_z = jax.random.split(key)
        t = jax.random.uniform(k_t, (x0.shape[0],), dtype=x0.dtype, minval=t_min, maxval=1.0)
        xt, z = self.marginal_sample(t, x0, key=k_z)
        return t, xt, z

    def prior_sample(self, shape: tuple[int, ...], *, key: PRNGKeyArray) -> Array:
        """Draws of the prior `N(0, prior_std² I)` of shape `shape` (e.g. `(n, dim)`)."""
        return self.prior_std() * jax.random.normal(key, shape)

    def prior_log_prob(self, x: Float[Array, " dim"]) -> Scalar:
        """`log N(x; 0, prior_std² I)` of one point."""
        x = jnp.asarray(x)
        if x.ndim != 1:
            raise ValueError(f"x must have shape (dim,) (vmap over a batch); got {x.shape}")
        var = self.prior_std() ** 2
        return -0.5 * (jnp.sum(x**2) / var + x.shape[0] * jnp.log(2 * jnp.pi * var))


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
            raise TypeError(f"{name} must be a number, got {value!r}")
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value!r}")


class VPSDE(DiffusionSDE):
    """The variance-preserving SDE `dx = −½ β(t) x dt + √β(t) dW`, `β(t) = β_min + t (β_max −
    β_min)` (Song et al. 2021, eq. 11; the continuous limit of DDPM, Ho et al. 2020)."""

    beta_min: float = eqx.field(static=True)
    beta_max: float = eqx.field(static=True)

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        _check_positive(beta_min=beta_min, beta_max=beta_max)
        if beta_max < beta_min:
            raise ValueError(f"need beta_max >= beta_min; got {beta_min=}, {beta_max=}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: ArrayLike) -> Array:
        """`β(t)`."""
        return self.beta_min + _as_time(t) * (self.beta_max - self.beta_min)

    def _log_mean_coeff(self, t: ArrayLike) -> Array:
        t = _as_time(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def drift(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return -0.5 * self.beta(t) * x

    def diffusion(self, t: ArrayLike) -> Scalar:
        return jnp.sqrt(self.beta(t))

    def mean_coeff(self, t: ArrayLike) -> Scalar:
        return jnp.exp(self._log_mean_coeff(t))

    def std(self, t: ArrayLike) -> Scalar:
        return jnp.sqrt(-jnp.expm1(2 * self._log_mean_coeff(t)))  # √(1 − a²), accurate at t ≈ 0

    def prior_std(self) -> Scalar:
        return jnp.asarray(1.0)

    def langevin_alpha(self, t: Array, dt: float) -> Array:
        # the chain's 1 − β_i ≈ 1 − β(t) dt, as exp(−β(t) dt): equal to first order, positive
        # for any step
        return jnp.exp(-self.beta(t) * dt)


class OUSDE(DiffusionSDE):
    """The Ornstein–Uhlenbeck SDE `dx = −θ x dt + c dW` over `t ∈ (0, T]` (`rate` θ, `noise` c,
    `horizon` T; Deveney et al. 2023 train on θ = 1, c = 1, T = 10), in the normalised time
    `τ = t/T ∈ (0, 1]` that the samplers and losses use: `f(τ, x) = −θT x`, `g = c√T`,
    `a(τ) = e^{−θTτ}`, `σ(τ)² = c²/(2θ) (1 − e^{−2θTτ})`. The prior is the stationary law
    `N(0, c²/(2θ) I)` (the authors sample it; at `T = 10` it differs from `p_T` by `e^{−20}`).
    A density's time derivative in real time is `∂_t = ∂_τ / T`."""

    rate: float = eqx.field(static=True)
    noise: float = eqx.field(static=True)
    horizon: float = eqx.field(static=True)

    def __init__(self, rate: float = 1.0, noise: float = 1.0, horizon: float = 10.0):
        _check_positive(rate=rate, noise=noise, horizon=horizon)
        self.rate, self.noise, self.horizon = float(rate), float(noise), float(horizon)

    def drift(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return -self.rate * self.horizon * x

    def diffusion(self, t: ArrayLike) -> Scalar:
        return jnp.sqrt(self.noise**2 * self.horizon) * jnp.ones_like(_as_time(t))

    def mean_coeff(self, t: ArrayLike) -> Scalar:
        return jnp.exp(-self.rate * self.horizon * _as_time(t))

    def std(self, t: ArrayLike) -> Scalar:
        decay = -jnp.expm1(-2 * self.rate * self.horizon * _as_time(t))  # accurate at τ ≈ 0
        return self.noise * jnp.sqrt(decay / (2 * self.rate))

    def prior_std(self) -> Scalar:
        return jnp.asarray(self.noise / np.sqrt(2 * self.rate))

    def langevin_alpha(self, t: Array, dt: float) -> Array:
        # as VPSDE's exp(−β dt) with the constant β = 2θT of the equivalent chain
        return jnp.exp(-2 * self.rate * self.horizon * dt) * jnp.ones_like(t)


class VESDE(DiffusionSDE):
    """The variance-exploding SDE `dx = √(d σ_v(t)²/dt) dW`, `σ_v(t) = σ_min (σ_max/σ_min)^t`
    (Song et al. 2021, eq. 9; the continuous limit of SMLD, Song & Ermon 2019), with the exact
    kernel variance `σ(t)² = σ_v(t)² − σ_min²`. Choose `σ_max` about the largest distance between
    data points (Song & Ermon 2020) so that the prior `N(0, σ(1)² I)` covers the data."""

    sigma_min: float = eqx.field(static=True)
    sigma_max: float = eqx.field(static=True)

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        _check_positive(sigma_min=sigma_min, sigma_max=sigma_max)
        if not sigma_max > sigma_min:
            raise ValueError(f"need sigma_max > sigma_min; got {sigma_min=}, {sigma_max=}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)

    def _log_ratio(self) -> float:
        return float(np.log(self.sigma_max / self.sigma_min))

    def drift(self, t: ArrayLike, x: Float[Array, " dim"]) -> Float[Array, " dim"]:
        return jnp.zeros_like(x)

    def diffusion(self, t: ArrayLike) -> Scalar:
        sigma_v = self.sigma_min * jnp.exp(_as_time(t) * self._log_ratio())
        return sigma_v * jnp.sqrt(2 * self._log_ratio())

    def mean_coeff(self, t: ArrayLike) -> Scalar:
        return jnp.ones_like(_as_time(t))

    def std(self, t: ArrayLike) -> Scalar:
        # σ_min² ((σ_max/σ_min)^{2t} − 1), with expm1 for accuracy at small t
        return self.sigma_min * jnp.sqrt(jnp.expm1(2 * _as_time(t) * self._log_ratio()))

    def prior_std(self) -> Scalar:
        return self.std(1.0)

    def langevin_alpha(self, t: Array, dt: float) -> Array:
        return jnp.ones_like(t)


def diffused_mixture(sde: DiffusionSDE, data: GaussianMixture, t: ArrayLike) -> GaussianMixture:
    """The exact marginal `p_t` when `x_0 ~ Σ_k w_k N(m_k, diag v_k)`: the mixture
    `Σ_k w_k N(a(t) m_k, diag(a(t)² v_k + σ(t)²))`. Its `score` is the exact `∇log p_t`, e.g.
    `lambda t, x: diffused_mixture(sde, data, t).score(x)` (works under `jit`/`vmap` in `t`)."""
    t = _as_time(t)
    a, sigma = sde.mean_coeff(t), sde.std(t)
    return GaussianMixture(data.weights, a * data.means, a**2 * data.variances + sigma**2)
