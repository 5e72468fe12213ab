"""What every implicit solver returns beside its solution, and the failure policy."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int, PyTree

from .._trees import as_arrays, tree_norm

__all__ = ["OnFailure", "SolveInfo", "apply_policy", "as_arrays", "check_choice", "tree_norm"]

OnFailure = Literal["raise", "nan", "return"]


class SolveInfo(eqx.Module):
    """`iterations` taken, final `error` (the solver's residual norm) and `converged`
    (`error <= tol`). Batched like the solution under `vmap`."""

    iterations: Int[Array, ""]
    error: Float[Array, ""]
    converged: Bool[Array, ""]

    @classmethod
    def of(cls, iterations, error, tol: float) -> "SolveInfo":
        """From a jaxopt state: converged when the finite residual is within `tol`."""
        error = jnp.asarray(error)
        return cls(jnp.asarray(iterations), error, (error <= tol) & jnp.isfinite(error))


def check_choice(argument: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"unknown {argument}={value!r}; expected one of {sorted(valid)}")


def apply_policy(x: PyTree, info: SolveInfo, on_failure: OnFailure, message: str) -> PyTree:
    """Inside the forward solve: `raise` on non-convergence, or make `x` NaN (`nan`) so the
    implicit gradient, evaluated at `x`, is NaN too; `return` leaves both to the caller."""
    failed = ~info.converged
    if on_failure == "raise":
        return eqx.error_if(x, failed, message)
    if on_failure == "nan":
        return jax.tree.map(lambda y: jnp.where(failed, jnp.nan, y), x)
    return x
