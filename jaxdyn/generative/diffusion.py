"""Score-based diffusion (Song et al. 2021): the VP and VE SDEs, denoising score matching, and
samplers for the reverse process (probability-flow ODE, reverse-time SDE, predictor–corrector).

A forward SDE on `t ∈ [0, 1]`, `dx = f(t, x) dt + g(t) dW`, with affine drift has Gaussian
transition kernels `p(x_t | x_0) = N(a(t) x_0, σ(t)² I)` (`mean_coeff` and `std`):

- `VPSDE` (variance preserving; the continuous DDPM): `f = −½ β(t) x`, `g = √β(t)`,
  `β(t) = β_min + t (β_max − β_min)`, `a(t) = exp(−½ ∫₀ᵗ β)`, `σ(t)² = 1 − a(t)²`; prior
  `N(0, I)`.
- `VESDE` (variance exploding; the continuous SMLD): `f = 0`, `g = √(d σ_v²/dt)` with
  `σ_v(t) = σ_min (σ_max/σ_min)^t`, so `a = 1` and `σ(t)² = σ_v(t)² − σ_min²` exactly (Song et
  al. approximate it by `σ_v(t)²`; the exact one vanishes at `t = 0`, consistent with the SDE
  and the Fokker–Planck residual); prior `N(0, σ(1)² I)`.

If `x_0 ~ p_0` the marginals `p_t` are reversed by (Anderson 1982; Song et al. 2021)

    reverse SDE:           dx = [f − g² ∇log p_t] dt + g dW̄       (t from 1 down to t_min),
    probability-flow ODE:  dx/dt = f − ½ g² ∇log p_t,

both with the same marginals `p_t`. The score `s(t, x) ≈ ∇log p_t(x)` is learned by denoising
score matching (Vincent 2011) with the weighting `λ(t) = σ(t)²`:

    E_{t ~ U[t_min, 1], x_0, z ~ N(0, I)} λ(t) |s(t, a x_0 + σ z) + z/σ|² = E |σ s + z|²,

minimised by `s = ∇log p_t` (`dsm_loss`, per sample like `losses`). For Gaussian-mixture data the
marginals stay Gaussian mixtures, `diffused_mixture` gives them exactly (with their score), the
reference for tests and experiments.

Scores are fields `(t, x) -> (dim,)` for one sample `x` of shape `(dim,)`.
"""

import abc
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray, Scalar

from ..solve import Stats
from .mixture import GaussianMixture
from .sampling import _check_samples, sample_ode, sample_sde

__all__ = [
    "VESDE",
    "VPSDE",
    "DiffusionSDE",
    "diffused_mixture",
    "dsm_loss",
    "probability_flow",
    "sample_predictor_corrector",
    "sample_probability_flow",
    "sample_reverse_sde",
]

Score = Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]]


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
    def _langevin_alpha(self, t: Array, dt: float) -> Array:
        """The Langevin corrector's step scale (`α_i` of Song et al. 2021, Alg. 4 / 5)."""

    def marginal_sample(
        self, key: PRNGKeyArray, t: ArrayLike, x0: Float[Array, "*batch dim"]
    ) -> tuple[Float[Array, "*batch dim"], Float[Array, "*batch dim"]]:
        """`(x_t, z)` with `x_t = a(t) x_0 + σ(t) z`, `z ~ N(0, I)` (`t` broadcasts against the
        batch: scalar or `(batch,)`)."""
        t = _as_time(t)
        z = jax.random.normal(key, jnp.shape(x0), dtype=jnp.result_type(x0))
        expand = (...,) + (None,) * (jnp.ndim(x0) - jnp.ndim(t))
        return self.mean_coeff(t)[expand] * x0 + self.std(t)[expand] * z, z

    def prior_sample(self, key: PRNGKeyArray, shape: tuple[int, ...]) -> Array:
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

    def _langevin_alpha(self, t: Array, dt: float) -> Array:
        # the chain's 1 − β_i ≈ 1 − β(t) dt, as exp(−β(t) dt): equal to first order, positive
        # for any step
        return jnp.exp(-self.beta(t) * dt)


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

    def _langevin_alpha(self, t: Array, dt: float) -> Array:
        return jnp.ones_like(t)


def diffused_mixture(sde: DiffusionSDE, data: GaussianMixture, t: ArrayLike) -> GaussianMixture:
    """The exact marginal `p_t` when `x_0 ~ Σ_k w_k N(m_k, diag v_k)`: the mixture
    `Σ_k w_k N(a(t) m_k, diag(a(t)² v_k + σ(t)²))`. Its `score` is the exact `∇log p_t`, e.g.
    `lambda t, x: diffused_mixture(sde, data, t).score(x)` (works under `jit`/`vmap` in `t`)."""
    t = _as_time(t)
    a, sigma = sde.mean_coeff(t), sde.std(t)
    return GaussianMixture(data.weights, a * data.means, a**2 * data.variances + sigma**2)


