"""Root finding, `F(x, θ) = 0`, differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax.numpy as jnp
import optimistix as optx
from jaxtyping import ArrayLike, PyTree

from .._jaxopt import implicit_solve, jaxopt, linear_solver
from .._trees import check_same_shapes, shapes
from ._info import OnFailure, SolveInfo, apply_policy, as_arrays, check_choice, tree_norm

__all__ = ["ROOT_METHODS", "root"]

ROOT_METHODS = ("newton", "broyden", "bisection")


def convert(fn: Callable, name: str, *example: Any) -> Callable:
    """Closure-convert `fn`, so that arrays it captures become explicit (differentiable)
    leaves instead of closed-over tracers (the jaxopt #31 pitfall). A function that fails on
    the example inputs is reported as a `ValueError` naming it and the input shapes."""
    try:
        converted = eqx.filter_closure_convert(fn, *example)
        eqx.filter_eval_shape(converted, *example)  # trivial closures are not traced above
    except Exception as error:
        raise ValueError(
            f"{name} could not be evaluated at inputs of shapes {shapes(example)}: {error}"
        ) from error
    return converted


def root(
    F: Callable[[PyTree, Any], PyTree],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    method: str = "newton",
    tol: float = 1e-6,
    max_iter: int = 100,
    bracket: tuple[float, float] | None = None,
    linear_solve: str | Callable = "gmres",
    linear_tol: float = 1e-10,
    linear_max_iter: int | None = None,
    linear_check: float | None = 1e-3,
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Solve `F(x, θ) = 0` for `x`; gradients with respect to `θ` (and arrays `F` closes
    over) by the implicit function theorem, `∂x/∂θ = -(∂ₓF)⁻¹ ∂_θF` (Blondel et al. 2022).

    **Arguments:**

    - `F`: `(x, θ) -> residual` with the structure and shapes of `x`.
    - `x0`: the initial guess (any pytree); unused by `bisection`.
    - `theta`: the parameters (any pytree); differentiated.
    - `method`: `newton` (optimistix's Newton, exact Jacobian), `broyden` (quasi-Newton) or
      `bisection` (scalar `x`, needs `bracket=(lower, upper)` with a sign change).
    - `tol`, `max_iter`: the forward solve's tolerance and iteration budget.
    - `linear_solve`, `linear_tol`, `linear_max_iter`: the implicit-function linear system
      `(∂ₓF)ᵀ v = g`: `gmres` (default), `bicgstab`, `normal_cg`, `lu`, `cg` (symmetric
      positive-definite `∂ₓF` only) or a callable `solve(matvec, b)`.
    - `linear_check`: the relative residual above which that linear solve counts as failed.
    - `on_failure`: `raise`, `nan` (the solution and its gradient become NaN) or `return`.

    **Returns:** `(x, info)` with `info` a `SolveInfo`.
    """
    check_choice("method", method, ROOT_METHODS)
    check_choice("on_failure", on_failure, ("raise", "nan", "return"))
    x0, theta = as_arrays((x0, theta))
    if method == "bisection":
        if bracket is None or len(bracket) != 2:
            raise ValueError("method='bisection' needs bracket=(lower, upper)")
        x0 = jnp.asarray(bracket[0], dtype=jnp.result_type(float))
        if jnp.ndim(x0) != 0:
            raise ValueError("method='bisection' solves scalar equations; x is not a scalar")
    fn = convert(F, "F", x0, theta)
    check_same_shapes("F(x, theta)", eqx.filter_eval_shape(fn, x0, theta), x0, "x0")
    message = (
        f"root: method={method!r} did not converge to tol={tol} in max_iter={max_iter} "
        "iterations; raise max_iter, improve x0, or loosen tol"
    )

    def forward(x0, fn, theta):
        if method == "newton":
            solver = optx.Newton(rtol=tol, atol=tol)
            sol = optx.root_find(fn, solver, x0, args=theta, max_steps=max_iter, throw=False)
            x, error = sol.value, tree_norm(fn(sol.value, theta))
            converged = (sol.result == optx.RESULTS.successful) & jnp.isfinite(error)
            info = SolveInfo(sol.stats["num_steps"], error, converged)
        elif method == "broyden":
            solver = jaxopt.Broyden(fun=fn, tol=tol, maxiter=max_iter, implicit_diff=False)
            x, state = solver.run(x0, theta)
            info = SolveInfo.of(state.iter_num, state.error, tol)
        else:
            solver = jaxopt.Bisection(
                optimality_fun=fn,
                lower=bracket[0],
                upper=bracket[1],
                tol=tol,
                maxiter=max_iter,
                check_bracket=False,
            )
            x, state = solver.run(None, theta)
            info = SolveInfo.of(state.iter_num, state.error, tol)
        return apply_policy(x, info, on_failure, message), info

    solve = linear_solver(
        linear_solve,
        tol=linear_tol,
        max_iter=linear_max_iter,
        check=linear_check,
        on_failure=on_failure,
        caller="root",
    )
    return implicit_solve(forward, _residual, solve, x0, fn, theta)


def _residual(x, fn, theta):
    return fn(x, theta)
