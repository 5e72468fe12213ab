"""Minimisers, `x*(θ) = argminₓ f(x, θ)` (possibly with a prox or a projection),
differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from .. import _jaxopt
from .._checks import OnFailure, check_choice, check_on_failure
from .._jaxopt import PROJECTIONS, PROXES, iterate
from .._trees import as_arrays, shapes
from ._common import convert, not_converged, solve_implicitly
from ._info import SolveInfo
from ._linear import LinearSolve, as_linear_solve

__all__ = ["ARGMIN_SOLVERS", "PROJECTIONS", "PROXES", "argmin"]

ARGMIN_SOLVERS = ("lbfgs", "gradient_descent", "prox_gradient", "projected_gradient")


def _check_options(solver: str, prox, projection, step_size) -> None:
    check_choice("solver", solver, ARGMIN_SOLVERS)
    if solver == "prox_gradient" and prox is None:
        raise ValueError("solver='prox_gradient' needs prox= (e.g. 'lasso') and hyperparams=")
    if solver == "projected_gradient" and projection is None:
        raise ValueError("solver='projected_gradient' needs projection= (e.g. 'simplex')")
    if solver == "lbfgs" and step_size is not None:
        raise ValueError(
            "step_size applies to the first-order solvers; lbfgs uses its own line search "
            "(drop step_size or use solver='gradient_descent')"
        )
    if solver in ("lbfgs", "gradient_descent") and (prox is not None or projection is not None):
        raise ValueError(
            f"solver={solver!r} is unconstrained; use 'prox_gradient' or "
            "'projected_gradient' with prox= or projection="
        )
    for argument, value, names in (("prox", prox, PROXES), ("projection", projection,
                                   PROJECTIONS)):  # fmt: skip
        if value is not None and not callable(value):
            check_choice(argument, value, names)


def _proximal_map(prox, projection) -> Callable:
    """`(y, hyperparams) -> prox_g(y, hyperparams)` with unit scaling, or the projection."""
    if prox is not None:
        prox = _jaxopt.prox(prox) if isinstance(prox, str) else prox
        return lambda y, hyperparams: prox(y, hyperparams, 1.0)
    return _jaxopt.projection(projection) if isinstance(projection, str) else projection


def argmin(
    f: Callable[[PyTree, Any], ArrayLike],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    solver: str = "lbfgs",
    prox: str | Callable | None = None,
    projection: str | Callable | None = None,
    hyperparams: Any = None,
    step_size: float | None = None,
    tol: float = 1e-6,
    max_steps: int = 500,
    linear_solver: str | Callable | LinearSolve = "cg",
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Minimise `f(x, θ)` over `x`; gradients with respect to `θ`, `hyperparams` and arrays `f`
    closes over by the implicit function theorem (Blondel et al. 2022) on the optimality
    condition of the solver:

    - `lbfgs`, `gradient_descent` (unconstrained): `∇ₓf(x, θ) = 0`;
    - `prox_gradient`, for `f(x, θ) + g(x, λ)` with `prox` the proximal operator of `g`
      (`lasso`: `λ` the l1 strength, a scalar or like `x`; `ridge`: the l2 strength;
      `elastic_net`: `(l1, l2)`; `non_negative_lasso`; or a callable `prox(x, λ, scaling)`)
      and `λ = hyperparams`: the fixed point `x = prox_g(x - ∇ₓf(x, θ), λ)`;
    - `projected_gradient`, over a set `C` with `projection` (`simplex`: `hyperparams` the sum,
      default 1; `box`: `(lower, upper)`; `non_negative`; `l1_ball`, `l2_ball`: the radius; or
      a callable `projection(x, hyperparams)`): the fixed point `x = P_C(x - ∇ₓf(x, θ))`.

    `step_size` (default: jaxopt's line search) applies to the first-order solvers; for tight
    `tol` give one (e.g. `1/L` for an `L`-smooth `f`): the line search can stall near a
    residual of 1e-7 (measured on a lasso problem).
    `linear_solver` defaults to `cg` (the Hessian is symmetric positive-definite at a strict
    minimum); use `gmres` or `lu` for the non-symmetric prox/projection conditions. Other
    arguments as in `root`. **Returns:** `(x, info)`.
    """
    _check_options(solver, prox, projection, step_size)
    check_on_failure(on_failure)
    x0, theta, hyperparams = as_arrays((x0, theta, hyperparams))
    fn = convert(f, "f", x0, theta)
    value = eqx.filter_eval_shape(fn, x0, theta)
    if not (hasattr(value, "shape") and value.shape == ()):
        raise ValueError(f"f(x, theta) must return a scalar; got {shapes(value)}")
    constrained = solver in ("prox_gradient", "projected_gradient")
    options = {} if step_size is None else {"step_size": step_size}
    if solver == "prox_gradient":
        options["prox"] = prox
    if solver == "projected_gradient":
        options["projection"] = projection

    def forward(x0, fn, hyperparams, theta):
        extra = (hyperparams,) if constrained else ()
        x, iterations, error = iterate(solver, fn, x0, *extra, theta, tol=tol,
                                       max_steps=max_steps, **options)  # fmt: skip
        return x, SolveInfo.of(iterations, error, tol)

    def optimality(x, fn, hyperparams, theta):
        gradient = jax.grad(fn)(x, theta)
        if not constrained:
            return gradient
        moved = _proximal_map(prox, projection)(jax.tree.map(jnp.subtract, x, gradient),
                                                hyperparams)  # fmt: skip
        return jax.tree.map(jnp.subtract, moved, x)

    return solve_implicitly(
        forward, optimality, x0, (fn, hyperparams, theta), on_failure=on_failure,
        caller="argmin",
        linear=as_linear_solve(linear_solver),
        message=not_converged("argmin", solver, tol, max_steps,
                              "raise max_steps, set step_size, or loosen tol"),
    )  # fmt: skip
