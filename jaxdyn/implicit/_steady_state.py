"""Equilibria of an ODE reached by integration, differentiated implicitly."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from .._checks import OnFailure, check_on_failure
from .._solvers import resolve_solver, stepsize_controller
from .._trees import as_arrays, tree_norm
from ..solve import RESULTS
from ._common import LinearSolve, convert_map, solve_implicitly
from ._info import SolveInfo

__all__ = ["steady_state"]


def steady_state(
    field: Callable[[Any, PyTree, Any], PyTree],
    y0: PyTree[ArrayLike],
    theta: Any,
    *,
    solver: str | dfx.AbstractSolver = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-8,
    t_max: float = float("inf"),
    max_steps: int = 4096,
    linear_solver: str | Callable = "gmres",
    linear_tol: float = 1e-10,
    linear_max_steps: int | None = None,
    linear_check: float | None = 1e-3,
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Integrate the autonomous ODE `dy/dt = field(t, y, θ)` from `y0` until it is at rest,
    `‖field(y)‖ < atol + rtol ‖y‖` (Diffrax's steady-state event), and differentiate the
    equilibrium `y*(θ)` by the implicit function theorem on `field(y*, θ) = 0`:
    `∂y*/∂θ = -(∂_y f)⁻¹ ∂_θ f`. The integration itself is never differentiated.

    Integration reaches the equilibrium that is stable and attracts `y0`, which `root` on
    the same field need not find; where both converge to the same point their values and
    gradients agree. `rtol`/`atol` control both the adaptive steps and the event;
    `t_max` bounds the time (reaching it without rest is a failure, as is running out of
    `max_steps`, 4096 as for every adaptive solve).
    Other arguments as in `root`. **Returns:** `(y*, info)`; `info.iterations` counts solver
    steps and `info.error` is `‖field(y*)‖`.
    """
    check_on_failure(on_failure)
    y0, theta = as_arrays((y0, theta))
    solver_ = resolve_solver(solver)
    controller = stepsize_controller(solver_, rtol, atol, None)

    def autonomous(y, theta):
        return field(0.0, y, theta)

    fn = convert_map(autonomous, "field(t, y, theta)", y0, theta, "y0")
    message = (
        f"steady_state: no equilibrium reached (max_steps={max_steps}, t_max={t_max}); the "
        "solution may oscillate or diverge, or need more steps: raise max_steps or t_max"
    )
    event = dfx.Event(dfx.steady_state_event(rtol=rtol, atol=atol))

    def forward(y0, fn, theta):
        sol = dfx.diffeqsolve(
            dfx.ODETerm(lambda t, y, args: fn(y, args)), solver_, 0.0, t_max, None, y0,
            args=theta, saveat=dfx.SaveAt(t1=True), stepsize_controller=controller,
            event=event, max_steps=max_steps, throw=False,
        )  # fmt: skip
        y = jax.tree.map(lambda ys: ys[-1], sol.ys)  # the one saved time, t1
        error = tree_norm(fn(y, theta))
        converged = (sol.result == RESULTS.event_occurred) & jnp.isfinite(error)
        return y, SolveInfo(sol.stats["num_steps"], error, converged)

    return solve_implicitly(
        forward, _residual, y0, (fn, theta), on_failure=on_failure, caller="steady_state",
        linear=LinearSolve(linear_solver, linear_tol, linear_max_steps, linear_check),
        message=message,
    )  # fmt: skip


def _residual(y, fn, theta):
    return fn(y, theta)
