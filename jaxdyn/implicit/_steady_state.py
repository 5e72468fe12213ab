"""Equilibria of an ODE reached by integration, differentiated implicitly."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from .._checks import OnFailure, check_on_failure, check_positive
from .._solvers import resolve_solver, stepsize_controller
from .._trees import as_arrays, tree_norm
from ..solve import RESULTS
from ._common import convert_map, solve_implicitly
from ._info import SolveInfo
from ._linear import LinearSolve, as_linear_solve

__all__ = ["steady_state"]


def steady_state(
    field: Callable[[Any, PyTree, Any], PyTree],
    y0: PyTree[ArrayLike],
    theta: Any,
    *,
    solver: str | dfx.AbstractSolver = "tsit5",
    rtol: float | None = None,
    atol: float | None = None,
    t_max: float = float("inf"),
    max_steps: int = 4096,
    linear_solver: str | Callable | LinearSolve = "gmres",
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Integrate the autonomous ODE `dy/dt = field(t, y, θ)` from `y0` until it is at rest,
    `‖field(y)‖ < atol + rtol ‖y‖` (Diffrax's steady-state event), and differentiate the
    equilibrium `y*(θ)` by the implicit function theorem on `field(y*, θ) = 0`:
    `∂y*/∂θ = -(∂_y f)⁻¹ ∂_θ f`. The integration itself is never differentiated.

    Integration reaches the equilibrium that is stable and attracts `y0`, which `root` on
    the same field need not find; where both converge to the same point their values and
    gradients agree. `rtol`/`atol` set the event; by default `1e-8`, or `100 ε` where the
    state's precision cannot resolve that (`1.2e-5` in float32). The adaptive steps use a
    tenth of them: an explicit solver near a stable equilibrium settles at its stability
    limit, where its residual hovers at several times its own error tolerance, so with equal
    tolerances the event need never fire (measured: Tsit5 at `1e-5` stalled at `6e-5`).
    `t_max` bounds the time (reaching it without rest is a failure, as is running out of
    `max_steps`, 4096 as for every adaptive solve).
    Other arguments as in `root`. **Returns:** `(y*, info)`; `info.iterations` counts solver
    steps and `info.error` is `‖field(y*)‖`.
    """
    check_on_failure(on_failure)
    y0, theta = as_arrays((y0, theta))
    solver_ = resolve_solver(solver)
    floor = _floor(y0)
    rtol, atol = (max(1e-8, floor) if tol is None else tol for tol in (rtol, atol))
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    controller = stepsize_controller(solver_, _STEP_TOL * rtol, _STEP_TOL * atol, None)

    def autonomous(y, theta):
        return field(0.0, y, theta)

    fn = convert_map(autonomous, "field(t, y, theta)", y0, theta, "y0")
    message = (
        f"steady_state: no equilibrium reached (max_steps={max_steps}, t_max={t_max}); the "
        "solution may oscillate or diverge, or need more steps: raise max_steps or t_max"
        + _resolution_hint(floor, rtol, atol)
    )
    event = dfx.Event(dfx.steady_state_event(rtol=rtol, atol=atol))

    # Diffrax promotes the state to the time's dtype: times in the state's own precision keep
    # a float32 state float32 when x64 is enabled.
    dtype = jnp.result_type(*jax.tree.leaves(y0))
    t0 = jnp.zeros((), dtype if jnp.issubdtype(dtype, jnp.inexact) else float)

    def forward(y0, fn, theta):
        sol = dfx.diffeqsolve(
            dfx.ODETerm(lambda t, y, args: fn(y, args)), solver_, t0, t_max, None, y0,
            args=theta, saveat=dfx.SaveAt(t1=True), stepsize_controller=controller,
            event=event, max_steps=max_steps, throw=False,
        )  # fmt: skip
        y = jax.tree.map(lambda ys: ys[-1], sol.ys)  # the one saved time, t1
        error = tree_norm(fn(y, theta))
        converged = (sol.result == RESULTS.event_occurred) & jnp.isfinite(error)
        return y, SolveInfo(sol.stats["num_steps"], error, converged)

    return solve_implicitly(
        forward, _residual, y0, (fn, theta), on_failure=on_failure, caller="steady_state",
        linear=as_linear_solve(linear_solver),
        message=message,
    )  # fmt: skip


_STEP_TOL = 0.1  # the adaptive steps' tolerances, relative to the event's


def _floor(y0) -> float:
    """`100 ε` of the state's least precise floating dtype: residuals below it are rounding."""
    eps = [
        jnp.finfo(x.dtype).eps for x in jax.tree.leaves(y0) if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return 100 * float(max(eps, default=jnp.finfo(float).eps))


def _resolution_hint(floor: float, rtol, atol) -> str:
    if max(rtol, atol) >= floor:
        return ""
    return (
        f"; rtol={rtol:g}/atol={atol:g} are below 100 eps of the state's dtype ({floor:.1e}), "
        "so rounding alone can keep the residual above them"
    )


def _residual(y, fn, theta):
    return fn(y, theta)
