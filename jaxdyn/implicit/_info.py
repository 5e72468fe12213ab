"""What every implicit solver returns beside its solution."""

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

__all__ = ["SolveInfo"]


class SolveInfo(eqx.Module):
    """`iterations` taken, final `error` (the solver's residual norm) and `converged`
    (`error <= tol`). Batched like the solution under `vmap`."""

    iterations: Int[Array, ""]
    error: Float[Array, ""]
    converged: Bool[Array, ""]

    @classmethod
    def of(cls, iterations: ArrayLike, error: ArrayLike, tol: float) -> "SolveInfo":
        """Converged when the finite residual `error` is within `tol`."""
        error = jnp.asarray(error)
        return cls(jnp.asarray(iterations), error, (error <= tol) & jnp.isfinite(error))
