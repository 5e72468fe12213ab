"""Sampling a stochastic interpolant's law by its transport ODE or by an SDE with tunable
diffusion (Albergo, Boffi & Vanden-Eijnden 2023).

With velocity `b(t, x)` and score `s(t, x) = ∇ log ρ_t(x)` of the interpolant's density `ρ_t`:

- `sample_ode`: the probability-flow (transport) equation `dx/dt = b(t, x)`, which carries
  samples of `ρ_{t0}` to samples of `ρ_{t1}` (`t1 < t0` runs it backwards, data to noise);
  adaptive steps via `odeint`.
- `sample_sde`: the forward SDE `dX = [b(t, X) + ε(t) s(t, X)] dt + √(2ε(t)) dW`, whose time
  marginals are also `ρ_t` for every diffusion `ε(t) ≥ 0` (`ε = 0` is the ODE); Euler–Maruyama
  on a fixed grid via `sdeint` (diagonal noise, grid Brownian path).

Fields are `(t, x, args) -> vector` for one sample `x` of shape `(dim,)` (as in `losses`). Both
samplers return an `Endpoint` and follow `on_failure` like the solve layer.
"""

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import OnFailure, check_key, check_on_failure
from .._solvers import default_max_steps
from ..solve import Endpoint, odeint, sdeint
from ._checks import check_batch, check_samples, check_times
from ._endpoint import final_endpoint
from ._fields import Constant, Field, Reparametrised, SDEDrift, SDENoise

__all__ = ["sample_ode", "sample_sde"]


def sample_ode(
    velocity: Field,
    x0: Float[ArrayLike, "*batch dim"],
    *,
    args: Any = None,
    t0: float = 0.0,
    t1: float = 1.0,
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: str = "joint",
) -> Endpoint:
    """Transport samples by `dx/dt = b(t, x)` from `t0` to `t1` (Albergo et al. 2023; the
    probability-flow ODE of Song et al. 2021).

    **Arguments:**

    - `velocity`: `b(t, x, args) -> (dim,)` for one sample; `args` is passed to it.
    - `x0`: samples of `ρ_{t0}`, shape `(dim,)` or `(batch, dim)`.
    - `t0`, `t1`: start and end times (concrete); `t1 < t0` integrates backwards.
    - `solver`, `rtol`, `atol`, `dt0`, `max_steps`, `on_failure`: as in `odeint`. With none of
      `rtol`, `atol`, `dt0` given, adaptive steps at `rtol = atol = 1e-6`; `dt0` alone gives
      fixed steps (e.g. `solver="euler", dt0=0.01`: 100 steps, NFE 100).
    - `batch`: for `(batch, dim)` input, `"joint"` (one step sequence for the whole batch) or
      `"vmap"` (each sample its own steps).

    **Returns:** an `Endpoint`: `value`, the samples at `t1` shaped like `x0`; `stats`
    (`num_steps`, `num_fevals`, …; per sample with `batch="vmap"`); `result`.
    """
    x0, batched = check_samples("x0", x0)
    check_times(t0, t1)
    check_batch(batch)
    check_on_failure(on_failure)
    span = abs(float(t1) - float(t0))
    max_steps = default_max_steps(max_steps, (0.0, span), dt0, rtol, atol)
    sign = 1.0 if t1 > t0 else -1.0
    sol = odeint(
        Reparametrised(velocity, float(t0), sign, sign),
        x0,
        np.asarray([0.0, span], dtype=x0.dtype),
        args=args,
        solver=solver,
        rtol=rtol,
        atol=atol,
        dt0=dt0,
        max_steps=max_steps,
        on_failure="return",
        batch=batch if batched else None,
    )
    return final_endpoint(sol, batched, on_failure=on_failure, caller="sample_ode",
                          max_steps=max_steps)  # fmt: skip


def _epsilon_fn(epsilon: float | Callable) -> Callable:
    if callable(epsilon):
        return epsilon
    if isinstance(epsilon, bool) or np.ndim(epsilon) != 0:
        raise ValueError(
            f"epsilon must be a non-negative number or a function of t; got {epsilon!r}"
        )
    if not isinstance(epsilon, jax.core.Tracer) and not float(epsilon) >= 0:
        raise ValueError(f"epsilon must be non-negative, got {epsilon!r}")
    return Constant(epsilon)


def sample_sde(
    velocity: Field,
    score: Field,
    x0: Float[ArrayLike, "*batch dim"],
    *,
    key: PRNGKeyArray,
    args: Any = None,
    epsilon: float | Callable[[Array], ArrayLike] = 1.0,
    t0: float = 0.0,
    t1: float = 1.0,
    dt0: float = 1e-2,
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: str = "joint",
) -> Endpoint:
    """Sample by the forward SDE `dX = [b(t, X) + ε(t) s(t, X)] dt + √(2ε(t)) dW` from `t0` to
    `t1 > t0` (Albergo, Boffi & Vanden-Eijnden 2023, the forward SDE): for any `ε ≥ 0`
    its marginals are the interpolant's `ρ_t` when `X(t0) ~ ρ_{t0}`.

    Euler–Maruyama with fixed steps of at most `dt0` (weak order 1: a bias `O(dt0)`), diagonal
    noise, Brownian increments drawn on the grid.

    **Arguments:**

    - `velocity`, `score`: `b(t, x, args)` and `s(t, x, args)`, each `-> (dim,)` for one sample.
    - `x0`: samples of `ρ_{t0}`, shape `(dim,)` or `(batch, dim)`.
    - `key`: one PRNG key (sample `i` of a batch uses `jax.random.split(key, batch)[i]`).
    - `args`: passed to both fields.
    - `epsilon`: the diffusion `ε`: a non-negative number or a function `ε(t) -> scalar` (kept
      finite where the score is singular, e.g. `ε(1) = 0` when `ρ_1` is a point mass).
    - `t0`, `t1`, `dt0`: the time span and the step.
    - `max_steps`, `on_failure`: as in `sdeint` (by default the grid's step count).
    - `batch`: `"joint"` or `"vmap"` for `(batch, dim)` input (the same paths either way).

    **Returns:** an `Endpoint`: the samples at `t1` shaped like `x0`, the solve's `Stats`, and
    its `result`.
    """
    x0, batched = check_samples("x0", x0)
    check_times(t0, t1, forward_only=True)
    check_key(key, "sample_sde")
    check_batch(batch)
    check_on_failure(on_failure)
    eps = _epsilon_fn(epsilon)
    times = np.asarray([float(t0), float(t1)], dtype=x0.dtype)
    sol = sdeint(
        SDEDrift(velocity, score, eps),
        SDENoise(eps),
        x0,
        times,
        key=key,
        args=args,
        noise="diagonal",
        solver="euler",
        dt0=dt0,
        brownian="grid",
        max_steps=max_steps,
        on_failure="return",
        batch=batch if batched else None,
    )
    max_steps = default_max_steps(max_steps, times, dt0)
    return final_endpoint(sol, batched, on_failure=on_failure, caller="sample_sde",
                          max_steps=max_steps)  # fmt: skip
