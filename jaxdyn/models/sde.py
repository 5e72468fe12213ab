"""Neural stochastic differential equations (Tzen & Raginsky 2019; Li et al. 2020)."""

from collections.abc import Callable
from typing import Any

import diffrax as dfx
import equinox as eqx
from jaxtyping import Array, Float, PRNGKeyArray

from ..solve import Batch, Calculus, Noise, OnFailure, Solution, sdeint
from ._solve import solve_options

__all__ = ["NeuralSDE"]


class NeuralSDE(eqx.Module):
    """A neural SDE `dy = f_θ(t, y) dt + g_θ(t, y) dW`: drift and diffusion networks and the
    options to solve it with `jaxdyn.solve.sdeint`.

    `drift` returns `(dim,)`; `diffusion` returns `(dim,)` for `noise="diagonal"` or
    `"scalar"`, and `(dim, m)` for `"general"` (see `sdeint`). Calling it with `ts`, a state
    `y0` of shape `(dim,)` and a key returns one sample path `(time, dim)`; with `y0` of
    shape `(batch, dim)` it returns `(batch, time, dim)`, one Brownian path per sample
    (`batch="joint"`, the default, integrates the batch as one state: fastest for fixed-step
    training; the paths are the same as with `"vmap"`). `max_steps=None` leaves the cap to
    `sdeint`.
    """

    drift: Callable
    diffusion: Callable
    noise: Noise = eqx.field(static=True, default="diagonal")
    calculus: Calculus = eqx.field(static=True, default="ito")
    solver: str | dfx.AbstractSolver = eqx.field(static=True, default="euler")
    dt0: float | None = eqx.field(static=True, default=None)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    brownian: str = eqx.field(static=True, default="grid")
    adjoint: str | dfx.AbstractAdjoint = eqx.field(static=True, default="checkpoint")
    max_steps: int | None = eqx.field(static=True, default=None)
    on_failure: OnFailure = eqx.field(static=True, default="raise")
    batch: Batch = eqx.field(static=True, default="joint")

    def solve(
        self,
        ts: Float[Array, " time"],
        y0: Float[Array, "*batch dim"],
        *,
        key: PRNGKeyArray,
        args: Any = None,
    ) -> Solution:
        """The full `Solution` (states, statistics, result code)."""
        if y0.ndim not in (1, 2):
            raise ValueError(f"NeuralSDE needs y0 of shape (dim,) or (batch, dim), got {y0.shape}")
        options = solve_options(
            self, "noise", "calculus", "solver", "dt0", "rtol", "atol", "brownian", "adjoint",
            "max_steps", "on_failure",
        )  # fmt: skip
        batch = self.batch if y0.ndim == 2 else None
        return sdeint(
            self.drift, self.diffusion, y0, ts, key=key, args=args, batch=batch, **options
        )

    def __call__(
        self,
        ts: Float[Array, " time"],
        y0: Float[Array, "*batch dim"],
        *,
        key: PRNGKeyArray,
        args: Any = None,
    ) -> Float[Array, "*batch time dim"]:
        return self.solve(ts, y0, key=key, args=args).ys
