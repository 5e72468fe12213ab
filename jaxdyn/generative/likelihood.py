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

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..solve import Stats, odeint
from .sampling import _check_samples, _check_times

__all__ = ["DIVERGENCES", "divergence", "log_likelihood"]

DIVERGENCES = ("exact", "hutchinson")
_PROBES = ("rademacher", "gaussian")


def divergence(
    velocity: Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]],
    t: ArrayLike,
    x: Float[Array, " dim"],
    probe: Float[Array, " dim"] | None = None,
) -> Array:
    """`∇·b(t, x)` exactly (`probe=None`: trace of `jax.jacfwd`) or Hutchinson's estimate
    `probeᵀ (∂b/∂x) probe` (one `jax.jvp`), for one point `x` of shape `(dim,)`."""
    if probe is None:
        return jnp.trace(jax.jacfwd(lambda y: velocity(t, y))(x))
    _, jvp = jax.jvp(lambda y: velocity(t, y), (x,), (probe,))
    return jnp.vdot(probe, jvp)


def _probe(key: PRNGKeyArray, probe: str, shape, dtype) -> Array:
    if probe == "rademacher":
        return jax.random.rademacher(key, shape, dtype=dtype)
    return jax.random.normal(key, shape, dtype=dtype)


def log_likelihood(
    velocity: Callable[[Array, Float[Array, " dim"]], Float[Array, " dim"]],
    x: Float[ArrayLike, "*batch dim"],
    log_base: Callable[[Float[Array, " dim"]], Array],
    *,
    t0: float = 0.0,
    t1: float = 1.0,
    method: str = "exact",
    key: PRNGKeyArray | None = None,
    probe: str = "rademacher",
    solver: str = "dopri5",
    rtol: float = 1e-6,
    atol: float = 1e-6,
    dt0: float | None = None,
    max_steps: int = 4096,
) -> tuple[Float[Array, "*batch"], Stats]:
    """`log ρ_{t1}(x)` for the density transported by `dx/dt = b(t, x)` from `ρ_{t0}`, whose
    log-density is `log_base` (see the module).

    **Arguments:**

    - `velocity`: `b(t, x) -> (dim,)` for one point.
    - `x`: points at `t1`, shape `(dim,)` or `(batch, dim)` (each solved on its own steps, by
      `vmap`).
    - `log_base`: `log ρ_{t0}(x) -> scalar` for one point, e.g. `standard_normal(dim).log_prob`.
    - `t0`, `t1`: the flow's start and end times (concrete, `t0 ≠ t1`); the solve runs from
      `t1` back to `t0`.
    - `method`: `"exact"` (trace of the Jacobian) or `"hutchinson"` (needs `key`; point `i` of a
      batch draws its probe from `jax.random.split(key, batch)[i]`).
    - `probe`: Hutchinson's probe distribution, `"rademacher"` or `"gaussian"`.
    - `solver`, `rtol`, `atol`, `dt0`, `max_steps`: as in `odeint`.

    **Returns:** `(log_prob, stats)`: shape `()` or `(batch,)`, and the `Stats` of the solve(s)
    (per point for a batch). A failed solve raises.
    """
    x, batched = _check_samples("x", x)
    _check_times(t0, t1)
    if method not in DIVERGENCES:
        raise ValueError(f"unknown method={method!r}; expected one of {list(DIVERGENCES)}")
    if probe not in _PROBES:
        raise ValueError(f"unknown probe={probe!r}; expected one of {list(_PROBES)}")
    if method == "hutchinson" and key is None:
        raise ValueError("method='hutchinson' needs key=jax.random.key(seed) to draw its probes")
    if method == "exact" and key is not None:
        raise ValueError("key is used by method='hutchinson' only; the exact divergence is exact")
    point = x[0] if batched else x
    out = jax.eval_shape(lambda y: velocity(jnp.asarray(t1, x.dtype), y), point)
    if getattr(out, "shape", None) != point.shape:
        raise ValueError(
            f"velocity(t, x) must return the shape of x {point.shape}; got "
            f"{getattr(out, 'shape', out)}"
        )
    base = jax.eval_shape(log_base, point)
    if getattr(base, "shape", None) != ():
        raise ValueError(
            f"log_base(x) must return a scalar for x of shape {point.shape}; got "
            f"{getattr(base, 'shape', base)}"
        )

    t0, t1 = float(t0), float(t1)
    sign = 1.0 if t1 > t0 else -1.0  # s = sign (t1 − t): from t1 back to t0
    ts = jnp.asarray([0.0, abs(t1 - t0)], dtype=x.dtype)

    def field(s, state, probe_):
        y, _ = state
        t = t1 - sign * s
        b = velocity(t, y)
        return -sign * b, sign * divergence(velocity, t, y, probe_)

    def one(y1, probe_):
        state0 = (y1, jnp.zeros((), y1.dtype))
        sol = odeint(
            field,
            state0,
            ts,
            args=probe_,
            solver=solver,
            rtol=rtol,
            atol=atol,
            dt0=dt0,
            max_steps=max_steps,
        )
        y0, integral = sol.ys[0][-1], sol.ys[1][-1]
        return log_base(y0) - integral, sol.stats

    if not batched:
        probes = None if key is None else _probe(key, probe, x.shape, x.dtype)
        return one(x, probes)
    if key is None:
        return jax.vmap(lambda y: one(y, None))(x)
    keys = jax.random.split(key, x.shape[0])
    probes = jax.vmap(lambda k: _probe(k, probe, point.shape, x.dtype))(keys)
    return jax.vmap(one)(x, probes)
