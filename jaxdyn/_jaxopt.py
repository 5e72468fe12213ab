"""The one place jaxopt is imported: implicit differentiation and its linear solvers.

Everything in jaxdyn reaches jaxopt through this module (`jaxdyn.implicit`, and ott-jax, which
imports jaxopt itself: `load_jaxopt()` first), so the backend can move (for example to
optimistix/lineax) without touching callers.
"""

import functools
import warnings
from collections.abc import Callable
from types import ModuleType

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import PyTree

from ._trees import as_arrays, tree_norm


def load_jaxopt() -> ModuleType:
    """jaxopt, imported with its deprecation notice filtered: call it before importing a library
    that imports jaxopt itself (ott-jax). jaxopt 0.8.5 announces on import that it is no longer
    maintained; we use it for its implicit_diff decorator, linear solvers and a few solvers,
    enclosed here, and accept that notice deliberately: this is the only filter for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="JAXopt is no longer maintained",
                                category=DeprecationWarning)  # fmt: skip
        import jaxopt
    return jaxopt


jaxopt = load_jaxopt()
from jaxopt import linear_solve as _linear_solve  # noqa: E402

__all__ = ["LINEAR_SOLVERS", "implicit_solve", "jaxopt", "linear_solver", "load_jaxopt"]

LINEAR_SOLVERS: dict[str, Callable] = {
    "cg": _linear_solve.solve_cg,
    "normal_cg": _linear_solve.solve_normal_cg,
    "gmres": _linear_solve.solve_gmres,
    "bicgstab": _linear_solve.solve_bicgstab,
    "lu": _linear_solve.solve_lu,
}


def _normalised(solve: Callable) -> Callable:
    """Solve `A v = b / ‖b‖` and rescale. A linear system is scale-invariant, but jax's
    Krylov solvers are not in floating point: with float32 and `‖b‖ ≈ 1e-7` (the cotangent of
    a well-fitted example) GMRES returned `v = 0`, a relative residual of 1."""

    def solve_normalised(matvec, b):
        scale = tree_norm(b)
        scale = jnp.where(scale > 0, scale, 1.0)
        v = solve(matvec, jax.tree.map(lambda x: x / scale, b))
        return jax.tree.map(lambda x: x * scale, v)

    return solve_normalised


def linear_solver(
    method: str | Callable,
    *,
    tol: float,
    max_iter: int | None,
    check: float | None,
    on_failure: str,
    caller: str,
) -> Callable:
    """`solve(matvec, b)` for the implicit-function linear system `A v = b`.

    `method` names a jaxopt solver (`cg` needs a symmetric positive-definite `A`; `normal_cg`,
    `gmres`, `bicgstab` and `lu` do not) or is a callable `solve(matvec, b)`. Unless `check` is
    None, the relative residual `|A v - b| / |b|` is checked after the solve and a larger one
    is a failure handled by `on_failure` (one extra matrix-vector product).
    """
    if callable(method):
        solve = method
    elif method in LINEAR_SOLVERS:
        solve = LINEAR_SOLVERS[method]
        if method != "lu":
            solve = _normalised(functools.partial(solve, tol=tol, maxiter=max_iter))
    else:
        raise ValueError(
            f"unknown linear_solve={method!r}; expected one of "
            f"{sorted(LINEAR_SOLVERS)} or a callable solve(matvec, b)"
        )
    if check is None or on_failure == "return":
        return solve

    message = (
        f"{caller}: the implicit-function linear system was not solved (relative residual > "
        f"{check}): its Jacobian may be singular (a symmetry, such as a translation, leaves the "
        "solution undetermined: remove it, e.g. pin the centre of mass) or ill-conditioned, "
        "or the linear solver unsuited to it (cg needs a symmetric positive-definite Jacobian; "
        "try linear_solve='normal_cg', 'gmres' or 'lu'), or raise linear_max_iter."
    )

    def checked(matvec, b):
        v = solve(matvec, b)
        residual = jax.tree.map(jnp.subtract, matvec(v), b)
        scale = tree_norm(b) + jnp.finfo(jnp.result_type(*jax.tree.leaves(b))).tiny
        bad = ~(tree_norm(residual) <= check * scale)  # NaN or Inf counts as failed
        if on_failure == "nan":
            return jax.tree.map(lambda x: jnp.where(bad, jnp.nan, x), v)
        return eqx.error_if(v, bad, message)

    return checked


def implicit_solve(
    forward: Callable,
    optimality: Callable,
    solve: Callable,
    x0: PyTree,
    *args: PyTree,
):
    """Run `forward(x0, *args) -> (x, aux)` and differentiate `x` with respect to `args` by
    the implicit function theorem applied to `optimality(x, *args) = 0` (Blondel et al. 2022,
    "Efficient and Modular Implicit Differentiation"): `dx = -(∂₁F)⁻¹ ∂₂F`, with the linear
    system solved by `solve`. `x0` is not differentiated. Non-array leaves of `args` (functions,
    static fields) are held aside, since jaxopt's custom VJP takes arrays only."""
    dynamic, static = eqx.partition(args, eqx.is_array)

    def forward_(x0, dynamic):
        return forward(x0, *as_arrays(eqx.combine(dynamic, static)))

    def optimality_(x, dynamic):
        return optimality(x, *as_arrays(eqx.combine(dynamic, static)))

    decorated = jaxopt.implicit_diff.custom_root(optimality_, has_aux=True, solve=solve)
    return decorated(forward_)(x0, dynamic)
