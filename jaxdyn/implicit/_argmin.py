"""Minimisers, `x*(θ) = argminₓ f(x, θ)` (possibly with a prox or a projection),
differentiated with respect to `θ` implicitly."""

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, PyTree

from .._jaxopt import implicit_solve, jaxopt, linear_solver
from ._info import OnFailure, SolveInfo, apply_policy, as_arrays, check_choice
from ._root import convert

__all__ = ["ARGMIN_METHODS", "PROJECTIONS", "PROXES", "argmin"]

ARGMIN_METHODS = ("lbfgs", "gradient_descent", "prox_gradient", "projected_gradient")

PROXES: dict[str, Callable] = {
    "lasso": jaxopt.prox.prox_lasso,  # hyperparams: l1 strength λ (scalar or like x)
    "ridge": jaxopt.prox.prox_ridge,  # hyperparams: l2 strength
    "elastic_net": jaxopt.prox.prox_elastic_net,  # hyperparams: (l1, l2)
    "non_negative_lasso": jaxopt.prox.prox_non_negative_lasso,
}

PROJECTIONS: dict[str, Callable] = {
    "simplex": jaxopt.projection.projection_simplex,  # hyperparams: the sum (default 1)
    "box": jaxopt.projection.projection_box,  # hyperparams: (lower, upper)
    "non_negative": jaxopt.projection.projection_non_negative,  # hyperparams: None
    "l1_ball": jaxopt.projection.projection_l1_ball,  # hyperparams: radius
    "l2_ball": jaxopt.projection.projection_l2_ball,  # hyperparams: radius
}


def _lookup(kind: str, value: str | Callable, table: dict[str, Callable]) -> Callable:
    if callable(value):
        return value
    check_choice(kind, value, table)
    return table[value]


def argmin(
    f: Callable[[PyTree, Any], ArrayLike],
    x0: PyTree[ArrayLike],
    theta: Any,
    *,
    method: str = "lbfgs",
    prox: str | Callable | None = None,
    projection: str | Callable | None = None,
    hyperparams: Any = None,
    step_size: float | None = None,
    tol: float = 1e-6,
    max_iter: int = 500,
    linear_solve: str | Callable = "cg",
    linear_tol: float = 1e-10,
    linear_max_iter: int | None = None,
    linear_check: float | None = 1e-3,
    on_failure: OnFailure = "raise",
) -> tuple[PyTree, SolveInfo]:
    """Minimise `f(x, θ)` over `x`; gradients with respect to `θ`, `hyperparams` and arrays `f`
    closes over by the implicit function theorem (Blondel et al. 2022) on the optimality
    condition of the method:

    - `lbfgs`, `gradient_descent` (unconstrained): `∇ₓf(x, θ) = 0`;
    - `prox_gradient`, for `f(x, θ) + g(x, λ)` with `prox` the proximal operator of `g`
      (`lasso`, `ridge`, `elastic_net`, `non_negative_lasso` or a callable
      `prox(x, λ, scaling)`) and `λ = hyperparams`: the fixed point
      `x = prox_g(x - ∇ₓf(x, θ), λ)`;
    - `projected_gradient`, over a set `C` with `projection` (`simplex`, `box`,
      `non_negative`, `l1_ball`, `l2_ball` or a callable `projection(x, hyperparams)`): the
      fixed point `x = P_C(x - ∇ₓf(x, θ))`.

    `step_size` (default: jaxopt's line search) applies to the first-order methods; for tight
    `tol` give one (e.g. `1/L` for an `L`-smooth `f`): the line search can stall near a
    residual of 1e-7 (measured on a lasso problem).
    `linear_solve` defaults to `cg` (the Hessian is symmetric positive-definite at a strict
    minimum); use `gmres` or `lu` for the non-symmetric prox/projection conditions. Other
    arguments as in `root`. **Returns:** `(x, info)`.
    """
    check_choice("method", method, ARGMIN_METHODS)
    check_choice("on_failure", on_failure, ("raise", "nan", "return"))
    if method == "prox_gradient" and prox is None:
        raise ValueError("method='prox_gradient' needs prox= (e.g. 'lasso') and hyperparams=")
    if method == "projected_gradient" and projection is None:
        raise ValueError("method='projected_gradient' needs projection= (e.g. 'simplex')")
    if method == "lbfgs" and step_size is not None:
        raise ValueError(
            "step_size applies to the first-order methods; lbfgs uses its own line search "
            "(drop step_size or use method='gradient_descent')"
        )
    if method in ("lbfgs", "gradient_descent") and (prox is not None or projection is not None):
        raise ValueError(
            f"method={method!r} is unconstrained; use 'prox_gradient' or "
            "'projected_gradient' with prox= or projection="
        )
    x0, theta, hyperparams = as_arrays((x0, theta, hyperparams))
    fn = convert(f, "f", x0, theta)
    value = eqx.filter_eval_shape(fn, x0, theta)
    if not (hasattr(value, "shape") and value.shape == ()):
        raise ValueError(f"f(x, theta) must return a scalar; got {jax.tree.map(jnp.shape, value)}")
    message = (
        f"argmin: method={method!r} did not converge to tol={tol} in max_iter={max_iter} "
        "iterations; raise max_iter, set step_size, or loosen tol"
    )
    stepsize = {} if step_size is None else {"stepsize": step_size}

    def make_solver(fn):
        def objective(x, theta):  # a plain signature: jaxopt inspects it
            return fn(x, theta)

        if method == "lbfgs":
            return jaxopt.LBFGS(fun=objective, tol=tol, maxiter=max_iter, implicit_diff=False)
        common = dict(fun=objective, tol=tol, maxiter=max_iter, implicit_diff=False, **stepsize)
        if method == "gradient_descent":
            return jaxopt.GradientDescent(**common)
        if method == "prox_gradient":
            return jaxopt.ProximalGradient(prox=_lookup("prox", prox, PROXES), **common)
        projection_ = _lookup("projection", projection, PROJECTIONS)
        return jaxopt.ProjectedGradient(projection=projection_, **common)

    constrained = method in ("prox_gradient", "projected_gradient")

    def forward(x0, fn, hyperparams, theta):
        solver = make_solver(fn)
        extra = (hyperparams,) if constrained else ()
        x, state = solver.run(x0, *extra, theta)
        info = SolveInfo.of(state.iter_num, state.error, tol)
        return apply_policy(x, info, on_failure, message), info

    def optimality(x, fn, hyperparams, theta):
        if constrained:
            return make_solver(fn).optimality_fun(x, hyperparams, theta)
        return jax.grad(fn)(x, theta)

    solve = linear_solver(
        linear_solve,
        tol=linear_tol,
        max_iter=linear_max_iter,
        check=linear_check,
        on_failure=on_failure,
        caller="argmin",
    )
    return implicit_solve(forward, optimality, solve, x0, fn, hyperparams, theta)
