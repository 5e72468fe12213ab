"""Stochastic interpolants `x_t = α(t) x0 + β(t) x1 + γ(t) z` between two densities.

Albergo, Boffi & Vanden-Eijnden (2023), "Stochastic interpolants: a unifying framework for
flows and diffusions": with `x0 ~ ρ0`, `x1 ~ ρ1` (any coupling) and `z ~ N(0, I)` independent,
the law `ρ_t` of

    x_t = α(t) x0 + β(t) x1 + γ(t) z,     α(0) = β(1) = 1,  α(1) = β(0) = γ(0) = γ(1) = 0,

bridges `ρ0` and `ρ1`, and is transported by the velocity `b(t, x) = E[∂_t x_t | x_t = x]`
(with `∂_t x_t = α̇ x0 + β̇ x1 + γ̇ z`); the score is `s(t, x) = −E[z | x_t = x] / γ(t)`.
Flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023) is the linear case with
`γ = 0`.

Each interpolant is a small `eqx.Module` giving `coefficients(t) = (α, β, γ)`; `__call__`
evaluates `x_t` and `time_derivative` evaluates `∂_t x_t` by `jax.jvp` through `t` (no
hand-written derivatives). The latent noise `γ(t) z` is chosen by name (`GAMMAS`):

- `"zero"`: `γ = 0` (a deterministic interpolant);
- `"brownian"`: `γ = √(a t (1 − t))`, a Brownian bridge (`γ̇` is infinite at t = 0, 1: sample
  times away from the endpoints);
- `"quadratic"`: `γ = √a t (1 − t)`, smooth at the endpoints.

`OneSidedInterpolant` uses a Gaussian base `x0 ~ N(0, I)` as its noise (`γ = 0`, the score is
`−E[x0 | x_t] / α`); `MirrorInterpolant` maps `ρ1` to itself (`x_t = x1 + γ(t) z`).
"""

import abc
import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Scalar

__all__ = [
    "GAMMAS",
    "EncoderDecoderInterpolant",
    "Interpolant",
    "LinearInterpolant",
    "MirrorInterpolant",
    "OneSidedInterpolant",
    "TrigonometricInterpolant",
]


Sample = Float[Array, "*dims"]  # one sample of any shape: x0, x1, z and x_t alike


def _gamma_zero(t: Array, a: float) -> Array:
    return jnp.zeros_like(t)


def _gamma_brownian(t: Array, a: float) -> Array:
    return jnp.sqrt(a * t * (1 - t))


def _gamma_quadratic(t: Array, a: float) -> Array:
    return math.sqrt(a) * t * (1 - t)


GAMMAS = {"zero": _gamma_zero, "brownian": _gamma_brownian, "quadratic": _gamma_quadratic}


def _check_gamma(gamma: str, scale: float, *, allow_zero: bool = True) -> None:
    if gamma not in GAMMAS:
        raise ValueError(f"unknown gamma={gamma!r}; expected one of {sorted(GAMMAS)}")
    if gamma == "zero" and not allow_zero:
        raise ValueError("gamma='zero' is not allowed here: the interpolant would be constant")
    if not scale > 0:
        raise ValueError(f"gamma_scale must be positive; got {scale}")


class Interpolant(eqx.Module):
    """A spatially linear interpolant `x_t = α(t) x0 + β(t) x1 + γ(t) z` (Albergo et al. 2023).

    Subclasses implement `coefficients(t) -> (α, β, γ)`. The latent used by the denoiser is
    `z` with scale `γ` (`latent`, `latent_scale`); `OneSidedInterpolant` overrides both.
    """

    @abc.abstractmethod
    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        """`(α(t), β(t), γ(t))` at a scalar time `t`."""

    def coefficient_derivatives(self, t: ArrayLike) -> tuple[tuple, tuple]:
        """`((α, β, γ), (α̇, β̇, γ̇))` at `t`, the derivatives by `jax.jvp` through `t`."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return jax.jvp(self.coefficients, (t,), (jnp.ones_like(t),))

    def __call__(self, x0: Sample, x1: Sample, z: Sample, t: ArrayLike) -> Sample:
        """`x_t = α(t) x0 + β(t) x1 + γ(t) z` for one sample (`t` a scalar)."""
        _check_sample(x0, x1, z, t)
        alpha, beta, gamma = self.coefficients(jnp.asarray(t, dtype=jnp.result_type(float)))
        return alpha * x0 + beta * x1 + gamma * z

    def time_derivative(self, x0: Sample, x1: Sample, z: Sample, t: ArrayLike) -> Sample:
        """`∂_t x_t = α̇ x0 + β̇ x1 + γ̇ z`, by `jax.jvp` of `__call__` through `t`."""
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        return jax.jvp(lambda s: self(x0, x1, z, s), (t,), (jnp.ones_like(t),))[1]

    def latent(self, x0: Array, z: Array) -> Array:
        """The Gaussian latent whose conditional mean the denoiser learns (`z` here)."""
        return z

    def latent_scale(self, t: Scalar) -> Scalar:
        """Its coefficient in `x_t` (`γ(t)` here): the score is `−E[latent | x_t] / scale`."""
        return self.coefficients(t)[2]


def _check_sample(x0: Array, x1: Array, z: Array, t: ArrayLike) -> None:
    shapes = (jnp.shape(x0), jnp.shape(x1), jnp.shape(z))
    if len(set(shapes)) != 1:
        raise ValueError(f"x0, x1 and z must have the same shape; got {shapes}")
    if jnp.ndim(t) != 0:
        raise ValueError(f"t must be a scalar (vmap over a batch); got shape {jnp.shape(t)}")


class _GammaInterpolant(Interpolant):
    gamma: str = eqx.field(static=True)
    gamma_scale: float = eqx.field(static=True)

    def __init__(self, gamma: str = "zero", gamma_scale: float = 1.0):
        """**Arguments:** `gamma`, the noise schedule's name (`GAMMAS`); `gamma_scale`, its `a`."""
        _check_gamma(gamma, gamma_scale)
        self.gamma = gamma
        self.gamma_scale = float(gamma_scale)

    def _gamma(self, t: Scalar) -> Scalar:
        return GAMMAS[self.gamma](t, self.gamma_scale)


