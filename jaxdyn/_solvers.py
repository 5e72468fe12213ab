"""The options every solve shares, turned into Diffrax objects: solver and adjoint names,
step-size control, step budgets, and the failure policy (`docs/api.md`, "Results").

A solve's `result` is a Diffrax `RESULTS` code. `apply_failure_policy` first marks a non-finite
value as a failure (`RESULTS.nonfinite`), then applies `on_failure`: `raise` (at run time, under
`jit` and `vmap` too, with one message per code saying what failed and what to change), `nan`
(failed values become NaN) or `return` (values and code are left for the caller). Shared by
`jaxdyn.solve`, `jaxdyn.implicit.steady_state` and the samplers of the capability packages.
`apply_on_failure` is the same policy for a solve that reports failure as a boolean (the
implicit solvers, influence scores, Sinkhorn).
"""

import math
from typing import ClassVar

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from diffrax._root_finder import use_stepsize_tol
from jaxtyping import Array, Bool, PyTree

from ._checks import OnFailure, check_count, check_positive, choice_error

__all__ = [
    "ADJOINTS",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_TOL",
    "RESULTS",
    "RK4",
    "SOLVERS",
    "apply_failure_policy",
    "apply_on_failure",
    "default_max_steps",
    "failure_messages",
    "fevals",
    "fixed_step_count",
    "has_error_estimate",
    "resolve",
    "resolve_max_steps",
    "resolve_solver",
    "stepsize_controller",
    "uses_fixed_steps",
]


class RK4(dfx.AbstractERK):
    """The classical fourth-order Runge–Kutta method (Kutta 1901): four evaluations a step, no
    error estimate, so fixed steps only."""

    tableau: ClassVar[dfx.ButcherTableau] = dfx.ButcherTableau(
        c=np.array([0.5, 0.5, 1.0]),
        b_sol=np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
        b_error=np.zeros(4),
        a_lower=(np.array([0.5]), np.array([0.0, 0.5]), np.array([0.0, 0.0, 1.0])),
    )
    interpolation_cls: ClassVar = dfx.ThirdOrderHermitePolynomialInterpolation.from_k

    def order(self, terms) -> int:
        return 4


SOLVERS: dict[str, type[dfx.AbstractSolver]] = {
    "euler": dfx.Euler,
    "heun": dfx.Heun,
    "midpoint": dfx.Midpoint,
    "ralston": dfx.Ralston,
    "rk4": RK4,
    "bosh3": dfx.Bosh3,
    "tsit5": dfx.Tsit5,
    "dopri5": dfx.Dopri5,
    "dopri8": dfx.Dopri8,
    "kvaerno3": dfx.Kvaerno3,
    "kvaerno5": dfx.Kvaerno5,
}

ADJOINTS: dict[str, type[dfx.AbstractAdjoint]] = {
    "checkpoint": dfx.RecursiveCheckpointAdjoint,
    "backsolve": dfx.BacksolveAdjoint,
    "direct": dfx.DirectAdjoint,
}

DEFAULT_TOL = 1e-6  # rtol and atol of adaptive solves when not given
DEFAULT_MAX_STEPS = 4096  # the step budget of adaptive solves when not given


def resolve(argument: str, value, table: dict[str, type], base: type):
    """A solver or adjoint given by name (looked up in `table`) or as an object."""
    if isinstance(value, base):
        return value
    if isinstance(value, str) and value in table:
        return table[value]()
    raise choice_error(argument, value, table)


def resolve_solver(solver: str | dfx.AbstractSolver) -> dfx.AbstractSolver:
    """A solver named in `SOLVERS`, or a Diffrax solver object as it is."""
    return resolve("solver", solver, SOLVERS, dfx.AbstractSolver)


def has_error_estimate(solver: dfx.AbstractSolver) -> bool:
    """Whether `solver` is adaptive with a non-zero error estimate (RK4's tableau has none)."""
    if not isinstance(solver, dfx.AbstractAdaptiveSolver):
        return False
    b_error = getattr(getattr(solver, "tableau", None), "b_error", None)
    return b_error is None or bool(np.any(b_error))


def stepsize_controller(
    solver: dfx.AbstractSolver,
    rtol: float | None,
    atol: float | None,
    dt0: float | None,
) -> dfx.AbstractStepSizeController:
    """Fixed steps when `dt0` is given without tolerances; adaptive (PID) otherwise."""
    name = type(solver).__name__
    if dt0 is not None and rtol is None and atol is None:
        root_rtol = getattr(getattr(solver, "root_finder", None), "rtol", None)
        if isinstance(solver, dfx.AbstractImplicitSolver) and root_rtol is use_stepsize_tol:
            raise ValueError(
                f"implicit solver {name} needs rtol/atol for its Newton iteration; "
                "give rtol and atol (adaptive steps), not dt0 alone, or pass a solver object "
                "whose root_finder has its own tolerances"
            )
        return dfx.ConstantStepSize()
    if not has_error_estimate(solver):
        raise ValueError(
            f"solver {name} has no error estimate, so it cannot adapt its step size: "
            "give dt0 without rtol/atol for fixed steps, or choose an adaptive solver "
            "such as 'tsit5'"
        )
    rtol = DEFAULT_TOL if rtol is None else rtol
    atol = DEFAULT_TOL if atol is None else atol
    check_positive("rtol", rtol)
    check_positive("atol", atol)
    return dfx.PIDController(rtol=rtol, atol=atol)


def fixed_step_count(times, dt0) -> int | None:
    """The steps of at most `dt0` from `times[0]` to `times[-1]`, plus one for the rounding of
    the accumulated time (a last step of a few ulps); `None` when a value is traced."""
    if times is None or any(isinstance(v, jax.core.Tracer) for v in (times, dt0)):
        return None
    span = abs(float(times[-1]) - float(times[0]))
    return math.ceil(span / float(dt0) - 1e-9) + 1


