"""Momentum methods and the ODEs they discretise: Nesterov's accelerated gradient and its
limit `Ẍ + (3/t)Ẋ + ∇f(X) = 0` (Su, Boyd & Candès 2016, "A differential equation for
modeling Nesterov's accelerated gradient method"), and Polyak's heavy ball and its limit
`Ẍ + aẊ + ∇f(X) = 0`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .._checks import check_count, check_positive, check_times
from ..solve import OnFailure, Solution, odeint

__all__ = ["heavy_ball_flow", "heavy_ball_iterates", "nesterov_flow", "nesterov_iterates"]

Gradient = Callable[[Array], Array]


def _check_x0(x0) -> Array:
    x0 = jnp.asarray(x0)
    if x0.ndim != 1 or not jnp.issubdtype(x0.dtype, jnp.floating):
        raise ValueError(f"x0 must be a floating-point vector, got {x0.dtype}{list(x0.shape)}")
    return x0


def nesterov_iterates(
    grad: Gradient,
    x0: Float[ArrayLike, " dim"],
    *,
    step: float,
    num_steps: int,
    momentum: float | None = None,
) -> Float[Array, "num_steps+1 dim"]:
    r"""Nesterov's accelerated gradient from `x₀ = y₀`:

        x_k = y_{k−1} − s ∇f(y_{k−1}),    y_k = x_k + β_k (x_k − x_{k−1}),

    with `β_k = (k − 1)/(k + 2)` (the convex method of Su, Boyd & Candès 2016, eq. (3);
    `momentum=None`) or a constant `β_k = momentum` (the strongly convex method).

    **Returns:** the iterates `x_0, …, x_{num_steps}` stacked as rows. Jittable in `x0`.
    """
    check_positive("step", step)
    check_count("num_steps", num_steps)
    x0 = _check_x0(x0)

    def body(carry, k):
        x_prev, y = carry
        x = y - step * grad(y)
        beta = (k - 1.0) / (k + 2.0) if momentum is None else momentum
        return (x, x + beta * (x - x_prev)), x

    ks = jnp.arange(1, num_steps + 1, dtype=x0.dtype)
    xs = jax.lax.scan(body, (x0, x0), ks)[1]
    return jnp.concatenate([x0[None], xs])


def heavy_ball_iterates(
    grad: Gradient,
    x0: Float[ArrayLike, " dim"],
    *,
    step: float,
    momentum: float,
    num_steps: int,
) -> Float[Array, "num_steps+1 dim"]:
    r"""Polyak's heavy ball from `x_{−1} = x₀`: `x_{k+1} = x_k − α ∇f(x_k) + β (x_k − x_{k−1})`
    (`α = step`, `β = momentum`); its limit as `α → 0` with `(1 − β)/√α = a` fixed is
    `heavy_ball_flow` at time `t = k√α`.

    **Returns:** the iterates `x_0, …, x_{num_steps}` stacked as rows. Jittable in `x0`.
    """
    check_positive("step", step)
    check_count("num_steps", num_steps)
    x0 = _check_x0(x0)

    def body(carry, _):
        x_prev, x = carry
        x_next = x - step * grad(x) + momentum * (x - x_prev)
        return (x, x_next), x_next

    xs = jax.lax.scan(body, (x0, x0), length=num_steps)[1]
    return jnp.concatenate([x0[None], xs])


def nesterov_flow(
    grad: Gradient,
    x0: Float[ArrayLike, " dim"],
    ts: Float[ArrayLike, " time"],
    *,
    r: float = 3.0,
    solver: str = "dopri8",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int | None = 100_000,
    on_failure: OnFailure = "raise",
) -> Solution:
    r"""`Ẍ + (r/t) Ẋ + ∇f(X) = 0`, `X(0) = x₀`, `Ẋ(0) = 0` (Su, Boyd & Candès 2016, eq. (1)
    with `r = 3`; Nesterov's `x_k ≈ X(k√s)`), by `jaxdyn.odeint` on the state `(X, Ẋ)`.

    The friction `r/t` is singular at `t = 0`, so the solve starts at `ts[0] > 0` from the
    series `X(t) = x₀ − t² g/(2(r+1)) + t⁴ H g/(8(r+1)(r+3)) + O(t⁶)` (`g = ∇f(x₀)`, `H` its
    Hessian, applied by a Jacobian-vector product of `grad`), so `ts[0]` of `1e-3` leaves an
    initial error of order `1e-18`. For a quadratic `f = ½ λ x²` the solution is
    `x₀ Γ(ν+1) (2/(√λ t))^ν J_ν(√λ t)` with `ν = (r − 1)/2` (`2 J₁(u)/u` at `r = 3`).

    Defaults tighter than `odeint`'s (`dopri8`, `rtol=1e-10`, `atol=1e-12`, `max_steps`
    100,000): the flow is compared with closed forms and with the iterates at small steps;
    `on_failure` as in `odeint`.

    **Returns:** the `Solution` of `odeint`, `ys = (X, Ẋ)` at `ts`.
    """
    x0 = _check_x0(x0)
    check_positive("r", r)
    if not isinstance(ts, jax.core.Tracer):  # integer times are fine: x0's dtype, concrete
        ts = np.asarray(ts, dtype=x0.dtype)
    times, ts = check_times(ts)  # odeint's own check, before ts[0] is used for the start
    if times is not None and not times[0] > 0:
        raise ValueError(
            f"nesterov_flow needs ts[0] > 0 (the friction r/t is singular at t = 0; the "
            f"start comes from the series at ts[0], e.g. ts[0] = 1e-3), got ts[0]={times[0]}"
        )
    t0 = ts[0]
    g, hg = jax.jvp(grad, (x0,), (grad(x0),))
    c2, c4 = 1 / (2 * (r + 1)), 1 / (8 * (r + 1) * (r + 3))
    start = (x0 - c2 * t0**2 * g + c4 * t0**4 * hg, -2 * c2 * t0 * g + 4 * c4 * t0**3 * hg)

    def field(t, state, args):
        x, v = state
        return v, -(r / t) * v - grad(x)

    return odeint(field, start, ts, solver=solver, rtol=rtol, atol=atol, adjoint="direct",
                  max_steps=max_steps, on_failure=on_failure)  # fmt: skip


def heavy_ball_flow(
    grad: Gradient,
    x0: Float[ArrayLike, " dim"],
    ts: Float[ArrayLike, " time"],
    *,
    damping: float,
    v0: Float[ArrayLike, " dim"] | None = None,
    solver: str = "dopri8",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int | None = 100_000,
    on_failure: OnFailure = "raise",
) -> Solution:
    r"""The heavy-ball ODE `Ẍ + a Ẋ + ∇f(X) = 0` (`a = damping`), `X(ts[0]) = x₀`,
    `Ẋ(ts[0]) = v₀` (zero by default), by `jaxdyn.odeint` on `(X, Ẋ)`. Its energy
    `f(X) + ½‖Ẋ‖²` falls at the rate `a‖Ẋ‖²`; with `a = 2√μ` on a `μ`-strongly convex `f`,
    `f(X) − f* + ½‖√μ (X − x*) + Ẋ‖²` falls at least as `e^{−√μ t}` (Wilson, Recht & Jordan
    2016).

    Defaults tighter than `odeint`'s (`dopri8`, `rtol=1e-10`, `atol=1e-12`, `max_steps`
    100,000): the flow is compared with closed forms and with the iterates at small steps;
    `on_failure` as in `odeint`.

    **Returns:** the `Solution` of `odeint`, `ys = (X, Ẋ)` at `ts`.
    """
    x0 = _check_x0(x0)
    check_positive("damping", damping)
    v = jnp.zeros_like(x0) if v0 is None else jnp.asarray(v0, x0.dtype)

    def field(t, state, args):
        x, v = state
        return v, -damping * v - grad(x)

    return odeint(field, (x0, v), ts, solver=solver, rtol=rtol, atol=atol, adjoint="direct",
                  max_steps=max_steps, on_failure=on_failure)  # fmt: skip
