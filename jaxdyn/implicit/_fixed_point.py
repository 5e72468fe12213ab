"""Fixed points, `x = T(x, θ)`, differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import jax
from jaxtyping import ArrayLike, PyTree

from .._checks import OnFailure, check_choice, check_on_failure
from .._jaxopt import iterate
from .._trees import as_arrays
from ._common import convert_map, not_converged, solve_implicitly
from ._info import SolveInfo
from ._linear import LinearSolve, as_linear_solve

__all__ = ["FIXED_POINT_SOLVERS", "fixed_point"]

FIXED_POINT_SOLVERS = ("iteration", "anderson")


def fixed_point(
    T: Callable[[PyTree, Any], PyTree],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    solver: str = "anderson",
    tol: float = 1e-6,
    max_steps: int = 200,
    history_size: int = 5,
    mixing: float = 1.0,
    linear_solver: str | Callable | LinearSolve = "gmres",
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Solve `x = T(x, θ)`; gradients with respect to `θ` (and arrays `T` closes over) by the
    implicit function theorem on `T(x, θ) - x = 0`: `∂x/∂θ = (I - ∂ₓT)⁻¹ ∂_θT`.

    **Arguments:** `T`, `x0` and `theta` as in `root`; `solver`: `iteration` (Picard,
    `x ← T(x)`, converges for contractions) or `anderson` (Anderson acceleration with
    `history_size` past iterates and mixing `mixing`, Anderson 1965; Walker & Ni 2011). The
    other arguments are those of `root`. **Returns:** `(x, info)`.
    """
    check_choice("solver", solver, FIXED_POINT_SOLVERS)
    check_on_failure(on_failure)
    x0, theta = as_arrays((x0, theta))
    fn = convert_map(T, "T(x, theta)", x0, theta)
    options = {"history_size": history_size, "mixing": mixing} if solver == "anderson" else {}
    name = "anderson" if solver == "anderson" else "fixed_point_iteration"

    def forward(x0, fn, theta):
        x, iterations, error = iterate(name, fn, x0, theta, tol=tol, max_steps=max_steps,
                                       **options)  # fmt: skip
        return x, SolveInfo.of(iterations, error, tol)

    advice = "raise max_steps, use solver='anderson', or check that T is a contraction"
    return solve_implicitly(
        forward, _residual, x0, (fn, theta), on_failure=on_failure, caller="fixed_point",
        linear=as_linear_solve(linear_solver),
        message=not_converged("fixed_point", solver, tol, max_steps, advice),
    )  # fmt: skip


def _residual(x, fn, theta):
    return jax.tree.map(lambda a, b: a - b, fn(x, theta), x)
