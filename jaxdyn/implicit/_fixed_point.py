"""Fixed points, `x = T(x, θ)`, differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
from jaxtyping import ArrayLike, PyTree

from .._jaxopt import implicit_solve, jaxopt, linear_solver
from .._trees import check_same_shapes
from ._info import OnFailure, SolveInfo, apply_policy, as_arrays, check_choice
from ._root import convert

__all__ = ["FIXED_POINT_METHODS", "fixed_point"]

FIXED_POINT_METHODS = ("iteration", "anderson")


def fixed_point(
    T: Callable[[PyTree, Any], PyTree],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    method: str = "anderson",
    tol: float = 1e-6,
    max_iter: int = 200,
    history_size: int = 5,
    mixing: float = 1.0,
    linear_solve: str | Callable = "gmres",
    linear_tol: float = 1e-10,
    linear_max_iter: int | None = None,
    linear_check: float | None = 1e-3,
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Solve `x = T(x, θ)`; gradients with respect to `θ` (and arrays `T` closes over) by the
    implicit function theorem on `T(x, θ) - x = 0`: `∂x/∂θ = (I - ∂ₓT)⁻¹ ∂_θT`.

    **Arguments:** `T`, `x0` and `theta` as in `root`; `method`: `iteration` (Picard,
    `x ← T(x)`, converges for contractions) or `anderson` (Anderson acceleration with
    `history_size` past iterates and mixing `mixing`, Anderson 1965; Walker & Ni 2011). The
    other arguments are those of `root`. **Returns:** `(x, info)`.
    """
    check_choice("method", method, FIXED_POINT_METHODS)
    check_choice("on_failure", on_failure, ("raise", "nan", "return"))
    x0, theta = as_arrays((x0, theta))
    fn = convert(T, "T", x0, theta)
    check_same_shapes("T(x, theta)", eqx.filter_eval_shape(fn, x0, theta), x0, "x0")
    message = (
        f"fixed_point: method={method!r} did not converge to tol={tol} in max_iter={max_iter} "
        "iterations; raise max_iter, use method='anderson', or check that T is a contraction"
    )

    def forward(x0, fn, theta):
        if method == "iteration":
            solver = jaxopt.FixedPointIteration(fixed_point_fun=fn, tol=tol, maxiter=max_iter,
                                                implicit_diff=False)  # fmt: skip
        else:
            solver = jaxopt.AndersonAcceleration(fixed_point_fun=fn, history_size=history_size,
                                                 beta=mixing, tol=tol, maxiter=max_iter,
                                                 implicit_diff=False)  # fmt: skip
        x, state = solver.run(x0, theta)
        info = SolveInfo.of(state.iter_num, state.error, tol)
        return apply_policy(x, info, on_failure, message), info

    solve = linear_solver(
        linear_solve,
        tol=linear_tol,
        max_iter=linear_max_iter,
        check=linear_check,
        on_failure=on_failure,
        caller="fixed_point",
    )
    return implicit_solve(forward, _residual, solve, x0, fn, theta)


def _residual(x, fn, theta):
    return jax.tree.map(lambda a, b: a - b, fn(x, theta), x)
