"""The regularisers as an option of a `NeuralODE`'s training loss."""

from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

from .._checks import check_choice, check_count
from ..models import NeuralODE, NeuralSDE
from ..solve import Solution
from ._penalties import (
    Reduction,
    error_penalty,
    local_error_penalty,
    local_stiffness_penalty,
    stiffness_penalty,
)
from ._sde import sde_error_penalty
from ._taylor import taylor_penalty

__all__ = ["KINDS", "Kind", "Regularizer", "regularized_loss"]

Kind = Literal["error", "stiffness", "local_error", "local_stiffness", "taylor"]
KINDS = ("error", "stiffness", "local_error", "local_stiffness", "taylor")


class Regularizer(eqx.Module):
    """Which penalty a `NeuralODE` is trained with, and its weight.

    - `kind`: `error` (`error_penalty`, ERNODE), `stiffness` (`stiffness_penalty`, SRNODE),
      `local_error` / `local_stiffness` (`local_error_penalty` / `local_stiffness_penalty`,
      one step at a sampled time: need a `key`), or `taylor` (`taylor_penalty`, TayNODE).
    - `weight`: the penalty's weight `λ ≥ 0` in `loss = data loss + λ · penalty`.
    - `reduction`: `max` or `sum` over steps, for the stiffness penalties.
    - `order`: the derivative order `K` of the Taylor penalty.

    Calling it with a model, `ts` and `y0` solves the model with its own options (solver,
    tolerances, adjoint, batching) and returns `(solution, penalty)`, the penalty unweighted.
    A `NeuralSDE` (adaptive: `rtol`/`atol`, `brownian="virtual"`) takes `kind="error"` only
    (`sde_error_penalty`, its solver's error estimate on the path of `key`).
    """

    kind: Kind = eqx.field(static=True)
    weight: float = eqx.field(static=True, default=1.0)
    reduction: Reduction = eqx.field(static=True, default="max")
    order: int = eqx.field(static=True, default=2)

    def __check_init__(self):
        check_choice("kind", self.kind, KINDS)
        check_choice("reduction", self.reduction, ("max", "sum"))
        check_count("order", self.order)
        if not (isinstance(self.weight, int | float) and self.weight >= 0):
            raise ValueError(f"weight must be a number >= 0, got {self.weight!r}")

    def __call__(
        self,
        model: NeuralODE,
        ts: Float[Array, " time"],
        y0: Float[Array, "*batch dim"],
        *,
        key: PRNGKeyArray | None = None,
        args: Any = None,
    ) -> tuple[Solution, Float[Array, ""]]:
        if isinstance(model, NeuralSDE):
            return self._sde(model, ts, y0, key, args)
        if not isinstance(model, NeuralODE):
            raise TypeError(
                f"Regularizer needs a NeuralODE or NeuralSDE, got {type(model).__name__}"
            )
        if y0.ndim not in (1, 2):
            raise ValueError(f"NeuralODE needs y0 of shape (dim,) or (batch, dim), got {y0.shape}")
        options = {
            name: getattr(model, name)
            for name in ("solver", "rtol", "atol", "dt0", "adjoint", "max_steps", "on_failure")
        }
        options["batch"] = model.batch if y0.ndim == 2 else None
        field = model.field
        if self.kind == "error":
            return error_penalty(field, y0, ts, args=args, **options)
        if self.kind == "stiffness":
            return stiffness_penalty(field, y0, ts, reduction=self.reduction, args=args, **options)
        if self.kind == "taylor":
            return taylor_penalty(field, y0, ts, order=self.order, args=args, **options)
        if key is None:
            raise ValueError(f"Regularizer(kind={self.kind!r}) samples a time: pass key=")
        if self.kind == "local_error":
            return local_error_penalty(field, y0, ts, key=key, args=args, **options)
        return local_stiffness_penalty(
            field, y0, ts, key=key, reduction=self.reduction, args=args, **options
        )

    def _sde(self, model: NeuralSDE, ts, y0, key, args) -> tuple[Solution, Float[Array, ""]]:
        if self.kind != "error":
            raise ValueError(
                f"Regularizer(kind={self.kind!r}) on a NeuralSDE: only 'error' (the SDE "
                "solver's error estimate, sde_error_penalty) is implemented for NeuralSDE"
            )
        if key is None:
            raise ValueError("Regularizer on a NeuralSDE needs key= (its Brownian path)")
        if y0.ndim not in (1, 2):
            raise ValueError(f"NeuralSDE needs y0 of shape (dim,) or (batch, dim), got {y0.shape}")
        options = {name: getattr(model, name) for name in ("noise", "calculus", "solver", "dt0",
                   "rtol", "atol", "brownian", "adjoint", "max_steps", "on_failure")}  # fmt: skip
        options["batch"] = model.batch if y0.ndim == 2 else None
        return sde_error_penalty(model.drift, model.diffusion, y0, ts, key=key, args=args,
                                 **options)  # fmt: skip


def regularized_loss(
    model: NeuralODE,
    ts: Float[Array, " time"],
    y0: Float[Array, "*batch dim"],
    ys: Float[Array, "*batch time dim"],
    regularizer: Regularizer,
    *,
    key: PRNGKeyArray | None = None,
    args: Any = None,
) -> tuple[Float[Array, ""], dict[str, Float[Array, ""]]]:
    """The mean squared error of `model(ts, y0)` against `ys` plus the weighted penalty:

        loss = mean((y(ts) − ys)²) + weight · penalty,

    returned as `(loss, {"data_loss": …, "penalty": …})`, the form `fit(..., has_aux=True)`
    logs: `fit(lambda m, b, k: regularized_loss(m, ts, b[0], b[1], reg, key=k), ...)`.

    The gradient of the solver-heuristic penalties holds the step sizes fixed (Diffrax stops
    the step-size controller's gradient): training follows that fixed-step surrogate, whose
    derivative can differ much from the logged penalty's (a review measured 3.5 against 0.12,
    and opposite signs for the stiffness maximum, on a small tanh field); the Taylor penalty
    and the local variants are much closer.
    """
    solution, penalty = regularizer(model, ts, y0, key=key, args=args)
    data_loss = jnp.mean(jnp.square(solution.ys - ys))
    loss = data_loss + regularizer.weight * penalty
    return loss, {"data_loss": data_loss, "penalty": penalty}
