"""Sampling a stochastic interpolant's law by its transport ODE or by an SDE with tunable
diffusion (Albergo, Boffi & Vanden-Eijnden 2023).

With velocity `b(t, x)` and score `s(t, x) = ∇ log ρ_t(x)` of the interpolant's density `ρ_t`:

- `sample_ode`: the probability-flow (transport) equation `dx/dt = b(t, x)`, which carries
  samples of `ρ_{t0}` to samples of `ρ_{t1}` (`t1 < t0` runs it backwards, data to noise);
  adaptive steps via `odeint`.
- `sample_sde`: the forward SDE `dX = [b(t, X) + ε(t) s(t, X)] dt + √(2ε(t)) dW`, whose time
  marginals are also `ρ_t` for every diffusion `ε(t) ≥ 0` (`ε = 0` is the ODE); Euler–Maruyama
  on a fixed grid via `sdeint` (diagonal noise, grid Brownian path).

Fields are `(t, x) -> vector` for one sample `x` of shape `(dim,)` (as in `losses`).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..solve import Stats, odeint, sdeint

__all__ = ["sample_ode", "sample_sde"]

_BATCHES = ("joint", "vmap")


def _check_samples(name: str, x: ArrayLike) -> tuple[Array, bool]:
    """`x` as a float array of shape `(dim,)` or `(batch, dim)`; and whether it is batched."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (dim,) or (batch, dim); got {x.shape}")
    return x, x.ndim == 2


def _check_times(t0: float, t1: float, *, forward_only: bool = False) -> None:
    for name, t in (("t0", t0), ("t1", t1)):
        if isinstance(t, jax.core.Tracer):
            raise TypeError(f"{name} must be a concrete number (it sets the time grid), not traced")
        if np.ndim(t) != 0 or not np.isfinite(float(t)):
            raise ValueError(f"{name} must be a finite number, got {t!r}")
    if forward_only and not float(t1) > float(t0):
        raise ValueError(f"sample_sde integrates forward in time: need t1 > t0, got {t0=}, {t1=}")
    if float(t1) == float(t0):
        raise ValueError(f"t0 and t1 must differ, got {t0=}, {t1=}")


def _check_batch(batch: str) -> None:
    if batch not in _BATCHES:
        raise ValueError(f"unknown batch={batch!r}; expected one of {list(_BATCHES)}")


def _reversible_field(velocity: Callable, t0: float, t1: float) -> Callable:
    """`dx/ds = σ b(t0 + σ s, x)` on `s ∈ [0, |t1 − t0|]` with `σ = sign(t1 − t0)`: `odeint`
    takes increasing times only."""
    sign = 1.0 if t1 > t0 else -1.0

    def field(s, x, args):
        return sign * velocity(t0 + sign * s, x)

    return field


def sample_ode(
    velocity: Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]],
    x0: Float[ArrayLike, "*batch dim"],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    max_steps: int = 4096,
    batch: str = "joint",
) -> tuple[Float[Array, "*batch dim"], Stats]:
    """Transport samples by `dx/dt = b(t, x)` from `t0` to `t1` (Albergo et al. 2023; the
    probability-flow ODE of Song et al. 2021).

    **Arguments:**

    - `velocity`: `b(t, x) -> (dim,)` for one sample.
    - `x0`: samples of `ρ_{t0}`, shape `(dim,)` or `(batch, dim)`.
    - `t0`, `t1`: start and end times (concrete); `t1 < t0` integrates backwards.
    - `solver`, `rtol`, `atol`, `dt0`, `max_steps`: as in `odeint`. With none of `rtol`,
      `atol`, `dt0` given, adaptive steps at `rtol = atol = 1e-6`; `dt0` alone gives fixed
      steps (e.g. `solver="euler", dt0=0.01`: 100 steps, NFE 100).
    - `batch`: for `(batch, dim)` input, `"joint"` (one step sequence for the whole batch) or
      `"vmap"` (each sample its own steps).

    **Returns:** `(x1, stats)`: the samples at `t1`, shaped like `x0`, and the solve's `Stats`
    (`num_steps`, `num_fevals`, …; per sample with `batch="vmap"`). A failed solve raises.
    """
    x0, batched = _check_samples("x0", x0)
    _check_times(t0, t1)
    _check_batch(batch)
    if rtol is None and atol is None and dt0 is None:
        rtol = atol = 1e-6
    ts = jnp.asarray([0.0, abs(float(t1) - float(t0))], dtype=x0.dtype)
    sol = odeint(
        _reversible_field(velocity, float(t0), float(t1)),
        x0,
        ts,
        solver=solver,
        rtol=rtol,
        atol=atol,
        dt0=dt0,
        max_steps=max_steps,
        batch=batch if batched else None,
    )
    x1 = sol.ys[:, -1] if batched else sol.ys[-1]
    return x1, sol.stats


