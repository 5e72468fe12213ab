"""The one place jaxopt is used: its iterative solvers, proximal operators and projections,
linear solvers and implicit differentiation, each behind a small function.

Everything in jaxdyn reaches jaxopt through this module (`jaxdyn.implicit`, and ott-jax, which
imports jaxopt itself: `load_jaxopt()` first), so the backend can move (for example to
optimistix/lineax) without touching callers. jaxopt is imported when one of these functions
is first called, never when this module is imported (`import jaxdyn` does not pay for it).
"""

import functools
import warnings
from collections.abc import Callable
from types import ModuleType

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PyTree

from ._trees import as_arrays, tree_norm

__all__ = [
    "LINEAR_SOLVERS",
    "PROJECTIONS",
    "PROXES",
    "implicit_solve",
    "iterate",
    "linear_solver",
    "load_jaxopt",
    "projection",
    "prox",
]


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


# name -> (jaxopt class, the keyword its function goes by)
_SOLVER_CLASSES = {
    "broyden": ("Broyden", "fun"),
    "bisection": ("Bisection", "optimality_fun"),
    "fixed_point_iteration": ("FixedPointIteration", "fixed_point_fun"),
    "anderson": ("AndersonAcceleration", "fixed_point_fun"),
    "lbfgs": ("LBFGS", "fun"),
    "gradient_descent": ("GradientDescent", "fun"),
    "prox_gradient": ("ProximalGradient", "fun"),
    "projected_gradient": ("ProjectedGradient", "fun"),
}

# jaxdyn's option names -> jaxopt's
_OPTIONS = {"step_size": "stepsize", "mixing": "beta", "history_size": "history_size",
            "prox": "prox", "projection": "projection"}  # fmt: skip

LINEAR_SOLVERS = ("cg", "normal_cg", "gmres", "bicgstab", "lu")
PROXES = ("lasso", "ridge", "elastic_net", "non_negative_lasso")
PROJECTIONS = ("simplex", "box", "non_negative", "l1_ball", "l2_ball")


def prox(name: str) -> Callable:
    """jaxopt's proximal operator `prox_<name>(x, hyperparams, scaling)` (one of `PROXES`)."""
    return getattr(load_jaxopt().prox, f"prox_{name}")


def projection(name: str) -> Callable:
    """jaxopt's Euclidean projection `projection_<name>(x, hyperparams)` (one of
    `PROJECTIONS`)."""
    return getattr(load_jaxopt().projection, f"projection_{name}")


def iterate(
    solver: str,
    fun: Callable,
    init: PyTree | None,
    *args: PyTree,
    tol: float,
    max_steps: int,
    bracket: tuple[float, float] | None = None,
    **options,
) -> tuple[PyTree, Array, Array]:
    """Run jaxopt's iterative `solver` (a name: broyden, bisection, fixed_point_iteration,
    anderson, lbfgs, gradient_descent, prox_gradient, projected_gradient) on `fun(x, *args)` from
    `init`, without jaxopt's own implicit differentiation (callers differentiate the result
    with `implicit_solve`). `fun` is the objective, the residual (`broyden`, `bisection`, which
    needs `bracket=(lower, upper)`) or the map whose fixed point is sought. `options` are
    `step_size`, `mixing`, `history_size`, `prox`, `projection` (a name or a callable) where
    the solver takes them.

    **Returns:** `(x, iterations, error)`, `error` the solver's own residual norm.
    """
    class_name, keyword = _SOLVER_CLASSES[solver]

    def plain(x, *args):  # a plain signature: jaxopt inspects it
        return fun(x, *args)

    settings = {_OPTIONS[k]: v for k, v in options.items()}
    if isinstance(settings.get("prox"), str):
        settings["prox"] = prox(settings["prox"])
    if isinstance(settings.get("projection"), str):
        settings["projection"] = projection(settings["projection"])
    if solver == "bisection":  # no implicit_diff flag; the bracket replaces `init`
        settings.update(lower=bracket[0], upper=bracket[1], check_bracket=False)
        init = None
    else:
        settings["implicit_diff"] = False
    # jaxopt unrolls its loop when implicit_diff is off (so that it could be differentiated by
    # unrolling): a scan of `maxiter` steps, each behind a `cond` that skips finished ones. Under
    # `vmap` the `cond` becomes a `select` and every step runs: a vmapped L-BFGS solve that
    # converges in 12–38 steps ran all 2000 (65 s against 5 s). We never differentiate the loop.
    settings["unroll"] = False
    cls = getattr(load_jaxopt(), class_name)
    x, state = cls(**{keyword: plain}, tol=tol, maxiter=max_steps, **settings).run(init, *args)
    return x, state.iter_num, state.error


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
    solver: str | Callable,
    *,
    tol: float,
    max_steps: int | None,
    check: float | None,
    on_failure: str,
    caller: str,
) -> Callable:
    """`solve(matvec, b)` for the implicit-function linear system `A v = b`.

    `solver` names a jaxopt solver (`cg` needs a symmetric positive-definite `A`; `normal_cg`,
    `gmres`, `bicgstab` and `lu` do not) or is a callable `solve(matvec, b)`. Unless `check` is
    None, the relative residual `|A v - b| / |b|` is checked after the solve and a larger one
    is a failure handled by `on_failure` (one extra matrix-vector product).
    """
    if callable(solver):
        solve = solver
    elif solver in LINEAR_SOLVERS:

        def solve(matvec, b):  # jaxopt is loaded when the gradient is traced
            named = getattr(load_jaxopt().linear_solve, f"solve_{solver}")
            if solver == "lu":
                return named(matvec, b)
            return _normalised(functools.partial(named, tol=tol, maxiter=max_steps))(matvec, b)

    else:
        raise ValueError(
            f"unknown linear_solver={solver!r}; expected one of {sorted(LINEAR_SOLVERS)} or a "
            "callable solve(matvec, b)"
        )
    if check is None or on_failure == "return":
        return solve

    message = (
        f"{caller}: the implicit-function linear system was not solved (relative residual > "
        f"{check}): its Jacobian may be singular (a symmetry, such as a translation, leaves the "
        "solution undetermined: remove it, e.g. pin the centre of mass) or ill-conditioned, "
        "or the linear solver unsuited to it (cg needs a symmetric positive-definite Jacobian; "
        "try linear_solver='normal_cg', 'gmres' or 'lu'), or allow it more iterations "
        "(linear_solver=LinearSolve(..., max_steps=...))."
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

    custom_root = load_jaxopt().implicit_diff.custom_root
    decorated = custom_root(optimality_, has_aux=True, solve=solve)
    return decorated(forward_)(x0, dynamic)