def resolve_max_steps(max_steps: int | None, fixed_steps: int | None = None) -> int:
    """`max_steps` as given, or by default `fixed_steps` (the count of a fixed-step solve known
    at trace time, which then cannot run out) or `DEFAULT_MAX_STEPS`."""
    if max_steps is None:
        return DEFAULT_MAX_STEPS if fixed_steps is None else max(int(fixed_steps), 1)
    check_count("max_steps", max_steps)
    return int(max_steps)


def uses_fixed_steps(dt0: float | None, rtol: float | None, atol: float | None) -> bool:
    """Whether a solve takes fixed steps: `dt0` given without tolerances (`docs/api.md`)."""
    return dt0 is not None and rtol is None and atol is None


def default_max_steps(
    max_steps: int | None,
    times,
    dt0: float | None,
    rtol: float | None = None,
    atol: float | None = None,
) -> int:
    """`resolve_max_steps` for a solve from `times[0]` to `times[-1]`: by default the step count
    when the steps are fixed (`uses_fixed_steps`) and known at trace time, else
    `DEFAULT_MAX_STEPS`."""
    fixed = uses_fixed_steps(dt0, rtol, atol)
    return resolve_max_steps(max_steps, fixed_step_count(times, dt0) if fixed else None)


def fevals(solver: dfx.AbstractSolver, num_steps: Array) -> Array | None:
    """Vector-field evaluations of explicit solvers, from their Butcher tableau; for a
    stochastic Runge–Kutta method, the drift's evaluations (its stages that use the drift);
    for a wrapper that steps once per step (a solver with a `solver` field, e.g.
    `jaxdyn.regularize.HeuristicsSolver`), those of the solver it wraps; `None` for Diffrax's
    `HalfSolver` (three steps a step, two of them halves) and other solvers."""
    if type(solver) is dfx.HalfSolver:  # isinstance sees through it to the wrapped classes
        return None
    inner = getattr(solver, "solver", None)
    if isinstance(inner, dfx.AbstractSolver):
        return fevals(inner, num_steps)
    if isinstance(solver, dfx.AbstractSRK):
        ignored = solver.tableau.ignore_stage_f
        stages = len(solver.tableau.c) + 1
        return (stages - (0 if ignored is None else int(np.sum(ignored)))) * num_steps
    if isinstance(solver, dfx.Euler):
        return num_steps
    if isinstance(solver, dfx.AbstractERK):
        stages = len(solver.tableau.c) + 1
        if solver.tableau.fsal:  # the last stage of a step is the first of the next
            return 1 + (stages - 1) * num_steps
        return stages * num_steps
    return None


RESULTS = dfx.RESULTS


def failure_messages(caller: str, max_steps: int) -> list[str]:
    """One message per `RESULTS` index, saying what failed and what to change."""
    specific = {
        "max_steps_reached": (
            f"{caller}: the solver reached max_steps={max_steps} before the final time. "
            "Increase `max_steps`, loosen `rtol`/`atol`, or, if the problem is stiff, "
            "use an implicit solver such as solver='kvaerno5'."
        ),
        "dt_min_reached": (
            f"{caller}: step size underflow (the step size reached its minimum). The "
            "dynamics may blow up or be stiff: check the field, or use solver='kvaerno5'."
        ),
        "nonfinite": (
            f"{caller}: NaN or Inf in the state. The solution diverged or the field "
            "returned NaN: check the field and y0, use a smaller dt0, or adaptive steps."
        ),
        "nonlinear_max_steps_reached": (
            f"{caller}: the implicit solver's Newton iteration did not converge. Loosen "
            "rtol/atol or check the field's Jacobian."
        ),
        "nonlinear_divergence": (
            f"{caller}: the implicit solver's Newton iteration diverged. Check the field "
            "for NaN or use smaller steps."
        ),
    }
    messages = [f"{caller}: {m}" for m in RESULTS._index_to_message]
    for name, message in specific.items():
        messages[RESULTS._name_to_item[name]._value.item()] = message
    return messages


def apply_failure_policy(
    values: PyTree[Array],
    result: RESULTS,
    on_failure: OnFailure,
    caller: str,
    max_steps: int,
) -> tuple[PyTree[Array], RESULTS]:
    """Mark non-finite `values` as a failure, then apply `on_failure` to them.

    `result` is one code for all of `values` (`vmap` this function over a batch of solves).
    Returns `(values, result)`.
    """
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(values)]))
    result = RESULTS.where((result == RESULTS.successful) & ~finite, RESULTS.nonfinite, result)
    failed = result != RESULTS.successful
    if on_failure == "raise":
        messages = failure_messages(caller, max_steps)
        values = eqx.branched_error_if(values, failed, result._value, messages)
    elif on_failure == "nan":
        values = jax.tree.map(lambda v: jnp.where(failed, jnp.nan, v), values)
    return values, result


def apply_on_failure(
    values: PyTree[Array], failed: Bool[Array, ""], on_failure: OnFailure, message: str
) -> PyTree[Array]:
    """`on_failure` for a solve whose failure is one boolean: `raise` (with `message`, at run
    time) when `failed`, make `values` NaN (`nan`; inside a forward solve this makes the
    implicit gradient, evaluated there, NaN too), or leave them to the caller (`return`)."""
    if on_failure == "raise":
        return eqx.error_if(values, failed, message)
    if on_failure == "nan":
        return jax.tree.map(lambda v: jnp.where(failed, jnp.nan, v), values)
    return values
