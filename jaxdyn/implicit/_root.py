"""Root finding, `F(x, θ) = 0`, differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import optimistix as optx
from jaxtyping import ArrayLike, PyTree

from .._checks import OnFailure, check_choice, check_on_failure
from .._jaxopt import iterate
from .._trees import as_arrays, tree_norm
from ._common import convert_map, not_converged, solve_implicitly
from ._info import SolveInfo
from ._linear import LinearSolve, as_linear_solve

__all__ = ["ROOT_SOLVERS", "root"]

ROOT_SOLVERS = ("newton", "broyden", "bisection")


def root(
    F: Callable[[PyTree, Any], PyTree],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    solver: str = "newton",
    tol: float = 1e-6,
    max_steps: int = 100,
    bracket: tuple[float, float] | None = None,
    linear_solver: str | Callable | LinearSolve = "gmres",
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Solve `F(x, θ) = 0` for `x`; gradients with respect to `θ` (and arrays `F` closes
    over) by the implicit function theorem, `∂x/∂θ = -(∂ₓF)⁻¹ ∂_θF` (Blondel et al. 2022).

    **Arguments:**

    - `F`: `(x, θ) -> residual` with the structure and shapes of `x`.
    - `x0`: the initial guess (any pytree); unused by `bisection`.
    - `theta`: the parameters (any pytree); differentiated.
    - `solver`: `newton` (optimistix's Newton, exact Jacobian), `broyden` (quasi-Newton) or
      `bisection` (scalar `x`, needs `bracket=(lower, upper)` with a sign change).
    - `tol`, `max_steps`: the forward solve's tolerance and iteration cap.
    - `linear_solver`: how the implicit-function linear system `(∂ₓF)ᵀ v = g` is solved and
      checked: a name (`gmres`, the default; `bicgstab`, `normal_cg`, `lu`, `cg` for a
      symmetric positive-definite `∂ₓF` only), a callable `solve(matvec, b)`, or a
      `LinearSolve` with its tolerance, iteration cap and residual check.
    - `on_failure`: `raise`, `nan` (the solution and its gradient become NaN) or `return`.

    **Returns:** `(x, info)` with `info` a `SolveInfo`.
    """
    check_choice("solver", solver, ROOT_SOLVERS)
    check_on_failure(on_failure)
    x0, theta = as_arrays((x0, theta))
    if solver == "bisection":
        if bracket is None or len(bracket) != 2:
            raise ValueError("solver='bisection' needs bracket=(lower, upper)")
        x0 = jnp.asarray(bracket[0], dtype=jnp.result_type(float))
        if jnp.ndim(x0) != 0:
            raise ValueError("solver='bisection' solves scalar equations; x is not a scalar")
    fn = convert_map(F, "F(x, theta)", x0, theta)

    def forward(x0, fn, theta):
        if solver == "newton":
            newton = optx.Newton(rtol=tol, atol=tol)
            sol = optx.root_find(fn, newton, x0, args=theta, max_steps=max_steps, throw=False)
            x, error = sol.value, tree_norm(fn(sol.value, theta))
            converged = (sol.result == optx.RESULTS.successful) & jnp.isfinite(error)
            return x, SolveInfo(sol.stats["num_steps"], error, converged)
        x, iterations, error = iterate(
            solver, fn, x0, theta, tol=tol, max_steps=max_steps, bracket=bracket
        )
        return x, SolveInfo.of(iterations, error, tol)

    return solve_implicitly(
        forward, _residual, x0, (fn, theta), on_failure=on_failure, caller="root",
        linear=as_linear_solve(linear_solver),
        message=not_converged("root", solver, tol, max_steps,
                              "raise max_steps, improve x0, or loosen tol"),
    )  # fmt: skip


def _residual(x, fn, theta):
    return fn(x, theta)