def _check_sde(sde: DiffusionSDE) -> None:
    if not isinstance(sde, DiffusionSDE):
        raise TypeError(f"sde must be a DiffusionSDE (VPSDE, VESDE); got {type(sde).__name__}")


def _check_t_min(t_min: float) -> None:
    if isinstance(t_min, jax.core.Tracer):
        raise TypeError("t_min must be a concrete number (it sets the time range), not traced")
    if np.ndim(t_min) != 0 or not 0 < float(t_min) < 1:
        raise ValueError(f"t_min must be in (0, 1); got {t_min!r}")


def dsm_loss(
    score: Score,
    sde: DiffusionSDE,
    key: PRNGKeyArray,
    x0: Float[Array, "batch dim"],
    *,
    t_min: float = 1e-3,
) -> Float[Array, " batch"]:
    """Per-sample denoising score matching loss with the weighting `λ(t) = σ(t)²` (Vincent 2011;
    Song et al. 2021, eq. 7): `|σ(t) s(t, x_t) + z|²`, `x_t = a(t) x_0 + σ(t) z`, with
    `t ~ U[t_min, 1]` and `z ~ N(0, I)` drawn here, one per sample. Minimised (in expectation)
    by the exact score `s = ∇log p_t`; its minimum is not zero.

    **Arguments:** `score`, the field `s(t, x)`; `sde`; `key`; `x0`, data `(batch, dim)`;
    `t_min`, the smallest time (the score is singular at `t = 0`).
    """
    _check_sde(sde)
    _check_t_min(t_min)
    x0, batched = _check_samples("x0", x0)
    if not batched:
        raise ValueError(f"x0 must be a batch of shape (batch, dim); got {x0.shape}")
    k_t, k_z = jax.random.split(key)
    t = jax.random.uniform(k_t, (x0.shape[0],), dtype=x0.dtype, minval=t_min, maxval=1.0)
    xt, z = sde.marginal_sample(k_z, t, x0)
    residual = jax.vmap(lambda t, x, z: sde.std(t) * score(t, x) + z)(t, xt, z)
    return jnp.sum(residual**2, axis=1)


def probability_flow(sde: DiffusionSDE, score: Score) -> Score:
    """The probability-flow velocity `v(t, x) = f(t, x) − ½ g(t)² s(t, x)` (Song et al. 2021,
    eq. 13): `dx/dt = v` has the marginals `p_t` of the forward SDE when `s = ∇log p_t`."""
    _check_sde(sde)

    def velocity(t, x):
        return sde.drift(t, x) - 0.5 * sde.diffusion(t) ** 2 * score(t, x)

    return velocity


def sample_probability_flow(
    score: Score,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "*batch dim"],
    *,
    t_min: float = 1e-3,
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    dt0: float | None = None,
    max_steps: int = 4096,
    batch: str = "joint",
) -> tuple[Float[Array, "*batch dim"], Stats]:
    """Sample by the probability-flow ODE `dx/dt = f − ½ g² s` from `t = 1` down to `t_min`
    (Song et al. 2021, §4.3), by `sample_ode` (adaptive steps by default; `stats.num_fevals` is
    the number of score evaluations).

    **Arguments:** `score`; `sde`; `x1`, draws of the prior (`sde.prior_sample`), `(dim,)` or
    `(batch, dim)`; `t_min`; `solver`, `rtol`, `atol`, `dt0`, `max_steps`, `batch` as in
    `sample_ode`.

    **Returns:** `(x, stats)`, the samples at `t_min` and the solve's `Stats`. A failed solve
    raises.
    """
    _check_t_min(t_min)
    return sample_ode(
        probability_flow(sde, score), x1, t0=1.0, t1=float(t_min), solver=solver, rtol=rtol,
        atol=atol, dt0=dt0, max_steps=max_steps, batch=batch,
    )  # fmt: skip


def sample_reverse_sde(
    score: Score,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    t_min: float = 1e-3,
    dt0: float = 1e-3,
    batch: str = "joint",
) -> tuple[Float[Array, "*batch dim"], Stats]:
    """Sample by the reverse-time SDE `dx = [f − g² s] dt + g dW̄` from `t = 1` down to `t_min`
    (Anderson 1982; Song et al. 2021, eq. 6), Euler–Maruyama with fixed steps of at most `dt0`.

    In the reversed time `r = 1 − t` it is the forward SDE of `sample_sde`,
    `dX = [b + ε s̃] dr + √(2ε) dW`, with the reversed probability-flow velocity
    `b(r, x) = −(f − ½ g² s)(1 − r, x)`, `s̃(r, x) = s(1 − r, x)` and `ε(r) = ½ g(1 − r)²`: the
    same family of SDEs sharing the marginals of the ODE, at the diffusion that reverses the
    forward SDE; it runs through `sample_sde` (grid Brownian path).

    **Arguments:** `score`; `sde`; `x1`, prior draws `(dim,)` or `(batch, dim)`; `key`;
    `t_min`; `dt0`, the step; `batch` as in `sample_sde`.

    **Returns:** `(x, stats)`, the samples at `t_min` and the solve's `Stats`.
    """
    _check_t_min(t_min)
    velocity = probability_flow(sde, score)
    return sample_sde(
        lambda r, x: -velocity(1.0 - r, x),
        lambda r, x: score(1.0 - r, x),
        x1,
        key=key,
        epsilon=lambda r: 0.5 * sde.diffusion(1.0 - r) ** 2,
        t0=0.0,
        t1=1.0 - float(t_min),
        dt0=dt0,
        batch=batch,
    )


