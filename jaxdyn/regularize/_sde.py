"""The error-estimate regulariser of an adaptive SDE solve (Pal, Ma, Shah & Rackauckas 2021,
§ neural SDEs: the same sum as for ODEs, of the stochastic solver's own error estimate)."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from ..solve import Solution, sdeint
from ._heuristics import Heuristics, heuristics_solver

__all__ = ["SDE_SOLVERS", "sde_error_penalty"]

# The adaptive SDE solvers with an embedded error estimate, by name (as `sdeint` names them).
SDE_SOLVERS = {"srk": dfx.SPaRK, "heun": dfx.Heun}


def sde_error_penalty(
    drift: Callable[[Any, Array, Any], Array],
    diffusion: Callable[[Any, Array, Any], Array],
    y0: Float[ArrayLike, "*batch dim"],
    ts: Float[ArrayLike, " time"],
    *,
    key: PRNGKeyArray,
    solver: str | dfx.AbstractSolver = "srk",
    rtol: float | None = None,
    atol: float | None = None,
    **options: Any,
) -> tuple[Solution, Float[Array, ""]]:
    """The error-estimate regulariser of an adaptive SDE solve:

        R_E = Σ_n dt_n · E_n,    E_n = rms(err_n / (atol + rtol · max(|y_n|, |y_{n+1}|))),

    over the accepted steps `n` of `sdeint(drift, diffusion, y0, ts, key=key, ...)` with
    adaptive steps, `err_n` the stochastic solver's embedded error estimate on the step's
    Brownian increment (for `srk`, SPaRK's; Foster, dos Reis & Strange 2024) and `E_n` what
    the step-size controller compares with 1. It is `error_penalty` for an SDE, summed by the
    same `HeuristicsSolver`; for a given Brownian path (`key`) it is a differentiable
    function of the drift and diffusion (the step sizes held fixed, as for ODEs).

    - `solver`: `srk` (SPaRK), `heun`, or a Diffrax solver with an error estimate.
    - `rtol`, `atol`: the controller's tolerances (`sdeint`'s defaults when `None`).
    - `options`: `sdeint`'s other keywords (`args`, `noise`, `calculus`, `brownian_tol`,
      `adjoint` (`checkpoint` or `direct`), `max_steps`, `on_failure`, `batch`,
      `n_samples`); the Brownian path is `virtual` (any step).

    Returns `(solution, R_E)`; with `batch="vmap"` (or `n_samples`) `R_E` is the mean over
    the paths, with `batch="joint"` that of the one joint solve. A failed solve's `R_E` is NaN
    with `on_failure="nan"`; with `"return"` it is the sum up to where the solve stopped
    (smaller than a finished solve's: check `solution.result`). Train with `batch="joint"`:
    under `vmap`, Diffrax 0.7's SPaRK has NaN gradients (a plain `sdeint` too; `heun` not).
    """
    if isinstance(solver, str):
        if solver not in SDE_SOLVERS:
            raise ValueError(
                f"sde_error_penalty: solver {solver!r} is not one of {sorted(SDE_SOLVERS)} "
                "(adaptive SDE solvers with an error estimate), nor a Diffrax solver"
            )
        solver = SDE_SOLVERS[solver]()
    if options.get("dt0") is not None and rtol is None and atol is None:
        raise ValueError("sde_error_penalty penalises an adaptive solve: give rtol and atol")
    if options.pop("brownian", "virtual") != "virtual":
        raise ValueError("sde_error_penalty's adaptive steps need brownian='virtual'")
    if "save_solver_state" in options:
        raise TypeError("sde_error_penalty sets save_solver_state itself")
    wrapper = heuristics_solver(solver, rtol, atol)
    rtol, atol = wrapper.tolerances
    sol = sdeint(drift, diffusion, y0, ts, key=key, solver=wrapper, rtol=rtol, atol=atol,
                 brownian="virtual", save_solver_state=True, **options)  # fmt: skip
    totals: Heuristics = sol.solver_state[1]  # NaN for a failed solve under on_failure="nan"
    solution = Solution(ts=sol.ts, ys=sol.ys, stats=sol.stats, result=sol.result)
    return solution, jnp.mean(totals.error)  # per path under vmap: their mean
