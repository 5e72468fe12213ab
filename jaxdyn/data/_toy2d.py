"""Two-dimensional toy distributions for generative models, sampled in JAX (jittable, so a
training loop can draw a fresh batch every step). Every sampler is `sampler(n, *, key)`.

The shapes follow the FFJORD / flow-matching benchmarks (Grathwohl et al. 2019; Lipman et al.
2023; Tong et al. 2023):

- `checkerboard`: uniform on the 8 dark squares of a 4×4 board of 2×2 squares covering
  `[-4, 4]²` (the unit board scaled ×2); density `1/32` on its support, so its differential
  entropy is `log 32 ≈ 3.466` nats, the floor for any model's negative log-likelihood.
- `eight_gaussians`: an equal mixture of `N(c_k, 0.5² I)` at `c_k = 4 (cos θ_k, sin θ_k)`,
  `θ_k = kπ/4`, scaled by `1/√2` (`eight_gaussians_mixture` gives it exactly).
- `moons`: two interleaved half circles (radius 1), Gaussian noise `0.1`, scaled ×2 and shifted.
- `circles`: two concentric circles of radius 3 and 1.5, Gaussian noise `0.08 × 3`.
- `blobs`: an equal mixture of five `N(c_k, 0.4² I)` on a pentagon of radius 3
  (`blobs_mixture` gives it exactly).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_key
from ._mixture import GaussianMixture

__all__ = [
    "CHECKERBOARD_ENTROPY",
    "TOY2D",
    "blobs",
    "blobs_mixture",
    "checkerboard",
    "checkerboard_log_density",
    "circles",
    "eight_gaussians",
    "eight_gaussians_mixture",
    "moons",
    "toy2d",
]

CHECKERBOARD_ENTROPY = float(np.log(32.0))


def checkerboard(n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples, uniform on the checkerboard's dark squares in `[-4, 4]²`."""
    k1, k2, k3 = jax.random.split(key, 3)
    x1 = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0)
    x2 = jax.random.uniform(k2, (n,)) - 2.0 * jax.random.randint(k3, (n,), 0, 2)
    x2 = x2 + jnp.floor(x1) % 2
    return 2.0 * jnp.stack([x1, x2], axis=1)


def checkerboard_log_density(x: Float[Array, "*batch 2"]) -> Float[Array, " *batch"]:
    """The checkerboard's exact log-density: `log(1/32)` on a dark square, `-inf` elsewhere."""
    u = jnp.asarray(x) / 2.0
    inside = jnp.all((u >= -2.0) & (u < 2.0), axis=-1)
    dark = (jnp.floor(u[..., 0]) + jnp.floor(u[..., 1])) % 2 == 0
    return jnp.where(inside & dark, -CHECKERBOARD_ENTROPY, -jnp.inf)


def _on_circle(n: int, radius: float, offset: float = 0.0) -> np.ndarray:
    angles = offset + 2 * np.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def eight_gaussians_mixture() -> GaussianMixture:
    """The `eight_gaussians` law as a `GaussianMixture` (exact density and entropy)."""
    means = _on_circle(8, 4.0) / np.sqrt(2.0)
    return GaussianMixture(np.ones(8), means, 0.5**2 / 2.0)


def blobs_mixture() -> GaussianMixture:
    """The `blobs` law as a `GaussianMixture`."""
    return GaussianMixture(np.ones(5), _on_circle(5, 3.0, np.pi / 2), 0.4**2)


def eight_gaussians(n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples of the eight-Gaussians mixture (`eight_gaussians_mixture`)."""
    return eight_gaussians_mixture().sample(n, key=key)


def blobs(n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples of the five-blob mixture (`blobs_mixture`)."""
    return blobs_mixture().sample(n, key=key)


def moons(n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples of two interleaved half circles with noise `0.1`, scaled ×2 and shifted by
    `(-1, -0.2)` (FFJORD's `moons`)."""
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    upper = jax.random.bernoulli(k_side, 0.5, (n,))
    angle = jax.random.uniform(k_angle, (n,), maxval=jnp.pi)
    x = jnp.where(upper, jnp.cos(angle), 1.0 - jnp.cos(angle))
    y = jnp.where(upper, jnp.sin(angle), 0.5 - jnp.sin(angle))
    points = jnp.stack([x, y], axis=1) + 0.1 * jax.random.normal(k_noise, (n, 2))
    return 2.0 * points + jnp.array([-1.0, -0.2])


def circles(n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples of two concentric circles, radii 3 and 1.5, noise `0.24`."""
    k_side, k_angle, k_noise = jax.random.split(key, 3)
    radius = jnp.where(jax.random.bernoulli(k_side, 0.5, (n,)), 1.0, 0.5)
    angle = jax.random.uniform(k_angle, (n,), maxval=2 * jnp.pi)
    points = radius[:, None] * jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
    return 3.0 * (points + 0.08 * jax.random.normal(k_noise, (n, 2)))


TOY2D: dict[str, Callable[..., Float[Array, "n 2"]]] = {
    "checkerboard": checkerboard,
    "eight_gaussians": eight_gaussians,
    "moons": moons,
    "circles": circles,
    "blobs": blobs,
}


def toy2d(name: str, n: int, *, key: PRNGKeyArray) -> Float[Array, "n 2"]:
    """`n` samples of the toy distribution `name` (one of `TOY2D`), drawn from `key`."""
    if name not in TOY2D:
        raise ValueError(f"unknown 2-D toy distribution {name!r}; expected one of {list(TOY2D)}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    check_key(key, "toy2d")
    return TOY2D[name](int(n), key=key)
