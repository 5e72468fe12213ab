"""What every implicit solver returns beside its solution, and the failure policy."""

from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

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


def as_arrays(tree: PyTree) -> PyTree:
    """Python and NumPy numbers become JAX arrays (so they are traced and differentiated);
    other leaves (functions, strings, None) are left as they are. (JAX's custom VJP also
    hands weak-typed scalars to the forward pass as Python-float subclasses.)"""
    numeric = (bool, int, float, complex, np.ndarray, np.generic)
    return jax.tree.map(lambda v: jnp.asarray(v) if isinstance(v, numeric) else v, tree)


def tree_norm(tree: PyTree) -> Array:
    """The Euclidean norm of all leaves of a pytree together."""
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in jax.tree.leaves(tree)))


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