class LinearInterpolant(_GammaInterpolant):
    """`α = 1 − t`, `β = t`: with `gamma="zero"` the flow-matching / rectified-flow path
    (Lipman et al. 2023; Liu et al. 2023), with `"brownian"` a Brownian bridge (Albergo et al.
    2023, Sec. 3)."""

    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        return 1 - t, t, self._gamma(t)


class TrigonometricInterpolant(_GammaInterpolant):
    """`α = cos(πt/2)`, `β = sin(πt/2)` (Albergo et al. 2023, Table 4); with `gamma="zero"`
    and Gaussian `x0`, a variance-preserving path."""

    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t), self._gamma(t)


class EncoderDecoderInterpolant(Interpolant):
    """`x_t = cos²(πt) (1[t < ½] x0 + 1[t > ½] x1) + sin²(πt) z` (Albergo et al. 2023, Sec. 3.4):
    encode `x0` into pure noise at `t = ½`, then decode it into `x1`. Not differentiable at
    `t = ½` (where `x_t = z`), where the derivative taken is the right-hand one."""

    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        c2 = jnp.cos(jnp.pi * t) ** 2
        return jnp.where(t < 0.5, c2, 0.0), jnp.where(t < 0.5, 0.0, c2), jnp.sin(jnp.pi * t) ** 2


ONE_SIDED_SCHEDULES = ("linear", "trigonometric", "vp")


class OneSidedInterpolant(Interpolant):
    """`x_t = α(t) x0 + β(t) x1` with a Gaussian base `x0 ~ N(0, I)` (Albergo et al. 2023,
    Sec. 4): `x0` plays the latent, so `γ = 0` and the score is `s = −E[x0 | x_t] / α(t)`.

    `schedule`: `"linear"` (`α = 1 − t`, `β = t`), `"trigonometric"` (`α = cos(πt/2)`,
    `β = sin(πt/2)`) or `"vp"` (`α = √(1 − t²)`, `β = t`, variance preserving for a unit-variance
    target; `α̇` is infinite at t = 1).
    """

    schedule: str = eqx.field(static=True)

    def __init__(self, schedule: str = "linear"):
        if schedule not in ONE_SIDED_SCHEDULES:
            raise ValueError(
                f"unknown schedule={schedule!r}; expected one of {list(ONE_SIDED_SCHEDULES)}"
            )
        self.schedule = schedule

    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        zero = jnp.zeros_like(t)
        if self.schedule == "linear":
            return 1 - t, t, zero
        if self.schedule == "trigonometric":
            return jnp.cos(0.5 * jnp.pi * t), jnp.sin(0.5 * jnp.pi * t), zero
        return jnp.sqrt(1 - t**2), t, zero

    def latent(self, x0: Array, z: Array) -> Array:
        return x0

    def latent_scale(self, t: Scalar) -> Scalar:
        return self.coefficients(t)[0]


class MirrorInterpolant(_GammaInterpolant):
    """`x_t = x1 + γ(t) z` from `ρ1` to itself (`x0 = x1`; Albergo et al. 2023, Sec. 4.3): `α = 0`,
    `β = 1`, so the velocity is `E[γ̇ z | x_t]` and `gamma` must not be `"zero"`."""

    def __init__(self, gamma: str = "brownian", gamma_scale: float = 1.0):
        _check_gamma(gamma, gamma_scale, allow_zero=False)
        super().__init__(gamma, gamma_scale)

    def coefficients(self, t: Scalar) -> tuple[Scalar, Scalar, Scalar]:
        return jnp.zeros_like(t), jnp.ones_like(t), self._gamma(t)