def sample_predictor_corrector(
    score: Score,
    sde: DiffusionSDE,
    x1: Float[ArrayLike, "batch dim"],
    *,
    key: PRNGKeyArray,
    t_min: float = 1e-3,
    num_steps: int = 1000,
    corrector_steps: int = 1,
    snr: float = 0.16,
    denoise: bool = True,
) -> tuple[Float[Array, "batch dim"], Stats]:
    """Predictor–corrector sampling (Song et al. 2021, Alg. 1, with the Langevin corrector of
    Alg. 4 / 5) as one jittable `lax.scan` over `num_steps` steps of `h = (1 − t_min)/num_steps`
    on the grid `t_i = 1 − i h`. At each `t_i`, as in the authors' code: `corrector_steps`
    Langevin steps at `p_{t_i}`,

        x ← x + ε s(t_i, x) + √(2ε) z,    ε = 2 α_i (snr ‖z‖ / ‖s(t_i, x)‖)²,

    (norms averaged over the batch; `α_i = exp(−β(t_i) h) ≈ 1 − β(t_i) h` for `VPSDE`, `1` for
    `VESDE`), then one
    Euler–Maruyama step of the reverse SDE to `t_{i+1}` (the predictor),
    `x ← x − [f − g² s] (−h) + g √h z`. With `denoise` the last predictor step omits its noise
    (returns its mean, as the authors do). `corrector_steps=0` is plain Euler–Maruyama.

    **Arguments:** `score`; `sde`; `x1`, prior draws `(batch, dim)`; `key`; `t_min`;
    `num_steps`; `corrector_steps`; `snr`, the corrector's signal-to-noise ratio (> 0);
    `denoise`.

    **Returns:** `(x, stats)`: the samples at `t_min` and `Stats` with
    `num_fevals = num_steps (1 + corrector_steps)` score evaluations per sample.
    """
    _check_sde(sde)
    _check_t_min(t_min)
    x1, batched = _check_samples("x1", x1)
    if not batched:
        raise ValueError(f"x1 must be a batch of shape (batch, dim); got {x1.shape}")
    for name, value, low in (("num_steps", num_steps, 1), ("corrector_steps", corrector_steps, 0)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if not (np.ndim(snr) == 0 and float(snr) > 0):
        raise ValueError(f"snr must be a positive number, got {snr!r}")
    dtype = x1.dtype
    h = (1.0 - float(t_min)) / num_steps
    batch_score = jax.vmap(score, in_axes=(None, 0))

    def corrector(x, t, key):
        def step(x, key):
            grad = batch_score(t, x)
            z = jax.random.normal(key, x.shape, dtype=dtype)
            grad_norm = jnp.mean(jnp.linalg.norm(grad, axis=1))
            noise_norm = jnp.mean(jnp.linalg.norm(z, axis=1))
            eps = 2 * sde._langevin_alpha(t, h) * (snr * noise_norm / grad_norm) ** 2
            return x + eps * grad + jnp.sqrt(2 * eps) * z, None

        return jax.lax.scan(step, x, jax.random.split(key, corrector_steps))[0]

    def step(x, inputs):
        i, key = inputs
        k_corrector, k_predictor = jax.random.split(key)
        t = jnp.asarray(1.0, dtype) - i.astype(dtype) * h
        if corrector_steps:
            x = corrector(x, t, k_corrector)
        g = sde.diffusion(t)
        drift = jax.vmap(sde.drift, in_axes=(None, 0))(t, x) - g**2 * batch_score(t, x)
        mean = x - drift * h
        z = jax.random.normal(k_predictor, x.shape, dtype=dtype)
        last = i == num_steps - 1
        noise = jnp.where(last & denoise, 0.0, g * jnp.sqrt(h)) * z
        return mean + noise, None

    x, _ = jax.lax.scan(step, x1, (jnp.arange(num_steps), jax.random.split(key, num_steps)))
    n = jnp.asarray(num_steps)
    stats = Stats(
        num_steps=n, num_accepted_steps=n, num_rejected_steps=jnp.asarray(0),
        num_fevals=jnp.asarray(num_steps * (1 + corrector_steps)),
    )  # fmt: skip
    return x, stats
