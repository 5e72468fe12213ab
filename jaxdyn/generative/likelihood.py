"""Exact log-likelihood of a transport ODE by the instantaneous change of variables (Chen et al.
2018, Theorem 1; Grathwohl et al. 2019, FFJORD).

If `dx/dt = b(t, x)` carries `ρ_{t0}` to `ρ_{t1}`, then along a trajectory
`d/dt log ρ_t(x(t)) = −∇·b(t, x(t))`, so for a point `x` at `t1`

    log ρ_{t1}(x) = log ρ_{t0}(x(t0)) − ∫_{t0}^{t1} ∇·b(t, x(t)) dt,

where `x(t0)` is found by integrating backwards from `x(t1) = x`. `log_likelihood` solves the
augmented system `d/dt [x, ℓ] = [b, ∇·b]` from `t1` back to `t0` (in the reversed time
`s = t1 − t`) and returns `log_base(x(t0)) − ℓ`. The divergence is exact (the trace of
`jax.jacfwd`, `dim` forward passes: small dimensions) or Hutchinson's unbiased estimate
`εᵀ (∂b/∂x) ε` by one Jacobian-vector product, with one probe `ε` (Rademacher or Gaussian)
drawn per solve and held fixed along it (Grathwohl et al. 2019); the trajectory does not
depend on `ε`, so the estimate of the log-likelihood is unbiased.
"""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from .._checks import OnFailure, check_choice, check_key, check_on_failure
from .._solvers import default_max_steps
from ..solve import Endpoint, odeint
from ._checks import check_samples, check_times
from ._endpoint import endpoint
from ._fields import Field

__all__ = ["DIVERGENCES", "divergence", "log_likelihood"]

DIVERGENCES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")


def divergence(
    field: Field,
    t: ArrayLike,
    x: Float[Array, " dim"],
    args: Any = None,
    *,
    probe: Float[Array, " dim"] | None = None,
) -> Array:
    """`∇·b(t, x)` of the field `b(t, x, args)` at one point `x` of shape `(dim,)`: exactly
    (`probe=None`: the trace of `jax.jacfwd`, `dim` forward passes) or Hutchinson's estimate
    `probeᵀ (∂b/∂x) probe` (one `jax.jvp`)."""
    if probe is None:
        return jnp.trace(jax.jacfwd(lambda y: field(t, y, args))(x))
    _, jvp = jax.jvp(lambda y: field(t, y, args), (x,), (probe,))
    return jnp.vdot(probe, jvp)


def _probe(key: PRNGKeyArray, probe: str, shape, dtype) -> Array:
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, dtype=dtype)
    return jax.random.normal(key, shape, dtype=dtype)


class _Augmented(eqx.Module):
    """`d/ds [x, ℓ] = [−σ b(t, x), σ ∇·b(t, x)]` at `t = t1 − σ s`, `σ = sign(t1 − t0)`: the
    flow and its log-density change, from `t1` back to `t0`. Its `args` are `(args, probe)`."""

    velocity: Callable
    t1: float = eqx.field(static=True)
    sign: float = eqx.field(static=True)

    def __call__(self, s, state, args):
        (y, _), (user_args, probe) = state, args
        t = self.t1 - self.sign * s
        b = self.velocity(t, y, user_args)
        div = divergence(self.velocity, t, y, user_args, probe=probe)
        return -self.sign * b, self.sign * div


def _check_functions(velocity: Callable, log_base: Callable, point: Array, t1, args) -> None:
    out = jax.eval_shape(lambda y: velocity(jnp.asarray(t1, point.dtype), y, args), point)
    if getattr(out, "shape", None) != point.shape:
        raise ValueError(
            f"velocity(t, x, args) must return the shape of x {point.shape}; got "
            f"{getattr(out, 'shape', out)}"
        )
    base = jax.eval_shape(log_base, point)
    if getattr(base, "shape", None) != ():
        raise ValueError(
            f"log_base(x) must return a scalar for x of shape {point.shape}; got "
            f"{getattr(base, 'shape', base)}"
        )


def log_likelihood(
    velocity: Field,
    x: Float[ArrayLike, "*batch dim"],
    log_base: Callable[[Float[Array, " dim"]], Array],
    *,
    args: Any = None,
    t0: float = 0.0,
    t1: float = 1.0,
    divergence: str = "exact",
    key: PRNGKeyArray | None = None,
    probe: str = "rademacher",
    solver: str = "dopri5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
) -> Endpoint:
    """`log ρ_{t1}(x)` for the density transported by `dx/dt = b(t, x)` from `ρ_{t0}`, whose
    log-density is `log_base` (see the module).

    **Arguments:**

    - `velocity`: `b(t, x, args) -> (dim,)` for one point; `args` is passed to it.
    - `x`: points at `t1`, shape `(dim,)` or `(batch, dim)` (each solved on its own steps, by
      `vmap`).
    - `log_base`: `log ρ_{t0}(x) -> scalar` for one point, e.g. `standard_normal(dim).log_prob`.
    - `t0`, `t1`: the flow's start and end times (concrete, `t0 ≠ t1`); the solve runs from
      `t1` back to `t0`.
    - `divergence`: `"exact"` (trace of the Jacobian) or `"hutchinson"` (needs `key`; point `i`
      of a batch draws its probe from `jax.random.split(key, batch)[i]`).
    - `probe`: Hutchinson's probe distribution, `"rademacher"` or `"gaussian"`.
    - `solver`, `rtol`, `atol`, `dt0`, `max_steps`, `on_failure`: as in `odeint` (adaptive at
      `1e-6` by default). A non-finite log-likelihood counts as a failure.

    **Returns:** an `Endpoint` whose `value` is the log-likelihood, shape `()` or `(batch,)`,
    with the `Stats` and `result` of each point's solve.
    """
    x, batched = check_samples("x", x)
    check_times(t0, t1)
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("probe", probe, _PROBES)
    check_on_failure(on_failure)
    if divergence == "hutchinson":
        if key is None:
            raise ValueError(
                "divergence='hutchinson' needs key=jax.random.key(seed) to draw its probes"
            )
        check_key(key, "log_likelihood")
    elif key is not None:
        raise ValueError("key is used by divergence='hutchinson' only; 'exact' draws nothing")
    point = x[0] if batched else x
    _check_functions(velocity, log_base, point, t1, args)

    t0, t1 = float(t0), float(t1)
    sign = 1.0 if t1 > t0 else -1.0
    times = np.asarray([0.0, abs(t1 - t0)], dtype=x.dtype)
    max_steps = default_max_steps(max_steps, times, dt0, rtol, atol)
    field = _Augmented(velocity, t1, sign)

    def one(y1, probe_):
        state0 = (y1, jnp.zeros((), y1.dtype))
        sol = odeint(field, state0, times, args=(args, probe_), solver=solver, rtol=rtol,
                     atol=atol, dt0=dt0, max_steps=max_steps, on_failure="return")  # fmt: skip
        y0, integral = sol.ys[0][-1], sol.ys[1][-1]
        return log_base(y0) - integral, sol.stats, sol.result

    if not batched:
        probes = None if key is None else _probe(key, probe, x.shape, x.dtype)
        out = one(x, probes)
    elif key is None:
        out = jax.vmap(lambda y: one(y, None))(x)
    else:
        keys = jax.random.split(key, x.shape[0])
        probes = jax.vmap(lambda k: _probe(k, probe, point.shape, x.dtype))(keys)
        out = jax.vmap(one)(x, probes)
    return endpoint(*out, on_failure=on_failure, caller="log_likelihood", max_steps=max_steps)
