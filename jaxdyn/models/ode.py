"""Neural ordinary differential equations (Chen et al. 2018)."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
from jaxtyping import Array, Float

from ..solve import Batch, OnFailure, Solution, odeint
from ._solve import ODE_OPTIONS, solve_options

__all__ = ["NeuralODE"]


class NeuralODE(eqx.Module):
    """A neural ODE `dy/dt = f_θ(t, y)`: a vector field and the options to solve it.

    Chen, Rubanova, Bettencourt & Duvenaud (2018), "Neural Ordinary Differential Equations".
    Calling it with `ts` and a state `y0` of shape `(dim,)` returns the trajectory
    `(time, dim)`; with `y0` of shape `(batch, dim)` the batch is solved according to
    `batch` (`joint`, the default: one step sequence for all, fastest for training; `vmap`:
    each sample its own steps) and the result has shape `(batch, time, dim)`. `max_steps=None`
    leaves the cap to `odeint` (4096 adaptive steps; the exact count for fixed steps).
    """

    field: Callable
    solver: str | dfx.AbstractSolver = eqx.field(static=True, default="tsit5")
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    dt0: float | None = eqx.field(static=True, default=None)
    adjoint: str | dfx.AbstractAdjoint = eqx.field(static=True, default="checkpoint")
    max_steps: int | None = eqx.field(static=True, default=None)
    on_failure: OnFailure = eqx.field(static=True, default="raise")
    batch: Batch = eqx.field(static=True, default="joint")

    def solve(
        self, ts: Float[Array, " time"], y0: Float[Array, "*batch dim"], args: Any = None
    ) -> Solution:
        """The full `Solution` (states, statistics, result code)."""
        if y0.ndim not in (1, 2):
            raise ValueError(f"NeuralODE needs y0 of shape (dim,) or (batch, dim), got {y0.shape}")
        batch, options = self.batch if y0.ndim == 2 else None, solve_options(self, *ODE_OPTIONS)
        return odeint(self.field, y0, ts, args=args, batch=batch, **options)

    def __call__(
        self, ts: Float[Array, " time"], y0: Float[Array, "*batch dim"], args: Any = None
    ) -> Float[Array, "*batch time dim"]:
        return self.solve(ts, y0, args).ys
