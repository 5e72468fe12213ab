"""Integrate ordinary differential equations: a thin, typed layer over Diffrax.

`odeint` solves the initial-value problem

    dy/dt = f(t, y, args),    y(ts[0]) = y0,

and returns the solution at the times `ts` together with solver statistics and a result
code. Solvers, step-size control and adjoints are chosen by name (or passed as Diffrax
objects); failures follow an explicit policy instead of returning silent garbage.
"""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Float, PyTree

from .._solvers import default_max_steps, resolve_solver, stepsize_controller
from ._common import (
    Batch,
    JointField,
    OnFailure,
    Solution,
    check_field,
    check_options,
    check_times,
    check_y0,
    closure_convert,
    integrate,
)


def odeint(
    field: Callable[[Any, PyTree, Any], PyTree],
    y0: PyTree[ArrayLike],
    ts: Float[ArrayLike, " time"],
    *,
    args: Any = None,
    solver: str | dfx.AbstractSolver = "tsit5",
    rtol: float | None = None,
    atol: float | None = None,
    dt0: float | None = None,
    adjoint: str | dfx.AbstractAdjoint = "checkpoint",
    max_steps: int | None = None,
    on_failure: OnFailure = "raise",
    batch: Batch = None,
    save_solver_state: bool = False,
) -> Solution:
    """Solve `dy/dt = field(t, y, args)`, `y(ts[0]) = y0`, and return `y` at `ts`.

    **Arguments:**

    - `field`: a callable `f(t, y, args) -> dy/dt` (an Equinox module or any function). It
      describes one sample; batching is chosen by `batch`.
    - `y0`: the initial state, any pytree of floating-point arrays.
    - `ts`: strictly increasing times of shape `(time,)`; integration runs from `ts[0]` to
      `ts[-1]` and the solution is saved at every entry.
    - `solver`: a name from `SOLVERS` (`euler`, `heun`, `midpoint`, `ralston`, `rk4` (fixed
      steps only), `bosh3`, `tsit5`, `dopri5`, `dopri8`, and the stiff `kvaerno3`,
      `kvaerno5`) or a Diffrax solver.
    - `rtol`, `atol`: tolerances of the adaptive step-size (PID) controller, `1e-6` when not
      given. Giving `dt0` without tolerances selects fixed steps of size `dt0` instead.
    - `dt0`: the (initial) step size; chosen automatically for adaptive solves when `None`.
    - `adjoint`: how gradients are computed: `checkpoint` (discretise-then-optimise with
      recursive checkpointing), `backsolve` (the continuous adjoint of Chen et al. 2018),
      `direct`, or a Diffrax adjoint.
    - `max_steps`: the step budget; exceeding it is a failure. `None`: 4096 for adaptive
      steps; for fixed steps with `ts` known at trace time, the number of steps of `dt0`
      (so a fixed-step solve cannot run out).
    - `on_failure`: `raise` (an error naming what failed and what to change), `nan` (failed
      solutions become NaN) or `return` (the caller reads `Solution.result`).
    - `batch`: `None` for one state; `"vmap"` or `"joint"` when every leaf of `y0` has a
      leading batch axis. `vmap` solves each sample with its own step sizes; `joint`
      integrates the batch as one state with one step-size sequence (as torchdiffeq does),
      which is usually faster for neural-ODE training.
    - `save_solver_state`: also return the solver's final state as `Solution.solver_state`
      (for solvers that carry quantities across accepted steps, such as
      `jaxdyn.regularize.HeuristicsSolver`). Not with `adjoint="backsolve"`, whose backward
      solve does not differentiate it.

    **Returns:** a `Solution`.
    """
    solver_ = resolve_solver(solver)
    adjoint_ = check_options(adjoint, on_failure, dt0, batch, save_solver_state)
    times, ts = check_times(ts)
    check_y0(y0, batch)
    controller = stepsize_controller(solver_, rtol, atol, dt0)
    max_steps = default_max_steps(max_steps, times, dt0, rtol, atol)
    sample_y0 = jax.tree.map(lambda y: y[0], y0) if batch is not None else y0
    check_field(field, ts[0], sample_y0, args)

    vector_field = JointField(field) if batch == "joint" else field
    if isinstance(adjoint_, dfx.BacksolveAdjoint):
        example = y0 if batch == "joint" else sample_y0
        (vector_field,) = closure_convert((vector_field,), ts[0], example, args)
    term = dfx.ODETerm(vector_field)

    def solve_one(y0_):
        return integrate(term, solver_, ts, dt0, y0_, args=args, controller=controller,
                         adjoint=adjoint_, max_steps=max_steps, on_failure=on_failure,
                         caller="odeint", save_solver_state=save_solver_state)  # fmt: skip

    if batch == "vmap":
        ys, stats, result, state = jax.vmap(solve_one)(y0)
    else:
        ys, stats, result, state = solve_one(y0)
        if batch == "joint":  # (time, batch, ...) -> (batch, time, ...)
            ys = jax.tree.map(lambda y: jnp.moveaxis(y, 0, 1), ys)
    return Solution(ts=ts, ys=ys, stats=stats, result=result, solver_state=state)