def _epsilon_fn(epsilon: float | Callable) -> Callable:
    if callable(epsilon):
        return epsilon
    if isinstance(epsilon, bool) or np.ndim(epsilon) != 0:
        raise ValueError(
            f"epsilon must be a non-negative number or a function of t; got {epsilon!r}"
        )
    if not isinstance(epsilon, jax.core.Tracer) and not float(epsilon) >= 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon!r}")
    return lambda t: epsilon


def sample_sde(
    velocity: Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]],
    score: Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]],
    x0: Float[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    epsilon: float | Callable[[Array], ArrayLike] = 1.0,
    t0: float = 0.0,
    t1: float = 1.0,
    dt0: float = 1e-2,
    batch: str = "joint",
) -> tuple[Float[Array, "*batch dim"], Stats]:
    """Sample by the forward SDE `dX = [b(t, X) + ε(t) s(t, X)] dt + √(2ε(t)) dW` from `t0` to
    `t1 > t0` (Albergo, Boffi & Vanden-Eijnden 2023, the forward SDE): for any `ε ≥ 0`
    its marginals are the interpolant's `ρ_t` when `X(t0) ~ ρ_{t0}`.

    Euler–Maruyama with fixed steps of at most `dt0` (weak order 1: a bias `O(dt0)`), diagonal
    noise, Brownian increments drawn on the grid.

    **Arguments:**

    - `velocity`, `score`: `b(t, x)` and `s(t, x)`, each `-> (dim,)` for one sample.
    - `x0`: samples of `ρ_{t0}`, shape `(dim,)` or `(batch, dim)`.
    - `key`: one PRNG key (sample `i` of a batch uses `jax.random.split(key, batch)[i]`).
    - `epsilon`: the diffusion `ε`: a non-negative number or a function `ε(t) -> scalar` (kept
      finite where the score is singular, e.g. `ε(1) = 0` when `ρ_1` is a point mass).
    - `t0`, `t1`, `dt0`: the time span and the step.
    - `batch`: `"joint"` or `"vmap"` for `(batch, dim)` input (the same paths either way).

    **Returns:** `(x1, stats)`: samples at `t1`, shaped like `x0`, and the solve's `Stats`.
    """
    x0, batched = _check_samples("x0", x0)
    _check_times(t0, t1, forward_only=True)
    _check_batch(batch)
    eps = _epsilon_fn(epsilon)

    def drift(t, x, args):
        return velocity(t, x) + eps(t) * score(t, x)

    def diffusion(t, x, args):
        return jnp.broadcast_to(jnp.sqrt(2 * jnp.asarray(eps(t), dtype=x.dtype)), x.shape)

    ts = jnp.asarray([float(t0), float(t1)], dtype=x0.dtype)
    sol = sdeint(
        drift,
        diffusion,
        x0,
        ts,
        key=key,
        noise="diagonal",
        solver="euler",
        dt0=dt0,
        brownian="grid",
        batch=batch if batched else None,
    )
    x1 = sol.ys[:, -1] if batched else sol.ys[-1]
    return x1, sol.stats
