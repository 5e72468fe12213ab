"""What the implicit solvers share: the user's function with its captured arrays made explicit,
and the implicit-function tail (the forward solve under the failure policy, the checked linear
system and jaxopt's custom VJP)."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
from jaxtyping import PyTree

from .._checks import OnFailure
from .._jaxopt import implicit_solve, linear_solver
from .._solvers import apply_on_failure
from .._trees import check_same_shapes, shapes
from ._info import SolveInfo
from ._linear import LinearSolve

__all__ = ["convert", "convert_map", "solve_implicitly"]


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


def convert_map(fn: Callable, what: str, x0: PyTree, theta: Any, x_name: str = "x0") -> Callable:
    """`convert`, for a map `fn(x, θ)` (a residual or a fixed-point map, written `what`) that
    must return the structure and shapes of `x`."""
    converted = convert(fn, what.split("(")[0], x0, theta)
    check_same_shapes(what, eqx.filter_eval_shape(converted, x0, theta), x0, x_name)
    return converted


def not_converged(caller: str, solver: str, tol: float, max_steps: int, advice: str) -> str:
    """The `raise` message of an iterative forward solve."""
    return (
        f"{caller}: solver={solver!r} did not converge to tol={tol} in max_steps={max_steps} "
        f"iterations; {advice}"
    )


def solve_implicitly(
    forward: Callable[..., tuple[PyTree, SolveInfo]],
    optimality: Callable[..., PyTree],
    x0: PyTree,
    args: tuple,
    *,
    linear: LinearSolve,
    on_failure: OnFailure,
    message: str,
    caller: str,
) -> tuple[PyTree, SolveInfo]:
    """`forward(x0, *args) -> (x, info)` under the failure policy, differentiated with respect
    to `args` by the implicit function theorem on `optimality(x, *args) = 0`, its linear
    system solved and checked as `linear` says."""

    def forward_(x0, *args):
        x, info = forward(x0, *args)
        return apply_on_failure(x, ~info.converged, on_failure, message), info

    solve = linear_solver(
        linear.solver, tol=linear.tol, max_steps=linear.max_steps, check=linear.check,
        on_failure=on_failure, caller=caller,
    )  # fmt: skip
    # One compiled program per call: run eagerly, jaxopt's solvers dispatch (and compile) each
    # operation of their setup separately (21 compilations for one L-BFGS solve).
    return eqx.filter_jit(implicit_solve)(forward_, optimality, solve, x0, *args)
