"""Solver and adjoint names, and step-size control: turning the options every solve shares
into Diffrax objects. Shared by `jaxdyn.solve` and `jaxdyn.implicit.steady_state`."""

import diffrax as dfx
from diffrax._root_finder import use_stepsize_tol
from jaxtyping import Array

from ._checks import check_positive, choice_error

__all__ = [
    "ADJOINTS",
    "DEFAULT_TOL",
    "SOLVERS",
    "fevals",
    "resolve",
    "resolve_solver",
    "stepsize_controller",
]

SOLVERS: dict[str, type[dfx.AbstractSolver]] = {
    "euler": dfx.Euler,
    "heun": dfx.Heun,
    "midpoint": dfx.Midpoint,
    "ralston": dfx.Ralston,
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
    if not isinstance(solver, dfx.AbstractAdaptiveSolver):
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


def fevals(solver: dfx.AbstractSolver, num_steps: Array) -> Array | None:
    """Vector-field evaluations of explicit solvers, from their Butcher tableau."""
    if isinstance(solver, dfx.Euler):
        return num_steps
    if isinstance(solver, dfx.AbstractERK):
        stages = len(solver.tableau.c) + 1
        if solver.tableau.fsal:  # the last stage of a step is the first of the next
            return 1 + (stages - 1) * num_steps
        return stages * num_steps
    return None
