"""How the implicit-function linear system is solved and checked: one object instead of four
`linear_*` arguments on every implicit solver."""

import dataclasses
from collections.abc import Callable

from .._jaxopt import LINEAR_SOLVERS

__all__ = ["LinearSolve", "as_linear_solve"]


@dataclasses.dataclass(frozen=True)
class LinearSolve:
    """The linear system `A v = b` of the implicit function theorem (`A = (∂ₓF)ᵀ` for a root,
    `(I - ∂ₓT)ᵀ` for a fixed point, the Hessian `∇²ₓf` for an argmin; Blondel et al. 2022).

    - `solver`: `cg` (symmetric positive-definite `A` only), `normal_cg`, `gmres`, `bicgstab`,
      `lu`, or a callable `solve(matvec, b)`.
    - `tol`: the Krylov solver's relative tolerance (unused by `lu` and callables).
    - `max_steps`: its iteration cap; `None` is the solver's own default (the system's size).
    - `check`: the relative residual `‖A v - b‖ / ‖b‖` above which the solve counts as failed
      (one extra matrix-vector product; the solver's `on_failure` applies); `None` skips it.

    Every implicit solver takes `linear_solver=` as a name (these defaults) or as a
    `LinearSolve`: `root(F, x0, θ, linear_solver=LinearSolve("gmres", max_steps=50))`.
    """

    solver: str | Callable = "gmres"
    tol: float = 1e-10
    max_steps: int | None = None
    check: float | None = 1e-3

    def __post_init__(self):
        if not callable(self.solver) and self.solver not in LINEAR_SOLVERS:
            raise ValueError(
                f"unknown linear_solver={self.solver!r}; expected one of "
                f"{sorted(LINEAR_SOLVERS)}, a callable solve(matvec, b) or a LinearSolve"
            )
        if not self.tol > 0:
            raise ValueError(f"LinearSolve(tol={self.tol!r}): must be > 0")
        if self.max_steps is not None and not (
            isinstance(self.max_steps, int) and self.max_steps >= 1
        ):
            raise ValueError(f"LinearSolve(max_steps={self.max_steps!r}): must be >= 1 or None")
        if self.check is not None and not self.check > 0:
            raise ValueError(f"LinearSolve(check={self.check!r}): must be > 0 or None")


def as_linear_solve(linear_solver: "str | Callable | LinearSolve") -> LinearSolve:
    """A solver's `linear_solver=` argument as a `LinearSolve` (a name or a callable gets the
    default tolerance, cap and check)."""
    if isinstance(linear_solver, LinearSolve):
        return linear_solver
    if isinstance(linear_solver, str) or callable(linear_solver):
        return LinearSolve(linear_solver)
    raise TypeError(
        f"linear_solver={linear_solver!r}: expected a name in {sorted(LINEAR_SOLVERS)}, a "
        "callable solve(matvec, b) or a LinearSolve"
    )
