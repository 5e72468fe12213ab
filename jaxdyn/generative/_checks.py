"""Argument checks shared by the modules of `jaxdyn.generative` (one wording per mistake)."""

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from .._checks import check_choice, check_key
from .diffusion_sde import DiffusionSDE

__all__ = [
    "BATCHES",
    "check_batch",
    "check_batched_samples",
    "check_diffusion_batch",
    "check_samples",
    "check_sde",
    "check_t_min",
    "check_times",
]

BATCHES = ("joint", "vmap")


def check_samples(name: str, x: ArrayLike) -> tuple[Array, bool]:
    """`x` as a float array of shape `(dim,)` or `(batch, dim)`; and whether it is batched."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (dim,) or (batch, dim); got {x.shape}")
    return x, x.ndim == 2


def check_batched_samples(name: str, x: ArrayLike) -> Array:
    """`x` as a float array of shape `(batch, dim)`."""
    x, batched = check_samples(name, x)
    if not batched:
        raise ValueError(f"{name} must be a batch of shape (batch, dim); got {x.shape}")
    return x


def check_times(t0: float, t1: float, *, forward_only: bool = False) -> None:
    """Concrete, finite, distinct start and end times (they set the time grid)."""
    for name, t in (("t0", t0), ("t1", t1)):
        if isinstance(t, jax.core.Tracer):
            raise TypeError(f"{name} must be a concrete number (it sets the time grid), not traced")
        if np.ndim(t) != 0 or not np.isfinite(float(t)):
            raise ValueError(f"{name} must be a finite number, got {t!r}")
    if forward_only and not float(t1) > float(t0):
        raise ValueError(f"sample_sde integrates forward in time: need t1 > t0, got {t0=}, {t1=}")
    if float(t1) == float(t0):
        raise ValueError(f"t0 and t1 must differ, got {t0=}, {t1=}")


def check_batch(batch: str) -> None:
    """`joint` or `vmap` (samplers always see batches: no `None`)."""
    check_choice("batch", batch, BATCHES)


def check_sde(sde: DiffusionSDE) -> None:
    if not isinstance(sde, DiffusionSDE):
        raise TypeError(f"sde must be a DiffusionSDE (VPSDE, VESDE); got {type(sde).__name__}")


def check_t_min(t_min: float) -> None:
    """The samplers' and losses' smallest time, in `(0, 1)` and concrete."""
    if isinstance(t_min, jax.core.Tracer):
        raise TypeError("t_min must be a concrete number (it sets the time range), not traced")
    if np.ndim(t_min) != 0 or not 0 < float(t_min) < 1:
        raise ValueError(f"t_min must be in (0, 1); got {t_min!r}")


def check_diffusion_batch(
    caller: str, sde: DiffusionSDE, name: str, x: ArrayLike, key: PRNGKeyArray, t_min: float
) -> Array:
    """The arguments every batch computation on a `DiffusionSDE` takes (its losses and the
    predictor–corrector sampler): the SDE, `t_min`, the batch `x` (returned as a float array
    of shape `(batch, dim)`, named `name` in errors) and a key (`caller` in errors)."""
    check_sde(sde)
    check_t_min(t_min)
    x = check_batched_samples(name, x)
    check_key(key, caller)
    return x
